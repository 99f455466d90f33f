"""Batch inference on Ray Data: `map_batches` over a pool of actors, each holding the model once.

The same code runs on a laptop and on a cluster. Without an address, Ray
starts a local instance for the job and stops it afterwards; with
``RAY_ADDRESS`` set (or ``--engine-option address=...``), the job joins that
cluster: `ray job submit -- imgclf predict ... --engine ray` on a KubeRay or
VM cluster, or ``address=ray://head:10001`` from a laptop. Workers load the
model from MODEL's path, so on a cluster it must be a path every node can
read (a shared file system), as must the images (or use s3://, gs:// URLs).

Prediction rows come back to the driver in input order (Ray Data's
``preserve_order``), where one output file is written: rows are small, so
the driver is never the bottleneck for the decoding and the model.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

import pyarrow as pa

from imgclf.core.errors import UserError
from imgclf.inference.engines.inputs import Inputs
from imgclf.inference.engines.worker import PATH, SOURCE, BatchPredictor, table_rows

# Engine options that configure the connection (ray.init) or the pool; anything else goes to map_batches.
INIT_OPTIONS = ("address", "runtime_env", "namespace", "object_store_memory", "num_cpus_local")
POOL_OPTIONS = ("actors",)
SHARD_IMAGE, SHARD_NAME = "image/encoded", "image/filename"  # tf.train.Example features written by `imgclf datasets pack`


def _connect(options: dict) -> bool:
    """Connect to the cluster named by the options or RAY_ADDRESS, or start a local one; True if we started it."""
    # lazy: optional extra: imgclf[ray]
    import ray

    if ray.is_initialized():  # an application (or a test) that already called ray.init keeps its cluster
        return False
    address = options.get("address") or os.environ.get("RAY_ADDRESS")
    # Worker logs stay in Ray's log folder (and dashboard): errors that matter reach the driver as exceptions.
    kwargs = {"logging_level": logging.ERROR, "log_to_driver": False}
    for key in ("runtime_env", "namespace"):
        if key in options:
            kwargs[key] = options[key]
    if address:
        ray.init(address=address, **kwargs)
    else:
        if "num_cpus_local" in options:
            kwargs["num_cpus"] = int(options["num_cpus_local"])
        if "object_store_memory" in options:
            kwargs["object_store_memory"] = int(options["object_store_memory"])
        ray.init(include_dashboard=False, **kwargs)
    return True


def _dataset(inputs: Inputs):
    # lazy: optional extra: imgclf[ray]
    import ray

    if inputs.paths:
        return ray.data.from_items([{PATH: p, SOURCE: p} for p in inputs.paths])
    # A folder URL holds shards.json and manifest.csv beside the shards: read the .tfrecord files only.
    # Reading and renaming ask for no CPU of their own: the actor pool may hold every CPU of the cluster (the
    # default), and a read waiting for a free CPU would then wait for ever (measured: a hang on 2 cores).
    ds = ray.data.read_tfrecords(inputs.shards, file_extensions=["tfrecord", "tfrecords", "tfrec"]
                                 if any(s.endswith("/") for s in inputs.shards) else None, num_cpus=0)
    missing = {SHARD_IMAGE} - set(ds.schema().names)
    if missing:
        raise UserError(f"The shards {inputs.shards[0]!r}... have no {SHARD_IMAGE!r} feature. Expected TFRecord "
                        f"files of tf.train.Example written by `imgclf datasets pack`; found {ds.schema().names}.")
    names = ds.schema().names

    def rename(batch):
        source = batch.column(SHARD_IMAGE)
        name = batch.column(SHARD_NAME) if SHARD_NAME in names else pa.array([""] * batch.num_rows, pa.string())
        name = pa.array([n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in name.to_pylist()], pa.string())
        return pa.table({PATH: name, SOURCE: source})

    return ds.map_batches(rename, batch_format="pyarrow", num_cpus=0)


def _pool_size(options: dict, cpus_per_actor: float) -> int:
    # lazy: optional extra: imgclf[ray]
    import ray

    if "actors" in options:
        n = int(options["actors"])
        if n < 1:
            raise UserError(f"--engine-option actors=N needs N of at least 1, received {n}.")
        return n
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus // max(cpus_per_actor, 1e-9)))


def _unwrap(error: Exception) -> Exception:
    """The UserError inside a Ray error (a bad model file found by a worker), or the error itself.

    Ray chains the worker's exception as ``cause`` for task errors, but an actor that dies in its
    constructor (ActorDiedError) carries only the worker's traceback as text: read it from there.
    """
    seen = error
    for _ in range(8):
        if isinstance(seen, UserError):
            return UserError(str(seen).strip().splitlines()[-1])
        seen = getattr(seen, "cause", None) or seen.__cause__
        if seen is None:
            break
    marker = f"{UserError.__module__}.{UserError.__name__}: "
    text = str(error)
    if marker in text:
        return UserError(text.rsplit(marker, 1)[1].strip().splitlines()[0])
    return error


def run_ray(model: str, inputs: Inputs, options: dict, top_k: int = 1, threshold: float = 0.0, tta: str | None = None,
            batch_size: int = 64, reject_rate: float | None = None, coverage: float | None = None) -> Iterator[dict]:
    """Yield prediction rows, in input order, computed by a Ray Data actor pool.

    The rows are `imgclf predict`'s: calibrated probabilities, ``unknown``
    past the run's unknown-score threshold (`reject_rate` None: the run's;
    0: off) with its ``unknown_score``, and a ``prediction_set`` for `coverage`.

    Example:
        >>> from imgclf.inference.engines.inputs import resolve_inputs
        >>> rows = list(run_ray("runs/leaves/exports/model.tflite", resolve_inputs(["data/"]), {"actors": 1}))  # Ray on this machine
        >>> len(rows), rows[0]["class"] in ("bird", "cat", "dog")
        (36, True)
    """
    # lazy: optional extra: imgclf[ray]
    import ray
    import ray.data

    started = _connect(options)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the output lists files in the order `imgclf predict` does
        ctx.enable_progress_bars = False  # imgclf's own bar counts rows as they arrive
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no plan dumps or timing notes between the user's rows
        extra = {k: v for k, v in options.items() if k not in INIT_OPTIONS + POOL_OPTIONS}
        extra.setdefault("num_cpus", 1)
        ds = _dataset(inputs).map_batches(
            BatchPredictor,
            fn_constructor_kwargs={"model": model, "top_k": top_k, "threshold": threshold, "tta": tta,
                                   "batch_size": batch_size, "reject_rate": reject_rate, "coverage": coverage},
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=_pool_size(options, float(extra["num_cpus"]))),
            **extra,
        )
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                yield from table_rows(batch)
        except ray.exceptions.RayError as e:
            raise _unwrap(e) from None
    except (TypeError, ValueError) as e:
        # Ray checks the pass-through options itself: "unexpected keyword argument" or "Invalid option keyword".
        if "unexpected keyword argument" in str(e) or "Invalid option keyword" in str(e):
            raise UserError(f"Ray does not take that --engine-option: {str(e).split('. Valid ones')[0]}. Options: "
                            "address, actors, num_cpus, num_gpus, memory, runtime_env, and map_batches' own keywords.") from None
        raise
    finally:
        if started:
            ray.shutdown()
