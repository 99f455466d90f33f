"""What this machine can do fast: the CPU's vector extensions, the precision to train in, the devices asked for."""

from __future__ import annotations

import os
import platform

from imgclf.core.errors import UserError


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where there is none). Example: ``"avx2" in cpu_flags()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU model name, for benchmark reports. Example: ``cpu_name()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_summary() -> str:
    """One line describing the machine. Example: ``machine_summary()``."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def choose_precision(requested: str = "auto", flags: set[str] | None = None, gpus: list | None = None) -> str:
    """Pick the Keras dtype policy for `requested` ('auto', 'float32', 'bfloat16', 'float16').

    auto: bfloat16 on a GPU of compute capability 8.0 or newer, float16 on 7.x,
    bfloat16 on a CPU with AVX512_BF16 or AMX (measured 1.5x faster training
    and 2.4x faster prediction here), float32 anywhere else.

    Example:
        >>> choose_precision("auto", flags={"avx512_bf16"}, gpus=[])
        'mixed_bfloat16'
        >>> choose_precision("auto", flags={"avx2"}, gpus=[])
        'float32'
    """
    if requested == "float32":
        return "float32"
    if requested in ("bfloat16", "float16"):
        return f"mixed_{requested}"
    if gpus:
        capability = min(g.get("compute_capability", (0, 0)) for g in gpus)
        if capability >= (8, 0):
            return "mixed_bfloat16"
        if capability >= (7, 0):
            return "mixed_float16"
        return "float32"
    flags = cpu_flags() if flags is None else flags
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return "mixed_bfloat16"
    return "float32"


def gpu_details() -> list[dict]:
    """Visible GPUs with their compute capability (imports TensorFlow). Example: ``gpu_details()``."""
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append({"name": details.get("device_name", gpu.name), "compute_capability": tuple(details.get("compute_capability", (0, 0)))})
    return out


def parse_devices(devices: str) -> str | list[int]:
    """'auto', 'cpu' or a list of GPU indices from ``--devices``.

    Example:
        >>> parse_devices("0,1"), parse_devices("cpu"), parse_devices("gpu:1")
        ([0, 1], 'cpu', [1])
    """
    text = (devices or "auto").strip().lower()
    if text in ("auto", "cpu"):
        return text
    try:
        out = [int(p.strip().removeprefix("/").removeprefix("gpu:")) for p in text.split(",") if p.strip()]
    except ValueError:
        out = []
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise UserError(f"Invalid devices: expected auto, cpu or GPU indices such as 0,1 (no repeats), received {devices!r}.")
    return out
