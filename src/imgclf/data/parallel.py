"""Run a per-file function over many files on every core, in order, with a progress bar.

Reading, hashing and decoding small files is mostly Python bookkeeping, which
threads cannot spread over cores (the GIL). Big folders therefore go to worker
processes, in chunks of files so each hand-off carries real work; small ones,
and any process that already loaded TensorFlow (forking its threads is
unsafe), use threads, where Pillow and hashlib still release the GIL.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from imgclf.core.progress import Progress

PROCESS_MIN_FILES = 2000  # below this, starting processes costs more than it saves
CHUNK = 128


def _apply(fn, items):
    return [fn(x) for x in items]


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules


def map_files(fn, items: list, workers: int = 0, label: str = "Reading", verbose: bool = True, unit: str = "files") -> list:
    """``[fn(x) for x in items]`` across cores. `fn` must be picklable (a module-level function or a partial of one).

    Example:
        >>> from functools import partial
        >>> map_files(partial(pow, exp=2), [1, 2, 3], verbose=False)
        [1, 4, 9]
    """
    workers = workers or os.cpu_count() or 1
    out: list = []
    with Progress(len(items), label, enabled=verbose and bool(items), unit=unit) as bar:
        if workers > 1 and len(items) >= PROCESS_MIN_FILES and _can_fork():
            chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for part in pool.map(_apply, [fn] * len(chunks), chunks):
                    out.extend(part)
                    bar.update(len(part))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(fn, items, chunksize=32):
                    out.append(result)
                    bar.update(1)
    return out
