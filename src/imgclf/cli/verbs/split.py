"""`imgclf split`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.core.fs import refuse_overwrite
from imgclf.data.split import split_folder, split_summary


def run(args) -> int:
    """Run `imgclf split data/ --out split.csv` from its parsed arguments; return the exit status."""
    refuse_overwrite(args.out, args.overwrite)
    rows = split_folder(args.data, args.out, val_fraction=args.val, test_fraction=args.test, seed=args.seed,
                        group_by=args.group_by, workers=args.workers)
    print(split_summary(rows))
    print(f"Manifest: {args.out}")
    print(f"Next: imgclf train --manifest {args.out}")
    return 0
