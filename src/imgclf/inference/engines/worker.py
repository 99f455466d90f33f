"""The per-batch work of every engine: the same decoder and model call as `imgclf predict`.

`BatchPredictor` is what an engine runs on each worker (a Ray actor): it loads
the model once, in its constructor, and then turns batches of inputs (file
paths, or encoded image bytes from TFRecord shards) into prediction rows
through `Predictor.predict_paths`, the very function behind `imgclf predict`,
so both give the same classes, the same calibrated probabilities, the same
``unknown`` answers and prediction sets (the run's confidence, with
`reject_rate` and `coverage` as `imgclf predict` takes them). An unreadable
image is a row with its reason in ``error``, never an exception.
This module imports neither Ray nor TensorFlow itself.
"""

from __future__ import annotations

import os

import pyarrow as pa
from pyarrow import fs

from imgclf.core.errors import UserError
from imgclf.data.decode import DecodeError, DecodeErrorKind, read_bytes
from imgclf.inference.loader import load

# Column names of the tables that pass between engine workers and the driver.
PATH, SOURCE = "path", "source"  # input: the name shown in the output, and what to decode (a path or bytes)
CLASS, PROBABILITY, TOP_CLASSES, TOP_PROBS, ERROR = "class", "probability", "top_classes", "top_probs", "error"
UNKNOWN_SCORE, PREDICTION_SET = "unknown_score", "prediction_set"  # null where the row has none (rejection off, no --coverage)


def read_source(path: str) -> bytes:
    """The bytes of a local path or of a URL that pyarrow's filesystems understand (s3://, gs://, hdfs://).

    Raises `DecodeError` (which becomes an error row) when the file cannot be read.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.jpg")
        >>> _ = open(path, "wb").write(b"\\xff\\xd8\\xff")
        >>> read_source(path)[:2], read_source("file://" + path)[:2]
        (b'\\xff\\xd8', b'\\xff\\xd8')
        >>> read_source(path + ".missing")
        Traceback (most recent call last):
        imgclf.data.decode.DecodeError: file not found (or a broken symbolic link)
    """
    if "://" not in path or path.startswith("file://"):
        return read_bytes(path[len("file://"):] if path.startswith("file://") else path)

    try:
        filesystem, inner = fs.FileSystem.from_uri(path)
        with filesystem.open_input_file(inner) as f:
            return f.read()
    except (OSError, ValueError) as e:  # pyarrow raises OSError subclasses for missing files and denied access
        raise DecodeError(f"unreadable: {e}", DecodeErrorKind.UNREADABLE) from None


