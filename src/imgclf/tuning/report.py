"""tune.html: the search at a glance, offline (pictures inlined, no scripts), like report.html.

The pictures are Optuna's Matplotlib visualisations: the optimisation
history, the parameter importances (fANOVA; needs two finished trials with
different settings) and a parallel-coordinates plot; then a table of every
trial with its state, value, settings and run folder.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path

from imgclf.core.fs import atomic_write_bytes, atomic_write_text
from imgclf.evaluation.figures.curves import pyplot
from imgclf.evaluation.report import STYLE

PLOTS = (("plot_optimization_history", "Optimisation history", "Validation accuracy of each trial; the line is the best so far."),
         ("plot_param_importances", "Parameter importances", "How much of the variation of the score each setting explains (fANOVA)."),
         ("plot_parallel_coordinate", "Parallel coordinates", "Each line is a finished trial, coloured by its score."))


def _draw(study, name: str, path: Path) -> Path | None:
    """One of Optuna's Matplotlib plots as a PNG, or None when the study cannot have it yet (too few trials)."""
    # lazy: Optuna is an optional extra (imgclf[tune])
    import optuna.visualization.matplotlib as vis

    plt = pyplot()
    # rc_context: Optuna sets its own style (plt.style.use), which would otherwise stay for imgclf's other figures
    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its Matplotlib plots experimental
        try:
            ax = getattr(vis, name)(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            plt.close("all")
            return None
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(9, 4.5)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_tune_report(study, out, result: dict) -> Path:
    """Write OUT/plots/*.png and OUT/tune.html for `study`; return the page's path.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(direction="maximize")
        >>> study.optimize(lambda t: 1 - (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 0.01) ** 2, n_trials=4)
        >>> Path("tune").mkdir(exist_ok=True)
        >>> write_tune_report(study, "tune/", {"trials": {"complete": 4}})
        PosixPath('tune/tune.html')
    """
    out = Path(out)
    (out / "plots").mkdir(exist_ok=True)
    figures = []
    for name, title, caption in PLOTS:
        png = _draw(study, name, out / "plots" / f"{name.removeprefix('plot_')}.png")
        if png is None:
            figures.append(f"<h3>{html.escape(title)}</h3><p class=muted>Not enough finished trials yet.</p>")
            continue
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        figures.append(f'<figure><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
                       f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    keys = sorted({k for t in study.trials for k in t.params})
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["trial", "state", "value", "seconds", *keys, "run"])
    rows = []
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        cells = [t.number, t.state.name.lower(), t.value, seconds, *[t.params.get(k) for k in keys], t.user_attrs.get("run", "")]
        rows.append("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in cells) + "</tr>")
    best = result.get("best")
    summary = (f"Best: trial {best['trial']}, validation accuracy {best['value']:.4f}; settings in "
               f"{html.escape(best['config'])} (<code>imgclf train --config {html.escape(best['config'])}</code>)."
               if best else "No trial has finished yet.")
    if best and result.get("default"):
        d = result["default"]
        summary += (f" The default recipe (trial {d['trial']}, the study's baseline) reached {d['value']:.4f}: "
                    f"the search gained {d['gain'] * 100:+.2f} points on validation.")
    counts = ", ".join(f"{n} {k}" for k, n in result.get("trials", {}).items() if n)
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>imgclf tune</title><style>{STYLE}</style></head>
<body><header><h1>imgclf tune: {html.escape(str(out))}</h1><p>{html.escape(counts)}</p></header>
<nav><a href="#best">Best</a><a href="#pictures">Pictures</a><a href="#trials">Trials</a></nav>
<main><h2 id=best>Best</h2><p>{summary}</p>
<p class=muted>Scores are validation accuracy; the test split is never seen by the search. Judge the best run on it with
<code>imgclf evaluate</code>, and against another run with <code>imgclf compare</code>.</p>
<h2 id=pictures>Pictures</h2>{''.join(figures)}
<h2 id=trials>Trials</h2><table><tr>{head}</tr>{''.join(rows)}</table></main></body></html>
"""
    return atomic_write_text(out / "tune.html", page)
