"""The `imgclf` command line (layer: cli, the top; see docs/architecture.md).

`parser` builds the argument parser without importing anything heavy (for a
fast ``--help``); `commands` holds one function per verb (COMMANDS); `demo`
is `imgclf demo`. `main` parses, then runs the command; a `UserError` becomes
one line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys

from imgclf.cli.parser import build_parser
from imgclf.core.errors import UserError
from imgclf.core.quiet_stderr import filter_native_stderr

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `imgclf` command. Example: ``main(["models"])``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the user's way
    filter_native_stderr()  # and the lines that ignore that setting (on a terminal only)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    # lazy: the commands load NumPy, Pillow and the whole API (about 0.3 s); --help and usage errors need none of it
    from imgclf.cli.commands import COMMANDS

    try:
        return COMMANDS[args.command](args) or 0
    except UserError as e:
        print(f"imgclf {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgclf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
