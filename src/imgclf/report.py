"""report.html: one self-contained page (pictures inlined) with settings, data, metrics and plots."""

from __future__ import annotations

import base64
import html
import json

from .run import atomic_write_text

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}
.big{font-size:1.6rem;font-weight:600}.muted{color:#666}img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f4f6f8;border-radius:8px;padding:.8rem 1.2rem}
"""


def _img(path) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(run, evaluation) -> str:
    """Write run/report.html from an `Evaluation` and the run's files; return its path.

    Example:
        >>> write_report(run, imgclf.evaluate(run, plots=False))  # doctest: +SKIP
    """
    m = evaluation.metrics
    summary = json.loads(run.file("summary.json").read_text()) if run.file("summary.json").exists() else {}
    config = run.file("config.yaml").read_text() if run.file("config.yaml").exists() else ""
    cards = [("accuracy", m["accuracy"]), ("balanced accuracy", m["balanced_accuracy"]), ("macro F1", m["macro_avg"]["f1"])]
    for k in (3, 5):
        if f"top{k}_accuracy" in m:
            cards.append((f"top-{k} accuracy", m[f"top{k}_accuracy"]))
    parts = [
        f"<h1>imgclf report: {html.escape(run.path.name)}</h1>",
        f"<p class=muted>Evaluated on {html.escape(m.get('evaluated_on', ''))}, {m['num_samples']} images.</p>",
        '<div class="cards">' + "".join(f'<div class="card"><div class="muted">{n}</div><div class="big">{v:.4f}</div></div>' for n, v in cards) + "</div>",
        "<h2>Per class</h2>",
        _table(["class", "precision", "recall", "F1", "support"],
               [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in m["per_class"].items()]
               + [[n.replace("_", " "), m[n]["precision"], m[n]["recall"], m[n]["f1"], ""] for n in ("macro_avg", "weighted_avg")]),
        "<h2>Confusion matrix</h2>", _img(run.file("plots") / "confusion_matrix.png"),
    ]
    if m.get("most_confused"):
        parts += ["<h3>Most confused pairs</h3>", _table(["true", "predicted", "count"], [[p["true"], p["predicted"], p["count"]] for p in m["most_confused"]])]
    parts += ["<h2>Training</h2>", _img(run.file("plots") / "training_curves.png")]
    if m.get("top_losses"):
        parts += ["<h2>Top losses</h2>",
                  "<table><tr><th>file</th><th>true</th><th>predicted</th><th>probability</th></tr>"
                  + "".join(f'<tr><td><a href="file://{html.escape(t["path"])}">{html.escape(t["path"])}</a></td><td>{html.escape(t["true"])}</td>'
                            f'<td>{html.escape(t["predicted"])}</td><td>{t["probability"]:.3f}</td></tr>' for t in m["top_losses"])
                  + "</table>"]
    if summary:
        counts = summary.get("class_counts", {})
        if counts:
            splits = list(counts)
            parts += ["<h2>Data</h2>", _table(["class"] + splits, [[c] + [counts[s].get(c, 0) for s in splits] for c in next(iter(counts.values()))])]
        skipped = summary.get("skipped", [])
        parts.append(f"<p>{len(skipped)} file(s) skipped during training.</p>")
        if skipped:
            parts.append(_table(["file", "reason"], [[s["path"], s["reason"]] for s in skipped[:200]]))
    parts += ["<h2>Settings</h2>", f"<pre>{html.escape(config)}</pre>"]
    page = f"<!doctype html><html><head><meta charset=utf-8><title>imgclf report: {html.escape(run.path.name)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    path = run.file("report.html")
    atomic_write_text(path, page)
    return str(path)
