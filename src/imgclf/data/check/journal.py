"""The quarantine journal: DIR/quarantine.jsonl, an append-only record of every move, written ahead of it.

One JSON object per line. The first names the data folder; then, for each
file, ``{"op": "move", "id", "from", "to", "reason", "sha1", "time"}`` is
written (and flushed to disk) *before* the file moves, and ``{"op": "moved",
"id"}`` after. Putting a file back writes ``restore`` before and ``restored``
after; an intent that never happened is closed with ``cancelled``. A kill at
any moment therefore leaves every file either where the journal says or named
by an open intent, which the next command settles (`settle`).

Lines are written with one ``write`` each to a file opened for appending, so
a killed process loses nothing it wrote; intents are fsynced in groups before
their moves, so a power cut loses no intent of a move that happened.
An old DIR/quarantine.json (the format before the journal) is read as a list
of finished moves and carried into a new journal on the first write.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_text

JOURNAL_NAME = "quarantine.jsonl"
LEGACY_NAME = "quarantine.json"
OPEN = ("moving", "quarantined", "restoring")  # states of an entry whose file may still be in quarantine
_STATE_AFTER = {"move": "moving", "moved": "quarantined", "cancelled": "cancelled", "restore": "restoring",
                "restored": "restored"}


class Journal:
    """The replayed journal of a quarantine folder: ``data`` (the data folder) and ``entries`` {id: entry}.

    Each entry holds from, to, reason, sha1, time and its ``state``: moving
    (intent written, move not confirmed), quarantined, restoring, restored or
    cancelled. `append` writes one record and applies it.

    Example:
        >>> import tempfile
        >>> j = Journal.open(tempfile.mkdtemp(), data="/data")
        >>> j.append({"op": "move", "id": j.next_id(), "from": "a/x.png", "to": "a/x.png", "reason": "empty"})
        >>> j.entries[0]["state"]
        'moving'
        >>> j.close()
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / JOURNAL_NAME
        self.data = ""
        self.entries: dict[int, dict] = {}
        self._fd: int | None = None
        self._next = 0  # the next move's id
        self._torn: int | None = None  # offset of a last line cut short by a kill, dropped before the next write

    @classmethod
    def read(cls, folder: str | os.PathLike) -> Journal:
        """Replay DIR/quarantine.jsonl (or an old DIR/quarantine.json) without opening it for writing."""
        j = cls(Path(folder))
        if j.path.exists():
            j._replay()
        elif (j.folder / LEGACY_NAME).exists():
            j._read_legacy()
        return j

    @classmethod
    def open(cls, folder: str | os.PathLike, data: str = "") -> Journal:
        """Replay the journal and open it for appending (created, naming `data`, if new); locks it."""
        j = cls.read(folder)
        j.folder.mkdir(parents=True, exist_ok=True)
        if not j.path.exists():
            j.data = j.data or data
            lines = [{"op": "start", "data": j.data}]
            for i, e in sorted(j.entries.items()):  # an old quarantine.json: its moves, all finished
                lines += [{"op": "move", "id": i, **_record(e)}, {"op": "moved", "id": i}]
            atomic_write_text(j.path, "".join(_line(r) for r in lines))
        j._fd = os.open(j.path, os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(j._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            j.close()
            raise UserError(f"{str(j.path)!r} is in use by another imgclf command (a quarantine or restore "
                            "running now). Wait for it to finish, then run this again.") from None
        return j

    def _replay(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self._apply(rec)
            except (ValueError, KeyError, TypeError) as e:
                if n == len(lines):  # the last line, cut short by a kill mid-write: never acted on
                    self._torn = len(raw) - len(line)
                    continue
                raise UserError(f"Line {n} of {self.path} is not a journal record ({e}). It is the record of what was "
                                "quarantined: restore the file from a backup, or fix that line by hand.") from None

    def _read_legacy(self) -> None:
        path = self.folder / LEGACY_NAME
        try:
            log = json.loads(path.read_text(encoding="utf-8"))
            self.data = str(log.get("data", ""))
            for i, e in enumerate(log.get("entries", [])):
                self.entries[i] = {**_record(e), "state": "quarantined"}
            self._next = len(self.entries)
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise UserError(f"Cannot read {path}: {e}. It is the record of what was quarantined; restore it from a backup.") from None

    def _apply(self, rec: dict) -> None:
        op = rec["op"]
        if op == "start":
            self.data = str(rec["data"])
        elif op == "move":
            self.entries[int(rec["id"])] = {**_record(rec), "state": "moving"}
            self._next = max(self._next, int(rec["id"]) + 1)
        elif op in _STATE_AFTER:
            entry = self.entries[int(rec["id"])]
            entry["state"] = _STATE_AFTER[op]
            if rec.get("why"):
                entry["why"] = rec["why"]
        else:
            raise ValueError(f"unknown op {op!r}")

    def next_id(self) -> int:
        """The id of the next move (ids count up from 0). Example: ``journal.next_id()``."""
        return self._next

    def append(self, rec: dict) -> None:
        """Write one record (one ``write`` call: a kill cannot leave half of it) and apply it."""
        if self._torn is not None:
            os.truncate(self.path, self._torn)  # drop a line cut short by an earlier kill before writing after it
            self._torn = None
        os.write(self._fd, _line(rec).encode("utf-8"))
        self._apply(rec)

    def sync(self) -> None:
        """fsync the journal: what was written survives a power cut."""
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def write_summary(self) -> None:
        """DIR/quarantine.json: the files in quarantine now, for people and tools (the journal is the record)."""
        entries = [_record(e) for _, e in sorted(self.entries.items()) if e["state"] in OPEN]
        text = json.dumps({"data": self.data, "journal": JOURNAL_NAME, "entries": entries}, indent=2) + "\n"
        atomic_write_text(self.folder / LEGACY_NAME, text)


def _record(e: dict) -> dict:
    return {k: e.get(k, "") for k in ("from", "to", "reason", "sha1", "time")}


def _line(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"


def inside(root: Path, rel, cache: dict | None = None) -> Path | None:
    """``root / rel`` if that path stays inside `root` (resolved, symbolic links followed up to its last part), else None.

    The last part is not followed: a quarantined symbolic link is moved as a link.

    Example:
        >>> inside(Path("/data"), "a/x.png"), inside(Path("/data"), "../etc/passwd")
        (PosixPath('/data/a/x.png'), None)
    """
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        return None
    path = root / rel
    parent = path.parent
    if cache is not None and parent in cache:
        real = cache[parent]
    else:
        real = Path(os.path.realpath(parent))
        if cache is not None:
            cache[parent] = real
    return path if real == root or root in real.parents else None


def sha1_of(path: Path) -> str:
    """SHA-1 of a file ('' for a link or an unreadable file). Example: ``sha1_of(Path("a.png"))``."""
    if os.path.islink(path):
        return ""
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()
