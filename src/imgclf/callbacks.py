"""Keras callbacks that write the Run bundle as training goes: best model, last state, history."""

from __future__ import annotations

import csv
import io
import json
import math
import time

import keras

from .run import atomic_save_model, atomic_write_json, atomic_write_text

HISTORY_FIELDS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time_s", "images_per_s")


def current_lr(optimizer) -> float:
    """The optimizer's learning rate at its current step. Example: ``current_lr(model.optimizer)``."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class RunWriter(keras.callbacks.Callback):
    """After every epoch: append to history.csv, save model.keras when the monitored metric
    improves, and save checkpoints/last.keras with state.json for --resume.

    Example:
        >>> model.fit(ds, callbacks=[RunWriter(run_dir, "train", state, n_train)])  # doctest: +SKIP
    """

    def __init__(self, run_dir, phase: str, state: dict, train_images: int, monitor: str = "val_accuracy"):
        super().__init__()
        self.run_dir = run_dir
        self.phase = phase
        self.state = state  # shared across phases; persisted in checkpoints/state.json
        self.train_images = train_images
        self.monitor = monitor
        self.mode_max = "acc" in monitor or "f1" in monitor
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed = time.perf_counter() - self._t0
        row = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "lr": current_lr(self.model.optimizer),
            "time_s": round(elapsed, 3),
            "images_per_s": round(self.train_images / elapsed, 1) if elapsed > 0 else 0,
        }
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                row[key] = float(logs[key])
        self.state.setdefault("history", []).append(row)
        atomic_write_text(self.run_dir / "history.csv", history_csv(self.state["history"]))

        value = logs.get(self.monitor)
        best = self.state.get("best")
        if value is not None and not math.isnan(value):
            improved = best is None or (value > best if self.mode_max else value < best)
            if improved:
                self.state["best"] = float(value)
                self.state["best_epoch"] = epoch + 1
                atomic_save_model(self.model, self.run_dir / "model.keras")
        self.state["epoch"] = epoch + 1
        self.state["phase"] = self.phase
        atomic_save_model(self.model, self.run_dir / "checkpoints" / "last.keras")
        atomic_write_json(self.run_dir / "checkpoints" / "state.json", self.state)


def history_csv(rows: list[dict]) -> str:
    """History rows as CSV text. Example: ``history_csv([{"epoch": 1, "loss": 0.5}])``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in HISTORY_FIELDS})
    return buf.getvalue()


def read_state(run_dir) -> dict:
    """The state saved by `RunWriter`, or {} when there is none. Example: ``read_state(run.path)["epoch"]``."""
    path = run_dir / "checkpoints" / "state.json"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
