"""Run a per-file function over many files on every core, in order, with a progress bar.

Reading, hashing and decoding small files is mostly Python bookkeeping, which
threads cannot spread over cores (the GIL). Big folders therefore go to worker
processes, in chunks of files so each hand-off carries real work; small ones,
and any process that already loaded TensorFlow (forking its threads is
unsafe), use threads, where Pillow and hashlib still release the GIL.
Worker processes die with the process that started them (`_tie_to_parent`):
a killed `imgclf check` leaves none behind.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from imgclf.core.progress import Progress

PROCESS_MIN_FILES = 2000  # below this, starting processes costs more than it saves
CHUNK = 128


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _tie_to_parent(parent: int) -> None:
    """Worker initializer: end this worker when `parent` ends, even by SIGKILL.

    On Linux the kernel sends SIGKILL when the parent dies (prctl
    PR_SET_PDEATHSIG); elsewhere, and as a fallback, a thread checks every
    second whether the parent is still this process's parent.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="imgclf-parent-watch").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


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
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_tie_to_parent, initargs=(os.getpid(),)) as pool:
                for part in pool.map(_apply, [fn] * len(chunks), chunks):
                    out.extend(part)
                    bar.update(len(part))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(fn, items, chunksize=32):
                    out.append(result)
                    bar.update(1)
    return out
