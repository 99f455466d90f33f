"""Pack a folder of class subfolders into sharded TFRecord files: `imgclf datasets pack DATA --out SHARDS/`.

For data larger than memory, or kept on object storage. The split is made
by the very code `imgclf train DATA` uses (`split.training_rows`: stratified,
seeded, duplicates and ``--group-by`` groups kept whole, the user's own
val/ and test/ folders kept), so training from the shards sees the same
train, val and test images as training from the folder. Every image is
checked with the one decoder first; one that cannot be decoded is left out,
with its reason in manifest.csv.

What SHARDS/ holds (local folder, or any URL `tf.io.gfile` understands)::
    train-00000-of-00004.tfrecord ...   tf.train.Example records, original bytes
    val-00000-of-00001.tfrecord  test-00000-of-00001.tfrecord
    classes.json     class names in label order
    manifest.csv     path, label, split, shard, record, sha1, status, group
    shards.json      the index: format version, counts, image sizes, files

shards.json is written last, so a folder without it is an unfinished pack
and is never mistaken for a complete one. Records of a split are shuffled
(seeded) before they are cut into shards, so every shard mixes the classes
and each worker of a distributed job can read its own shards.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import statistics
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.manifest import is_skipped, skip_reason
from imgclf.core.manifest import skipped as skipped_status
from imgclf.core.progress import Progress, log
from imgclf.core.version import __version__
from imgclf.data.decode import (
    DEFAULT_MAX_PIXELS,
    GRAYSCALE_MODES,
    DecodeError,
    decode_image,
    describe_failure,
    open_image,
    palette_is_gray,
    probe_images,
    read_bytes,
)
from imgclf.data.parallel import map_files
from imgclf.data.split import training_rows

FORMAT = "imgclf-shards"
FORMAT_VERSION = 1
INDEX = "shards.json"
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "label", "split", "shard", "record", "sha1", "status", "group")
READ_CHUNK = 256  # files read ahead of the writer: bounded, so packing never holds the dataset in memory


def is_url(path: str) -> bool:
    """True for 'gs://bucket/x', 's3://...', 'ram://...'; False for local paths. Example: ``is_url("gs://b/s")``."""
    return "://" in str(path)


def join(root: str, name: str) -> str:
    """`name` inside `root`, for local paths and URLs alike. Example: ``join("gs://b/shards", "shards.json")``."""
    root = str(root)
    return root.rstrip("/") + "/" + name if is_url(root) else os.path.join(root, name)


def shard_name(split: str, index: int, count: int) -> str:
    """The file name of one shard. Example: ``shard_name("train", 0, 4)`` -> 'train-00000-of-00004.tfrecord'."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _inspect(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Read and decode one file as training would; its sha1, size, mode and format, or the reason it is unusable."""
    out = {"sha1": "", "bytes": 0, "error": "", "width": 0, "height": 0, "mode": "", "format": "", "gray": False}
    try:
        data = read_bytes(path)
    except DecodeError as e:
        return {**out, "error": e.reason}
    out["sha1"], out["bytes"] = hashlib.sha1(data).hexdigest(), len(data)
    try:
        img = open_image(data, max_pixels=max_pixels)
        out["width"], out["height"] = img.size
        out["mode"], out["format"] = img.mode, (img.format or "").lower()
        out["gray"] = img.mode in GRAYSCALE_MODES or (img.mode == "P" and palette_is_gray(img))
        decode_image(img, size=32, max_pixels=max_pixels)  # the full decode path: truncated files fail here
    except DecodeError as e:
        out["error"] = e.reason
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise (reading its palette) is its reason
        out["error"] = f"corrupt or truncated image: {describe_failure(e)}"
    return out


