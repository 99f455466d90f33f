"""`imgclf lr-find`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.core.config import load_yaml
from imgclf.core.errors import UserError
from imgclf.training.api import lr_find


def run(args) -> int:
    """Run `imgclf lr-find data/` from its parsed arguments; return the exit status."""
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "config", "data", "plot", "steps")}
    if getattr(args, "data", None) is None:
        raise UserError("lr-find needs DATA, a folder with one subfolder per class.")
    if args.config:
        settings = {**load_yaml(args.config), **settings}
    found = lr_find(args.data, out=args.plot, steps=args.steps, **settings)
    print(f"Suggested learning rate: {found['suggested_lr']:.3g}")
    print(f"Plot: {found['plot']}")
    return 0
