"""The one exception type for mistakes a user can fix.

The CLI turns a `UserError` into one line on stderr and exit status 2; any
other exception is a bug in imgclf and exits with status 1. Messages follow
the Keras style: what happened, what was expected, what was received, and how
to fix it.
"""

from __future__ import annotations

import difflib


class UserError(Exception):
    """A problem with the user's input, data or settings (exit status 2).

    Example:
        >>> raise UserError("Data folder not found: 'dat/'. Pass a folder "
        ...                 "with one subfolder per class.")
        Traceback (most recent call last):
        ...
        imgclf.core.errors.UserError: Data folder not found: 'dat/'. ...
    """


def did_you_mean(received: str, choices) -> str:
    """Return " Did you mean 'x'?" for the closest choices, or "".

    Example:
        >>> did_you_mean("resnet5", ["resnet50", "mobilenet_v2"])
        " Did you mean 'resnet50'?"
    """
    close = difflib.get_close_matches(str(received), [str(c) for c in choices], n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
