"""A small progress display for work outside Keras' own progress bar (decoding, prediction).

On a terminal it redraws one line; in logs (CI, nohup) it prints a line every
tenth of the way, so logs stay short.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Count work done and show rate and time left on stderr.

    Example:
        >>> with Progress(1000, "Decoding") as bar:
        ...     for _ in range(1000): bar.update(1)
    """

    def __init__(self, total: int | None, label: str, enabled: bool = True, unit: str = "img"):
        self.total, self.label, self.unit = total, label, unit
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw > 0.2:
                self._last_draw = now
                sys.stderr.write("\r" + self._line(now))
                sys.stderr.flush()
        elif self.total and now - self.start > 2.0:
            decile = int(10 * self.done / self.total)
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                sys.stderr.write(self._line(now) + "\n")

    def _line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"  # slow work (a range-test step) is not "0 step/s"
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
            left = (self.total - self.done) / rate if rate > 0 else 0
            return f"{self.label} [{bar}] {self.done}/{self.total} {shown} {self.unit}/s, {left:,.0f}s left"
        return f"{self.label}: {self.done} {self.unit} {shown} {self.unit}/s"

    def close(self) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and now - self.start < 2.0:
            return  # quick work needs no report in a log
        line = self._line(now).rsplit(", ", 1)[0] if self.total else self._line(now)
        sys.stderr.write(("\r" if self.tty else "") + f"{line}, done in {now - self.start:.1f}s" + (" " * 10 if self.tty else "") + "\n")
        sys.stderr.flush()


def log(message: str) -> None:
    """Print an informational line on stderr (stdout is kept for results). Example: ``log("Run folder: runs/x")``."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
