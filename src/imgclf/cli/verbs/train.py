"""`imgclf train`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.training.api import train


def run(args) -> int:
    """Run `imgclf train data/ --out runs/leaves` from its parsed arguments; return the exit status."""
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "config", "data", "track")}
    bundle = train(getattr(args, "data", None), config=args.config, track=args.track, **settings)
    print(f"Run bundle: {bundle.path}")
    print(f"Next: imgclf evaluate {bundle.path}")
    return 0
