"""report.html: one self-contained page with the run's settings, data, metrics and pictures.

Every picture is inlined as base64 PNG and the style sheet is in the page, so
the file opens from disk, offline, in any browser, and can be mailed as is. It
holds no scripts at all; the navigation is plain anchors. Sections carry ids
(``#metrics``, ``#pictures``, ...) that the tests look for.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.core.fs import atomic_write_text
from imgclf.core.run import Run
from imgclf.evaluation.baseline import majority_baseline, relative_to, run_facts

STYLE = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;color:var(--fg);line-height:1.45;background:#fff}
header{background:#24292f;color:#fff;padding:1.2rem 2rem}
header h1{margin:0;font-size:1.5rem;font-weight:600}header p{margin:.3rem 0 0;color:#c9d1d9}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:.5rem 2rem;z-index:1}
nav a{color:var(--accent);text-decoration:none;margin-right:1.1rem;font-size:.92rem}
main{max-width:1200px;margin:0 auto;padding:0 2rem 3rem}
h2{border-bottom:1px solid var(--line);padding-bottom:.3rem;margin-top:2.2rem;font-size:1.3rem}
h3{font-size:1.05rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem}
td,th{border:1px solid var(--line);padding:.28rem .65rem;text-align:right;vertical-align:top}
th{background:var(--soft);font-weight:600}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fbfcfd}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:1.2rem 0}
.card{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:.6rem 1rem;min-width:9rem}
.card .v{font-size:1.45rem;font-weight:600}.muted,.card .k{color:var(--muted);font-size:.85rem}
figure{margin:1rem 0 1.6rem}figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{color:var(--muted);font-size:.88rem;margin-top:.3rem}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.8rem;overflow:auto;font-size:.82rem;max-height:32rem}
.cols{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
a{color:var(--accent)}td a{word-break:break-all}
.thumbs{display:flex;flex-wrap:wrap;gap:.7rem;margin:.5rem 0 1rem}
.thumb{width:150px;font-size:.78rem;color:var(--muted);text-decoration:none}
.thumb img{width:150px;height:150px;object-fit:contain;image-rendering:pixelated;background:#000;border:2px solid #c62828;border-radius:4px;display:block}
.thumb.right img{border-color:#1a7f37}.thumb b{color:var(--fg);font-weight:600}
"""

# Pictures in reading order: (file in plots/, title, caption).
PICTURES = [
    ("confusion_matrix.png", "Confusion matrix", "Rows are true classes, columns predictions; colour is the share of the row."),
    ("per_class.png", "Precision, recall and F1 per class", "Support (number of images) in brackets."),
    ("roc_pr.png", "ROC and precision-recall curves", "One class against the rest."),
    ("reliability.png", "Reliability diagram", "Do the probabilities mean what they say? Bars on the diagonal are well calibrated."),
    ("top_losses.png", "Top losses", "The images the model is most confidently wrong about; their files are linked below."),
    ("gradcam.png", "Grad-CAM", "Where the model looked for the class it predicted, for right and wrong predictions."),
    ("embedding.png", "Feature space", "Penultimate-layer features in 2-D, coloured by true class; rings mark mistakes."),
    ("sample_predictions.png", "Sample predictions", "A random sample of the evaluated images."),
    ("label_issues.png", "Possible label errors", "Images whose given label the model confidently disputes."),
    ("training_curves.png", "Training curves", "Loss, accuracy and learning rate per epoch; the dotted red line marks the kept epoch (model.keras), "
     "a dashed grey line where a new phase began (head, then fine-tuning)."),
]


def _img(path: Path, title: str, caption: str = "") -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure id="fig-{html.escape(path.stem)}"><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        # Scores in [0, 1] want four decimals; speeds and counts do not.
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _file_link(path: str, root: str | None = None) -> str:
    uri = Path(os.path.abspath(path)).as_uri()
    return f'<a href="{html.escape(uri)}">{html.escape(relative_to(path, root))}</a>'


