"""Sort images into one folder per predicted class, never overwriting and never losing a file.

Copies by default; moves only when asked. A name already taken in the
destination gets a ``-2``, ``-3``, ... suffix, claimed atomically (a hard link
or an exclusive create), so two files called ``img.jpg`` from different
folders both arrive. ``DIR/sorted.csv`` records where each file went, one row
written and flushed per event, so a killed run loses at most the row of the
file in hand.

Moving is one attempt per file: a hard link (or a copy on another
filesystem), then removing the original. When the original cannot be removed
(a read-only folder), the new link or copy is removed again and the file is
logged as ``not moved`` with the reason: it stays where it was, in one place.
Each move is logged twice, write-ahead: a ``moving`` row (source and the name
it is about to take) before anything is touched, and ``moved`` or ``not
moved`` after. A ``moving`` row with no later row for its source means the
run was killed mid-move: the file is at the source (and any file at the
destination is an extra copy) or, when the source is gone, at the destination.

File names that are not valid UTF-8 are written to the CSV as their original
bytes (Python's ``surrogateescape``), so ``open(log, encoding="utf-8",
errors="surrogateescape")`` reads back the exact paths.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from imgclf.core.errors import UserError
from imgclf.core.fs import free_name, numbered_names

UNREADABLE = "_unreadable"  # never a folder: unreadable files stay where they are, listed in the CSV
NOT_PLACED = "_not_placed"  # never a folder: files that could not be copied or moved, listed in the CSV
LOG_COLUMNS = ("source", "destination", "class", "probability", "action", "error")


class NotMovedError(Exception):
    """A file was placed in its class folder but its original could not be removed; the placed copy was undone.

    ``reason`` says why in a few words; ``left`` is the path of a copy that
    could not be removed either ('' when the file is back in one place).

    Example:
        >>> NotMovedError("cannot remove the original (Permission denied); left in place").reason
        'cannot remove the original (Permission denied); left in place'
    """

    def __init__(self, reason: str, left: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.left = left


def _safe_folder_name(name: str) -> str:
    # Class names came from folder names, but an exported model's metadata is text: keep it one path segment.
    cleaned = re.sub(r"[\\/\x00]", "_", name).strip() or "_"
    return "_" + cleaned if cleaned in (".", "..") else cleaned


def _copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as fin:  # opened first: an unreadable source leaves nothing behind
        with open(dest, "xb") as fout:
            try:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.close()
                shutil.copystat(src, dest)
            except BaseException:
                os.unlink(dest)  # no half copy under a claimed name
                raise


def _place(src: Path, dest: Path, move: bool) -> None:
    """A hard link (moves on one filesystem) or a copy at `dest`; FileExistsError if the name is taken."""
    if move:
        try:
            os.link(src, dest)  # atomic, fails if dest exists; the same filesystem only
            return
        except FileExistsError:
            raise
        except OSError:
            pass  # another filesystem, or no hard links here: copy, then remove the original
    _copy(src, dest)


def _remove_original(src: Path, dest: Path) -> None:
    """Finish a move by removing `src`; if that fails, undo `dest` so the file is in one place, and say why."""
    try:
        os.unlink(src)
        return
    except OSError as e:
        if not os.path.lexists(src):
            return  # gone all the same: the file lives at dest now, keep it
        why = e.strerror or str(e)
    try:
        os.unlink(dest)  # a link to (or a copy of) the original, which is still there: nothing is lost
    except OSError as e:
        raise NotMovedError(f"cannot remove the original ({why}), nor the copy placed at the destination "
                            f"({e.strerror or e}): the file is in both places", left=str(dest)) from None
    raise NotMovedError(f"cannot remove the original ({why}); left in place") from None


def claim(dest_dir: Path, name: str, src: Path, move: bool, intent: Callable[[Path], None] | None = None) -> Path:
    """Place `src` in `dest_dir` under `name`, or name-2, name-3, ... if taken; return the new path.

    One attempt per file: with `move`, when the original cannot be removed the
    placed link or copy is removed again and `NotMovedError` says why; other
    failures to read or write raise `OSError`. `intent(dest)`, if given, is
    called before `src` is placed at `dest` (a write-ahead log entry).

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
        if os.path.lexists(dest):
            continue
        if intent is not None:
            intent(dest)
        try:
            _place(src, dest, move)
        except FileExistsError:
            continue  # taken since the check (another run): the next name
        if move:
            _remove_original(src, dest)
        return dest


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
        # surrogateescape: a file name that is not UTF-8 is written as its own bytes, and reads back the same.
        self._file = open(self.csv_path, "x", newline="", encoding="utf-8", errors="surrogateescape")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._log(*LOG_COLUMNS)
        self.counts: dict[str, int] = {}

    def _log(self, *values) -> None:
        # One row, flushed: a killed process (even SIGKILL) leaves every row written so far in the file.
        self._writer.writerow(values)
        self._file.flush()

    def add(self, row: dict) -> None:
        """Copy (or move) the file of one prediction row. Example: ``sorter.add(row)``."""
        src = Path(row["path"])
        if row["error"]:
            self._log(str(src), "", "", "", "skipped", row["error"])
            self.counts[UNREADABLE] = self.counts.get(UNREADABLE, 0) + 1
            return
        label = row["class"]
        prob = f"{row['probability']:.6f}"
        intent = None
        if self.move:
            intent = lambda dest: self._log(str(src), str(dest), label, prob, "moving", "")  # noqa: E731
        verb = "move" if self.move else "copy"
        try:
            dest = claim(self.root / _safe_folder_name(label), src.name, src, self.move, intent=intent)
        except NotMovedError as e:
            self._log(str(src), e.left, label, prob, "not moved", e.reason)
            self.counts[NOT_PLACED] = self.counts.get(NOT_PLACED, 0) + 1
            return
        except OSError as e:
            self._log(str(src), "", label, prob, "not moved" if self.move else "not copied", f"cannot {verb}: {e.strerror or e}")
            self.counts[NOT_PLACED] = self.counts.get(NOT_PLACED, 0) + 1
            return
        self._log(str(src), str(dest), label, prob, "moved" if self.move else "copied", "")
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
        placed = {k: v for k, v in self.counts.items() if k not in (UNREADABLE, NOT_PLACED)}
        parts = ", ".join(f"{k} {v}" for k, v in sorted(placed.items()))
        line = f"{verb} {sum(placed.values())} file(s) into {self.root}/ ({parts}); log: {self.csv_path}"
        if self.counts.get(NOT_PLACED):
            line += f"; {self.counts[NOT_PLACED]} file(s) could not be {verb.lower()} (reasons in the log)"
        if self.counts.get(UNREADABLE):
            line += f"; {self.counts[UNREADABLE]} unreadable file(s) left in place"
        return line
