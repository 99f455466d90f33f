"""`imgclf plot`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.core.run import Run
from imgclf.evaluation.figures.run_figures import plot_run
from imgclf.evaluation.report import write_report


def run(args) -> int:
    """Run `imgclf plot runs/leaves` from its parsed arguments; return the exit status."""
    bundle = Run(args.run)
    for path in plot_run(bundle):
        print(path)
    print(f"Report: {write_report(bundle)}")
    return 0