def _metrics_section(m: dict, classes: list[str]) -> list[str]:
    overall = [("accuracy", m.get("accuracy")), ("balanced accuracy", m.get("balanced_accuracy"))]
    overall += [(f"top-{k} accuracy", m[f"top{k}_accuracy"]) for k in (3, 5) if f"top{k}_accuracy" in m]
    overall += [("macro F1", m["macro_avg"]["f1"]), ("weighted F1", m["weighted_avg"]["f1"]),
                ("Cohen's kappa", m.get("cohen_kappa")), ("log loss", m.get("log_loss")),
                ("ROC-AUC (one-vs-rest, macro)", m.get("roc_auc_macro")), ("PR-AUC (average precision, macro)", m.get("pr_auc_macro")),
                ("expected calibration error", m.get("expected_calibration_error")),
                ("images evaluated", m.get("num_samples")), ("evaluation speed (images/s)", m.get("images_per_s")),
                ("test-time augmentation", m.get("tta", "none"))]
    if m.get("absent_classes"):
        overall.append(("classes with no images here (left out of macro averages)", ", ".join(m["absent_classes"])))
    roc, ap = m.get("roc_auc_per_class", {}), m.get("pr_auc_per_class", {})
    per_class = [[c, v["precision"], v["recall"], v["f1"], roc.get(c), ap.get(c), v["support"]] for c, v in m["per_class"].items()]
    per_class += [[n.replace("_", " "), m[n]["precision"], m[n]["recall"], m[n]["f1"], "", "", ""] for n in ("macro_avg", "weighted_avg")]
    parts = ['<section id="metrics"><h2>Metrics</h2>', '<div class="cols"><div><h3>Overall</h3>',
             _table(["metric", "value"], [[k, v] for k, v in overall]), "</div>"]
    if m.get("most_confused"):
        parts += ["<div><h3>Most confused pairs</h3>",
                  _table(["true", "predicted", "images"], [[p["true"], p["predicted"], p["count"]] for p in m["most_confused"]]), "</div>"]
    parts.append("</div>")
    parts += ["<h3>Per class</h3>", _table(["class", "precision", "recall", "F1", "ROC-AUC", "PR-AUC", "support"], per_class)]
    b = m.get("binary")
    if b and b.get("threshold") is not None:
        (tn, fp), (fn, tp) = b["confusion_matrix"]
        parts += [f"<h3>Two classes: the threshold that maximises F1 (positive class: {html.escape(b.get('positive_class', classes[1]))})</h3>",
                  _table(["threshold", "F1", "precision", "recall", "accuracy", "TP", "FP", "FN", "TN"],
                         [[b["threshold"], b["f1"], b["precision"], b["recall"], b["accuracy"], tp, fp, fn, tn]])]
    cm = m.get("confusion_matrix")
    if cm and len(classes) <= 20:
        norm = m.get("confusion_matrix_normalized", cm)
        parts += ["<h3>Confusion matrix (counts, and share of the true class)</h3>",
                  _table(["true \\ predicted"] + classes,
                         [[c] + [f"{cm[i][j]} ({100 * norm[i][j]:.0f}%)" for j in range(len(classes))] for i, c in enumerate(classes)])]
    parts.append("</section>")
    return parts


def _data_section(summary: dict, m: dict) -> list[str]:
    parts = ['<section id="data"><h2>Data</h2>']
    counts = summary.get("class_counts", {})
    if counts:
        splits = list(counts)
        names = list(next(iter(counts.values())))
        rows = [[c] + [counts[s].get(c, 0) for s in splits] for c in names]
        rows.append(["total"] + [sum(counts[s].values()) for s in splits])
        parts += ["<h3>Images per class used in training</h3>", _table(["class"] + splits, rows)]
    else:
        parts.append("<p class=muted>No training summary (summary.json) in this run.</p>")
    skipped = list(summary.get("skipped", [])) + [dict(s, when="evaluation") for s in m.get("skipped", [])]
    parts.append(f"<h3>Skipped files</h3><p>{len(skipped)} file(s) could not be used.</p>")
    if skipped:
        parts.append(_table(["file", "reason", "when"], [[s["path"], s["reason"], s.get("when", "training")] for s in skipped[:200]]))
    parts.append("</section>")
    return parts


def _top_loss_thumbnails(run, m: dict) -> str:
    """Each top-loss image as its own thumbnail that links to its file (the images come from predictions.npz)."""
    path = run.file("predictions.npz")
    if not path.exists() or not m.get("top_losses"):
        return ""


    with np.load(path, allow_pickle=False) as f:
        if "top_loss_images" not in f.files:
            return ""
        images = f["top_loss_images"]
    cells = []
    for img, t in zip(images, m["top_losses"]):
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, "PNG")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        right = " right" if t["true"] == t["predicted"] else ""
        cells.append(f'<a class="thumb{right}" href="{html.escape(Path(os.path.abspath(t["path"])).as_uri())}" title="{html.escape(t["path"])}">'
                     f'<img alt="{html.escape(os.path.basename(t["path"]))}" src="data:image/png;base64,{data}">'
                     f'<b>{html.escape(t["true"])} &rarr; {html.escape(t["predicted"])}</b> p={t["probability"]:.2f}<br>'
                     f'{html.escape(os.path.basename(t["path"]))}</a>')
    return ('<figure id="fig-top_losses"><h3>Top losses</h3><div class="thumbs">' + "".join(cells) + "</div>"
            "<figcaption>The images the model is most confidently wrong about, true &rarr; predicted class "
            "(red frame: wrong). Each one links to its file.</figcaption></figure>")


