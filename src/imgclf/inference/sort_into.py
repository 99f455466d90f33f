"""Sort images into one folder per predicted class, never overwriting and never losing a file.

Copies by default; moves only when asked. A name already taken in the
destination gets a ``-2``, ``-3``, ... suffix, claimed atomically (a hard link
or an exclusive create), so two files called ``img.jpg`` from different
folders both arrive. A CSV records where each file went.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import free_name, numbered_names

UNREADABLE = "_unreadable"  # never a folder: unreadable files stay where they are, listed in the CSV


def _safe_folder_name(name: str) -> str:
    # Class names came from folder names, but an exported model's metadata is text: keep it one path segment.
    cleaned = re.sub(r"[\\/\x00]", "_", name).strip() or "_"
    return "_" + cleaned if cleaned in (".", "..") else cleaned


def claim(dest_dir: Path, name: str, src: Path, move: bool) -> Path:
    """Place `src` in `dest_dir` under `name`, or name-2, name-3, ... if taken; return the new path.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "img.jpg").write_bytes(b"pixels")
        >>> claim(root / "sorted" / "cat", "img.jpg", root / "img.jpg", move=False).name
        'img.jpg'
        >>> claim(root / "sorted" / "cat", "img.jpg", root / "img.jpg", move=False).name  # the name is taken now
        'img-2.jpg'
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    for dest in numbered_names(dest_dir / name):
        try:
            if move:
                try:
                    os.link(src, dest)  # atomic, fails if dest exists; the same filesystem only
                    os.unlink(src)
                    return dest
                except FileExistsError:
                    raise
                except OSError:
                    pass  # another filesystem: copy below, then remove the original
            with open(src, "rb") as fin, open(dest, "xb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            shutil.copystat(src, dest)
            if move:
                os.unlink(src)
            return dest
        except FileExistsError:
            continue


class Sorter:
    """Place each predicted file into ``DIR/<class>/`` (or ``unknown/``) and log it to a CSV.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "a.jpg").write_bytes(b"pixels")
        >>> with Sorter(root / "sorted", move=False) as sorter:
        ...     sorter.add({"path": str(root / "a.jpg"), "class": "cat", "probability": 0.9, "error": ""})
        ...     sorter.add({"path": str(root / "b.jpg"), "class": "", "probability": float("nan"), "error": "empty file (0 bytes)"})
        >>> sorted(p.name for p in (root / "sorted").iterdir()), sorter.counts
        (['cat', 'sorted.csv'], {'cat': 1, '_unreadable': 1})
    """

    def __init__(self, root: str | os.PathLike, move: bool = False, inputs: list[str] = ()):
        self.root = Path(root)
        self.move = move
        root_abs = self.root.resolve()
        for item in inputs:
            if os.path.isdir(item) and (root_abs == Path(item).resolve() or Path(item).resolve() in root_abs.parents):
                raise UserError(
                    f"--sort-into {str(root)!r} is inside the input folder {item!r}: the sorted copies would be "
                    "found again. Choose a folder outside the inputs."
                )
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--sort-into {str(root)!r} is a file; expected a folder (it is created if missing).")
        self.root.mkdir(parents=True, exist_ok=True)
        self.csv_path = free_name(self.root / "sorted.csv")
        self._file = open(self.csv_path, "x", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(["source", "destination", "class", "probability", "action", "error"])
        self.counts: dict[str, int] = {}

    def add(self, row: dict) -> None:
        """Copy (or move) the file of one prediction row. Example: ``sorter.add(row)``."""
        src = Path(row["path"])
        if row["error"]:
            self._writer.writerow([str(src), "", "", "", "skipped", row["error"]])
            self.counts[UNREADABLE] = self.counts.get(UNREADABLE, 0) + 1
            return
        label = row["class"]
        try:
            dest = claim(self.root / _safe_folder_name(label), src.name, src, self.move)
        except OSError as e:
            self._writer.writerow([str(src), "", label, f"{row['probability']:.6f}", "skipped", f"cannot copy: {e.strerror or e}"])
            return
        self._writer.writerow([str(src), str(dest), label, f"{row['probability']:.6f}", "moved" if self.move else "copied", ""])
        self.counts[label] = self.counts.get(label, 0) + 1

    def close(self) -> None:
        """Flush and close the CSV. Example: ``sorter.close()``."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def summary(self) -> str:
        """One line: how many files went where. Example: ``print(sorter.summary())``."""
        verb = "Moved" if self.move else "Copied"
        placed = {k: v for k, v in self.counts.items() if k != UNREADABLE}
        parts = ", ".join(f"{k} {v}" for k, v in sorted(placed.items()))
        line = f"{verb} {sum(placed.values())} file(s) into {self.root}/ ({parts}); log: {self.csv_path}"
        if self.counts.get(UNREADABLE):
            line += f"; {self.counts[UNREADABLE]} unreadable file(s) left in place"
        return line