def _check_out(out: str, data_root: Path, overwrite: bool, gfile) -> list[str]:
    """Refuse a non-empty --out unless it is an earlier pack and --overwrite is given; return its old pack files.

    `gfile` is `_LocalFS` for a local folder, None for a URL (tf.io.gfile is then used)."""
    if not is_url(out):
        resolved = Path(out).resolve()
        if resolved == data_root or data_root in resolved.parents:
            raise UserError(f"--out {out!r} is inside the data folder {str(data_root)!r}; the shards would be scanned as "
                            "a class next time. Choose a folder outside it, for example --out shards/.")
        if resolved.exists() and not resolved.is_dir():
            raise UserError(f"--out {out!r} is a file; pass a folder for the shards, for example --out shards/.")
    if gfile is None:  # a URL: TensorFlow's file systems
        # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
        import tensorflow as tf

        ensure_filesystem(out)
        gfile = tf.io.gfile
        try:
            try:
                entries = gfile.listdir(out)  # not exists(): on object stores a "folder" is only a prefix
            except tf.errors.NotFoundError:
                entries = []
                gfile.makedirs(out)  # now, so an unknown scheme or missing rights show before the long work
        except tf.errors.OpError as e:
            raise filesystem_error(out, e) from None
    else:
        entries = gfile.listdir(out) if gfile.exists(out) else []
    if not entries:
        return []
    if not overwrite:
        raise UserError(f"--out {out!r} is not empty ({len(entries)} entries) and imgclf never replaces files unasked. "
                        "Choose a new folder, or pass --overwrite to replace an earlier pack there.")
    if INDEX not in entries:
        raise UserError(f"--out {out!r} holds files but no {INDEX}, so it is not an earlier pack; even with --overwrite "
                        "imgclf will not delete them. Choose an empty or new folder.")
    return [e for e in entries if e.endswith(".tfrecord") or e in (INDEX, "manifest.csv", "classes.json")]


class _LocalFS:
    """The two calls of tf.io.gfile that checking a local --out needs, without importing TensorFlow."""

    exists = staticmethod(os.path.exists)
    listdir = staticmethod(os.listdir)


def _shard_plan(rows: list[dict], shard_bytes: int, min_shards: int) -> list[list[dict]]:
    """Cut a split's rows (already shuffled) into shards of about `shard_bytes`, at least `min_shards` of them."""
    if not rows:
        return []
    total = sum(r["_bytes"] for r in rows)
    n = min(len(rows), max(min_shards, math.ceil(total / shard_bytes)))
    return [rows[k * len(rows) // n:(k + 1) * len(rows) // n] for k in range(n)]


def _example(tf, data: bytes, row: dict, label: int, rel: str):
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(data),
        "image/format": b(row["_format"].encode()),
        "image/class/label": i(label),
        "image/class/text": b(row["label"].encode("utf-8")),
        "image/filename": b(rel.encode("utf-8")),
        "image/sha1": b(row["sha1"].encode()),
        "image/height": i(row["_height"]),
        "image/width": i(row["_width"]),
    })).SerializeToString()


def _read_checked(row: dict) -> bytes | None:
    """The file's bytes again, or None if it changed (or vanished) since it was checked."""
    try:
        data = read_bytes(row["path"])
    except DecodeError:
        return None
    return data if hashlib.sha1(data).hexdigest() == row["sha1"] else None


def _write_split(tf, gfile, out: str, split: str, shards: list[list[dict]], index: dict, root: Path,
                 tmp_names: list[str], bar: Progress) -> list[str]:
    names = []
    with ThreadPoolExecutor(max_workers=4) as pool:  # reading overlaps writing; file reads release the GIL
        for k, part in enumerate(shards):
            name = shard_name(split, k, len(shards))
            tmp = join(out, f".{name}.tmp-{os.getpid()}")
            tmp_names.append(tmp)
            record = 0
            with tf.io.TFRecordWriter(tmp) as writer:
                for start in range(0, len(part), READ_CHUNK):
                    chunk = part[start:start + READ_CHUNK]
                    for row, data in zip(chunk, pool.map(_read_checked, chunk)):
                        bar.update(1)
                        if data is None:
                            row["status"] = skipped_status("the file changed or vanished while packing")
                            continue
                        rel = Path(os.path.relpath(row["path"], root)).as_posix()
                        writer.write(_example(tf, data, row, index[row["label"]], rel))
                        row["shard"], row["record"] = name, record
                        record += 1
            names.append(name)
    return names


def _manifest_text(rows: list[dict], root: Path) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    order = {s: i for i, s in enumerate(SPLITS)}
    for r in sorted(rows, key=lambda r: (not r.get("shard"), order.get(r["split"], 3), r.get("shard", ""),
                                         r.get("record", 0), r["label"], r["path"])):
        writer.writerow({**{k: r.get(k, "") for k in MANIFEST_COLUMNS},
                         "path": Path(os.path.relpath(r["path"], root)).as_posix()})
    return buf.getvalue()