def _top_losses_table(m: dict, root: str | None = None) -> str:
    rows = "".join(f"<tr><td>{_file_link(t['path'], root)}</td><td>{html.escape(t['true'])}</td><td>{html.escape(t['predicted'])}</td>"
                   f"<td>{t['probability']:.3f}</td><td>{t['loss']:.3f}</td></tr>" for t in m.get("top_losses", []))
    return ("<h3>Top-loss files</h3><table><tr><th>file</th><th>true</th><th>predicted</th><th>probability</th><th>loss</th></tr>"
            + rows + "</table>") if rows else ""


def _config_value(config_text: str, key: str) -> str | None:
    """One top-level value of config.yaml's text (the report reads no YAML library)."""
    for line in config_text.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def _run_summary(run, m: dict, summary: dict, config_text: str) -> str:
    """The run in one table (model, input, time, data, imbalance) and the majority-class baseline, with its warning."""
    config = {k: _config_value(config_text, k) for k in ("model", "weights", "monitor")}
    preprocess = run.read_json("preprocess.json") if run.file("preprocess.json").exists() else {}
    base = majority_baseline(m)
    facts = run_facts(config, summary, preprocess)
    if base["accuracy"] is not None:
        facts.append(("majority-class baseline", f"{base['accuracy']:.4f}: always answering {base['class']!r}; "
                                                 f"the model is {100 * base['gap']:+.1f} points above it"))
    out = _table(["run", ""], [[k, v] for k, v in facts]) if facts else ""
    if base["warning"]:
        out += f'<p id="baseline-warning" style="color:#c62828;font-weight:600">{html.escape(base["warning"])}</p>'
    return out


def _label_issues_section(run) -> list[str]:
    path = run.file("label_issues.json")
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    issues = data.get("issues", [])
    parts = ['<section id="label-issues"><h2>Possible label errors</h2>',
             f"<p>{len(issues)} of {data.get('num_checked', '?')} images checked ({html.escape(data.get('method', ''))}).</p>"]
    parts.append(_img(run.file("plots") / "label_issues.png", "The most confident ones"))
    if issues:
        root = _config_value(run.file("config.yaml").read_text(), "data") if run.file("config.yaml").exists() else None
        rows = "".join(f"<tr><td>{_file_link(i['path'], root)}</td><td>{html.escape(i['given'])}</td><td>{html.escape(i['suggested'])}</td>"
                       f"<td>{i['confidence']:.3f}</td><td>{i['given_probability']:.3f}</td></tr>" for i in issues[:200])
        parts.append("<table><tr><th>file</th><th>given label</th><th>suggested</th><th>confidence</th><th>P(given)</th></tr>"
                     + rows + "</table>")
    parts.append("</section>")
    return parts


def _confidence_section(run, m: dict) -> list[str]:
    c = m.get("confidence")
    if not c:
        return []
    parts = ['<section id="confidence"><h2>Confidence</h2>']
    if not c["calibrated"]:
        parts.append('<p class="muted">This run has no calibration (made before imgclf calibrated its runs): the '
                     f"probabilities are the model's own. Run <code>imgclf calibrate {html.escape(str(run.path))}</code>.</p>")
    ct = (c.get("scaling") or {}).get("class_temperatures")
    rows = [["temperature per predicted class (chosen on validation)", ", ".join(_fmt(t) for t in ct)] if ct else
            ["temperature (fitted on validation)", _fmt(c["temperature"])],
            ["ECE before / after", f"{c['ece_before']:.4f} / {c['ece_after']:.4f}"],
            ["NLL before / after", f"{c['nll_before']:.4f} / {c['nll_after']:.4f}"]]
    for s in c.get("conformal", []):
        rows.append([f"prediction sets for {s['target']:.0%} coverage",
                     f"coverage {s['coverage']:.2%}, mean size {s['mean_set_size']:.2f} classes"])
    rej = c.get("rejection")
    if rej:
        rows.append([f"unknown rejection ({rej['method']} score > {rej['threshold']:.4g})",
                     f"{rej['rejected_share']:.2%} of these known images answered 'unknown' (asked: "
                     f"{rej['reject_rate_asked']:.0%}); accuracy on the rest {rej['accuracy_accepted']:.2%}"])
    else:
        rows.append(["unknown rejection", "off"])
    parts.append(_table(["measure", "value"], rows))
    parts.append(_img(run.file("plots") / "confidence.png", "Calibration and selective accuracy",
                      "Left: accuracy against confidence before and after temperature scaling. Right: accuracy on the "
                      "most confident share of the images."))
    parts.append("</section>")
    return parts


