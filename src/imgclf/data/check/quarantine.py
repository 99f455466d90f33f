"""Move problem files out of a dataset, and put them back: `imgclf check --quarantine DIR` / `--restore DIR`.

Nothing is ever deleted. Each file is moved to the same relative path under
DIR (a name already taken there gets a suffix, so nothing is overwritten),
and DIR/quarantine.json records the data folder and, for every file, where it
came from, where it went, its SHA-1 and why. Restoring reads that log and
moves each file back, unless something now occupies its old place, in which
case it stays in quarantine and is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json

LOG_NAME = "quarantine.json"
FILE_KINDS = ("empty", "not_image", "corrupt", "too_large", "unreadable", "symlink_loop")


def plan_quarantine(report: dict) -> list[dict]:
    """What `quarantine` would move, from a `check_folder` report: [{"path", "reason"}] (relative paths).

    Unusable files (blocking file problems) go; of exact copies, all go when
    they disagree on the class, and all but one otherwise (the one kept is
    in the most held-out split, then first by path). Near duplicates and
    warnings stay: they decode and may be wanted.

    Example:
        >>> from imgclf.data.check.health import check_folder
        >>> plan_quarantine(check_folder("data/"))[:1]
        []
    """
    moves: dict[str, str] = {}
    for kind in FILE_KINDS:
        for f in report["problems"].get(kind, {}).get("files", []):
            moves.setdefault(f["path"], f"{kind}: {f['reason']}")
    held_out = {"test": 0, "val": 1, "train": 2, "": 3}
    for g in report["duplicates"]["groups"]:
        if g["kind"] != "exact":
            continue
        members = g["files"]
        if g["label_conflict"]:
            labels = ", ".join(sorted({m["label"] for m in members}))
            for m in members:
                moves.setdefault(m["path"], f"label_conflict: identical copies are labelled {labels}; decide the class and put one back")
            continue
        keep = min(members, key=lambda m: (held_out.get(m["split"], 3), m["path"]))
        why = "leakage" if g["leakage"] else "exact_duplicate"
        for m in members:
            if m is not keep:
                moves.setdefault(m["path"], f"{why}: identical to {keep['path']}, which stays")
    return [{"path": p, "reason": r} for p, r in sorted(moves.items())]


def _free_name(path: Path) -> Path:
    if not os.path.lexists(path):
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}.{i}{path.suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise UserError(f"Too many files named like {path} in the quarantine folder; choose an empty one.")


def _read_log(dest: Path) -> dict:
    log_path = dest / LOG_NAME
    if not log_path.exists():
        return {"data": "", "entries": []}
    try:
        with open(log_path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot read {log_path}: {e}. It is the record of what was quarantined; restore it from a backup.") from None


def quarantine(data: str | os.PathLike, moves: list[dict], dest: str | os.PathLike, sha1: dict | None = None) -> list[dict]:
    """Move each relative path in `moves` from DATA to DEST (same relative path) and log it.

    Returns the log entries added. Example:
        >>> from imgclf.data.check.health import check_folder
        >>> report = check_folder("data/")
        >>> quarantine("data/", plan_quarantine(report), "quarantine/")
        []
    """
    root, dest = Path(data).resolve(), Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise UserError(f"The quarantine folder {str(dest)!r} is inside the data folder {str(root)!r}; "
                        "it would be scanned as data. Choose a folder outside it, e.g. ../quarantine.")
    log = _read_log(dest)
    if log["entries"] and log.get("data") and Path(log["data"]) != root:
        raise UserError(f"{str(dest)!r} already holds files quarantined from {log['data']!r}; use another folder for {str(root)!r}.")
    log["data"] = str(root)
    added = []
    for move in moves:
        src = root / move["path"]
        if not os.path.lexists(src):
            continue
        target = _free_name(dest / move["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.rename moves a symbolic link itself (a link loop cannot be copied); shutil.move
        # copies then removes only when DEST is on another file system.
        shutil.move(str(src), str(target))
        entry = {"from": move["path"], "to": target.relative_to(dest).as_posix(), "reason": move["reason"],
                 "sha1": (sha1 or {}).get(move["path"], ""), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        log["entries"].append(entry)
        added.append(entry)
        atomic_write_json(dest / LOG_NAME, log)  # after each move: an interruption loses no record
    if not added:
        atomic_write_json(dest / LOG_NAME, log)
    return added


def restore(dest: str | os.PathLike, data: str | os.PathLike | None = None) -> dict:
    """Move every file recorded in DEST/quarantine.json back to its place in the data folder.

    A file whose old place is taken again stays in quarantine (nothing is
    overwritten). Returns ``{"data", "restored": [...], "kept": [{"path", "reason"}]}``.

    Example:
        >>> restore("quarantine/")["restored"][:1]
        []
    """
    dest = Path(dest).resolve()
    if not (dest / LOG_NAME).exists():
        raise UserError(f"No {LOG_NAME} in {str(dest)!r}: pass the folder given to `imgclf check --quarantine`.")
    log = _read_log(dest)
    root = Path(data).resolve() if data else Path(log["data"])
    restored, kept, remaining = [], [], []
    for entry in log["entries"]:
        src, back = dest / entry["to"], root / entry["from"]
        if not os.path.lexists(src):
            kept.append({"path": entry["from"], "reason": f"missing from quarantine ({entry['to']})"})
            remaining.append(entry)
        elif os.path.lexists(back):
            kept.append({"path": entry["from"], "reason": "a file now exists at its old place; left in quarantine"})
            remaining.append(entry)
        else:
            back.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(back))
            restored.append(entry["from"])
    log["entries"] = remaining
    atomic_write_json(dest / LOG_NAME, log)
    for dirpath, _, _ in sorted(os.walk(dest), key=lambda t: -len(t[0])):
        if Path(dirpath) != dest and not os.listdir(dirpath):
            os.rmdir(dirpath)  # only folders emptied by the restore; never a file
    return {"data": str(root), "restored": restored, "kept": kept}
