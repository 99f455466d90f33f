"""The Run bundle: one folder that holds everything to use, judge and repeat a model.

Layout (docs/architecture.md has the map of the code that writes it)::

    config.yaml  classes.json  preprocess.json  manifest.csv  model.keras
    checkpoints/  history.csv  metrics.json  report.html  plots/  logs/  exports/

Every file is written atomically (temporary name, then rename), so a run that
is interrupted never leaves a half-written file behind, and a new run never
overwrites an existing one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from imgclf.core.config import load_yaml
from imgclf.core.errors import UserError
from imgclf.core.manifest import read_manifest

MODEL_FILE = "model.keras"


class Run:
    """A Run bundle on disk, opened for reading.

    Example:
        >>> run = Run("runs/leaves")
        >>> run.classes
        ['bird', 'cat', 'dog']
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

        return read_manifest(self.path / "manifest.csv")
