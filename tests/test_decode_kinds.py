"""`DecodeError.kind`: every raise site sets one, and the server and `imgclf check` map kinds, not messages."""

import ast
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.check.health import DECODE_PROBLEMS, PROBLEMS
from imgclf.data.decode import DecodeError, DecodeErrorKind, decode_image, read_bytes

SRC = Path(__file__).resolve().parents[1] / "src" / "imgclf"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads files whatever their permissions


def _png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def _noisy_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# The mappings as they were before the kind existed (prefix tests on the message): the tables must agree.
def _old_status(reason: str) -> tuple[int, str]:
    if reason.startswith("empty"):
        return 400, "empty image"
    if reason.startswith("too large"):
        return 413, "image too large"
    if reason.startswith("not an image"):
        return 422, "not an image"
    return 422, "unreadable image"


def _old_problem(reason: str, reading: bool) -> str:
    if reading:
        return "symlink_loop" if reason.startswith("symbolic-link loop") else "unreadable"
    for prefix, kind in (("too large", "too_large"), ("not an image", "not_image"), ("empty", "empty")):
        if reason.startswith(prefix):
            return kind
    return "corrupt"


def _raise_sites():
    """(file, line, call) for every ``DecodeError(...)`` call under src/imgclf."""
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DecodeError":
                yield path.relative_to(SRC), node.lineno, node


def test_every_raise_site_passes_a_kind():
    sites = list(_raise_sites())
    assert len(sites) >= 15  # decode.py's own, and the engine worker's
    for where, line, call in sites:
        kinds = call.args[1:] + [k.value for k in call.keywords if k.arg == "kind"]
        assert len(kinds) == 1, f"{where}:{line}: DecodeError(...) without a kind"
        assert "DecodeErrorKind." in ast.unparse(kinds[0]), f"{where}:{line}: kind is not a DecodeErrorKind member"


def test_a_kind_is_required():
    with pytest.raises(TypeError):
        DecodeError("no kind")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="DecodeErrorKind"):
        DecodeError("a string is not a kind", "empty")  # type: ignore[arg-type]


def test_kind_survives_pickling():
    e = pickle.loads(pickle.dumps(DecodeError("empty file (0 bytes)", DecodeErrorKind.EMPTY)))
    assert (e.reason, e.kind, str(e)) == ("empty file (0 bytes)", DecodeErrorKind.EMPTY, "empty file (0 bytes)")


CONTENT_CASES = [
    (lambda: decode_image(b""), DecodeErrorKind.EMPTY),
    (lambda: decode_image(b"this is text, not pixels"), DecodeErrorKind.NOT_AN_IMAGE),
    (lambda: decode_image(_png()[:8] + b"\0" * 40), DecodeErrorKind.CORRUPT),
    (lambda: decode_image(_noisy_png()[: len(_noisy_png()) // 2]), DecodeErrorKind.TRUNCATED),
    (lambda: decode_image(_png((100, 100)), max_pixels=5000), DecodeErrorKind.TOO_LARGE),
    (lambda: decode_image(_png((8, 8)), min_side=16), DecodeErrorKind.TOO_SMALL),
    (lambda: decode_image(np.zeros((2, 2, 2, 2), np.uint8)), DecodeErrorKind.BAD_ARRAY),
]


@pytest.mark.parametrize("call, kind", CONTENT_CASES, ids=[k.name for _, k in CONTENT_CASES])
def test_content_errors_carry_their_kind(call, kind):
    with pytest.raises(DecodeError) as info:
        call()
    assert info.value.kind is kind
    assert _old_problem(info.value.reason, reading=False) == DECODE_PROBLEMS[kind] or kind in (
        DecodeErrorKind.TOO_SMALL,)  # never reached by `imgclf check`, which measures sides itself


def test_read_errors_carry_their_kind(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    cases = {tmp_path: DecodeErrorKind.IS_FOLDER, tmp_path / "broken": DecodeErrorKind.NOT_FOUND,
             tmp_path / "loop": DecodeErrorKind.SYMLINK_LOOP}
    if not IS_ROOT:
        locked = tmp_path / "locked.png"
        locked.write_bytes(_png())
        locked.chmod(0)
        cases[locked] = DecodeErrorKind.PERMISSION_DENIED
    for path, kind in cases.items():
        with pytest.raises(DecodeError) as info:
            read_bytes(path)
        assert info.value.kind is kind, path
        assert DECODE_PROBLEMS[kind] == _old_problem(info.value.reason, reading=True)


def test_check_maps_every_kind_to_a_problem():
    assert set(DECODE_PROBLEMS) == set(DecodeErrorKind)
    assert set(DECODE_PROBLEMS.values()) <= set(PROBLEMS)


def test_server_maps_every_kind_to_a_status():
    pytest.importorskip("fastapi")
    from imgclf.serve.app import DECODE_STATUS, decode_status

    assert set(DECODE_STATUS) == set(DecodeErrorKind)
    for call, kind in CONTENT_CASES:
        with pytest.raises(DecodeError) as info:
            call()
        # The same answer as the prefix tests on the message gave before the kind existed.
        assert decode_status(info.value) == _old_status(info.value.reason), kind
    assert {status for status, _ in DECODE_STATUS.values()} == {400, 413, 422}
