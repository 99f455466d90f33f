"""The decode gate: a budget of decoded bytes and decode threads in flight, shared fairly between requests.

Every image waits here, with its estimated decode cost (uploads.decode_cost),
before a decode thread touches its pixels. Memory therefore stays bounded
whatever arrives at once, and the excess waits rather than failing: its body
is already read (compressed, capped by --max-upload-mb), so waiting costs
little and a burst of uploads is answered, late, instead of refused. Only an
image that waits longer than `wait_s` while none of its request's images is
being decoded is refused (503 with Retry-After): a long batch that is moving
is never cut short.

Fair: when room frees, the waiting request with the fewest images being
decoded goes first (then the oldest), and a request that already has an image
in flight may not take the last decode thread or the last `reserve` bytes. So a
60-file batch never holds every thread, and a one-image request starts at once.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


class GateBusy(Exception):
    """An image waited longer than the gate's `wait_s` for decode memory. Example: ``except GateBusy: answer 503``."""


@dataclass
class _Waiter:
    key: object
    seq: int
    cost: int
    future: asyncio.Future = field(repr=False)


class DecodeGate:
    """At most `capacity` estimated bytes and `slots` decodes in flight; requests (keys) share them fairly.

    Example:
        >>> async def two_requests():
        ...     gate = DecodeGate(capacity=100, slots=3, wait_s=1.0)
        ...     order = []
        ...     async def image(key, cost):
        ...         async with gate.admit(key, cost):
        ...             order.append(key)
        ...             await asyncio.sleep(0.01)
        ...     await asyncio.gather(*[image("batch", 60) for _ in range(3)], image("small", 1))
        ...     return order
        >>> asyncio.run(two_requests())  # the small request goes second, not after the whole batch
        ['batch', 'small', 'batch', 'batch']
    """

    def __init__(self, capacity: int, slots: int, wait_s: float = 30.0, reserve: int | None = None):
        self.capacity = max(1, int(capacity))
        self.slots = max(1, int(slots))
        self.wait_s = wait_s
        self.reserve = self.capacity // 8 if reserve is None else reserve  # kept for requests with nothing in flight
        self.bytes_in_flight = 0
        self.peak_bytes = 0
        self._running = 0
        self._active: dict[object, int] = {}
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()

    @asynccontextmanager
    async def admit(self, key, cost: int):
        """Wait for room for one decode of `cost` bytes for request `key`; release it on exit. Raises `GateBusy`.

        Example:
            >>> from pathlib import Path
            >>> from imgclf.serve.uploads import decode_cost, decode_upload, open_upload
            >>> async def decode(gate, request_id, body: bytes):
            ...     img = open_upload(body, size=64)
            ...     async with gate.admit(request_id, decode_cost(img, 64)):  # waits while others hold the room
            ...         return await asyncio.get_running_loop().run_in_executor(None, decode_upload, img, 64)
            >>> asyncio.run(decode(DecodeGate(capacity=2**26, slots=2), "request-1", Path("cat.jpg").read_bytes())).shape
            (64, 64, 3)
        """
        cost = min(max(0, int(cost)), self.capacity)  # one image under the pixel cap always fits on its own
        waiter = _Waiter(key, next(self._seq), cost, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        self._dispatch()
        try:
            while not waiter.future.done():
                try:
                    await asyncio.wait_for(asyncio.shield(waiter.future), self.wait_s)
                except asyncio.TimeoutError:
                    if not waiter.future.done() and not self._active.get(key):
                        raise GateBusy(f"waited {self.wait_s:g} s for decode memory") from None
                    # else: this request's other images are being decoded: it is moving, so it keeps its place
        except BaseException:  # refused, or the client went away
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter)  # room was granted just as we stopped waiting
            else:
                waiter.future.cancel()
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
            self._dispatch()
            raise
        try:
            yield
        finally:
            self._release(waiter)
            self._dispatch()

    def _fits(self, w: _Waiter, big_ok: bool) -> bool:
        held = self._active.get(w.key, 0)
        if self._running >= self.slots or self.bytes_in_flight + w.cost > self.capacity:
            return False
        if held and (self._running >= self.slots - 1 > 0 or self.bytes_in_flight + w.cost > self.capacity - self.reserve):
            return False  # leave a thread and some memory for a request that has nothing running
        return big_ok or w.cost <= self.reserve

    def _dispatch(self) -> None:
        self._waiting.sort(key=lambda w: (self._active.get(w.key, 0), w.seq))
        big_ok = True  # past the first waiter that does not fit, only small images may overtake it
        for w in list(self._waiting):
            if w.future.done():  # cancelled: its request stopped waiting and is removing it
                self._waiting.remove(w)
                continue
            if not self._fits(w, big_ok):
                big_ok = False
                continue
            self._waiting.remove(w)
            self._running += 1
            self.bytes_in_flight += w.cost
            self.peak_bytes = max(self.peak_bytes, self.bytes_in_flight)
            self._active[w.key] = self._active.get(w.key, 0) + 1
            w.future.set_result(None)

    def _release(self, w: _Waiter) -> None:
        self._running -= 1
        self.bytes_in_flight -= w.cost
        left = self._active[w.key] - 1
        if left:
            self._active[w.key] = left
        else:
            del self._active[w.key]
