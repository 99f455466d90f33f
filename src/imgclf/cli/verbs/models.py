"""`imgclf models`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.core.errors import UserError
from imgclf.models.registry import get_spec, list_models
from imgclf.models.weights import pretrained_location


def run(args) -> int:
    """Run `imgclf models` from its parsed arguments; return the exit status."""
    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        raise UserError(f"No model matches {args.pattern!r}; run `imgclf models` for the full list.")
    print(f"{'name':<22} {'params':>8} {'size':>5} {'min':>4} {'top-1':>6}  {'pretrained':<10} {'weights here':<12} {'preproc':<7} input")
    for name in names:
        s = get_spec(name)
        params = f"{s.params_m:.2f}M" if s.params_m else "-"
        size = str(s.default_size) if s.default_size else "auto"
        top1 = f"{s.imagenet_top1:.3f}" if s.imagenet_top1 else "-"
        here = ("yes" if pretrained_location(name) else "no") if s.pretrained else "-"
        print(f"{name:<22} {params:>8} {size:>5} {s.min_size:>4} {top1:>6}  {'imagenet' if s.pretrained else 'no':<10} "
              f"{here:<12} {s.preprocessing:<7} {'/'.join(s.color_modes)}")
    return 0
