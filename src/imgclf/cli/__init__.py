"""The `imgclf` command line (layer: cli, the top; see docs/architecture.md).

`parser` builds the argument parser without importing anything beyond core
(for a fast ``--help``); `verbs/` holds one module per command, each with
`run(args)`; `demo` is the library behind `imgclf demo`. `main` parses, then
imports and runs only the verb asked for; a `UserError` becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import os
import sys

from imgclf.cli.parser import build_parser
from imgclf.cli.verbs import VERBS
from imgclf.core.errors import UserError
from imgclf.core.quiet_stderr import filter_native_stderr, quiet_python_libraries

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `imgclf` command. Example: ``main(["models"])``."""
    _print_names_as_bytes()
    parser = build_parser()
    args = parser.parse_args(argv)
    loud = vars(args).pop("library_messages", False)  # imgclf --verbose COMMAND; not a setting of the command
    if not (loud or os.environ.get("IMGCLF_RAW_STDERR")):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the user's way
        filter_native_stderr()  # and the lines that ignore that setting
        quiet_python_libraries()  # other packages' Python warnings (Keras, tf2onnx, UMAP)
    if not args.command:
        parser.print_help()
        return 2
    # Only the verb that runs is imported: each command pays for its own dependencies alone
    # (imgclf models 0.3 s, not the 0.7 s of importing every verb), and --help for none.
    verb = importlib.import_module(f"imgclf.cli.verbs.{VERBS[args.command]}")
    try:
        return verb.run(args) or 0
    except UserError as e:
        print(f"imgclf {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgclf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _print_names_as_bytes() -> None:
    # A file or folder name that is not UTF-8 (legal on Linux) is printed as its own bytes, as `find` prints it,
    # rather than raising UnicodeEncodeError from a UTF-8 locale's strict stdout.
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