def write_report(run, evaluation=None) -> str:
    """Write run/report.html from the run's files (and an `Evaluation`, or its metrics.json); return its path.

    Example:
        >>> write_report(imgclf.Run("runs/leaves"))
        'runs/leaves/report.html'
    """

    run = run if isinstance(run, Run) else Run(run)
    if evaluation is None:
        m = json.loads(run.file("metrics.json").read_text())
    else:
        m = evaluation if isinstance(evaluation, dict) else evaluation.metrics
    classes = run.classes
    summary = json.loads(run.file("summary.json").read_text()) if run.file("summary.json").exists() else {}
    config = run.file("config.yaml").read_text() if run.file("config.yaml").exists() else ""
    preprocess = run.file("preprocess.json").read_text() if run.file("preprocess.json").exists() else ""
    cards = [("accuracy", m["accuracy"]), ("balanced accuracy", m["balanced_accuracy"]), ("macro F1", m["macro_avg"]["f1"])]
    cards += [(f"top-{k} accuracy", m[f"top{k}_accuracy"]) for k in (3, 5) if f"top{k}_accuracy" in m]
    cards += [(n, m.get(k)) for n, k in (("ROC-AUC", "roc_auc_macro"), ("ECE", "expected_calibration_error")) if m.get(k) is not None]
    cards.insert(1, ("majority-class baseline", majority_baseline(m)["accuracy"]))
    plots = run.file("plots")
    shown = {name for name, _, _ in PICTURES} | {"confidence.png"}
    thumbs = _top_loss_thumbnails(run, m)
    pictures = [(thumbs if name == "top_losses.png" and thumbs else _img(plots / name, title, cap))
                for name, title, cap in PICTURES if name != "label_issues.png"]
    root = m.get("evaluated_on") if os.path.isdir(m.get("evaluated_on") or "") else _config_value(config, "data")
    pictures.insert(5, _top_losses_table(m, root))
    # Pictures drawn by other commands (augmentation preview, lr-find, ...) go at the end.
    others = sorted(p for p in plots.glob("*.png") if p.name not in shown) if plots.exists() else []
    pictures += [_img(p, p.stem.replace("_", " ").capitalize()) for p in others]
    confidence_parts = _confidence_section(run, m)
    sections = [("summary", "Summary"), ("metrics", "Metrics")] + ([("confidence", "Confidence")] if confidence_parts else [])
    sections.append(("pictures", "Pictures"))
    label_parts = _label_issues_section(run)
    if label_parts:
        sections.append(("label-issues", "Label issues"))
    sections += [("data", "Data"), ("settings", "Settings")]
    nav = "<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in sections) + "</nav>"
    parts = [
        f"<header><h1>imgclf report: {html.escape(run.path.name)}</h1>"
        f"<p>{html.escape(str(len(classes)))} classes &middot; evaluated on {html.escape(m.get('evaluated_on', ''))}, "
        f"{m['num_samples']} images</p></header>", nav, "<main>",
        '<section id="summary"><h2>Summary</h2><div class="cards">'
        + "".join(f'<div class="card"><div class="k">{html.escape(n)}</div><div class="v">{_fmt(v)}</div></div>' for n, v in cards)
        + "</div>" + _run_summary(run, m, summary, config) + "</section>",
        *_metrics_section(m, classes),
        *confidence_parts,
        '<section id="pictures"><h2>Pictures</h2>', *pictures, "</section>",
        *label_parts,
        *_data_section(summary, m),
        '<section id="settings"><h2>Settings</h2><h3>Training settings (config.yaml)</h3>',
        f"<pre>{html.escape(config)}</pre><h3>Preprocessing (preprocess.json)</h3><pre>{html.escape(preprocess)}</pre></section>",
        "</main>",
    ]
    title = html.escape(f"imgclf report: {run.path.name}")
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">"
            f"<title>{title}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    path = run.file("report.html")
    atomic_write_text(path, page)
    return str(path)
