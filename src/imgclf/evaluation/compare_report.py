"""compare.html and disagreements.png: the verdict, the numbers and the images one run gets right and the other wrong.

Like report.html, one self-contained page (the picture inlined as base64
PNG, the style sheet in the page, no scripts) that opens offline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from imgclf.core.fs import atomic_write_text
from imgclf.data.decode import DecodeError, decode_image
from imgclf.evaluation.figures.grids import RIGHT, WRONG, image_grid
from imgclf.evaluation.report import STYLE

SHOWN = 12  # images per side of the disagreement grid
THUMB = 96  # pixels of each shown image


def disagreement_grid(paths: list[str], y_true, pred_a, pred_b, classes: list[str], path, shown: int = SHOWN) -> Path:
    """A grid of the images only A gets right (first) and only B gets right, captioned with both answers.

    Example:
        >>> disagreement_grid(["a.png", "b.png"], [0, 1], [0, 0], [1, 1], ["cat", "dog"], "dis.png")
        PosixPath('dis.png')
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    only_a = np.flatnonzero((pred_a == y_true) & (pred_b != y_true))[:shown]
    only_b = np.flatnonzero((pred_a != y_true) & (pred_b == y_true))[:shown]
    images, captions, colors = [], [], []
    for index, side in [(i, "A") for i in only_a] + [(i, "B") for i in only_b]:
        try:
            images.append(decode_image(paths[index], THUMB))
        except (DecodeError, OSError):
            images.append(np.zeros((THUMB, THUMB, 3), np.uint8))
        captions.append(f"{classes[y_true[index]]}: A {classes[pred_a[index]]}, B {classes[pred_b[index]]}")
        colors.append(WRONG if side == "A" else RIGHT)
    title = (f"Only A right ({int(np.sum((pred_a == y_true) & (pred_b != y_true)))}, red captions) | "
             f"only B right ({int(np.sum((pred_a != y_true) & (pred_b == y_true)))}, green); caption: true: A's, B's answer")
    return image_grid(np.asarray(images) if images else np.zeros((0, THUMB, THUMB, 3), np.uint8), captions, colors,
                      title, path)


def _pct(v: float) -> str:
    return f"{v * 100:+.2f}"


def _rows(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_compare_report(folder, result: dict, paths: list[str], y_true, pred_a, pred_b, classes: list[str]) -> Path:
    """Write disagreements.png and compare.html into `folder` from `compare_runs`' result; return the page's path.

    Example:
        >>> r = {"run_a": "a", "run_b": "b", "images": 2, "images_from": "data/", "answers": {"a": "x", "b": "y"},
        ...      "accuracy": {"a": 0.5, "b": 1.0}, "alpha": 0.05, "verdict": "No significant difference.",
        ...      "mcnemar": {"only_a": 0, "only_b": 1, "both_right": 1, "both_wrong": 0, "p_value": 1.0},
        ...      "bootstrap": {"level": 0.95, "resamples": 10, "accuracy": {"difference": 0.5, "low": 0.0, "high": 1.0},
        ...                    "macro_f1": {"difference": 0.6, "low": 0.0, "high": 1.0}}, "per_class": []}
        >>> write_compare_report(".", r, ["a.png", "b.png"], [0, 1], [0, 0], [0, 1], ["cat", "dog"]).name
        'compare.html'
    """
    folder = Path(folder)
    grid = disagreement_grid(paths, y_true, pred_a, pred_b, classes, folder / "disagreements.png")
    m, boot = result["mcnemar"], result["bootstrap"]
    level = f"{boot['level'] * 100:.0f}%"
    numbers = _rows(["", "A", "B", "B - A (points)", f"{level} interval"], [
        ["accuracy", f"{result['accuracy']['a']:.4f}", f"{result['accuracy']['b']:.4f}",
         _pct(boot["accuracy"]["difference"]), f"{_pct(boot['accuracy']['low'])} to {_pct(boot['accuracy']['high'])}"],
        ["macro F1", "", "", _pct(boot["macro_f1"]["difference"]),
         f"{_pct(boot['macro_f1']['low'])} to {_pct(boot['macro_f1']['high'])}"],
    ])
    pairs = _rows(["", "B right", "B wrong"], [["A right", m["both_right"], m["only_a"]], ["A wrong", m["only_b"], m["both_wrong"]]])
    per_class = _rows(["class", "images", "recall A", "recall B", "recall B - A", "F1 A", "F1 B", "F1 B - A"], [
        [r["class"], r["support"], f"{r['recall_a']:.4f}", f"{r['recall_b']:.4f}", _pct(r["recall_delta"]),
         f"{r['f1_a']:.4f}", f"{r['f1_b']:.4f}", _pct(r["f1_delta"])] for r in result["per_class"]])
    picture = base64.b64encode(grid.read_bytes()).decode("ascii")
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>imgclf compare</title><style>{STYLE}</style></head>
<body><header><h1>A: {html.escape(result['run_a'])} &nbsp;vs&nbsp; B: {html.escape(result['run_b'])}</h1>
<p>{result['images']} images from {html.escape(str(result['images_from']))}; A: {html.escape(result['answers']['a'])}; B: {html.escape(result['answers']['b'])}</p></header>
<nav><a href="#verdict">Verdict</a><a href="#numbers">Numbers</a><a href="#per-class">Per class</a><a href="#disagreements">Disagreements</a></nav>
<main><h2 id=verdict>Verdict</h2><p><b>{html.escape(result['verdict'])}</b></p>
<p class=muted>McNemar's exact test looks only at the images exactly one run gets right ({m['only_a']} only A, {m['only_b']} only B):
if the runs were equally good, each of those would go either way with probability 1/2. p = {m['p_value']:.4g}; significance level {result['alpha']:g}.
The intervals resample the images {boot['resamples']} times, the same resample for both runs.</p>
<h2 id=numbers>Numbers</h2>{numbers}<h3>Paired answers</h3>{pairs}
<h2 id=per-class>Per class</h2>{per_class}
<h2 id=disagreements>Images one run gets right and the other wrong</h2>
<figure><img alt="disagreements" src="data:image/png;base64,{picture}"><figcaption>Up to {SHOWN} of each kind; every one is in compare.json's folder as the runs' predictions.</figcaption></figure>
</main></body></html>
"""
    return atomic_write_text(folder / "compare.html", page)
