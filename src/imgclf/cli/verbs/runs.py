"""`imgclf runs`: call the library with the parsed arguments (cli/parser_experiments.py) and print the table."""

from __future__ import annotations

from imgclf.evaluation.runs_table import format_runs, list_runs


def run(args) -> int:
    """Run `imgclf runs runs/` from its parsed arguments; return the exit status."""
    rows = list_runs(args.dir, sort=args.sort, descending=args.descending)
    if not rows and args.format == "table":
        print(f"No runs under {args.dir} (a run is a folder with classes.json and config.yaml, written by `imgclf train`).")
        return 0
    print(format_runs(rows, args.format))
    return 0