def _image_stats(rows: list[dict]) -> dict:
    sides = sorted(min(r["_width"], r["_height"]) for r in rows)
    modes: dict[str, int] = {}
    formats: dict[str, int] = {}
    for r in rows:
        modes[r["_mode"]] = modes.get(r["_mode"], 0) + 1
        formats[r["_format"]] = formats.get(r["_format"], 0) + 1
    return {
        "shorter_side": {"min": sides[0], "median": int(statistics.median(sides)), "max": sides[-1]} if sides else {},
        "largest_pixels": max((r["_width"] * r["_height"] for r in rows), default=0),
        "modes": dict(sorted(modes.items())),
        "formats": dict(sorted(formats.items())),
        "grayscale": bool(rows) and all(r["_gray"] for r in rows),
    }


def pack(data_dir: str | os.PathLike, out_dir: str, *, shard_size_mb: float = 100.0, min_shards: int = 1,
         val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, group_by: str = "",
         max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0, overwrite: bool = False, verbose: bool = True) -> dict:
    """Write DATA as sharded TFRecords in `out_dir` (a folder or a gs:// / s3:// URL); return the index.

    The split settings mean what they mean for `imgclf train`, and the same
    values give the same split. `min_shards` gives each split at least that
    many files (with images to fill them), so that many workers each read
    their own.

    Example:
        >>> index = pack("data/", "packed/", shard_size_mb=100)
        >>> index["images"]
        {'train': 30, 'val': 3, 'test': 3}
    """

    out = str(out_dir)
    if shard_size_mb <= 0:
        raise UserError(f"Invalid --shard-size-mb: expected a positive number of megabytes, received {shard_size_mb!r}.")
    if min_shards < 1:
        raise UserError(f"Invalid --min-shards: expected at least 1, received {min_shards!r}.")
    for name, v in (("--val", val_fraction), ("--test", test_fraction)):
        if not 0 <= v < 0.9:
            raise UserError(f"Invalid {name}: expected a share between 0 and 0.9, received {v!r}.")
    if val_fraction + test_fraction >= 0.9:
        raise UserError("--val + --test leaves almost nothing to train on; keep their sum under 0.9.")
    if not os.path.isdir(data_dir):  # the scan says the same; this also guards the check of --out below
        raise UserError(f"Data folder not found: {str(data_dir)!r}. Pass a folder with one subfolder per class.")
    root = Path(data_dir).resolve()
    # --out is checked before the long work. A local one without TensorFlow: once it is imported, the
    # file checks below cannot use worker processes (forking its threads is unsafe).
    old_files = _check_out(out, root, overwrite, None if is_url(out) else _LocalFS)

    rows, classes = training_rows(str(root), "", val_fraction, test_fraction, seed, group_by=group_by,
                                  workers=workers, verbose=verbose, max_pixels=max_pixels)
    todo = [r for r in rows if r["split"] in SPLITS and not is_skipped(r)]
    checks = map_files(partial(_inspect, max_pixels=max_pixels), [r["path"] for r in todo], workers=workers,
                       label="Checking images", verbose=verbose)
    for r, c in zip(todo, checks):
        r["sha1"] = c["sha1"] or r.get("sha1", "")
        if c["error"]:
            r["status"] = skipped_status(c['error'])
        else:
            r.update(status="ok", _bytes=c["bytes"], _width=c["width"], _height=c["height"], _mode=c["mode"],
                     _format=c["format"], _gray=c["gray"])
    # The probe `imgclf train DATA` would make (same files, same order), so automatic sizes agree.
    probe = probe_images([r["path"] for r in rows if r["split"] == "train"], seed=seed)

    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    gfile = tf.io.gfile
    index = {c: i for i, c in enumerate(classes)}
    shard_bytes = int(shard_size_mb * 1_000_000)
    good = [r for r in todo if r["status"] == "ok"]
    files: dict[str, list[str]] = {}
    tmp_names: list[str] = []
    try:
        gfile.makedirs(out)
        with Progress(len(good), "Writing shards", enabled=verbose and bool(good)) as bar:
            for split in SPLITS:
                part = sorted((r for r in good if r["split"] == split), key=lambda r: r["path"])
                random.Random(f"{seed}:pack:{split}").shuffle(part)
                files[split] = _write_split(tf, gfile, out, split, _shard_plan(part, shard_bytes, min_shards), index,
                                            root, tmp_names, bar)
        written = [r for r in good if r.get("shard")]
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": f"imgclf {__version__}",
            "source": str(root),
            "classes": classes,
            "split": {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed, "group_by": group_by},
            "images": {s: sum(r["split"] == s for r in written) for s in SPLITS},
            "counts": {s: {c: sum(r["split"] == s and r["label"] == c for r in written) for c in classes} for s in SPLITS},
            "bytes": {s: sum(r["_bytes"] for r in written if r["split"] == s) for s in SPLITS},
            "files": files,
            "skipped": sum(is_skipped(r) for r in rows),
            "excluded": sum(r["split"] == "excluded" for r in rows),
            "image_stats": _image_stats(written),
            "probe": probe,
            "features": ["image/encoded", "image/format", "image/class/label", "image/class/text",
                         "image/filename", "image/sha1", "image/height", "image/width"],
        }
        if old_files and gfile.exists(join(out, INDEX)):
            gfile.remove(join(out, INDEX))  # from here on the folder reads as unfinished until the new index lands
        new_names = {n for names in files.values() for n in names}
        for name in old_files:
            if name.endswith(".tfrecord") and name not in new_names:
                gfile.remove(join(out, name))
        for split_names in files.values():
            for name in split_names:
                gfile.rename(join(out, f".{name}.tmp-{os.getpid()}"), join(out, name), overwrite=True)
        tmp_names.clear()
        _write_text(gfile, out, "classes.json", json.dumps(classes, indent=2) + "\n")
        _write_text(gfile, out, "manifest.csv", _manifest_text(rows, root))
        _write_text(gfile, out, INDEX, json.dumps(info, indent=2) + "\n")
    except tf.errors.OpError as e:
        raise filesystem_error(out, e) from None
    finally:
        for tmp in tmp_names:  # an interrupted pack leaves no half-written shard behind
            if gfile.exists(tmp):
                gfile.remove(tmp)
    skipped = [r for r in rows if is_skipped(r)]
    if skipped and verbose:
        log(f"Skipped {len(skipped)} file(s) that could not be used (see {join(out, 'manifest.csv')}):")
        for r in skipped[:10]:
            log(f"  {r['path']}: {skip_reason(r)}")
    return info


