"""From file paths to batches: decode once in parallel, cache the pixels, then tf.data.

Decoding happens before training starts, through the one decoder, in a pool
of threads (Pillow releases the GIL while it decodes). That gives three things
at once: a file that cannot be decoded is skipped with its reason before the
first step (never a crash mid-epoch), the exact number of steps per epoch is
known (progress bars and schedules need it), and every epoch reads cached
uint8 pixels, so training is bound by the model, not by JPEG decoding. Pixels live in memory, or in a
memory-mapped file under the run when they would not fit (``cache='disk'``).
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.core.progress import Progress
from imgclf.data.balance import balanced_index_dataset
from imgclf.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image, read_bytes

MEMORY_CACHE_LIMIT = 4 * 1024**3  # beyond this many bytes of pixels, cache='auto' goes to disk


@dataclass
class DecodedSet:
    """Decoded images of one split: ``images`` (N, H, W, C) uint8 and ``labels`` (N,) int."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    sha1: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.labels)


DECODE_CHUNK = 128  # files per thread-pool task in decode_all
SERIAL_BELOW_S = 0.0005  # decode_all stays on one thread when a file takes less than this


def _decode_one(path: str, size: int, color_mode: str, resize: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    try:
        data = read_bytes(path)
    except DecodeError as e:
        return None, "", e.reason
    digest = hashlib.sha1(data).hexdigest()
    try:
        return decode_image(data, size=size, color_mode=color_mode, resize=resize, max_pixels=max_pixels), digest, ""
    except DecodeError as e:
        return None, digest, e.reason


def decode_all(
    paths: list[str],
    labels: list[int],
    size: int,
    color_mode: str,
    resize: str = "squash",
    workers: int = 0,
    cache: str = "auto",
    cache_path: str | os.PathLike | None = None,
    label: str = "Decoding",
    verbose: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedSet:
    """Decode every path once into a uint8 array; undecodable files are skipped with a reason.

    Example:
        >>> ds = decode_all(["a.png", "b.jpg"], [0, 1], size=64, color_mode="rgb")
        >>> ds.images.shape, ds.skipped
        ((2, 64, 64, 3), [])
    """
    channels = 1 if color_mode == "grayscale" else 3
    n = len(paths)
    nbytes = n * size * size * channels
    use_disk = cache == "disk" or (cache == "auto" and nbytes > MEMORY_CACHE_LIMIT and cache_path)
    if use_disk:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
        images = np.lib.format.open_memmap(cache_path, mode="w+", dtype=np.uint8, shape=(n, size, size, channels))
    else:
        images = np.empty((n, size, size, channels), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    sha1 = [""] * n
    skipped = []
    workers = workers or os.cpu_count() or 1

    def decode_chunk(start: int) -> list:
        return [_decode_one(p, size, color_mode, resize, max_pixels) for p in paths[start:start + DECODE_CHUNK]]

    def chunks():
        # The first chunk decodes here, timed. Small files (well under a millisecond each) are
        # mostly Python bookkeeping: threads only fight over the GIL (28x28 PNGs: 1 thread 11,600
        # images/s, 2 threads 6,500), so they stay on this thread. Bigger ones, where Pillow
        # releases the GIL while decoding, go to a pool, one task per chunk of files (a task per
        # file costs more than a small decode; ThreadPoolExecutor.map ignores chunksize).
        t = time.perf_counter()
        first = decode_chunk(0)
        yield 0, first
        starts = range(DECODE_CHUNK, n, DECODE_CHUNK)
        if workers == 1 or (time.perf_counter() - t) / max(len(first), 1) < SERIAL_BELOW_S:
            yield from ((s, decode_chunk(s)) for s in starts)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                yield from zip(starts, pool.map(decode_chunk, starts))

    with Progress(n, label, enabled=verbose and n > 0) as bar:
        for start, chunk in chunks():
            for i, (arr, digest, reason) in enumerate(chunk, start):
                sha1[i] = digest
                if arr is None:
                    skipped.append((paths[i], reason))
                else:
                    images[i] = arr
                    ok[i] = True
            bar.update(len(chunk))
    labels_arr = np.asarray(labels, dtype=np.int32)
    if not ok.all():
        keep = np.flatnonzero(ok)
        images = images[keep] if not use_disk else _compact_memmap(images, keep, cache_path)
        labels_arr = labels_arr[keep]
        kept_paths = [paths[i] for i in keep]
        kept_sha1 = [sha1[i] for i in keep]
    else:
        kept_paths, kept_sha1 = list(paths), sha1
    result = DecodedSet(images, labels_arr, kept_paths, kept_sha1, skipped)
    result.all_sha1 = dict(zip(paths, sha1))
    return result


def sha1_files(paths: list[str], workers: int = 0) -> dict[str, str]:
    """SHA-1 of each file's bytes ('' when unreadable), hashed in parallel.

    Example:
        >>> sha1_files(["a.png"])
        {'a.png': 'bfd96f5fe1d3f26b2b9e12ea7144d79fdd1dc0d1'}
    """

    def one(path):
        try:
            return hashlib.sha1(Path(path).read_bytes()).hexdigest()
        except OSError:
            return ""

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return dict(zip(paths, pool.map(one, paths, chunksize=64)))


def _compact_memmap(images: np.ndarray, keep: np.ndarray, cache_path) -> np.ndarray:
    # Move the kept rows to the front in place, then reopen with the shorter length.
    for j, i in enumerate(keep):
        if i != j:
            images[j] = images[i]
    images.flush()
    return images[: len(keep)]


def _index_dataset(labels, n: int, shuffle: bool, seed: int, balanced: bool):
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    if balanced and n:
        return balanced_index_dataset(labels, n, seed)
    ds = tf.data.Dataset.range(n)
    return ds.shuffle(n, seed=seed, reshuffle_each_iteration=True) if shuffle else ds


def without_autotuner(ds):
    """`ds` with tf.data's autotuning model thread turned off (`AUTOTUNE` values then keep TF's fixed defaults).

    Deleting an iterator whose pipeline is autotuned waits for that thread's
    current optimisation period to end, up to 60 s once epochs last minutes,
    inside a Python deallocation: a tune lost 22 and 57 s this way when
    two pruned trials dropped their iterators (bench/RESULTS.md, issue 17).
    Our maps are whole-batch tensor operations; on a two-core host (AVX-512,
    bfloat16) the pipeline ran as fast or faster without the thread (0.2 vs up
    to 19.7 s to delete an iterator; 320-346 vs 181-311 images/s with the
    standard augmentation at 224 px).

    Example:
        >>> import tensorflow as tf
        >>> without_autotuner(tf.data.Dataset.range(3)).options().autotune.enabled
        False
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def make_dataset(
    data: DecodedSet,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    map_fn=None,
    drop_remainder: bool = False,
    balanced: bool = False,
):
    """A tf.data pipeline over cached pixels: shuffle indices -> batch -> gather -> map -> prefetch.

    ``balanced=True`` draws each class equally often instead of shuffling
    (`imgclf.data.balance.balanced_index_dataset`); an epoch keeps its size.

    Batches are (float32 images in [0, 255], int32 labels); scaling to what the
    backbone expects happens inside the model, so prediction needs nothing but
    the decoder. `map_fn` (augmentation) runs on whole batches.

    Example:
        >>> decoded = decode_all(["a.png", "b.png"], [0, 1], size=16, color_mode="rgb", verbose=False)
        >>> ds = make_dataset(decoded, batch_size=32, shuffle=True)
        >>> [tuple(t.shape) for t in next(iter(ds))]
        [(2, 16, 16, 3), (2,)]
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    images, labels = data.images, data.labels
    n = len(labels)
    shape = (None,) + tuple(images.shape[1:])
    if isinstance(images, np.memmap) or images.nbytes > MEMORY_CACHE_LIMIT:
        def gather(idx):
            idx = np.sort(idx)  # sequential reads from a memory-mapped file
            return images[idx], labels[idx]

        def load(idx):
            x, y = tf.numpy_function(gather, [idx], (tf.uint8, tf.int32), stateful=False)
            x.set_shape(shape)
            y.set_shape((None,))
            return x, y

        ds = _index_dataset(labels, n, shuffle, seed, balanced)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        x_all = tf.constant(images)
        y_all = tf.constant(labels)
        ds = _index_dataset(labels, n, shuffle, seed, balanced)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda idx: (tf.gather(x_all, idx), tf.gather(y_all, idx)), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    return without_autotuner(ds.prefetch(tf.data.AUTOTUNE))
