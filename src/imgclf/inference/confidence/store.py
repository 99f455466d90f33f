"""`Confidence`: what was fitted on validation, as `Predictor` applies it, and how it is stored.

A run keeps it in two files: confidence.json (the temperature, or one
temperature per predicted class where validation chose them, the unknown
score, its threshold and the validation quantiles behind it, the conformal
quantiles, the measures before and after) and confidence.npz (feature
statistics for the energy, Mahalanobis and kNN scores). An export carries the
JSON in its metadata and the .npz beside it (``model.confidence.npz``, or
``confidence.npz`` inside a SavedModel folder). A run without them (made
before calibration existed) predicts as before: temperature 1, no rejection.

Example:
    >>> c = Confidence({"temperature": 2.0})
    >>> c.calibrate(np.array([[0.9, 0.1]])).round(2)
    array([[0.75, 0.25]], dtype=float32)
    >>> Confidence().describe()
    'uncalibrated (no confidence.json: run `imgclf calibrate RUN`)'
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json
from imgclf.inference.confidence import conformal, ood
from imgclf.inference.confidence.calibration import apply_temperature
from imgclf.inference.confidence.scaling import apply_class_temperatures, undo_class_temperatures
from imgclf.inference.confidence.tables import table_quantile

CONFIDENCE_JSON = "confidence.json"
CONFIDENCE_NPZ = "confidence.npz"
STAT_KEYS = ("means", "precision", "bank", "kernel", "bias", "power_l2")


def stats_path(model_path: str | os.PathLike) -> Path:
    """Where the feature statistics of a run or an exported model live.

    Example:
        >>> stats_path("runs/x/exports/model.onnx").name, stats_path("runs/x").name
        ('model.confidence.npz', 'confidence.npz')
    """
    p = Path(model_path)
    if p.is_dir() or not p.suffix:
        return p / CONFIDENCE_NPZ
    return p.with_name(p.stem + "." + CONFIDENCE_NPZ)


class Confidence:
    """Temperature, unknown rejection and prediction sets, fitted on validation (see the module docstring).

    Example:
        >>> Confidence({"temperature": 1.5}).temperature
        1.5
    """

    def __init__(self, info: dict | None = None, stats: dict | None = None, source: str = ""):
        self.info = dict(info or {})
        self.stats = stats
        self.source = source
        t = self.info.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise UserError(f"Invalid temperature in {source or CONFIDENCE_JSON}: expected a positive number, "
                            f"received {t!r}. Refit it with `imgclf calibrate RUN`.")
        self.temperature = float(t)
        ct = self.info.get("class_temperatures")
        if ct is not None and (not isinstance(ct, list) or not ct or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 for x in ct)):
            raise UserError(f"Invalid class_temperatures in {source or CONFIDENCE_JSON}: expected a list of positive "
                            f"numbers, one per class, received {ct!r}. Refit it with `imgclf calibrate RUN`.")
        # One temperature per predicted class where validation chose them (imgclf.inference.confidence.scaling).
        self.class_temperatures = [float(x) for x in ct] if ct else None

    @property
    def calibrated(self) -> bool:
        return "temperature" in self.info

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Confidence":
        """Read a run's confidence.json and confidence.npz; an empty `Confidence` when there is none.

        Example:
            >>> import tempfile
            >>> Confidence.load(tempfile.mkdtemp()).calibrated
            False
        """
        folder = Path(folder)
        path = folder / CONFIDENCE_JSON
        if not path.exists():
            return cls()
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{path} is not valid JSON ({e}). Refit it with `imgclf calibrate {folder}`.") from None
        return cls(info, read_stats(folder / CONFIDENCE_NPZ), source=str(path))

    @classmethod
    def from_metadata(cls, meta: dict | None, model_path) -> "Confidence":
        """The `Confidence` an export carries: its metadata's 'confidence' entry and the .npz beside it.

        Example:
            >>> Confidence.from_metadata({"classes": ["a"]}, "m.onnx").calibrated
            False
        """
        info = (meta or {}).get("confidence")
        if not info:
            return cls()
        return cls(info, read_stats(stats_path(model_path)), source=str(model_path))

    def save(self, folder: str | os.PathLike) -> None:
        """Write confidence.json (and confidence.npz when there are statistics) into `folder`.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp(); Confidence({"temperature": 1.2}).save(d)
            >>> Confidence.load(d).temperature
            1.2
        """
        folder = Path(folder)
        if self.stats:
            write_stats(folder / CONFIDENCE_NPZ, self.stats)
        atomic_write_json(folder / CONFIDENCE_JSON, self.info)

    # ------------------------------------------------------------------ applying
    def calibrate(self, probs) -> np.ndarray:
        """Probabilities with the calibration applied (one positive temperature per row: the class order never changes).

        Example:
            >>> Confidence({"temperature": 1.0, "class_temperatures": [2.0, 1.0]}).calibrate(np.array([[0.9, 0.1]])).round(2)
            array([[0.75, 0.25]], dtype=float32)
        """
        if self.class_temperatures is None:
            return apply_temperature(probs, self.temperature)
        self._check_classes(probs)
        return apply_class_temperatures(probs, self.class_temperatures)

    def uncalibrate(self, calibrated) -> np.ndarray:
        """The model's own probabilities again, from calibrated ones (the inverse of `calibrate`).

        Example:
            >>> c = Confidence({"temperature": 2.0})
            >>> c.uncalibrate(c.calibrate(np.array([[0.9, 0.1]]))).round(3)
            array([[0.9, 0.1]], dtype=float32)
        """
        if self.class_temperatures is None:
            return apply_temperature(calibrated, 1.0 / self.temperature)
        self._check_classes(calibrated)
        return undo_class_temperatures(calibrated, self.class_temperatures)

    def _check_classes(self, probs) -> None:
        k = np.shape(probs)[-1] if np.ndim(probs) else 0
        if k != len(self.class_temperatures):
            raise UserError(f"{self.source or CONFIDENCE_JSON} holds {len(self.class_temperatures)} class temperatures "
                            f"for a model of {k} classes. Refit it with `imgclf calibrate RUN` (then export again).")

    @property
    def scaling(self) -> dict:
        """The calibration map as applied: what the export parity check compares between a run and its export.

        Example:
            >>> Confidence({"temperature": 0.8}).scaling
            {'method': 'temperature', 'temperature': 0.8}
        """
        out = {"method": "class_temperature" if self.class_temperatures else "temperature", "temperature": self.temperature}
        if self.class_temperatures:
            out["class_temperatures"] = self.class_temperatures
        return out

    @property
    def method(self) -> str:
        return (self.info.get("reject") or {}).get("method", "")

    def default_reject_rate(self) -> float:
        """The false-rejection rate chosen when the run was fitted (0 = off). Example: ``clf.confidence.default_reject_rate()``."""
        return float((self.info.get("reject") or {}).get("reject_rate", 0.0))

    def reject_threshold(self, reject_rate: float | None = None) -> float | None:
        """Score above which an image is 'unknown', for `reject_rate` (None: the run's); None when off or unavailable.

        Example:
            >>> c = Confidence({"reject": {"method": "msp", "reject_rate": 0.05,
            ...                            "tables": {"msp": {"n": 3, "q": [0.0] * 500 + [0.5] * 501}}}})
            >>> c.reject_threshold(), c.reject_threshold(0)
            (0.5, None)
        """
        rate = self.default_reject_rate() if reject_rate is None else float(reject_rate)
        method = self.method
        if rate <= 0 or not method or (method in ood.FEATURE_METHODS and not self.stats):
            return None
        table = (self.info["reject"].get("tables") or {}).get(method)
        return table_quantile(table, 1.0 - rate) if table else None

    def needs_features(self, reject_rate: float | None = None) -> bool:
        """True when the unknown score in use needs the penultimate features."""
        return self.reject_threshold(reject_rate) is not None and self.method in ood.FEATURE_METHODS

    def unknown_scores(self, probs, features=None) -> np.ndarray:
        """The run's unknown score for a batch (calibrated probabilities; features where the method needs them)."""
        return ood.scores(self.method, probs, features, self.stats)

    def qhat(self, coverage: float) -> float:
        """The conformal score bound for `coverage` (0 < coverage < 1).

        Example:
            >>> Confidence().qhat(0.9)
            Traceback (most recent call last):
            ...
            imgclf.core.errors.UserError: This model has no conformal calibration, so it cannot give prediction sets. Run `imgclf calibrate RUN` (then export again).
        """
        if not 0 < coverage < 1:
            raise UserError(f"--coverage is a probability between 0 and 1 (for example 0.9), received {coverage}.")
        table = self.info.get("conformal")
        if not table:
            raise UserError("This model has no conformal calibration, so it cannot give prediction sets. "
                            "Run `imgclf calibrate RUN` (then export again).")
        return conformal.threshold(table, coverage)

    def describe(self) -> str:
        """One line for the terminal about what is applied."""
        if not self.calibrated:
            return f"uncalibrated (no {CONFIDENCE_JSON}: run `imgclf calibrate RUN`)"
        ct = self.class_temperatures
        line = f"temperature per predicted class {min(ct):.3f}-{max(ct):.3f}" if ct else f"temperature {self.temperature:.3f}"
        thr = self.reject_threshold()
        if thr is not None:
            line += f"; unknown above {self.method} score {thr:.4g} (reject rate {self.default_reject_rate():g})"
        elif self.method and self.method in ood.FEATURE_METHODS and not self.stats:
            line += f"; unknown rejection off ({CONFIDENCE_NPZ} missing)"
        return line


def read_stats(path: Path) -> dict | None:
    """The arrays of a confidence.npz, or None when it is missing. Example: ``read_stats(Path("runs/x/confidence.npz"))``."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k in STAT_KEYS}


def write_stats(path: Path, stats: dict) -> None:
    """Write the feature statistics atomically. Example: ``write_stats(Path("runs/x/confidence.npz"), stats)``."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in stats.items() if k in STAT_KEYS})
    os.replace(tmp, path)
