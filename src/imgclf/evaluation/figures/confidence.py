"""The Confidence figure: reliability before and after calibration, and accuracy against coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.evaluation.figures.charts import save_fixed
from imgclf.evaluation.figures.curves import pyplot


def plot_confidence(conf: dict, path) -> Path:
    """Two panels, 11 x 4.6 in: reliability (accuracy per confidence bin) before and after, and selective accuracy.

    `conf` is ``metrics.json["confidence"]`` (`evaluation.confidence_metrics`).

    Example:
        >>> import json
        >>> plot_confidence(json.load(open("runs/leaves/metrics.json"))["confidence"], "confidence.png")  # an evaluated run
        PosixPath('confidence.png')
    """
    plt = pyplot()
    fig, (ax, ax_s) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    for key, colour, name in (("reliability_before", "tab:red", "before"), ("reliability_after", "tab:blue", "after")):
        r = conf[key]
        count = np.asarray(r["count"])
        has = count > 0
        ax.plot(np.asarray(r["confidence"])[has], np.asarray(r["accuracy"])[has], "o-", color=colour,
                label=f"{name} (ECE {r['ece']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence (top-1 probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Reliability, temperature {conf['temperature']:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    s = conf["selective"]
    ax_s.plot(s["coverage"], s["accuracy"], "o-", color="tab:green")
    ax_s.set(xlabel="share of images answered (most confident first)", ylabel="accuracy on them", xlim=(0, 1.02),
             title="Accuracy against coverage")
    rej = conf.get("rejection")
    if rej:
        kept = 1 - rej["rejected_share"]
        ax_s.axvline(kept, color="grey", ls=":", lw=1)
        ax_s.annotate(f"unknown rejection ({rej['method']}): {kept:.1%} kept", (kept, min(s["accuracy"])),
                      fontsize=8, ha="right")
    ax_s.grid(alpha=0.3)
    return save_fixed(fig, path)
