"""Find the images under class folders and turn them into manifest rows.

Two layouts are understood:

* ``DATA/<class>/...`` -- one subfolder per class (images may sit in deeper
  subfolders); the train/val/test split is made later by `split.py`.
* ``DATA/train/<class>/``, ``DATA/val/<class>/`` (or ``validation/``) and
  optionally ``DATA/test/<class>/`` -- the user's own split, used as is.
  ``train/`` with only ``test/`` is allowed too; validation is then carved
  from train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.core.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SYSTEM_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


def is_image_name(name: str) -> bool:
    """True if the file name has an image extension (any case). Example: ``is_image_name("A.JPG")``."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_hidden_or_system(name: str) -> bool:
    """Dot files, macOS ._ resource forks, Thumbs.db and friends. Example: ``is_hidden_or_system(".DS_Store")``."""
    return name.startswith(".") or name.lower() in SYSTEM_FILES


@dataclass
class ScanResult:
    """What `scan_folder` found. ``rows`` are dicts with path, label and split ('' = not yet split)."""

    root: Path
    classes: list[str]
    rows: list[dict]
    layout: str  # "folders" or "splits"
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    empty_classes: list[str] = field(default_factory=list)

    def counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class, optionally within one split. Example: ``scan.counts("train")``."""
        out = {c: 0 for c in self.classes}
        for r in self.rows:
            if split is None or r["split"] == split:
                out[r["label"]] += 1
        return out


def _walk_images(folder: Path, ignored: list) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False, onerror=lambda e: ignored.append((str(e.filename), f"unreadable folder: {e.strerror}"))):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_system(d))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if is_hidden_or_system(name):
                ignored.append((str(p), "hidden or system file"))
            elif not is_image_name(name):
                ignored.append((str(p), "not an image file extension"))
            else:
                found.append(p)
    return found


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_hidden_or_system(p.name)), key=lambda p: p.name)


def scan_folder(data: str | os.PathLike) -> ScanResult:
    """Scan DATA and return its classes and image rows, without opening any image.

    Example:
        >>> scan = scan_folder("data/")
        >>> scan.classes, len(scan.rows)
        (['bird', 'cat', 'dog'], 36)
    """
    root = Path(data)
    if not root.exists():
        raise UserError(f"Data folder not found: {str(data)!r}. Pass a folder with one subfolder per class.")
    if not root.is_dir():
        raise UserError(f"Expected a folder of class subfolders, received a file: {str(data)!r}.")
    root = root.resolve()
    subdirs = _class_dirs(root)
    names = {p.name.lower() for p in subdirs}
    ignored: list[tuple[str, str]] = []
    for p in sorted(root.iterdir()):
        if p.is_file():
            ignored.append((str(p), "file outside class folders"))

    if "train" in names and names <= set(SPLIT_FOLDERS):
        layout = "splits"
        parts = [(SPLIT_FOLDERS[p.name.lower()], p) for p in subdirs]
    else:
        layout = "folders"
        parts = [("", root)]

    rows: list[dict] = []
    classes_by_split: dict[str, set] = {}
    for split, folder in parts:
        for class_dir in _class_dirs(folder):
            classes_by_split.setdefault(split, set()).add(class_dir.name)
            for path in _walk_images(class_dir, ignored):
                rows.append({"path": str(path), "label": class_dir.name, "split": split})
        for p in sorted(folder.iterdir()) if folder is not root else []:
            if p.is_file():
                ignored.append((str(p), "file outside class folders"))

    if layout == "splits":
        classes = sorted(classes_by_split.get("train", set()))
        for split, names_in_split in classes_by_split.items():
            extra = sorted(names_in_split - set(classes))
            if extra:
                raise UserError(
                    f"The {split}/ folder has classes that train/ lacks: {', '.join(extra)}. "
                    "Every class needs training images; add a train/ folder for each or remove them."
                )
    else:
        classes = sorted(classes_by_split.get("", set()))

    counts = {c: 0 for c in classes}
    for r in rows:
        if r["split"] in ("", "train"):
            counts[r["label"]] += 1
    empty = [c for c, n in counts.items() if n == 0]
    return ScanResult(root=root, classes=classes, rows=rows, layout=layout, ignored=ignored, empty_classes=empty)


def require_trainable(scan: ScanResult) -> None:
    """Raise `UserError` unless the scan has at least two classes, each with images.

    Example:
        >>> require_trainable(scan_folder("data/"))
    """
    where = f"{scan.root}/train" if scan.layout == "splits" else str(scan.root)
    if not scan.classes:
        raise UserError(
            f"No class folders found in {where!r}: expected one subfolder per class, "
            "for example data/cat/*.jpg and data/dog/*.jpg."
        )
    if scan.empty_classes:
        raise UserError(
            f"Class folder(s) with no images in {where!r}: {', '.join(scan.empty_classes)}. "
            f"Add images ({', '.join(IMAGE_EXTENSIONS)}) or remove the empty folders."
        )
    if len(scan.classes) < 2:
        raise UserError(
            f"Only one class found in {where!r} ({scan.classes[0]!r}): a classifier needs at least two. "
            "Add a subfolder for each other class."
        )
