"""Issue 2 benchmark: `imgclf demo` wall time and test accuracy, and the CLI's cold start.

    .venv/bin/python bench/demo.py                      # digits + fashion-mnist + cold start
    .venv/bin/python bench/demo.py --datasets digits    # just the digits demo

Each demo runs in a fresh temporary folder (dataset export included in the
wall time). The cold-start baseline is `python -c "import tensorflow"`,
measured in the same run: what `imgclf --help` would cost if it imported it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from imgclf.core.hardware import machine_summary  # noqa: E402

BIN = os.path.dirname(sys.executable)


def timed(cmd: list[str], cwd: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return elapsed, out.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="digits,fashion-mnist")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    imgclf = os.path.join(BIN, "imgclf")
    print(f"Machine: {machine_summary()}; load average {os.getloadavg()}")

    helps = [timed([imgclf, "--help"])[0] for _ in range(args.repeats)]
    tf_imports = [timed([sys.executable, "-c", "import tensorflow"])[0] for _ in range(3)]
    print(f"cold start `imgclf --help`: median {statistics.median(helps):.3f}s over {args.repeats} "
          f"(baseline `import tensorflow`: median {statistics.median(tf_imports):.2f}s)")

    for name in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            wall, out = timed([imgclf, "demo", "--dataset", name], cwd=tmp)
        acc = re.search(r"Test accuracy: ([0-9.]+) on (\d+)", out)
        print(f"imgclf demo --dataset {name}: {wall:.0f}s wall, test accuracy {acc.group(1)} on {acc.group(2)} images")
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
