"""Read what `imgclf datasets pack` wrote: the index, the rows, and a streaming tf.data pipeline per split.

Training from shards streams: the files of a split are listed, read
interleaved, shuffled through a buffer of encoded records, decoded by the one
decoder (`decode.decode_image`, so a model trained from shards sees the
pixels `imgclf predict` will give it), batched, augmented like the folder
pipeline's batches, and prefetched. Nothing is cached, so the data may be
larger than memory or live on object storage (gs://; s3:// with
tensorflow-io). With several workers (TF_CONFIG), tf.data's auto-sharding
gives each worker its own files.

Example:
    >>> root = shards_root("shards/")  # or a bucket: "gs://bucket/leaves-shards"
    >>> ds = make_split_dataset(root, "train", batch_size=8, img_size=16, shuffle=True)
    >>> images, labels = next(iter(ds))
    >>> images.shape, images.dtype.name
    (TensorShape([8, 16, 16, 3]), 'float32')
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.progress import Progress, log
from imgclf.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from imgclf.data.pipeline import DecodedSet, without_autotuner
from imgclf.data.shards.pack import FORMAT, FORMAT_VERSION, INDEX, ensure_filesystem, filesystem_error, is_url, join

SHUFFLE_BUFFER_BYTES = 256 * 1024**2  # encoded bytes held by the shuffle buffer (at least 1,024 records)


def _read_text(path: str) -> str:
    if not is_url(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return f.read()
    except tf.errors.OpError as e:
        raise filesystem_error(path, e) from None


def shards_root(data: str) -> str:
    """`data` normalised if it is a folder or URL written by `imgclf datasets pack`, else ''.

    Example:
        >>> shards_root("data/")  # a folder of class subfolders
        ''
        >>> shards_root("shards/")  # doctest: +ELLIPSIS
        '...shards'
    """
    if not data:
        return ""
    data = str(data)
    if not is_url(data):
        return os.path.abspath(data) if os.path.isfile(os.path.join(data, INDEX)) else ""
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    ensure_filesystem(data)
    root = data.rstrip("/")
    try:
        found = tf.io.gfile.exists(join(root, INDEX))
    except tf.errors.OpError as e:
        raise filesystem_error(data, e) from None
    if not found:
        raise UserError(f"{data!r} has no {INDEX}: expected the output of `imgclf datasets pack DATA --out {data}` "
                        "(a URL must point at shards; folders of images are read from local disk).")
    return root


def read_index(root: str) -> dict:
    """The pack's shards.json. Example: ``read_index("shards/")["images"]``."""
    try:
        info = json.loads(_read_text(join(root, INDEX)))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"Cannot read {join(root, INDEX)!r}: {e}. Pack the data again with `imgclf datasets pack`.") from None
    if info.get("format") != FORMAT:
        raise UserError(f"{join(root, INDEX)!r} is not an imgclf shards index (format {info.get('format')!r}).")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{root!r} was packed by a newer imgclf ({info.get('created_by')}, format "
                        f"{info['format_version']}); this one reads format {FORMAT_VERSION}. Upgrade imgclf.")
    return info


def split_files(root: str, split: str) -> list[str]:
    """Full paths (or URLs) of a split's shard files, in order. Example: ``split_files("shards/", "val")``."""
    return [join(root, name) for name in read_index(root)["files"].get(split, [])]


