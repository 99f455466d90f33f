"""What a batch-inference job reads: image paths, a list file of paths or URLs, or TFRecord shards.

Image paths are expanded exactly as `imgclf predict` does (folders walked
recursively in sorted order, glob patterns), so both list the same files in
the same order. A ``.txt`` list file holds one path or URL per line (s3://,
gs://, ... are read on the workers). A folder of ``*.tfrecord`` files, or
the files themselves, is read as shards written by `imgclf datasets pack`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.inference.paths import iter_image_paths

SHARD_MARKERS = (".tfrecord", ".tfrec")  # shard names: data-00000-of-00008.tfrecord, also with .gz after
LIST_SUFFIXES = (".txt", ".lst")


@dataclass
class Inputs:
    """Either image paths (`paths`) or TFRecord shard files (`shards`), never both."""

    paths: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths) or len(self.shards)


def is_shard(name: str) -> bool:
    """True for a TFRecord shard file name. Example: ``is_shard("train-00001-of-00004.tfrecord.gz")`` -> True."""
    base = os.path.basename(name).lower()
    return any(m in base for m in SHARD_MARKERS)


def _shards_in(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if is_shard(n) and not n.startswith("."))


def _read_list_file(path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            # Relative lines are relative to the list file, so the list can travel with its images.
            out.append(line if "://" in line or os.path.isabs(line) else os.path.join(base, line))
    if not out:
        raise UserError(f"The list file {path!r} holds no paths. Expected one image path or URL per line.")
    return out


def resolve_inputs(inputs: list[str]) -> Inputs:
    """Turn the command line's INPUT arguments into an `Inputs`.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("photos/a.jpg", "photos/b.png", "shards/data-00000-of-00002.tfrecord",
        ...              "shards/data-00001-of-00002.tfrecord"):
        ...     (root / name).parent.mkdir(exist_ok=True)
        ...     _ = (root / name).write_bytes(b"")
        >>> [Path(p).name for p in resolve_inputs([str(root / "photos")]).paths]
        ['a.jpg', 'b.png']
        >>> [Path(p).name for p in resolve_inputs([str(root / "shards")]).shards]
        ['data-00000-of-00002.tfrecord', 'data-00001-of-00002.tfrecord']
    """

    result = Inputs()
    for item in inputs:
        if os.path.isdir(item) and _shards_in(item):
            result.shards += _shards_in(item)
        elif os.path.isfile(item) and is_shard(item):
            result.shards.append(item)
        elif glob.has_magic(item) and not os.path.exists(item) and any(is_shard(m) for m in glob.glob(item)):
            result.shards += sorted(m for m in glob.glob(item) if is_shard(m))
        elif os.path.isfile(item) and Path(item).suffix.lower() in LIST_SUFFIXES:
            result.paths += _read_list_file(item)
        elif "://" in item and not item.startswith("file://"):
            # An object-storage URL, checked by the workers that read it: shards (a .tfrecord, or a folder
            # written by `imgclf datasets pack`, ending in /) or one image.
            (result.shards if is_shard(item) or item.endswith("/") else result.paths).append(item)
        else:
            result.paths += list(iter_image_paths([item]))
    if result.paths and result.shards:
        raise UserError("Pass either images (files, folders, globs, list files) or TFRecord shards, not both in one job.")
    if not len(result):
        raise UserError(f"No image files or TFRecord shards found in {' '.join(inputs)}.")
    return result
