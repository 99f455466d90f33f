"""`imgclf augment-preview`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.evaluation.figures.augment_preview import preview


def run(args) -> int:
    """Run `imgclf augment-preview data/` from its parsed arguments; return the exit status."""
    path = preview(args.data, args.augment, out=args.out, img_size=args.img_size, flip=args.flip,
                   samples=args.samples, seed=args.seed, mixup=args.mixup, cutmix=args.cutmix)
    print(path)
    return 0