def shard_rows(root: str, cfg=None) -> tuple[list[dict], list[str]]:
    """The pack's manifest as training rows (path, label, split, sha1, status, group, shard, record) and its classes.

    With a `TrainConfig`, settings that cannot apply to shards are refused; the
    split was made when packing, with the settings `pack_split` returns.

    Example:
        >>> rows, classes = shard_rows("shards/")
    """
    info = read_index(root)
    if cfg is not None:
        if cfg.manifest:
            raise UserError(f"{root!r} is packed shards with their own split; --manifest cannot apply. Pass one or the other.")
        if cfg.max_images:
            raise UserError("--max-images is not available when training from shards (they are streamed); "
                            "pack a smaller folder instead.")
        if cfg.sampling == "balanced":
            raise UserError("--sampling balanced is not available when training from shards (they are streamed); "
                            "use --class-weight auto, which weights the loss by class size.")
        s = info["split"]
        log(f"Data: shards {root} ({', '.join(f'{k} {v}' for k, v in info['images'].items())} images; "
            f"split made when packing: val {s['val_fraction']}, test {s['test_fraction']}, seed {s['seed']})")
    source = info.get("source", "")
    rows = list(csv.DictReader(io.StringIO(_read_text(join(root, "manifest.csv")))))
    for r in rows:
        # The original path, as a run trained from the folder records it (it may not exist on this machine).
        r["path"] = r["path"] if os.path.isabs(r["path"]) or not source else os.path.join(source, r["path"])
        r["record"] = int(r["record"]) if r.get("record") not in (None, "") else -1
    return rows, list(info["classes"])


def pack_split(root: str) -> dict:
    """The split settings the pack was made with (val_fraction, test_fraction, group_by): the run's, not the config's.

    Example:
        >>> pack_split("shards/")
        {'val_fraction': 0.1, 'test_fraction': 0.1, 'group_by': ''}
    """
    s = read_index(root)["split"]
    return {"val_fraction": s["val_fraction"], "test_fraction": s["test_fraction"], "group_by": s["group_by"]}


def shard_probe(root: str) -> dict:
    """What `imgclf train DATA` would probe from the files (median shorter side, all grayscale), saved when packing.

    Example:
        >>> shard_probe("shards/")["median_side"]
        24
    """
    return dict(read_index(root)["probe"])


@dataclass
class StreamedSet:
    """A split read from shards: labels in the order the unshuffled pipeline yields them; no pixels held."""

    labels: np.ndarray
    paths: list[str]
    sha1: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    images = None  # nothing is cached: see make_split_dataset

    def __len__(self) -> int:
        return len(self.labels)


