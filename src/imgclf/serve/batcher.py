"""Micro-batching: concurrent requests share one model call.

Each request puts its decoded image in line and awaits a future. One worker
task takes whatever is waiting (up to `max_batch`, waiting at most
`max_wait_ms` for company once the first item arrives), runs the model once
in a single background thread, and hands each request its row. Under load
the model sees full batches; a lone request waits at most a few milliseconds.

Images are submitted with the request they belong to (`key`), and a batch is
filled round-robin across requests: the images of a 60-file upload do not
all go before a single-image request that arrived after them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Batch single-image predictions from many coroutines into one `predict_arrays` call.

    Example:
        >>> brightness = lambda x: x.mean(axis=(1, 2, 3))[:, None] / 255  # stands in for clf.predict_arrays
        >>> async def three_requests():
        ...     batcher = MicroBatcher(brightness, max_batch=32, max_wait_ms=50)
        ...     await batcher.start()
        ...     images = [np.full((2, 2, 1), v, np.uint8) for v in (0, 51, 255)]
        ...     answers = await asyncio.gather(*(batcher.submit(im) for im in images))
        ...     await batcher.stop()
        ...     return [(float(p[0]), n) for p, n in answers], batcher.batches
        >>> asyncio.run(three_requests())  # one model call for the three
        ([(0.0, 3), (0.2, 3), (1.0, 3)], 1)
    """

    def __init__(self, predict, max_batch: int = 32, max_wait_ms: float = 5.0):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._lines: dict[object, deque] = {}  # request key -> its waiting (image, future), in arrival order
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # One thread: the model runs one batch at a time, and the event loop stays free for I/O.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgclf-model")
        self.batches = 0
        self.images = 0

    async def start(self) -> None:
        """Start the worker task (call from the running event loop). Example: ``await batcher.start()``."""
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._worker())

    async def stop(self) -> None:
        """Stop the worker and its thread. Example: ``await batcher.stop()``."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, image: np.ndarray, key=None) -> tuple[np.ndarray, int]:
        """Probabilities for one decoded uint8 image, and the size of the batch it ran in.

        `key` names the request the image belongs to (batches are shared
        round-robin between requests); None puts it in a line of its own.

        Example:
            >>> from imgclf.inference.loader import load
            >>> clf = load("runs/leaves")
            >>> async def one_request():
            ...     batcher = MicroBatcher(clf.predict_arrays)
            ...     probs, n = await batcher.submit(clf.decode("a.png"))
            ...     await batcher.stop()
            ...     return probs.shape, n
            >>> asyncio.run(one_request())
            ((3,), 1)
        """
        if self._arrived is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        self._lines.setdefault(object() if key is None else key, deque()).append((image, future))
        self._arrived.set()
        return await future

    def _waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def _take(self) -> list:
        """Up to max_batch waiting items, one from each request in turn (requests in arrival order)."""
        items = []
        while self._lines and len(items) < self.max_batch:
            for key in list(self._lines):
                line = self._lines[key]
                items.append(line.popleft())
                if not line:
                    del self._lines[key]
                if len(items) == self.max_batch:
                    break
        return items

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._lines:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = time.perf_counter() + self.max_wait
            while self._waiting() < self.max_batch and (left := deadline - time.perf_counter()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            items = [(img, fut) for img, fut in self._take() if not fut.cancelled()]  # clients that hung up
            if not items:
                continue
            batch = np.stack([img for img, _ in items])
            try:
                probs = await loop.run_in_executor(self._executor, self.predict, batch)
            except Exception as e:  # noqa: BLE001 - every waiting request must hear about it
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.images += len(items)
            for (_, fut), p in zip(items, probs):
                if not fut.done():
                    fut.set_result((p, len(items)))
