"""Keep library notices (TensorFlow's, LiteRT's, Python warnings of other packages) out of imgclf's output.

TensorFlow 2.21 writes these lines from C++ straight to file descriptor 2 when
it is imported, whatever TF_CPP_MIN_LOG_LEVEL says:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795658107.598340   31367 port.cc:153] oneDNN custom operations are on. ...

They say nothing a user can act on, yet open every `imgclf train`, and
LiteRT adds "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to each
model it loads. `filter_native_stderr` routes descriptor 2 through a pipe and
a thread that drops exactly these lines (glog-style info and warning lines,
LiteRT's INFO lines) and passes every other byte on, on a terminal and in
logs, CI and notebooks alike (issue 20: a log is read by people too); Python's
own `sys.stderr` (progress bars, messages, tracebacks) keeps writing to the
real descriptor directly, so it still knows whether it is on a terminal.
`quiet_python_libraries` hides other packages' Python warnings (Keras,
tf2onnx, UMAP) and their loggers below ERROR; imgclf's own warnings still
show. `imgclf --verbose COMMAND` (or `IMGCLF_RAW_STDERR=1`) shows everything.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\s*$"),
    re.compile(rb"^I0000 [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\."),
    re.compile(rb"^[IW]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "),  # glog-style info and warning lines (errors are kept)
    re.compile(rb"^INFO: Created TensorFlow Lite [\w ]*delegate for CPU\.\s*$"),
)
LIBRARY_LOGGERS = ("absl", "tensorflow", "tf2onnx", "keras", "onnx", "onnxruntime", "umap", "numba", "h5py", "PIL")

_state: dict = {}


def is_noise(line: bytes) -> bool:
    """Whether a line written to descriptor 2 is one of TensorFlow's known start-up notices.

    Example:
        >>> is_noise(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
        True
        >>> is_noise(b"Traceback (most recent call last):\\n")
        False
    """
    return any(p.match(line) for p in NOISE)


def _forward(read_fd: int, real_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        pending = b""
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            _write_all(real_fd, b"".join(line + b"\n" for line in lines if not is_noise(line + b"\n")))
        if not is_noise(pending):
            _write_all(real_fd, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:  # a terminal may take fewer bytes than offered
        data = data[os.write(fd, data):]


def quiet_python_libraries() -> None:
    """Hide other packages' Python warnings and their loggers' messages below ERROR; imgclf's own warnings stay.

    Call from the command-line entry point only (a program that imports imgclf owns its warnings).

    Example:
        >>> import subprocess, sys
        >>> program = ("import warnings; from imgclf.core.quiet_stderr import quiet_python_libraries; "
        ...            "quiet_python_libraries(); warnings.warn('a library notice', FutureWarning); print('done')")
        >>> done = subprocess.run([sys.executable, "-W", "default", "-c", program], capture_output=True, text=True)
        >>> done.stdout, done.stderr  # a program of its own: the filters are the whole process's
        ('done\\n', '')
    """
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"imgclf(\.|$)")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def filter_native_stderr() -> bool:
    """Drop library notices (`is_noise`) from descriptor 2; True if installed.

    Call once, early, from the command-line entry point (not from library code:
    a program that imports imgclf owns its own descriptors). Nothing is done
    when `sys.stderr` was already replaced (a test's capture, a notebook's
    stream): whoever replaced it owns it.

    Example:
        >>> import subprocess, sys
        >>> program = ("import sys; from imgclf.core.quiet_stderr import filter_native_stderr; print(filter_native_stderr()); "
        ...            "print('W0101 00:00:00.1 7 port.cc:153] a TensorFlow notice', file=sys.__stderr__, flush=True); "
        ...            "print('an error', file=sys.__stderr__, flush=True)")  # sys.__stderr__ writes to descriptor 2
        >>> done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
        >>> done.stdout, done.stderr  # a program of its own: this replaces the whole process's descriptor 2
        ('True\\n', 'an error\\n')
    """
    if _state or os.environ.get("IMGCLF_RAW_STDERR") or sys.stderr is not sys.__stderr__:
        return False
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except OSError:
        return False
    # Python's own messages go to the terminal directly (line-buffered, as before).
    sys.stderr = open(real, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                      errors="backslashreplace", closefd=False)
    thread = threading.Thread(target=_forward, args=(read_fd, real), name="imgclf-stderr-filter", daemon=True)
    thread.start()
    _state.update(real=real, thread=thread)
    atexit.register(_restore)
    return True


def _restore() -> None:
    """Point descriptor 2 back at the terminal; the pipe closes and the thread forwards what is left."""
    if not _state:
        return
    try:
        os.dup2(_state["real"], 2)
    except OSError:
        return
    _state["thread"].join(timeout=2)
