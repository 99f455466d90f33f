"""A test hook that kills the process at a named point, so tests can check what a `kill -9` there leaves.

Set ``IMGCLF_TEST_KILL_AT=<point>`` (or ``<point>:<n>`` for its n-th passage)
and the process sends itself SIGKILL when it reaches ``kill_point("<point>")``.
Unset (always, outside tests), a call is one dictionary lookup. The points:

- ``checkpoint.saved``: after checkpoints/last.keras, before state.json (training)
- ``evaluate.predictions``: after predictions.npz, before metrics.json (evaluate)
- ``quarantine.moved`` / ``restore.moved``: after a file moved, before the move is logged as done
- ``export.written``: after the temporary export file is written, before it is checked and renamed
"""

from __future__ import annotations

import os
import signal

ENV = "IMGCLF_TEST_KILL_AT"
_seen: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``IMGCLF_TEST_KILL_AT`` names `name` (``name:n``: at its n-th passage).

    Example:
        >>> kill_point("nothing.asked")  # IMGCLF_TEST_KILL_AT unset: returns at once
    """
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
