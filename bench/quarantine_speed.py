"""Benchmark: `imgclf check --quarantine` and `--restore` on 1,000 / 4,000 / 16,000 flagged files (issue 19, item 6).

    .venv/bin/python bench/quarantine_speed.py [--sizes 1000 4000 16000] [--root /tmp] [--repeats 3]

For each size, N tiny files (a few bytes each, in 20 class folders) are made
under a fresh folder in --root and all of them are flagged, as
`plan_quarantine` flags unusable files ({"path", "reason": "empty: ..."}).
`quarantine()` moves them to a quarantine folder on the same disk and
`restore()` puts them back; each is timed on its own (the check itself, which
decides what to flag, is not: bench/scan_check.py measures it). Printed:
files/s of each (median of the repeats), the fsyncs per call, and the machine
(CPU, cores, file system of --root). Before the journal (issue 19) the whole
log was rewritten and fsynced after every file: 4,000 files took 80 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

from imgclf.data.check.quarantine import quarantine, restore


def make_files(root: Path, n: int) -> list[dict]:
    moves = []
    for i in range(n):
        rel = f"class_{i % 20:02d}/img_{i:06d}.png"
        path = root / rel
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")  # empty: what `check` flags as unusable
        moves.append({"path": rel, "reason": "empty: the file has 0 bytes"})
    return moves


def count_fsyncs(fn):
    calls = [0]
    real = os.fsync

    def counting(fd):
        calls[0] += 1
        return real(fd)

    os.fsync = counting
    try:
        out = fn()
    finally:
        os.fsync = real
    return out, calls[0]


def machine(root: Path) -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    try:
        fs = subprocess.run(["df", "-T", str(root)], check=False, capture_output=True, text=True).stdout.splitlines()[-1].split()
        fs_desc = f"{fs[1]} on {fs[0]}"
    except (OSError, IndexError):
        fs_desc = "unknown file system"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {root}: {fs_desc}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--root", default=tempfile.gettempdir())
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {machine(Path(args.root))}")
    print(f"{'files':>7} {'quarantine files/s':>19} {'restore files/s':>16} {'fsyncs (q/r)':>13}")
    for n in args.sizes:
        q_rates, r_rates = [], []
        for _ in range(args.repeats):
            work = Path(tempfile.mkdtemp(prefix="imgclf-qbench-", dir=args.root))
            try:
                data, dest = work / "data", work / "quarantine"
                data.mkdir()
                moves = make_files(data, n)
                t = time.perf_counter()
                moved, q_syncs = count_fsyncs(partial(quarantine, data, moves, dest))
                q_rates.append(n / (time.perf_counter() - t))
                assert len(moved) == n
                t = time.perf_counter()
                result, r_syncs = count_fsyncs(partial(restore, dest))
                r_rates.append(n / (time.perf_counter() - t))
                assert len(result["restored"]) == n and not result["kept"]
            finally:
                shutil.rmtree(work, ignore_errors=True)
        print(f"{n:>7} {statistics.median(q_rates):>19,.0f} {statistics.median(r_rates):>16,.0f} {f'{q_syncs}/{r_syncs}':>13}")


if __name__ == "__main__":
    main()
