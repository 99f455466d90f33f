"""The manifest: one row per image file (path, label, split, sha1, status, group), as CSV.

Every command that splits or reads images writes or reads these rows:
`imgclf split`, `imgclf train` (the run's manifest.csv), `imgclf datasets
pack` and `imgclf evaluate`. A row's ``status`` is ``ok``, ``skipped:
<reason>`` (the file could not be used) or ``excluded: <reason>`` (kept out
of training because it duplicates a held-out image). The text is the file
format; code asks `row_status` and `is_skipped` instead of comparing strings.
"""

from __future__ import annotations

import csv
import io
import os
from enum import Enum
from pathlib import Path

from imgclf.core.errors import UserError

MANIFEST_FIELDS = ("path", "label", "split", "sha1", "status", "group")
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


class Status(str, Enum):
    """What a manifest row's ``status`` says about its file.

    Example:
        >>> Status.SKIPPED.value
        'skipped'
    """

    UNKNOWN = ""  # not decoded yet (a test row before evaluation)
    OK = "ok"
    SKIPPED = "skipped"
    EXCLUDED = "excluded"


def skipped(reason: str) -> str:
    """The status text of a file that could not be used, with its reason.

    Example:
        >>> skipped("not an image")
        'skipped: not an image'
    """
    return f"{Status.SKIPPED.value}: {reason}"


def excluded(reason: str) -> str:
    """The status text of a file kept out of training, with its reason.

    Example:
        >>> excluded("duplicate of a test image")
        'excluded: duplicate of a test image'
    """
    return f"{Status.EXCLUDED.value}: {reason}"


def row_status(row: dict | str) -> tuple[Status, str]:
    """(Status, reason) of a manifest row or of its status text.

    Example:
        >>> row_status({"status": "skipped: truncated file"})
        (<Status.SKIPPED: 'skipped'>, 'truncated file')
        >>> row_status("ok")
        (<Status.OK: 'ok'>, '')
    """
    text = (row.get("status") or "") if isinstance(row, dict) else (row or "")
    kind, _, reason = text.partition(":")
    try:
        return Status(kind.strip()), reason.strip()
    except ValueError:
        return Status.UNKNOWN, text


def is_skipped(row: dict | str) -> bool:
    """Whether the file of a row could not be used (decode failure, vanished while packing, ...).

    Example:
        >>> is_skipped({"status": "skipped: empty file"}), is_skipped({"status": "ok"})
        (True, False)
    """
    return row_status(row)[0] is Status.SKIPPED


def skip_reason(row: dict | str) -> str:
    """The reason of a skipped row ('' for any other).

    Example:
        >>> skip_reason({"status": "skipped: empty file"})
        'empty file'
    """
    status, reason = row_status(row)
    return reason if status is Status.SKIPPED else ""


def manifest_csv(rows: list[dict], relative_to: str | os.PathLike | None = None) -> str:
    """Rows as manifest CSV text (sorted by split, label, path).

    With `relative_to` (the folder the CSV will live in), paths are written
    relative to it with / separators, so the file is portable and the same
    bytes on every machine. Example: ``manifest_csv(rows)``.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    base = os.path.abspath(relative_to) if relative_to is not None else None
    out = []
    for r in rows:
        path = r["path"]
        if base is not None:
            path = Path(os.path.relpath(os.path.abspath(path), base)).as_posix()
        out.append({**{k: r.get(k, "") for k in MANIFEST_FIELDS}, "path": path})
    for r in sorted(out, key=lambda r: (SPLIT_ORDER.get(r["split"], 3), r["label"], r["path"])):
        writer.writerow(r)
    return buf.getvalue()


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a manifest CSV into row dicts. Example: ``read_manifest("runs/x/manifest.csv")[0]["label"]``."""
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:  # non-UTF-8 file names, as written
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"Manifest not found: {str(path)!r}.") from None
    if rows and not {"path", "label", "split"} <= set(rows[0]):
        raise UserError(f"Manifest {str(path)!r} must have the columns path, label and split; received {', '.join(rows[0])}.")
    base = Path(path).parent
    for r in rows:
        if not os.path.isabs(r["path"]):
            r["path"] = os.path.normpath(base / r["path"])
    return rows
