"""`imgclf augment-preview`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

import sys

from imgclf.evaluation.figures.augment_preview import preview
from imgclf.training.preview_plan import resolve_preview


def run(args) -> int:
    """Run `imgclf augment-preview data/` from its parsed arguments; return the exit status."""
    preset, img_size, color_mode = args.augment, args.img_size, ""
    if preset == "auto":  # what `imgclf train DATA` with these flags will use
        plan = resolve_preview(args.data, model=args.model, weights=args.weights, epochs=args.epochs,
                               img_size=args.img_size, flip=args.flip, seed=args.seed)
        preset, img_size, color_mode = plan["augment"], plan["img_size"], plan["color_mode"]
        print(f"Preset {preset!r}, {img_size} px {color_mode}: what `imgclf train` with these flags uses "
              f"(model {plan['model']}; --augment shows another preset)", file=sys.stderr)
    path = preview(args.data, preset, out=args.out, img_size=img_size, flip=args.flip, samples=args.samples,
                   seed=args.seed, mixup=args.mixup, cutmix=args.cutmix, color_mode=color_mode)
    print(path)
    return 0
