"""`imgclf demo`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.cli.demo import run_demo


def run(args) -> int:
    """Run `imgclf demo` from its parsed arguments; return the exit status."""
    run_demo(args.dataset, out=args.out, data_dir=args.data_dir, epochs=args.epochs)
    return 0
