"""`imgclf predict` as one function: files in, a table/CSV/JSON out, optionally sorted into class folders.

Streams from start to end: paths are found lazily, predicted a batch at a
time and written as they come, so a million files need no more memory than
a hundred. Unreadable files become rows with an error, never a crash.
"""

from __future__ import annotations

import itertools
import sys
from typing import Iterator

from imgclf.core.errors import UserError
from imgclf.core.progress import Progress
from imgclf.inference.loader import load
from imgclf.inference.paths import iter_image_paths
from imgclf.inference.sort_into import Sorter
from imgclf.inference.writers import write_predictions


def validate_options(top_k: int, threshold: float, batch_size: int, sort_into=None, move: bool = False) -> None:
    """Check `imgclf predict`'s options before any model loads; a `UserError` names the one that is wrong.

    Shared with the engines (`imgclf predict --engine ray`), so both refuse the same values the same way.

    Example:
        >>> validate_options(top_k=3, threshold=0.5, batch_size=64)
        >>> validate_options(top_k=0, threshold=0.5, batch_size=64)
        Traceback (most recent call last):
        imgclf.core.errors.UserError: --top-k must be at least 1, received 0.
    """
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, received {top_k}.")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold is a probability between 0 and 1, received {threshold}.")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, received {batch_size}.")
    if move and not sort_into:
        raise UserError("--move only makes sense with --sort-into DIR (it moves the files there instead of copying).")


def validate_confidence_options(reject_rate: float | None, coverage: float | None) -> None:
    """Check --reject-rate and --coverage before any model loads (shared with the engines).

    Example:
        >>> validate_confidence_options(0.05, 0.9)
        >>> validate_confidence_options(None, 1.5)
        Traceback (most recent call last):
        imgclf.core.errors.UserError: --coverage is a probability between 0 and 1 (for example 0.9), received 1.5.
    """
    if reject_rate is not None and not 0 <= reject_rate < 1:
        raise UserError(f"--reject-rate is a share of known images in [0, 1) (0 = off), received {reject_rate}.")
    if coverage is not None and not 0 < coverage < 1:
        raise UserError(f"--coverage is a probability between 0 and 1 (for example 0.9), received {coverage}.")


def predict_files(model, inputs: list[str], top_k: int = 1, fmt: str = "table", output: str | None = None,
                  threshold: float = 0.0, batch_size: int = 64, tta: str = "auto", sort_into: str | None = None,
                  move: bool = False, progress: bool | None = None, reject_rate: float | None = None,
                  coverage: float | None = None, probabilities: bool = False) -> dict:
    """Predict every image under `inputs` and write rows; returns counts ``{'images', 'errors'}``.

    `progress=None` shows a progress bar on stderr when the results are not
    going to the same terminal (``--output`` given, or stdout piped).
    `reject_rate` (None: the run's; 0: off) and `coverage` (prediction sets)
    add the ``unknown_score`` and ``prediction_set`` columns.
    `probabilities` adds every class's probability to each row (CSV: one
    ``p_<class>`` column per class; JSON: a "probabilities" object).

    Example:
        >>> counts = predict_files("runs/leaves", ["data/cat/"], fmt="csv", output="preds.csv", sort_into="sorted/",
        ...                        progress=False)
        >>> counts["images"], counts["errors"]
        (12, 0)
    """

    validate_options(top_k, threshold, batch_size, sort_into, move)
    validate_confidence_options(reject_rate, coverage)
    paths = iter_image_paths(inputs)
    first = next(paths, None)  # validate inputs before paying for the model
    if first is None:
        raise UserError(f"No image files found in {' '.join(inputs)}.")
    sorter = None
    if sort_into:
        sorter = Sorter(sort_into, move=move, inputs=inputs)
    if progress is None:
        progress = bool(output) or not sys.stdout.isatty()
    try:
        predictor = load(model, tta=tta, reject_rate=reject_rate, coverage=coverage)
        if not predictor.confidence.calibrated:
            print(f"Note: {model} is {predictor.confidence.describe()}; probabilities are the model's own and "
                  "nothing is answered 'unknown'.", file=sys.stderr)
        extra = (("unknown_score",) if predictor.unknown_threshold is not None else ()) + (("prediction_set",) if coverage else ())
        # Counting is a second directory walk, cheap next to decoding: it buys a bar with time left.
        total = sum(1 for _ in iter_image_paths(inputs)) if progress else None
        counts = {"images": 0}
        with Progress(total, "Predicting", enabled=progress) as bar:
            rows = predictor.predict_paths(itertools.chain([first], paths), batch_size=batch_size, threshold=threshold,
                                           top_k=len(predictor.classes) if probabilities else top_k)
            if probabilities:
                rows = (with_probabilities(r, top_k) for r in rows)
            counts["errors"] = write_predictions(_tap(rows, bar, sorter, counts), fmt, output, top_k, extra,
                                                 classes=predictor.classes if probabilities else None)
    finally:
        if sorter is not None:
            sorter.close()
    if sorter is not None:
        print(sorter.summary(), file=sys.stderr)
    return counts


def with_probabilities(row: dict, top_k: int) -> dict:
    """A row predicted with every class in its top_k: all of them as "probabilities", its top_k cut to `top_k`.

    Example:
        >>> with_probabilities({"class": "cat", "top_k": [["cat", 0.7], ["dog", 0.2], ["owl", 0.1]]}, 1)
        {'class': 'cat', 'top_k': [['cat', 0.7]], 'probabilities': {'cat': 0.7, 'dog': 0.2, 'owl': 0.1}}
    """
    return {**row, "top_k": row["top_k"][:top_k], "probabilities": {c: p for c, p in row["top_k"]}}


def _tap(rows: Iterator[dict], bar, sorter, counts: dict) -> Iterator[dict]:
    for row in rows:
        if sorter is not None:
            sorter.add(row)
        bar.update(1)
        counts["images"] += 1
        yield row

