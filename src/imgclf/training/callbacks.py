"""Keras callbacks that write the Run bundle as training goes: best model, last state, history."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import keras

from imgclf.core.fs import atomic_save_model, atomic_write_json, atomic_write_text, json_text, read_archive_file
from imgclf.core.killpoint import kill_point

STATE_IN_CHECKPOINT = "imgclf_state.json"  # the state, inside checkpoints/last.keras: one atomic unit with the weights
HISTORY_FIELDS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_balanced_accuracy",
                  "lr", "time_s", "images_per_s")


def current_lr(optimizer) -> float:
    """The optimizer's learning rate at its current step. Example: ``current_lr(model.optimizer)``."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class RunWriter(keras.callbacks.Callback):
    """After every epoch: append to history.csv, save model.keras when the monitored metric
    improves (every epoch with monitor 'none', a run without validation), and save checkpoints/last.keras for --resume. The training state (epoch,
    phase, history, best) is stored inside last.keras, in the same atomic write, so
    a kill can never pair a checkpoint with another epoch's state; state.json is a
    readable copy written after it.

    Example:
        >>> from pathlib import Path
        >>> from imgclf.models.factory import create_model
        >>> images, labels = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)), np.array([0, 1] * 4)
        >>> model = create_model("small_cnn", num_classes=2, img_size=16)
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> state = {"epoch": 0, "phase": "", "history": []}
        >>> _ = model.fit(images, labels, validation_data=(images, labels), epochs=2, verbose=0,
        ...               callbacks=[RunWriter(Path("runs/mine"), "train", state, train_images=len(images))])
        >>> state["epoch"], sorted(p.name for p in Path("runs/mine").rglob("*") if p.is_file())
        (2, ['history.csv', 'last.keras', 'model.keras', 'state.json'])
    """

    def __init__(self, run_dir, phase: str, state: dict, train_images: int, monitor: str = "val_accuracy",
                 keep_epochs: bool = False):
        super().__init__()
        self.keep_epochs = keep_epochs
        self.run_dir = run_dir
        self.phase = phase
        self.state = state  # shared across phases; persisted in checkpoints/state.json
        self.train_images = train_images
        self.monitor = monitor
        self.mode_max = "acc" in monitor or "f1" in monitor
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed = time.perf_counter() - self._t0
        # A time budget can end the last epoch early: count the images it trained on.
        steps = (self.params or {}).get("steps") or self._batches
        images = self.train_images * min(self._batches / steps, 1.0) if self._batches else self.train_images
        row = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "lr": current_lr(self.model.optimizer),
            "time_s": round(elapsed, 3),
            "images_per_s": round(images / elapsed, 1) if elapsed > 0 else 0,
        }
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_balanced_accuracy"):
            if key in logs:
                row[key] = float(logs[key])
        self.state.setdefault("history", []).append(row)
        atomic_write_text(self.run_dir / "history.csv", history_csv(self.state["history"]))

        value = logs.get(self.monitor)
        best = self.state.get("best")
        if self.monitor == "none":  # no validation split: the last epoch is the model
            self.state["best_epoch"] = epoch + 1
            atomic_save_model(self.model, self.run_dir / "model.keras")
        elif value is not None and not math.isnan(value):
            improved = best is None or (value > best if self.mode_max else value < best)
            if improved:
                self.state["best"] = float(value)
                self.state["best_epoch"] = epoch + 1
                atomic_save_model(self.model, self.run_dir / "model.keras")
        self.state["epoch"] = epoch + 1
        self.state["phase"] = self.phase
        atomic_save_model(self.model, self.run_dir / "checkpoints" / "last.keras",
                          extra={STATE_IN_CHECKPOINT: json_text(self.state).encode("utf-8")})
        kill_point("checkpoint.saved")
        if self.keep_epochs:
            atomic_save_model(self.model, self.run_dir / "checkpoints" / f"epoch-{epoch + 1:03d}.keras")
        atomic_write_json(self.run_dir / "checkpoints" / "state.json", self.state)


def history_csv(rows: list[dict]) -> str:
    """History rows as CSV text, with only the columns some row fills (no empty val_macro_f1 column, issue 20).

    Example:
        >>> print(history_csv([{"epoch": 1, "phase": "train", "loss": 0.5}]), end="")
        epoch,phase,loss
        1,train,0.5
    """
    buf = io.StringIO()
    filled = [f for f in HISTORY_FIELDS if f in ("epoch", "phase") or any(r.get(f) is not None for r in rows)]
    writer = csv.DictWriter(buf, fieldnames=filled, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in HISTORY_FIELDS})
    return buf.getvalue()


