"""The architecture (docs/architecture.md) holds: layers, no cycles, small modules, visible imports.

Each check reads the source tree only (no TensorFlow), so the suite says at
once when a change breaks the shape that the next engineer relies on.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "imgclf"
MAX_LINES = 400  # nanoGPT-sized files: one idea each, readable in one sitting
LAYERS = ["core", "data", "models", "inference", "evaluation", "training", "export", "serve", "tuning", "cli"]


def _modules():
    return sorted(p for p in SRC.rglob("*.py"))


def test_import_contracts_hold():
    """import-linter: each layer imports only the layers below it; no package's modules import each other in a cycle."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports not found: install the test extras (pip install -e '.[test]').")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not loose, f"modules outside the layer packages {LAYERS}: {loose}"
    assert sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


def test_no_module_is_too_long():
    long = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): {long}"


def _function_imports(tree):
    top = set()
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            top.add(id(sub))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top]


def test_function_level_imports_say_why():
    """An import inside a function hides a dependency; it is allowed for heavy or optional packages, with a reason.

    The reason is a comment starting with 'lazy:' on the import's line or on the line above its block of imports.
    """
    unexplained = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in _function_imports(ast.parse("\n".join(lines))):
            i = node.lineno - 1
            while i > 0 and lines[i - 1].strip().startswith(("import ", "from ")):
                i -= 1  # the first line of this block of imports
            said = "lazy:" in lines[node.lineno - 1] or (i > 0 and "lazy:" in lines[i - 1]) or "lazy:" in lines[i]
            if not said:
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unexplained, ("imports inside functions without a '# lazy: <why>' comment (move them to the top "
                             f"of the module, or say why they must wait): {unexplained}")


def test_no_relative_imports():
    """Absolute imports name the layer they come from, so a reader sees the direction at a glance."""
    relative = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in _modules() for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative, f"relative imports: {relative}"


def test_module_docstrings_point_to_the_map():
    """Every package's __init__ says what the layer owns and points to docs/architecture.md."""
    assert (ROOT / "docs" / "architecture.md").exists()
    missing = [layer for layer in LAYERS if "architecture.md" not in (SRC / layer / "__init__.py").read_text()]
    assert not missing, f"layer packages whose docstring does not point to docs/architecture.md: {missing}"


def test_importing_imgclf_loads_no_tensorflow():
    code = ("import sys, imgclf, imgclf.cli, imgclf.training.api, imgclf.evaluation.evaluate, imgclf.models; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_the_cli_parser_loads_only_core():
    """`imgclf --help` and usage errors stay instant: the parser imports neither NumPy nor the API."""
    code = "import sys, imgclf.cli; print(sorted(m for m in sys.modules if m in ('numpy', 'PIL', 'tensorflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


def test_the_parser_choices_mirror_the_library():
    from imgclf.cli.parser import ENGINE_CHOICES
    from imgclf.inference.engines import ENGINES

    assert ENGINE_CHOICES == ENGINES
    from imgclf.cli.parser_experiments import RUN_COLUMNS, RUN_FORMATS, TRACK_CHOICES
    from imgclf.core.tracking import TRACKERS
    from imgclf.evaluation.runs_table import COLUMNS, FORMATS

    assert (RUN_COLUMNS, RUN_FORMATS, TRACK_CHOICES) == (COLUMNS, FORMATS, TRACKERS)


def test_every_command_has_its_verb_module():
    from imgclf.cli.parser import build_parser
    from imgclf.cli.verbs import VERBS

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert sorted(commands) == sorted(VERBS)
    for name in VERBS.values():
        assert (SRC / "cli" / "verbs" / f"{name}.py").exists()