def summary(info: dict, out: str) -> str:
    """What a pack wrote, as a few lines of text. Example: ``print(summary(pack("data/", "shards/"), "shards/"))``."""
    lines = [f"{'split':<6} {'images':>8} {'shards':>7} {'MB':>9}"]
    for split in SPLITS:
        lines.append(f"{split:<6} {info['images'][split]:>8} {len(info['files'][split]):>7} {info['bytes'][split] / 1e6:>9.1f}")
    lines.append(f"{len(info['classes'])} classes; {info['skipped']} file(s) skipped, {info['excluded']} left out as copies "
                 f"of val/test images (reasons in {join(out, 'manifest.csv')})")
    lines.append(f"Shards: {out}")
    return "\n".join(lines)


def _write_text(gfile, out: str, name: str, text: str) -> None:
    """Write a small file atomically through tf.io.gfile (temporary name, then rename), so URLs work too."""
    tmp = join(out, f".{name}.tmp-{os.getpid()}")
    with gfile.GFile(tmp, "w") as f:
        f.write(text)
    gfile.rename(tmp, join(out, name), overwrite=True)


def ensure_filesystem(url: str) -> None:
    """Make s3://, hdfs:// and friends available: TensorFlow I/O registers them when imported.

    Example:
        >>> ensure_filesystem("shards/")  # a local folder needs nothing
    """
    scheme = str(url).split("://", 1)[0] if is_url(url) else ""
    if scheme and scheme not in ("gs", "file", "ram"):
        try:
            import tensorflow_io  # noqa: F401  lazy: optional plugin; importing it registers its file systems
        except ImportError:
            pass  # the first access then fails, and `filesystem_error` explains what to install


def filesystem_error(url: str, error: Exception) -> UserError:
    """A clear `UserError` for a URL TensorFlow cannot open. Example: ``raise filesystem_error("s3://b/x", e)``."""
    scheme = str(url).split("://", 1)[0]
    hint = ("pip install tensorflow-io (it adds s3://, hdfs:// and az:// to tf.io.gfile) and set the usual "
            "credentials (AWS_ACCESS_KEY_ID, ...)") if scheme not in ("gs", "file", "ram") else \
        "check the address and your credentials (for gs://: gcloud auth application-default login)"
    return UserError(f"Cannot open {url!r}: {str(error).splitlines()[0] if str(error) else type(error).__name__}. "
                     f"Expected a folder or a URL that tf.io.gfile can read; {hint}.")
