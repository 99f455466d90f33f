"""Micro-batching: concurrent requests share one model call.

Each request puts its decoded image on an asyncio queue and awaits a future.
One worker task takes whatever is waiting (up to `max_batch`, waiting at most
`max_wait_ms` for company once the first item arrives), runs the model once
in a single background thread, and hands each request its row. Under load
the model sees full batches; a lone request waits at most a few milliseconds.
"""

from __future__ import annotations

import asyncio
import time
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
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # One thread: the model runs one batch at a time, and the event loop stays free for I/O.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgclf-model")
        self.batches = 0
        self.images = 0

    async def start(self) -> None:
        """Start the worker task (call from the running event loop). Example: ``await batcher.start()``."""
        self._queue = asyncio.Queue()
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

    async def submit(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """Probabilities for one decoded uint8 image, and the size of the batch it ran in.

        Example:
            >>> probs, n = await batcher.submit(clf.decode("a.jpg"))  # inside a coroutine, see the class  # doctest: +SKIP
        """
        if self._queue is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((image, future))
        return await future

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = time.perf_counter() + self.max_wait
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            items = [(img, fut) for img, fut in items if not fut.cancelled()]  # clients that hung up
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
