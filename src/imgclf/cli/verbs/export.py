"""`imgclf export`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.export.exporter import export


def run(args) -> int:
    """Run `imgclf export runs/leaves --format tflite` from its parsed arguments; return the exit status."""
    result = export(args.run, format=args.format, out=args.out, overwrite=args.overwrite, max_int8_drop=args.max_int8_drop)
    print(result.summary())
    return 0
