"""Stratified, seeded splits, saved as a manifest CSV (path, label, split, sha1, status).

The same rows and seed always give the same split: rows are sorted by path
before a seeded shuffle within each class.
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path

from ..errors import UserError

MANIFEST_FIELDS = ("path", "label", "split", "sha1", "status")


def _take(n: int, fraction: float, keep: int) -> int:
    """How many of n images go to a held-out split, leaving at least `keep` behind."""
    if fraction <= 0 or n <= keep:
        return 0
    return min(max(1, round(n * fraction)), n - keep)


def stratified_split(rows: list[dict], val_fraction: float, test_fraction: float, seed: int) -> list[dict]:
    """Assign 'train', 'val' or 'test' to rows whose split is empty, per class.

    Rows that already have a split keep it. Each class keeps at least one
    training image and, where it has three or more, gets at least one
    validation image.

    Example:
        >>> rows = [{"path": f"{c}/{i}.png", "label": c, "split": ""} for c in "ab" for i in range(10)]
        >>> [r["split"] for r in stratified_split(rows, 0.2, 0.0, seed=0)].count("val")
        4
    """
    out = [dict(r) for r in rows]
    by_class: dict[str, list[dict]] = {}
    for r in out:
        if not r.get("split"):
            by_class.setdefault(r["label"], []).append(r)
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r["path"])
        random.Random(f"{seed}:{label}").shuffle(members)
        n = len(members)
        n_test = _take(n, test_fraction, keep=2)
        n_val = _take(n - n_test, val_fraction, keep=1)
        for i, r in enumerate(members):
            r["split"] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def manifest_csv(rows: list[dict]) -> str:
    """Rows as manifest CSV text (sorted by split, label, path). Example: ``manifest_csv(rows)``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    order = {"train": 0, "val": 1, "test": 2}
    for r in sorted(rows, key=lambda r: (order.get(r["split"], 3), r["label"], r["path"])):
        writer.writerow({k: r.get(k, "") for k in MANIFEST_FIELDS})
    return buf.getvalue()


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a manifest CSV into row dicts. Example: ``read_manifest("runs/x/manifest.csv")[0]["label"]``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"Manifest not found: {str(path)!r}.") from None
    if rows and not {"path", "label", "split"} <= set(rows[0]):
        raise UserError(f"Manifest {str(path)!r} must have the columns path, label and split; received {', '.join(rows[0])}.")
    base = Path(path).parent
    for r in rows:
        if not os.path.isabs(r["path"]):
            r["path"] = str(base / r["path"])
    return rows
