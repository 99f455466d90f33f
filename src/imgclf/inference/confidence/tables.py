"""Quantile tables: a sample of scores summed up in 1,001 numbers, small enough for JSON and export metadata.

Example:
    >>> t = quantile_table(np.arange(1, 101, dtype=float))
    >>> t["n"], table_quantile(t, 0.5), table_quantile(t, 1.0)
    (100, 50.0, 100.0)
"""

from __future__ import annotations

import math

import numpy as np

LEVELS = 1000  # the table holds the quantiles at levels 0, 1/1000, ..., 1


def quantile_table(values) -> dict:
    """The quantiles of `values` at 1,001 evenly spaced levels (inverted CDF: each is one of the values).

    Example:
        >>> quantile_table([3.0, 1.0, 2.0])["q"][:2], quantile_table([3.0, 1.0, 2.0])["q"][-1]
        ([1.0, 1.0], 3.0)
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    if not len(v):
        return {"n": 0, "q": []}
    idx = np.clip(np.ceil(np.linspace(0, 1, LEVELS + 1) * len(v)).astype(int) - 1, 0, len(v) - 1)
    return {"n": int(len(v)), "q": [float(f"{x:.7g}") for x in v[idx]]}


def table_quantile(table: dict, level: float) -> float:
    """The smallest tabled value at or above `level` (rounded up to the table's grid: conservative).

    Example:
        >>> table_quantile(quantile_table([1.0, 2.0, 3.0, 4.0]), 0.74)
        3.0
    """
    q = table["q"]
    if not q:
        return math.inf
    i = min(LEVELS, max(0, math.ceil(round(level * LEVELS, 9))))
    return float(q[i])


def conformal_level(n: int, coverage: float) -> float:
    """The level of the split-conformal quantile: ceil((n + 1) * coverage) / n (above 1 = no finite bound).

    Example:
        >>> conformal_level(99, 0.9)
        0.9090909090909091
    """
    return math.ceil((n + 1) * coverage) / max(n, 1)
