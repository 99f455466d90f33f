"""The `imgclf` command line (layer: cli, the top; see docs/architecture.md).

`parser` builds the argument parser without importing TensorFlow (for a fast
``--help``); `commands` holds one function per verb; `demo` is `imgclf demo`.
"""

from imgclf.cli.commands import main

__all__ = ["main"]
