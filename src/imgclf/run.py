"""The Run bundle: one folder that holds everything to use, judge and repeat a model.

Layout (see DESIGN.md)::

    config.yaml  classes.json  preprocess.json  manifest.csv  model.keras
    checkpoints/  history.csv  metrics.json  report.html  plots/  logs/  exports/

Every file is written atomically (temporary name, then rename), so a run that
is interrupted never leaves a half-written file behind, and a new run never
overwrites an existing one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import UserError

MODEL_FILE = "model.keras"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and a rename.

    Example:
        >>> atomic_write_bytes("/tmp/x.bin", b"hi").read_bytes()
        b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
        >>> refuse_overwrite("preds.csv")  # doctest: +SKIP
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{str(path)!r} already exists and imgclf never replaces a file unasked. "
                        f"Choose another name, or pass {flag} to replace it.")
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text. Example: ``atomic_write_text("a.txt", "hello")``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Atomically write `obj` as indented JSON. Example: ``atomic_write_json("m.json", {"a": 1})``."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    # NumPy scalars and arrays appear in metrics; JSON needs plain numbers.
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_model(model, path: str | os.PathLike) -> Path:
    """Save a Keras model atomically (Keras needs the .keras suffix on the temporary name).

    Example:
        >>> atomic_save_model(model, "runs/x/model.keras")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def new_run_dir(out: str | os.PathLike) -> Path:
    """Create and return a fresh run folder; a taken name gets a -2, -3, ... suffix.

    Example:
        >>> new_run_dir("runs/leaves")  # runs/leaves, or runs/leaves-2 if that exists  # doctest: +SKIP
    """
    base = Path(out)
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


class Run:
    """A Run bundle on disk, opened for reading.

    Example:
        >>> run = Run("runs/leaves")  # doctest: +SKIP
        >>> run.classes  # doctest: +SKIP
        ['healthy', 'rust', 'scab']
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(
                f"Run folder not found: {str(path)!r}. Pass the folder that `imgclf train` printed, "
                "for example runs/leaves."
            )
        if not (self.path / "classes.json").exists():
            raise UserError(
                f"{str(path)!r} is not an imgclf run: it has no classes.json. Pass the folder that "
                "`imgclf train` wrote (it holds model.keras, classes.json and preprocess.json)."
            )

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        """Path of a file inside the run. Example: ``run.file("metrics.json")``."""
        return self.path / name

    def read_json(self, name: str):
        """Load one of the run's JSON files. Example: ``run.read_json("classes.json")``."""
        with open(self.path / name, encoding="utf-8") as f:
            return json.load(f)

    @property
    def classes(self) -> list[str]:
        return self.read_json("classes.json")

    @property
    def preprocess(self) -> dict:
        return self.read_json("preprocess.json")

    @property
    def config(self) -> dict:
        from .config import load_yaml

        return load_yaml(self.path / "config.yaml")

    @property
    def model_path(self) -> Path:
        path = self.path / MODEL_FILE
        if not path.exists():
            if (self.path / "checkpoints" / "last.keras").exists():
                how = f"Resume it with `imgclf train --resume --out {self.path}`."
            else:
                how = "It has no checkpoint either, so nothing can be resumed: train again."
            raise UserError(f"The run {str(self.path)!r} has no {MODEL_FILE}: training did not finish an epoch. {how}")
        return path

    def manifest(self):
        """Rows of manifest.csv as dicts (path, label, split, ...). Example: ``run.manifest()[0]["split"]``."""
        from .data.split import read_manifest

        return read_manifest(self.path / "manifest.csv")

    def load_model(self):
        """The trained Keras model. Example: ``run.load_model().summary()``."""
        from .models.registry import load_keras_model

        return load_keras_model(self.model_path)
