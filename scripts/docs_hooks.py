"""MkDocs hooks (mkdocs.yml `hooks:`): the pages and pictures that are made, not written.

* reference/cli.md: every command's `--help`, from the argparse parser in
  src/imgclf/cli/parser.py (the one source of the CLI's options).
* reference/api.md: an entry per public name of `imgclf` (its `_LAZY` table),
  rendered by mkdocstrings from the docstrings.
* images/*.png: augment-preview grids, plots and a report screenshot of a real
  run, made by scripts/docs_images.py and cached in .cache/docs-images/ (or
  $IMGCLF_DOCS_IMAGES) until that script or imgclf's version changes.
* the plots bench/RESULTS.md shows (benchmarks.md includes that file).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # the tree's own imgclf, installed or not

import imgclf  # noqa: E402
from imgclf.cli.parser import build_parser  # noqa: E402

# imgclf's docstrings head their doctests "Example:"; griffe's Google parser knows only "Examples:" as the
# section whose ">>>" lines render as code (any other "Word:" becomes an admonition of Markdown text).
try:
    from griffe import DocstringSectionKind
    from griffe._internal.docstrings import google as _google
    _google._section_kind.setdefault("example", DocstringSectionKind.examples)
except (ImportError, AttributeError):  # another griffe: the examples render as text, the build still succeeds
    pass

IMAGES_SCRIPT = ROOT / "scripts" / "docs_images.py"
IMAGES = ["augment-light.png", "augment-standard.png", "augment-strong.png", "plot-confusion_matrix.png",
          "plot-training_curves.png", "plot-reliability.png", "plot-gradcam.png", "report.png"]


def _subcommands(parser: argparse.ArgumentParser):
    """(name, parser) of each subcommand of `parser`, in the order they were added."""
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def cli_markdown() -> str:
    """The CLI reference: the top-level help, then each command's (and each action's) help, verbatim."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"  # argparse wraps to the terminal: a fixed width gives the same page everywhere
    try:
        parser = build_parser()
        parts = ["# Command line reference\n",
                 "Generated from the argument parser (`src/imgclf/cli/parser.py`) when the site is built: "
                 "each section is exactly what `--help` prints.\n",
                 "## imgclf\n", f"```text\n{parser.format_help()}```\n"]
        for name, sub in _subcommands(parser):
            parts += [f"## imgclf {name}\n", f"```text\n{sub.format_help()}```\n"]
            for action, leaf in _subcommands(sub):
                parts += [f"### imgclf {name} {action}\n", f"```text\n{leaf.format_help()}```\n"]
        return "\n".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


# The public names in the order of a user's journey; a name added to imgclf._LAZY and not listed here comes last.
JOURNEY = ["train", "TrainConfig", "evaluate", "Evaluation", "load", "Predictor", "Run", "list_models", "get_spec",
           "create_model", "register_model", "export_dataset", "UserError"]
# Functions the commands call that `import imgclf` does not expose by name: (heading, dotted path).
MORE = [("imgclf check", "imgclf.data.check.health.check_folder"),
        ("imgclf split", "imgclf.data.split.split_folder"),
        ("imgclf datasets pack", "imgclf.data.shards.pack.pack"),
        ("imgclf lr-find", "imgclf.training.api.lr_find"),
        ("imgclf augment-preview", "imgclf.evaluation.figures.augment_preview.preview"),
        ("imgclf evaluate --find-label-issues", "imgclf.training.label_issues.find_label_issues"),
        ("imgclf predict", "imgclf.inference.files.predict_files"),
        ("imgclf export", "imgclf.export.exporter.export"),
        ("imgclf serve", "imgclf.serve.serve")]


def api_markdown() -> str:
    """The API reference: every name `import imgclf` exposes, then the functions behind the other commands."""
    rank = {name: i for i, name in enumerate(JOURNEY)}
    parts = ["# Python API\n",
             "## `import imgclf`\n",
             "Everything in this section is importable from `imgclf` itself (`imgclf.train`, `imgclf.load`, ...); "
             "names are loaded on first use, so `import imgclf` stays fast. Generated from the docstrings, whose "
             "examples run in the test suite (`tests/test_doctests.py`).\n"]
    for name in sorted(imgclf._LAZY, key=lambda n: (rank.get(n, len(rank)), n)):
        module, attr = imgclf._LAZY[name]
        parts.append(f"::: {module}.{attr}\n")
    parts += ["## Behind the other commands\n",
              "Import these from their modules (e.g. `from imgclf.export.exporter import export`); the "
              "[architecture](../architecture.md) page maps the packages.\n"]
    for _command, path in MORE:
        parts.append(f"::: {path}\n    options:\n      heading_level: 3\n")
    return "\n".join(parts)


def images_dir() -> Path:
    """The cached pictures, made again when scripts/docs_images.py has changed since."""
    out = Path(os.environ.get("IMGCLF_DOCS_IMAGES") or ROOT / ".cache" / "docs-images")
    stamp = out / "stamp.txt"
    key = hashlib.sha1(IMAGES_SCRIPT.read_bytes() + imgclf.__version__.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == key and all((out / n).exists() for n in IMAGES):
        return out
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    fresh = out.with_name(f"{out.name}.tmp{os.getpid()}")  # made aside, then swapped in: two builds never mix
    shutil.rmtree(fresh, ignore_errors=True)
    proc = subprocess.run([sys.executable, str(IMAGES_SCRIPT), str(fresh)], env=env, capture_output=True, text=True)
    missing = [n for n in IMAGES if not (fresh / n).exists()]
    if proc.returncode or missing:
        shutil.rmtree(fresh, ignore_errors=True)
        raise RuntimeError(f"scripts/docs_images.py failed (missing: {missing}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    (fresh / "stamp.txt").write_text(key)
    shutil.rmtree(out, ignore_errors=True)
    fresh.replace(out)
    return out


def bench_pictures() -> list[str]:
    """The pictures bench/RESULTS.md links to, by their paths relative to bench/."""
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    return sorted(set(re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text)))


def on_files(files, config):
    files.append(File.generated(config, "reference/cli.md", content=cli_markdown()))
    files.append(File.generated(config, "reference/api.md", content=api_markdown()))
    pictures = images_dir()
    for name in IMAGES:
        files.append(File.generated(config, f"images/{name}", abs_src_path=str(pictures / name)))
    for rel in bench_pictures():  # benchmarks.md sits at the top, as RESULTS.md does in bench/
        files.append(File.generated(config, rel, abs_src_path=str(ROOT / "bench" / rel)))
    return files


def on_config(config):
    # the watcher of `mkdocs serve` also follows what the made pages come from
    config.watch.extend([str(ROOT / "src" / "imgclf"), str(ROOT / "bench" / "RESULTS.md")])
    return config
