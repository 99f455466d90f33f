"""TensorFlow's import-time notices stay off a terminal; everything else still reaches it."""

import os
import pty
import subprocess
import sys

import pytest

from imgclf.core.quiet_stderr import is_noise

ABSL = "All log messages before absl::InitializeLog()"


def test_only_the_known_notices_count_as_noise():
    assert is_noise(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert is_noise(b"I0000 00:00:1795658107.598340   31367 port.cc:153] oneDNN custom operations are on. "
                    b"You may see slightly different numerical results\n")
    for line in (b"Traceback (most recent call last):\n", b"WARNING: something else\n",
                 b"E0000 00:00:1795658107.598340   31367 port.cc:153] a real error\n"):
        assert not is_noise(line)


def _run_on_a_terminal(args, env):
    """Run a command with stdout and stderr on a pseudo-terminal; return what the terminal showed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(main)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_sees_imgclf_messages_but_not_tensorflows_notices(trained_run, image_folder):
    code = "import sys; from imgclf.cli import main; sys.exit(main(['predict', sys.argv[1], sys.argv[2], '--no-progress']))"
    args = [sys.executable, "-c", code, str(trained_run.path), image_folder]
    base = {k: v for k, v in os.environ.items() if k != "IMGCLF_RAW_STDERR"}
    rc, raw = _run_on_a_terminal(args, {**base, "IMGCLF_RAW_STDERR": "1"})
    assert rc == 0
    if ABSL not in raw:
        pytest.skip("this TensorFlow prints no absl notice at import: nothing to filter")
    rc, shown = _run_on_a_terminal(args, base)
    assert rc == 0 and ABSL not in shown and "oneDNN custom operations" not in shown
    assert ".png" in shown  # imgclf's own output (the table of predictions) still reaches the terminal
