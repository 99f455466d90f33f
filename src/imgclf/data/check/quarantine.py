"""Move problem files out of a dataset, and put them back: `imgclf check --quarantine DIR` / `--restore DIR`.

Nothing is ever deleted. Each file is moved to the same relative path under
DIR (a name already taken there gets a suffix, so nothing is overwritten).
DIR/quarantine.jsonl (`journal`) records the data folder and, for every file,
where it came from, where it goes, its SHA-1 and why, *before* it moves, and
that it moved after; DIR/quarantine.json lists what is in quarantine now.
Restoring replays the journal, finishes any move a kill interrupted, refuses
paths outside the data and quarantine folders, and moves each file back,
unless something now occupies its old place, in which case it stays in
quarantine and is reported. Both are linear: one journal line per step,
intents fsynced in groups of `BATCH` before their moves.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import clean_stale_temporaries
from imgclf.core.killpoint import kill_point
from imgclf.data.check.journal import JOURNAL_NAME, LEGACY_NAME, OPEN, Journal, inside, sha1_of

LOG_NAME = LEGACY_NAME  # what is in quarantine now (the journal, quarantine.jsonl, is the record)
BATCH = 256  # moves per group: their intents are written and fsynced together, before any of them moves
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


def _free_name(path: Path, taken: set) -> Path:
    names = (path.with_name(f"{path.stem}.{i}{path.suffix}") if i > 1 else path for i in range(1, 10_000))
    for candidate in names:
        if candidate not in taken and not os.path.lexists(candidate):
            taken.add(candidate)
            return candidate
    raise UserError(f"Too many files named like {path} in the quarantine folder; choose an empty one.")


def _move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` (a symbolic link moves as a link). Across file systems: copy to a
    temporary name, rename it into place, then remove `src`; a kill leaves `src` whole."""
    try:
        os.rename(src, dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    if os.path.islink(src):
        os.symlink(os.readlink(src), tmp)
    else:
        shutil.copy2(src, tmp)
    os.rename(tmp, dst)
    os.unlink(src)


def _settle(journal: Journal, root: Path, dest: Path) -> None:
    """Close the intents a killed command left open, from where each file is now."""
    for i, e in sorted(journal.entries.items()):
        if e["state"] not in ("moving", "restoring"):
            continue
        home, away = inside(root, e["from"]), inside(dest, e["to"])
        if home is None or away is None:
            continue  # refused by restore's check; never touched
        at_home, at_away = os.path.lexists(home), os.path.lexists(away)
        if at_home and at_away and e["sha1"] and sha1_of(home) == sha1_of(away) == e["sha1"]:
            # a copy across file systems that finished but whose source was not removed yet
            os.unlink(home if e["state"] == "moving" else away)
            at_home, at_away = e["state"] != "moving", e["state"] == "moving"
        if e["state"] == "moving":
            if at_away and not at_home:
                journal.append({"op": "moved", "id": i})
            else:
                journal.append({"op": "cancelled", "id": i, "why": "interrupted before the move" if at_home
                                else "interrupted; the file was found at neither place"})
        elif at_home and not at_away:
            journal.append({"op": "restored", "id": i})


def quarantine(data: str | os.PathLike, moves: list[dict], dest: str | os.PathLike, sha1: dict | None = None) -> list[dict]:
    """Move each relative path in `moves` from DATA to DEST (same relative path), journalled ahead of each move.

    Returns the entries of the files moved. Example:
        >>> from imgclf.data.check.health import check_folder
        >>> report = check_folder("data/")
        >>> quarantine("data/", plan_quarantine(report), "quarantine/")
        []
    """
    root, dest = Path(data).resolve(), Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise UserError(f"The quarantine folder {str(dest)!r} is inside the data folder {str(root)!r}; "
                        "it would be scanned as data. Choose a folder outside it, e.g. ../quarantine.")
    journal = Journal.open(dest, data=str(root))
    try:
        clean_stale_temporaries(dest, recursive=True, keep={dest / e["to"] for e in journal.entries.values()})
        if journal.data and Path(journal.data) != root:
            _settle(journal, Path(journal.data), dest)
            if any(e["state"] in OPEN for e in journal.entries.values()):
                raise UserError(f"{str(dest)!r} already holds files quarantined from {journal.data!r}; "
                                f"use another folder for {str(root)!r}.")
        if journal.data != str(root):
            journal.append({"op": "start", "data": str(root)})
        _settle(journal, root, dest)
        taken = {dest / e["to"] for e in journal.entries.values() if e["state"] in OPEN}
        cache: dict = {}
        added, group = [], []
        for move in moves:
            src = inside(root, move["path"], cache)
            if src is None:
                raise UserError(f"Cannot quarantine {move['path']!r}: it is not a path inside the data folder {str(root)!r}.")
            if not os.path.lexists(src):
                continue
            target = _free_name(dest / move["path"], taken)
            group.append({"op": "move", "id": journal.next_id() + len(group), "from": move["path"],
                          "to": target.relative_to(dest).as_posix(), "reason": move["reason"],
                          "sha1": (sha1 or {}).get(move["path"], ""), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            if len(group) == BATCH:
                added += _move_group(journal, root, dest, group)
                group = []
        added += _move_group(journal, root, dest, group)
        journal.write_summary()
    finally:
        journal.close()
    return added


def _move_group(journal: Journal, root: Path, dest: Path, group: list[dict]) -> list[dict]:
    for rec in group:
        journal.append(rec)
    journal.sync()  # every intent on disk before any of its moves
    made, done = set(), []
    for rec in group:
        target = dest / rec["to"]
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        try:
            _move(root / rec["from"], target)
        except OSError as e:
            journal.append({"op": "cancelled", "id": rec["id"], "why": f"cannot move: {e.strerror}"})
            continue
        kill_point("quarantine.moved")
        journal.append({"op": "moved", "id": rec["id"]})
        done.append({k: rec[k] for k in ("from", "to", "reason", "sha1", "time")})
    return done


def restore(dest: str | os.PathLike, data: str | os.PathLike | None = None) -> dict:
    """Move every file recorded in DEST's journal back to its place in the data folder.

    Moves a kill interrupted are finished first. A file whose old place is
    taken again stays in quarantine (nothing is overwritten). A path outside
    the data or quarantine folder (a journal not written by imgclf) refuses
    the whole restore. Returns ``{"data", "restored": [...], "kept": [{"path", "reason"}]}``.

    Example:
        >>> restore("quarantine/")["restored"][:1]
        []
    """
    dest = Path(dest).resolve()
    if not (dest / JOURNAL_NAME).exists() and not (dest / LEGACY_NAME).exists():
        raise UserError(f"No {JOURNAL_NAME} in {str(dest)!r}: pass the folder given to `imgclf check --quarantine`.")
    journal = Journal.open(dest)
    try:
        root = Path(data or journal.data).resolve()
        if not root.is_dir():
            raise UserError(f"The data folder {str(root)!r} recorded in {str(dest / JOURNAL_NAME)!r} does not exist. "
                            "Pass the folder the files belong in with DATA: `imgclf check DATA --restore DIR`.")
        _refuse_outside(journal, root, dest)
        clean_stale_temporaries(dest, recursive=True, keep={dest / e["to"] for e in journal.entries.values()})
        _settle(journal, root, dest)
        restored, kept, group = [], [], []
        for i, e in sorted(journal.entries.items()):
            if e["state"] not in OPEN:
                continue
            src, back = dest / e["to"], root / e["from"]
            if not os.path.lexists(src):
                kept.append({"path": e["from"], "reason": f"missing from quarantine ({e['to']})"})
            elif os.path.lexists(back):
                kept.append({"path": e["from"], "reason": "a file now exists at its old place; left in quarantine"})
            else:
                group.append(i)
        for start in range(0, len(group), BATCH):
            restored += _restore_group(journal, root, dest, group[start:start + BATCH], kept)
        journal.write_summary()
    finally:
        journal.close()
    for dirpath, _, _ in sorted(os.walk(dest), key=lambda t: -len(t[0])):
        if Path(dirpath) != dest and not os.listdir(dirpath):
            os.rmdir(dirpath)  # only folders emptied by the restore; never a file
    return {"data": str(root), "restored": restored, "kept": kept}


def _refuse_outside(journal: Journal, root: Path, dest: Path) -> None:
    cache: dict = {}
    bad = [e for e in journal.entries.values() if e["state"] in OPEN
           and (inside(root, e["from"], cache) is None or inside(dest, e["to"], cache) is None)]
    if bad:
        shown = "; ".join(f"{e['from']!r} <- {e['to']!r}" for e in bad[:3])
        raise UserError(f"{str(dest / JOURNAL_NAME)!r} names {len(bad)} path(s) outside the data folder {str(root)!r} "
                        f"or the quarantine folder {str(dest)!r} (after following symbolic links), e.g. {shown}. "
                        "imgclf never writes such paths, so nothing was restored: check where that journal came from, "
                        "and move those files by hand.")


def _restore_group(journal: Journal, root: Path, dest: Path, ids: list[int], kept: list) -> list[str]:
    for i in ids:
        journal.append({"op": "restore", "id": i})
    journal.sync()
    done = []
    for i in ids:
        e = journal.entries[i]
        back = root / e["from"]
        back.parent.mkdir(parents=True, exist_ok=True)
        try:
            _move(dest / e["to"], back)
        except OSError as err:
            kept.append({"path": e["from"], "reason": f"cannot move it back: {err.strerror}"})
            continue  # stays 'restoring': the next restore tries again
        kill_point("restore.moved")
        journal.append({"op": "restored", "id": i})
        done.append(e["from"])
    return done