def read_state(run_dir) -> dict:
    """The state saved by `RunWriter` with checkpoints/last.keras, or {} when there is none.

    The copy inside last.keras belongs to those weights whatever happened
    after; state.json is read only for runs made before it was stored there.

    Example: ``read_state(run.path)["epoch"]``.
    """
    run_dir = Path(run_dir)
    stored = read_archive_file(run_dir / "checkpoints" / "last.keras", STATE_IN_CHECKPOINT)
    if stored is not None:
        return json.loads(stored)
    path = run_dir / "checkpoints" / "state.json"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class EpochProgress(keras.callbacks.Callback):
    """A progress bar per epoch (loss, accuracy, learning rate, images/s, time left) and a
    one-line summary per epoch. On a terminal the bar redraws in place; in a log only the
    summaries appear.

    Example:
        >>> import io
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model.compile("sgd", "sparse_categorical_crossentropy")
        >>> log = io.StringIO()  # a log, not a terminal: one summary line per epoch
        >>> _ = model.fit(np.zeros((16, 4)), np.zeros(16), batch_size=8, epochs=2, verbose=0,
        ...               callbacks=[EpochProgress(2, 2, 8, stream=log)])
        >>> len(log.getvalue().splitlines())
        2
    """

    def __init__(self, epochs: int, steps: int, batch_size: int, schedule=None, stream=None):
        super().__init__()

        self.epochs, self.steps, self.batch_size = epochs, steps, batch_size
        self.schedule = schedule  # a ProgressSchedule, for time-budget estimates
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._last_draw = 0.0
        self.epoch_times: list[float] = []
        self.epoch = 0  # the epoch being drawn, its start time and finished steps (set at each epoch's begin)
        self.t0 = 0.0
        self.done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.t0 = time.perf_counter()
        self.done = 0

    def _epoch_label(self) -> str:
        return f"Epoch {self.epoch + 1}/{self.epochs}" if self.epochs else f"Epoch {self.epoch + 1}"

    def _time_left(self, epoch_left_s: float) -> float:
        if self.schedule is not None and self.schedule.budget_s:
            return max(self.schedule.planned_end - self.schedule.elapsed(), 0.0)
        per_epoch = self.epoch_times[-1] if self.epoch_times else (time.perf_counter() - self.t0 + epoch_left_s)
        return epoch_left_s + per_epoch * max(self.epochs - self.epoch - 1, 0)

    def on_train_batch_end(self, batch, logs=None):
        self.done = batch + 1
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.25 and batch + 1 < self.steps:
            return
        self._last_draw = now
        logs = logs or {}
        done = batch + 1
        elapsed = now - self.t0
        rate = done * self.batch_size / max(elapsed, 1e-9)
        left = (self.steps - done) * elapsed / done
        filled = int(20 * done / self.steps)
        line = (f"\r{self._epoch_label()} [{'#' * filled}{'.' * (20 - filled)}] {done}/{self.steps} "
                f"loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f} "
                f"lr {current_lr(self.model.optimizer):.2e} {rate:,.0f} img/s, {_fmt_time(left)} left in epoch, "
                f"{_fmt_time(self._time_left(left))} in all ")
        self.stream.write(line)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed = time.perf_counter() - self.t0
        self.epoch_times.append(elapsed)
        rate = (self.done or self.steps) * self.batch_size / max(elapsed, 1e-9)  # a budget may end it early
        parts = [f"{self._epoch_label()}: loss {logs.get('loss', float('nan')):.4f} acc {logs.get('accuracy', float('nan')):.4f}"]
        if "val_loss" in logs:
            parts.append(f"val_loss {logs['val_loss']:.4f} val_acc {logs.get('val_accuracy', float('nan')):.4f}")
        parts.append(f"lr {current_lr(self.model.optimizer):.2e}")
        parts.append(f"{rate:,.0f} img/s")
        parts.append(f"{_fmt_time(elapsed)} (about {_fmt_time(self._time_left(0.0))} left)")
        self.stream.write(("\r" if self.tty else "") + " | ".join(parts) + (" " * 8 if self.tty else "") + "\n")
        self.stream.flush()
