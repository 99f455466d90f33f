"""Files written safely: atomically (temporary name, then rename), never over a user's file unasked.

Every file imgclf writes goes through here, so an interrupted command never
leaves a half-written file behind, and a taken name is never overwritten:
`free_name` (files) and `new_run_dir` (folders) pick the next free one.
Temporary names carry the writer's process id (``.NAME.tmpPID...``), so the
next command on the same folder removes those of killed writers
(`clean_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from imgclf.core.errors import UserError
from imgclf.core.progress import log

TEMP_NAME = re.compile(r"^\..+\.tmp(\d+)(\..*)?$")  # .last.tmp123.keras, .metrics.json.tmp123.x8a_k2.tmp, .model.tmp123


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and a rename.

    Example:
        >>> atomic_write_bytes("/tmp/x.bin", b"hi").read_bytes()
        b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; teammates and web servers need to read runs
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_overwrite(path: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite") -> Path:
    """Raise `UserError` if `path` exists and overwriting was not asked for; return it as a Path.

    Example:
        >>> refuse_overwrite("preds.csv")
        PosixPath('preds.csv')
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{str(path)!r} already exists and imgclf never replaces a file unasked. "
                        f"Choose another name, or pass {flag} to replace it.")
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text. Example: ``atomic_write_text("a.txt", "hello")``.

    A file name that is not UTF-8 (``os.listdir`` gives it with surrogates) is written as its own bytes, so
    reading with ``errors="surrogateescape"`` gives back the exact path.
    """
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Atomically write `obj` as indented JSON. Example: ``atomic_write_json("m.json", {"a": 1})``."""
    return atomic_write_text(path, json_text(obj))


def json_text(obj) -> str:
    """`obj` as indented JSON text (NumPy numbers and arrays as plain ones). Example: ``json_text({"a": 1})``."""
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


def _json_default(o):
    # NumPy scalars and arrays appear in metrics; JSON needs plain numbers.
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_model(model, path: str | os.PathLike, extra: dict[str, bytes] | None = None) -> Path:
    """Save a Keras model atomically (Keras needs the .keras suffix on the temporary name).

    `extra` adds files to the .keras archive (Keras ignores them when
    loading) in the same atomic write: a checkpoint and its training state
    are then one unit that a kill cannot separate (`read_archive_file`).

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> atomic_save_model(model, "runs/x/model.keras", extra={"note.txt": b"hello"})
        PosixPath('runs/x/model.keras')
        >>> read_archive_file("runs/x/model.keras", "note.txt")
        b'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        if extra:
            with zipfile.ZipFile(tmp, "a") as z:
                for name, data in extra.items():
                    z.writestr(name, data)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_archive_file(path: str | os.PathLike, name: str) -> bytes | None:
    """The file `name` stored in the .keras archive at `path` by `atomic_save_model`, or None.

    Example:
        >>> state = read_archive_file("runs/leaves/checkpoints/last.keras", "imgclf_state.json")
        >>> json.loads(state)["epoch"]  # the run trained 2 epochs
        2
        >>> read_archive_file("runs/leaves/checkpoints/last.keras", "no such file") is None
        True
    """
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(name) if name in z.namelist() else None
    except (OSError, zipfile.BadZipFile):
        return None


def _pid_started_after(pid: int, when: float) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_ctime > when + 1
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temporaries(folder: str | os.PathLike, recursive: bool = False, keep=(), prefix: str = "") -> list[Path]:
    """Remove the temporary files (and SavedModel folders) that killed imgclf commands left in `folder`.

    A temporary is named ``.NAME.tmpPID...``; it is stale when no process
    PID runs any more, or when the process now holding that PID started
    after the file was last written (the PID was reused). A live writer's
    temporary is never touched, nor a path in `keep`, nor (given `prefix`) a
    name that does not start with it. Returns what was removed.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / ".last.tmp999999999.keras").write_bytes(b"half a model")
        >>> [p.name for p in clean_stale_temporaries(d)]
        ['.last.tmp999999999.keras']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    keep = {Path(k) for k in keep}
    walk = os.walk(folder) if recursive else [(str(folder), [], [])]
    removed = []
    for dirpath, _, _ in walk:
        try:
            names = os.listdir(dirpath)
        except OSError:
            continue
        for name in names:
            m = TEMP_NAME.match(name)
            path = Path(dirpath) / name
            if not m or path in keep or not name.startswith(prefix):
                continue
            pid = int(m.group(1))
            try:
                mtime = os.lstat(path).st_mtime
            except OSError:
                continue
            if _alive(pid) and not _pid_started_after(pid, mtime):
                continue
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except OSError:
                pass  # a read-only folder: leave it
    if removed:
        log(f"Removed {len(removed)} temporary file(s) left by an interrupted command in {folder}")
    return removed


def numbered_names(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """`path`, then `path-2`, `path-3`, ...: the names imgclf tries, in order, when one is taken.

    The number goes before the suffix of a file (``img-2.jpg``); folders pass
    ``keep_suffix=False`` so that ``runs/v1.5`` becomes ``runs/v1.5-2``.
    Callers that must claim a name atomically (``open(..., "x")``, ``mkdir``)
    walk this themselves; `free_name` is for the rest.

    Example:
        >>> from itertools import islice
        >>> [p.name for p in islice(numbered_names("out/img.jpg"), 3)]
        ['img.jpg', 'img-2.jpg', 'img-3.jpg']
        >>> [p.name for p in islice(numbered_names("runs/v1.5", keep_suffix=False), 2)]
        ['v1.5', 'v1.5-2']
    """
    path = Path(path)
    stem, suffix = (path.stem, path.suffix) if keep_suffix else (path.name, "")
    yield path
    n = 2
    while True:
        yield path.with_name(f"{stem}-{n}{suffix}")
        n += 1


def free_name(path: str | os.PathLike, keep_suffix: bool = True) -> Path:
    """The first of `numbered_names(path)` that does not exist yet.

    Example:
        >>> free_name("/nonexistent-imgclf-dir/report.csv").name
        'report.csv'
    """
    return next(p for p in numbered_names(path, keep_suffix) if not p.exists())


def new_run_dir(out: str | os.PathLike) -> Path:
    """Create and return a fresh run folder; a taken name gets a -2, -3, ... suffix.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> new_run_dir(f"{root}/leaves").name, new_run_dir(f"{root}/leaves").name
        ('leaves', 'leaves-2')
    """
    for candidate in numbered_names(out, keep_suffix=False):
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
