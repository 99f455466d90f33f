"""`imgclf datasets`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.data.builtin import export_dataset
from imgclf.data.shards.pack import pack, summary


def run(args) -> int:
    """Run `imgclf datasets export digits data/digits` from its parsed arguments; return the exit status."""
    if args.datasets_command == "pack":
        info = pack(args.data, args.out, shard_size_mb=args.shard_size_mb, min_shards=args.min_shards, val_fraction=args.val,
                    test_fraction=args.test, seed=args.seed, group_by=args.group_by, max_pixels=args.max_pixels,
                    workers=args.workers, overwrite=args.overwrite)
        print(summary(info, args.out))
        print(f"Next: imgclf train {args.out} --out runs/NAME")
        return 0

    path = export_dataset(args.name, args.out)
    print(path)
    return 0
