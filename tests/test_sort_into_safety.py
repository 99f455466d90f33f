"""`predict --sort-into --move` (issue 19, items 1 and 5): one bounded attempt per file, every move logged first.

No model is needed: the `Sorter` is fed prediction rows directly.
"""

import csv
import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imgclf.inference.sort_into import Sorter


def _row(path, label="cat"):
    return {"path": str(path), "class": label, "probability": 0.9, "error": ""}


def _log(path):
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def _read_only(folder: Path, monkeypatch):
    """Make removing files from `folder` fail: chmod where that works, else (root) os.unlink raises EACCES."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return  # chmod is in force (not root)
    probe.unlink()
    folder.chmod(0o755)
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if Path(os.fsdecode(path)).parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)


@pytest.mark.parametrize("how", ["link", "copy"])
def test_move_from_read_only_folder_is_one_attempt_and_reported(tmp_path, monkeypatch, how):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (src / name).write_bytes(name.encode())
    real_link, links = os.link, []

    def link(a, b, *args, **kwargs):
        links.append(b)
        if len(links) > 20:  # the old code looped here until the filesystem's link limit
            raise RuntimeError("os.link called over and over: moving is not bounded")
        if how == "copy":
            raise OSError(errno.EXDEV, "Invalid cross-device link")  # another filesystem: copy, then unlink
        return real_link(a, b, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    out = tmp_path / "sorted"
    try:
        _read_only(src, monkeypatch)
        with Sorter(out, move=True) as sorter:
            for name in ("a.jpg", "b.jpg", "c.jpg"):
                sorter.add(_row(src / name))
    finally:
        src.chmod(0o755)
    assert len(links) <= 3
    assert sorted(p.name for p in src.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]  # all still at home
    assert [p for p in out.rglob("*") if p.is_file() and p.suffix != ".csv"] == []  # no stray link or copy
    results = [r for r in _log(out / "sorted.csv") if r["action"] != "moving"]
    assert [r["action"] for r in results] == ["not moved"] * 3
    assert all("cannot remove the original" in r["error"] and "ermission denied" in r["error"] for r in results)
    assert all(r["destination"] == "" for r in results)
    summary = sorter.summary()
    assert summary.startswith("Moved 0 file(s)") and "3 file(s) could not be moved" in summary


def test_every_move_is_logged_before_it_happens(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (src / name).write_bytes(name.encode())
    out = tmp_path / "sorted"
    real_link, seen = os.link, []

    def link(a, b, *args, **kwargs):
        # What a SIGKILL right now would leave on disk: the intent must be there already.
        seen.append([(r["source"], r["destination"], r["action"]) for r in _log(out / "sorted.csv")])
        return real_link(a, b, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    with Sorter(out, move=True) as sorter:
        sorter.add(_row(src / "a.jpg"))
        sorter.add(_row(src / "b.jpg", "dog"))
        on_disk = _log(out / "sorted.csv")  # before close: every result row is flushed
    assert seen[0] == [(str(src / "a.jpg"), str(out / "cat" / "a.jpg"), "moving")]
    assert seen[1][-1] == (str(src / "b.jpg"), str(out / "dog" / "b.jpg"), "moving")
    assert [(r["source"], r["action"]) for r in on_disk] == [
        (str(src / "a.jpg"), "moving"), (str(src / "a.jpg"), "moved"),
        (str(src / "b.jpg"), "moving"), (str(src / "b.jpg"), "moved")]
    assert (out / "dog" / "b.jpg").read_bytes() == b"b.jpg" and not (src / "b.jpg").exists()


def test_sigkill_leaves_no_moved_file_without_a_row(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    names = [f"img_{i}.jpg" for i in range(40)]
    for name in names:
        (src / name).write_bytes(name.encode())
    out = tmp_path / "sorted"
    script = textwrap.dedent(f"""
        import os, signal
        from imgclf.inference.sort_into import Sorter
        sorter = Sorter({str(out)!r}, move=True)
        for i, name in enumerate({names!r}):
            sorter.add({{"path": os.path.join({str(src)!r}, name), "class": "cat" if i % 2 else "dog",
                        "probability": 0.5, "error": ""}})
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush at exit
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    moved = {str(p) for p in out.rglob("*.jpg")}
    assert len(moved) == 40 and not list(src.iterdir())
    logged = {r["destination"] for r in _log(out / "sorted.csv") if r["action"] == "moved"}
    assert moved == logged


def test_non_utf8_name_is_moved_and_logged_as_its_bytes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    raw = os.fsencode(src) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(b"pixels")
    out = tmp_path / "sorted"
    with Sorter(out, move=True) as sorter:
        sorter.add(_row(os.fsdecode(raw)))
    assert not os.path.exists(raw)
    (row,) = [r for r in _log(out / "sorted.csv") if r["action"] == "moved"]
    assert os.fsencode(row["source"]) == raw
    assert os.fsencode(row["destination"]) == os.fsencode(out) + b"/cat/caf\xe9.jpg"
    with open(os.fsencode(row["destination"]), "rb") as f:
        assert f.read() == b"pixels"
    assert b"caf\xe9.jpg" in (out / "sorted.csv").read_bytes()  # the name's own bytes, not an escape
