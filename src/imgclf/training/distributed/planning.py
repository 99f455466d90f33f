"""Where training runs, decided without TensorFlow: the strategy, its devices, this process's role.

`plan_strategy` turns ``--devices``, ``--distributed``, the visible GPUs and
``TF_CONFIG`` into a `Plan`; `strategy.Distribution` then builds the
TensorFlow strategy from it. Batch and learning-rate scaling follow Goyal et
al. 2017: ``batch_size`` is per replica, the rate is multiplied by the replicas.

Example:
    >>> plan_strategy("auto", "none", gpus=["/gpu:0", "/gpu:1"]).scaling(64, 0.002)
    (128, 2.0)
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field

from imgclf.core.errors import UserError
from imgclf.core.hardware import parse_devices

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


@dataclass
class Plan:
    """Where training runs: the strategy, its devices and this process's role.

    Example:
        >>> plan_strategy("auto", "none", gpus=["/gpu:0", "/gpu:1"]).kind
        'mirrored'
    """

    kind: str  # single | mirrored | multi-worker
    devices: list[str] = field(default_factory=list)  # local devices used; [] = TensorFlow's default placement
    workers: int = 1
    task: str = "worker 0"
    is_chief: bool = True
    on_cpu: bool = True
    reason: str = ""

    @property
    def replicas(self) -> int:
        """Replicas that each compute a gradient on batch_size images per step."""
        return self.workers * max(len(self.devices), 1)

    def scaling(self, batch_size: int, lr, scale_lr: bool = True) -> tuple[int, float]:
        """(global batch, learning-rate multiplier). Example: ``Plan("mirrored", ["/gpu:0", "/gpu:1"]).scaling(64, 1e-3)`` is (128, 2.0)."""
        return batch_size * self.replicas, float(self.replicas) if scale_lr and lr != "auto" else 1.0

    def describe(self, batch_size: int, lr, scale_lr: bool = True) -> str:
        """One line for the log: strategy, devices, role, batch and learning-rate scaling.

        Example:
            >>> Plan("mirrored", ["/gpu:0", "/gpu:1"], on_cpu=False).describe(64, 0.002)
            'Distribution: MirroredStrategy on /gpu:0, /gpu:1: 2 replicas, batch 64 per replica = global batch 128, lr 0.002 x 2 = 0.004 (linear scaling)'
        """
        where = ", ".join(self.devices) or ("CPU" if self.on_cpu else "GPU")
        if self.kind == "single":
            return f"Distribution: one device ({where}){': ' + self.reason if self.reason else ''}"
        name = "MirroredStrategy" if self.kind == "mirrored" else "MultiWorkerMirroredStrategy"
        text = f"Distribution: {name} on {where}"
        if self.kind == "multi-worker":
            text += f", {self.workers} workers, this is {self.task}{' (chief: writes the run)' if self.is_chief else ''}"
        global_batch, scale = self.scaling(batch_size, lr, scale_lr)
        text += f": {self.replicas} replicas, batch {batch_size} per replica = global batch {global_batch}"
        if lr == "auto":
            return text
        if scale != 1.0:
            return text + f", lr {lr:g} x {scale:g} = {lr * scale:g} (linear scaling)"
        return text + f", lr {lr:g} (not scaled: --no-scale-lr)"


def loopback_tf_configs(workers: int) -> list[dict]:
    """One TF_CONFIG per worker for a multi-worker job on this machine alone, on free loopback ports.

    For trying `--distributed multi-worker` before taking it to a cluster (and
    for imgclf's own tests and benchmark): start one `imgclf train` per entry,
    each with its entry as the TF_CONFIG variable (JSON).

    Example:
        >>> [c["task"] for c in loopback_tf_configs(2)]
        [{'type': 'worker', 'index': 0}, {'type': 'worker', 'index': 1}]
    """

    socks = [socket.socket() for _ in range(workers)]
    try:
        for s in socks:  # all bound at once, so the ports differ
            s.bind(("127.0.0.1", 0))
        hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()
    return [{"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}} for i in range(workers)]


def parse_tf_config(text: str | None = None) -> dict | None:
    """The cluster description in ``TF_CONFIG`` (or `text`), checked; None when unset.

    Example:
        >>> parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')["task"]
        {'type': 'worker', 'index': 1}
    """
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text or not text.strip():
        return None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}). Expected for example: {TF_CONFIG_EXAMPLE}") from None
    cluster, task = (cfg.get("cluster"), cfg.get("task")) if isinstance(cfg, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task:
        raise UserError(f"TF_CONFIG needs a 'cluster' mapping and a 'task' with 'type' and 'index', received {text!r}. "
                        f"Expected for example: {TF_CONFIG_EXAMPLE}")
    unsupported = sorted(set(cluster) - {"chief", "worker"})
    if unsupported:
        raise UserError(f"TF_CONFIG lists {', '.join(unsupported)} tasks; imgclf trains with MultiWorkerMirroredStrategy, "
                        "which takes only 'chief' and 'worker' tasks. Remove the others from the cluster.")
    kind, index = task["type"], task.get("index", 0)
    members = cluster.get(kind)
    if kind not in ("chief", "worker") or not isinstance(members, list) or not isinstance(index, int) \
            or not 0 <= index < len(members):
        raise UserError(f"TF_CONFIG task {task!r} is not in its cluster {cluster!r}: the task type must be 'chief' or "
                        "'worker' and its index must point into that list.")
    return cfg


def role(tf_config: dict) -> tuple[int, str, bool]:
    """(number of workers, task name, is chief) for a parsed TF_CONFIG. The chief is the 'chief'
    task, or worker 0 when the cluster has none (TensorFlow's convention).

    Example:
        >>> role({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})
        (2, 'worker 0', True)
    """
    cluster, task = tf_config["cluster"], tf_config["task"]
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    kind, index = task["type"], task.get("index", 0)
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not cluster.get("chief"))
    return workers, f"{kind} {index}", is_chief


def plan_strategy(devices: str, distributed: str, gpus: list[str], tf_config: dict | None = None) -> Plan:
    """Choose the strategy from ``--devices``, ``--distributed``, the visible GPUs and TF_CONFIG (pure: no TensorFlow).

    Example:
        >>> plan_strategy("auto", "none", gpus=[]).kind, plan_strategy("0", "none", gpus=["/gpu:0", "/gpu:1"]).devices
        ('single', ['/gpu:0'])
    """
    wanted = parse_devices(devices)
    if wanted == "cpu":
        local, on_cpu = [], True
    elif wanted == "auto":
        local, on_cpu = list(gpus), not gpus
    else:
        missing = [i for i in wanted if i >= len(gpus)]
        if missing:
            raise UserError(f"--devices asks for GPU {', '.join(map(str, missing))}, but this machine shows "
                            f"{len(gpus)} GPU(s){': ' + ', '.join(gpus) if gpus else ''}. Pick indices below {len(gpus)}, "
                            "or --devices cpu.")
        local, on_cpu = [gpus[i] for i in wanted], False
    if distributed == "multi-worker":
        if tf_config is None:
            raise UserError("--distributed multi-worker needs the TF_CONFIG environment variable, which names every "
                            f"worker and this one's role, for example TF_CONFIG='{TF_CONFIG_EXAMPLE}'. "
                            "Kubernetes (TFJob), Vertex AI and the SLURM script of docs/guide/scaling.md set it.")
        workers, task, chief = role(tf_config)
        return Plan("multi-worker", local, workers, task, chief, on_cpu)
    if len(local) > 1:
        return Plan("mirrored", local, on_cpu=False)
    reason = "--devices cpu" if wanted == "cpu" else ("no GPU visible" if on_cpu else "one GPU")
    return Plan("single", local, on_cpu=on_cpu, reason=reason)