def streamed_sets(root: str, classes: list[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """``{"train": StreamedSet, "val": StreamedSet}`` from the pack's manifest, checked against its index.

    Example:
        >>> len(streamed_sets("shards/", ["bird", "cat", "dog"])["train"])
        30
    """
    info = read_index(root)
    rows, _ = shard_rows(root)
    largest = info.get("image_stats", {}).get("largest_pixels", 0)
    if largest > max_pixels:
        raise UserError(f"The shards hold an image of {largest:,} pixels, over --max-pixels {max_pixels:,}; it would stop "
                        f"training midway. Raise --max-pixels to at least {largest:,}, or pack again with a lower --max-pixels.")
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split in ("train", "val"):
        part = sorted((r for r in rows if r["split"] == split and r.get("shard")), key=lambda r: (r["shard"], r["record"]))
        if len(part) != info["images"][split]:
            raise UserError(f"{join(root, 'manifest.csv')!r} lists {len(part)} {split} images but {INDEX} says "
                            f"{info['images'][split]}: the pack is inconsistent. Pack the data again.")
        out[split] = StreamedSet(np.asarray([index[r["label"]] for r in part], dtype=np.int32),
                                 [r["path"] for r in part], [r["sha1"] for r in part])
    empty = [c for c, n in info["counts"]["train"].items() if not n]
    if empty:
        raise UserError(f"The shards hold no training images of class(es) {', '.join(empty)}; see "
                        f"{join(root, 'manifest.csv')} for the files left out and why.")
    if not len(out["val"]):
        raise UserError(f"The shards hold no validation images; pack again with --val above 0 (see {join(root, 'manifest.csv')}).")
    return out


def _num_workers() -> int:
    """Workers in the TF_CONFIG cluster (chief included); 1 without one."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except json.JSONDecodeError:
        return 1
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def make_split_dataset(root: str, split: str, *, batch_size: int, img_size: int, color_mode: str = "rgb",
                       resize: str = "squash", shuffle: bool = False, seed: int = 0, map_fn=None,
                       max_pixels: int = DEFAULT_MAX_PIXELS, shuffle_buffer: int = 0, drop_remainder: bool = False,
                       num_workers: int = 0, repeat: bool = False, shard_policy: str = "file"):
    """A streaming tf.data pipeline over one split's shards: (float32 images in [0, 255], int32 labels) batches.

    files -> (shuffled) -> interleaved TFRecord reads -> shuffle buffer of
    encoded records -> batch -> parse and decode (the one decoder, a batch
    per call) -> `map_fn` (augmentation, on whole batches) -> prefetch. Unshuffled, it
    yields records in shard order (the order of `streamed_sets` labels).
    With several workers each reads its own files (auto-shard policy FILE),
    falling back to DATA when a split has fewer files than workers or with
    ``shard_policy="data"``. ``repeat=True`` streams without end (pass
    ``steps_per_epoch`` to fit): workers whose files hold different numbers
    of records must still run the same number of steps.

    Example:
        >>> ds = make_split_dataset("shards/", "val", batch_size=128, img_size=96)
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    files = split_files(root, split)
    count = read_index(root)["images"].get(split, 0)
    if not files or not count:
        raise UserError(f"The shards in {root!r} have no {split} images.")
    channels = 1 if color_mode == "grayscale" else 3
    workers = num_workers or _num_workers()

    def decode_batch(blobs):
        # A whole batch per call: one Python hop per batch instead of per image (measured 4-8x faster on
        # 28x28 PNGs); several batches still decode in parallel, and Pillow releases the GIL while decoding.
        out = np.empty((len(blobs), img_size, img_size, channels), dtype=np.uint8)
        for i, data in enumerate(blobs):
            out[i] = decode_image(bytes(data), size=img_size, color_mode=color_mode, resize=resize, max_pixels=max_pixels)
        return out

    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string), "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

    def decode(records):
        parsed = tf.io.parse_example(records, spec)
        images = tf.numpy_function(decode_batch, [parsed["image/encoded"]], tf.uint8, stateful=False)
        images.set_shape((None, img_size, img_size, channels))
        return tf.cast(images, tf.float32), tf.cast(parsed["image/class/label"], tf.int32)

    names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = names.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16), block_length=1,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        if not shuffle_buffer:
            info = read_index(root)
            mean = max(1, info["bytes"][split] // count)
            shuffle_buffer = max(1024, SHUFFLE_BUFFER_BYTES // mean)
        ds = ds.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    else:
        ds = names.flat_map(tf.data.TFRecordDataset)  # one file after the other: the order of the labels
    by_file = shard_policy == "file" and len(files) >= workers
    if repeat:
        ds = ds.repeat()
    elif workers == 1 or not by_file:  # by DATA, every worker still reads every record
        ds = ds.apply(tf.data.experimental.assert_cardinality(count))  # Keras then knows the steps per epoch
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.FILE if by_file else policy.DATA
    if workers > 1 and shard_policy == "file" and len(files) < workers:
        log(f"The {split} split has {len(files)} shard file(s) for {workers} workers: each worker reads all of them "
            "and keeps its share of records. Pack with --min-shards to give every worker its own files.")
    return without_autotuner(ds.with_options(options).prefetch(tf.data.AUTOTUNE))


def iter_records(root: str, split: str):
    """Yield each record of a split, in shard order, as a dict (encoded, label, text, filename, sha1).

    Example:
        >>> next(iter_records("shards/", "test"))["filename"]
        'cat/07.png'
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    spec = {k: tf.io.FixedLenFeature([], t) for k, t in (
        ("image/encoded", tf.string), ("image/class/label", tf.int64), ("image/class/text", tf.string),
        ("image/filename", tf.string), ("image/sha1", tf.string))}
    files = split_files(root, split)
    if not files:
        return
    ds = tf.data.Dataset.from_tensor_slices(files).flat_map(tf.data.TFRecordDataset)
    ds = ds.map(lambda r: tf.io.parse_single_example(r, spec))
    try:
        for ex in ds.as_numpy_iterator():
            yield {"encoded": ex["image/encoded"], "label": int(ex["image/class/label"]),
                   "text": ex["image/class/text"].decode("utf-8"), "filename": ex["image/filename"].decode("utf-8"),
                   "sha1": ex["image/sha1"].decode()}
    except tf.errors.OpError as e:
        raise filesystem_error(root, e) from None


def decode_split(root: str, split: str, classes: list[str], img_size: int, color_mode: str = "rgb",
                 resize: str = "squash", max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0, verbose: bool = True,
                 limit: int | None = None):
    """Decode a split into memory as a `DecodedSet` with labels in `classes`' order (for evaluation, calibration).

    `limit` keeps its first records only: a random sample, since packing
    shuffled each split (a large pack need not fit in memory).

    Example:
        >>> test = decode_split("shards/", "test", ["bird", "cat", "dog"], 16)
        >>> test.images.shape
        (3, 16, 16, 3)
        >>> len(decode_split("shards/", "train", ["bird", "cat", "dog"], 16, limit=5, verbose=False))
        5
    """

    info = read_index(root)
    unknown = sorted(set(info["classes"]) - set(classes))
    if unknown:
        raise UserError(f"The shards in {root!r} have classes the model was not trained on: {', '.join(unknown)}. "
                        f"Expected the run's classes: {', '.join(classes)}.")
    index = {c: i for i, c in enumerate(classes)}
    source = info.get("source", "")
    records = list(itertools.islice(iter_records(root, split), limit))
    if not records:
        raise UserError(f"The shards in {root!r} have no {split} images.")
    channels = 1 if color_mode == "grayscale" else 3
    images = np.empty((len(records), img_size, img_size, channels), dtype=np.uint8)
    ok = np.zeros(len(records), dtype=bool)
    skipped = []

    def one(i):
        try:
            images[i] = decode_image(records[i]["encoded"], size=img_size, color_mode=color_mode, resize=resize,
                                     max_pixels=max_pixels)
            ok[i] = True
        except DecodeError as e:
            skipped.append((os.path.join(source, records[i]["filename"]), e.reason))

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool, \
            Progress(len(records), f"Decoding {split}", enabled=verbose) as bar:
        for _ in pool.map(one, range(len(records))):
            bar.update(1)
    keep = np.flatnonzero(ok)
    return DecodedSet(images[keep], np.asarray([index[records[i]["text"]] for i in keep], dtype=np.int32),
                      [os.path.join(source, records[i]["filename"]) for i in keep],
                      [records[i]["sha1"] for i in keep], skipped)


def shard_source(run, data=None) -> str:
    """The shards to evaluate `run` on: `data` when it is a pack, else the run's own training shards; '' if neither.

    Example:
        >>> from imgclf.core.run import Run
        >>> shard_source(Run("runs/leaves"), "shards/")
        '.../shards'
    """
    if data:
        return shards_root(os.fspath(data))
    trained_on = (run.config or {}).get("data", "") if run.file("config.yaml").exists() else ""
    return shards_root(trained_on) if trained_on else ""


def decode_for_evaluation(root: str, split: str | None, classes: list[str], preprocess: dict, verbose: bool = True):
    """(DecodedSet, source text) of a pack's test split (or `split`), for `imgclf evaluate`.

    Example:
        >>> from imgclf.core.run import Run
        >>> run = Run("runs/leaves")
        >>> decoded, source = decode_for_evaluation("shards/", None, run.classes, run.preprocess)
        >>> len(decoded.labels), source
        (3, 'test split of the shards shards/')
    """
    images = read_index(root)["images"]
    wanted = split or ("test" if images.get("test") else "val")
    if wanted == "val" and not split:
        log("Note: these shards have no test split, so these figures are on the validation images that chose "
            "the checkpoint and are optimistic. Pack with --test 0.1 (or a test/ folder) for an honest figure.")
    decoded = decode_split(root, wanted, classes, preprocess["img_size"], preprocess["color_mode"],
                           resize=preprocess.get("resize", "squash"), verbose=verbose)
    return decoded, f"{wanted} split of the shards {root}"