class BatchPredictor:
    """Load a model once, then predict batches of images as rows (`imgclf predict`'s rows).

    Example:
        >>> worker = BatchPredictor("runs/leaves", top_k=2)
        >>> row = worker.predict_rows(["a.png"], ["a.png"])[0]
        >>> row["class"] in ("bird", "cat", "dog"), len(row["top_k"])
        (True, 2)
    """

    def __init__(self, model: str, top_k: int = 1, threshold: float = 0.0, tta: str | None = None, batch_size: int = 64,
                 reject_rate: float | None = None, coverage: float | None = None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

        try:
            # tta None: load()'s default, as `imgclf predict`; reject_rate None: the run's; coverage None: no sets
            self.predictor = load(model, **({} if tta is None else {"tta": tta}), reject_rate=reject_rate, coverage=coverage)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged model file: one clear line at the driver, not a worker traceback
            raise UserError(f"Cannot load the model {model!r} on a worker: {type(e).__name__}: {e}. Check that the "
                            "file is complete (re-export it with `imgclf export`) and readable from every node.") from None
        self.top_k, self.threshold, self.batch_size = top_k, threshold, batch_size

    def predict_rows(self, names: list[str], sources: list) -> list[dict]:
        """Rows for one batch: `names` are what the output shows, `sources` paths or encoded bytes (None: missing).

        Example:
            >>> worker = BatchPredictor("runs/leaves")
            >>> rows = worker.predict_rows(["shard-0/7.png", "gone.png"], [open("b.png", "rb").read(), "gone.png"])
            >>> [r["path"] for r in rows], rows[1]["error"]  # doctest: +ELLIPSIS
            (['shard-0/7.png', 'gone.png'], 'file not found...')
        """
        items = [_fetch(s) for s in sources]
        readable = [i for i, item in enumerate(items) if not isinstance(item, DecodeError)]
        # predict_paths decodes in a thread pool and calls the model once per batch: the code of `imgclf predict`.
        rows = self.predictor.predict_paths([items[i] for i in readable], top_k=self.top_k,
                                            batch_size=self.batch_size, threshold=self.threshold)
        by_index = dict(zip(readable, rows))
        out = []
        for i, name in enumerate(names):
            row = by_index.get(i)
            if row is None:
                row = {"path": name, "class": "", "probability": float("nan"), "top_k": [], "error": items[i].reason}
            out.append({**row, "path": name})
        return out

    def predict_table(self, batch):
        """A pyarrow Table of predictions for a pyarrow batch with columns `path` and `source`.

        Example:
            >>> worker = BatchPredictor("runs/leaves")
            >>> worker.predict_table(pa.table({"path": ["a.png"], "source": ["a.png"]})).num_rows
            1
        """
        names = [str(n) for n in batch.column(PATH).to_pylist()]
        sources = batch.column(SOURCE).to_pylist() if SOURCE in batch.column_names else names
        return rows_to_table(self.predict_rows(names, sources))

    __call__ = predict_table  # engines that map a callable class over batches (Ray Data's map_batches) call this


def _fetch(source):
    """A path becomes bytes here (so URLs work and unreadable files become error rows); bytes stay bytes."""
    if source is None:
        return DecodeError("no image bytes in this record", DecodeErrorKind.EMPTY)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        return read_source(str(source))
    except DecodeError as e:
        return e


def rows_to_table(rows: list[dict]):
    """Prediction rows as a pyarrow Table with flat, typed columns (top-k as two list columns).

    Every table has the ``unknown_score`` and ``prediction_set`` columns
    (null in rows without them), so all batches of a job share one schema.

    Example:
        >>> rows_to_table([{"path": "a.jpg", "class": "cat", "probability": 0.9,
        ...                 "top_k": [["cat", 0.9]], "error": ""}]).column_names
        ['path', 'class', 'probability', 'top_classes', 'top_probs', 'error', 'unknown_score', 'prediction_set']
    """

    return pa.table({
        PATH: pa.array([r["path"] for r in rows], pa.string()),
        CLASS: pa.array([r["class"] for r in rows], pa.string()),
        PROBABILITY: pa.array([None if r["error"] else r["probability"] for r in rows], pa.float64()),
        TOP_CLASSES: pa.array([[c for c, _ in r["top_k"]] for r in rows], pa.list_(pa.string())),
        TOP_PROBS: pa.array([[p for _, p in r["top_k"]] for r in rows], pa.list_(pa.float64())),
        ERROR: pa.array([r["error"] for r in rows], pa.string()),
        UNKNOWN_SCORE: pa.array([r.get(UNKNOWN_SCORE) for r in rows], pa.float64()),
        PREDICTION_SET: pa.array([r.get(PREDICTION_SET) for r in rows], pa.list_(pa.string())),
    })


def table_rows(table) -> list[dict]:
    """The inverse of `rows_to_table`: rows as `imgclf predict` yields them (the extra keys only where set).

    Example:
        >>> rows = [{"path": "a.jpg", "class": "cat", "probability": 0.9, "top_k": [["cat", 0.9], ["dog", 0.1]], "error": ""},
        ...         {"path": "b.jpg", "class": "unknown", "probability": 0.6, "top_k": [["dog", 0.6]], "error": "",
        ...          "unknown_score": 41.5, "prediction_set": ["dog", "cat"]}]
        >>> table_rows(rows_to_table(rows)) == rows
        True
    """
    out = []
    for r in table.to_pylist():
        prob = r[PROBABILITY]
        row = {"path": r[PATH], "class": r[CLASS], "probability": float("nan") if prob is None else prob,
               "top_k": [[c, p] for c, p in zip(r[TOP_CLASSES] or [], r[TOP_PROBS] or [])], "error": r[ERROR]}
        row.update({k: r[k] for k in (UNKNOWN_SCORE, PREDICTION_SET) if r.get(k) is not None})
        out.append(row)
    return out
