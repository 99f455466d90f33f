"""Fingerprints kept between commands: a folder trained on again is not hashed again.

Every `imgclf train` and `imgclf split` fingerprints each image to find
duplicates before it splits (`imgclf.data.split.split_rows`): about 6 s for
Fashion-MNIST's 60,000 small PNGs, 9 ms for each 3000-px JPEG photo
(bench/fingerprint_cache.py), paid again by every run and every trial of
`imgclf tune` on the same folder. The results
live in one SQLite file, ``fingerprints.sqlite`` in the cache folder:
``IMGCLF_CACHE_DIR``, else ``$XDG_CACHE_HOME/imgclf``, else ``~/.cache/imgclf``
(``IMGCLF_CACHE_DIR=off`` turns the cache off).

An entry is used only for the same absolute path, size, modification time
(ns), decoding limit (``--max-pixels``) and `VERSION` of the fingerprint
code, the test make and rsync trust. Files modified in the last `RACY_S`
seconds are not stored, as git does with its index: a file rewritten at the
same size within the file system's clock tick would otherwise keep a stale
entry. Failures (unreadable, corrupt) are not stored either: they are
computed again, so a file fixed since is seen. The cache is a speed-up only:
when it cannot be read or written (a read-only home, a locked or damaged
file) the fingerprints are computed as if it were off, and it never holds
more than `MAX_ROWS` entries (the oldest written go first).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from imgclf.core.progress import log
from imgclf.data.decode import DEFAULT_MAX_PIXELS
from imgclf.data.fingerprint import fingerprint_files

VERSION = 1  # raise when fingerprint_file's SHA-1, pHash or thumbnails change: older entries stop matching
RACY_S = 2.0  # files modified this recently are not stored (see the module docstring)
MAX_ROWS = 1_000_000  # about 450 MB; beyond it the oldest written entries are deleted
_QUERY_CHUNK = 500  # paths per SELECT, under SQLite's limit of bound parameters
_SCHEMA = ("CREATE TABLE IF NOT EXISTS prints (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
           "max_pixels INTEGER, version INTEGER, sha1 TEXT, phash INTEGER, thumb BLOB)")
_warned: set[str] = set()


def cache_dir() -> Path | None:
    """The folder of imgclf's cache, or None when ``IMGCLF_CACHE_DIR=off``.

    Example:
        >>> cache_dir().name  # ~/.cache/imgclf, unless IMGCLF_CACHE_DIR or XDG_CACHE_HOME say otherwise
        'imgclf'
    """
    chosen = os.environ.get("IMGCLF_CACHE_DIR", "")
    if chosen.strip().lower() in ("off", "none", "0", "false"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "imgclf"


def _signed(h: int | None) -> int | None:  # SQLite integers are signed 64-bit; a pHash uses all 64 bits
    return None if h is None else (h - (1 << 64) if h >= 1 << 63 else h)


def _unsigned(h: int | None) -> int | None:
    return None if h is None else h & ((1 << 64) - 1)


def _connect(folder: Path) -> sqlite3.Connection:
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "fingerprints.sqlite", timeout=30)
    db.execute(_SCHEMA)
    return db


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log(f"Fingerprint cache not used ({reason}); computing every fingerprint. IMGCLF_CACHE_DIR=off hides this line.")


def _stat(path: bytes) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _lookup(db, keys: list[bytes], stats: list, max_pixels: int) -> dict[int, dict]:
    index = {k: i for i, k in enumerate(keys)}
    found: dict[int, dict] = {}
    for start in range(0, len(keys), _QUERY_CHUNK):
        chunk = keys[start:start + _QUERY_CHUNK]
        rows = db.execute("SELECT path, size, mtime_ns, max_pixels, version, sha1, phash, thumb FROM prints WHERE path IN "
                          f"({','.join('?' * len(chunk))})", chunk).fetchall()
        for path, size, mtime_ns, pixels, version, sha1, phash, thumb in rows:
            i = index[bytes(path)]
            if stats[i] == (size, mtime_ns) and pixels == max_pixels and version == VERSION:
                found[i] = {"sha1": sha1, "phash": _unsigned(phash), "thumb": bytes(thumb), "error": ""}
    return found


def _store(db, keys: list[bytes], stats: list, prints: dict[int, dict], max_pixels: int) -> None:
    settled = time.time_ns() - int(RACY_S * 1e9)
    rows = [(keys[i], *stats[i], max_pixels, VERSION, p["sha1"], _signed(p["phash"]), p["thumb"])
            for i, p in prints.items() if not p["error"] and stats[i] is not None and stats[i][1] < settled]
    if not rows:
        return
    with db:  # one transaction
        db.executemany("INSERT OR REPLACE INTO prints VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        extra = db.execute("SELECT COUNT(*) FROM prints").fetchone()[0] - MAX_ROWS
        if extra > 0:
            db.execute("DELETE FROM prints WHERE rowid IN (SELECT rowid FROM prints ORDER BY rowid LIMIT ?)", (extra,))


def cached_fingerprint_files(paths: list[str], workers: int = 0, label: str = "Hashing", verbose: bool = True,
                             max_pixels: int | None = None) -> list[dict]:
    """`imgclf.data.fingerprint.fingerprint_files`, computing only what the cache does not hold (see above).

    Example:
        >>> prints = cached_fingerprint_files(["a.png", "b.png"])  # later calls read unchanged files from the cache
        >>> [p["sha1"][:8] for p in prints]
        ['bfd96f5f', 'b0742f4d']
    """
    folder = cache_dir()
    if folder is None or not paths:
        return fingerprint_files(paths, workers=workers, label=label, verbose=verbose, max_pixels=max_pixels)
    pixels = int(max_pixels or DEFAULT_MAX_PIXELS)
    # paths as bytes: a file name need not be UTF-8 (os.fsencode undoes Python's surrogate escapes)
    keys = [os.fsencode(os.path.abspath(p)) for p in paths]
    stats = [_stat(k) for k in keys]
    try:
        db = _connect(folder)
    except (OSError, sqlite3.Error) as e:
        _warn_once(f"{folder}: {e}")
        return fingerprint_files(paths, workers=workers, label=label, verbose=verbose, max_pixels=max_pixels)
    try:
        try:
            found = _lookup(db, keys, stats, pixels)
        except sqlite3.Error as e:
            _warn_once(f"{folder}: {e}")
            found = {}
        missing = [i for i in range(len(paths)) if i not in found]
        computed = fingerprint_files([paths[i] for i in missing], workers=workers, label=label,
                                     verbose=verbose and bool(missing), max_pixels=max_pixels)
        fresh = dict(zip(missing, computed))
        try:
            _store(db, keys, stats, fresh, pixels)
        except sqlite3.Error as e:
            _warn_once(f"{folder}: {e}")
    finally:
        db.close()
    return [found[i] if i in found else fresh[i] for i in range(len(paths))]
