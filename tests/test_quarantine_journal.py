"""Quarantine's journal (issue 19, items 5-6): written ahead of each move, linear, and never trusted outside its roots."""

from __future__ import annotations

import json
import os

import pytest

from imgclf.core.errors import UserError
from imgclf.data.check import quarantine as q
from imgclf.data.check.journal import JOURNAL_NAME


def _data(tmp_path, n=6):
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(n):
            (data / c / f"{i}.png").write_bytes(f"{c}{i}".encode())
    return data


def _moves(data):
    return [{"path": p.relative_to(data).as_posix(), "reason": "empty: test"} for p in sorted(data.rglob("*.png"))]


def test_fsyncs_per_group_not_per_file(tmp_path, monkeypatch):
    """The old code rewrote and fsynced the whole log after every file: quadratic (4,000 files 80 s)."""
    data = _data(tmp_path, n=300)
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    moved = q.quarantine(data, _moves(data), tmp_path / "q")
    assert len(moved) == 600
    assert len(calls) <= 10, f"{len(calls)} fsyncs for 600 files"
    calls.clear()
    assert len(q.restore(tmp_path / "q")["restored"]) == 600 and len(calls) <= 10


def test_restore_finishes_a_move_whose_result_was_not_logged(tmp_path, monkeypatch):
    """A kill after the rename, before the log: the file must come back ("Restored 497" of 498)."""
    data = _data(tmp_path)
    before = sorted(p.read_bytes() for p in data.rglob("*.png"))

    def killed():
        raise SystemExit("killed")

    monkeypatch.setattr(q, "kill_point", lambda name: killed() if name == "quarantine.moved" else None)
    with pytest.raises(SystemExit):
        q.quarantine(data, _moves(data), tmp_path / "q")
    monkeypatch.undo()
    assert len(list(data.rglob("*.png"))) == 11  # the first file moved, its result unlogged
    result = q.restore(tmp_path / "q")
    assert result["restored"] == ["a/0.png"] and not result["kept"]
    assert sorted(p.read_bytes() for p in data.rglob("*.png")) == before


@pytest.mark.parametrize("entry", [
    {"from": "../outside/victim.png", "to": "a/0.png"},
    {"from": "a/0.png", "to": "../outside/victim.png"},
    {"from": "/etc/hostname-copy", "to": "a/0.png"},
    {"from": "link/victim.png", "to": "a/0.png"},  # data/link -> ../outside: a symbolic link out of the folder
])
def test_restore_refuses_paths_outside_its_folders(tmp_path, entry):
    data, qdir, outside = tmp_path / "data", tmp_path / "q", tmp_path / "outside"
    for d in (data / "a", qdir / "a", outside):
        d.mkdir(parents=True)
    (data / "link").symlink_to(outside)
    (outside / "victim.png").write_bytes(b"not yours")
    (qdir / "a" / "0.png").write_bytes(b"quarantined")
    # the format before the journal: still read
    (qdir / "quarantine.json").write_text(json.dumps({"data": str(data), "entries": [{**entry, "reason": "x", "sha1": ""}]}))
    with pytest.raises(UserError, match="outside the data folder"):
        q.restore(qdir)
    assert (outside / "victim.png").read_bytes() == b"not yours" and (qdir / "a" / "0.png").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["victim.png"]


def test_an_old_quarantine_json_is_restored_and_carried_into_the_journal(tmp_path):
    data, qdir = tmp_path / "data", tmp_path / "q"
    (data / "a").mkdir(parents=True)
    (qdir / "a").mkdir(parents=True)
    (qdir / "a" / "x.png").write_bytes(b"x")
    (qdir / "quarantine.json").write_text(json.dumps({"data": str(data), "entries": [
        {"from": "a/x.png", "to": "a/x.png", "reason": "empty", "sha1": "", "time": ""}]}))
    assert q.restore(qdir)["restored"] == ["a/x.png"]
    assert (data / "a" / "x.png").read_bytes() == b"x" and (qdir / JOURNAL_NAME).exists()
    assert json.loads((qdir / "quarantine.json").read_text())["entries"] == []


def test_a_line_cut_short_by_a_kill_is_dropped(tmp_path):
    data = _data(tmp_path, n=2)
    q.quarantine(data, _moves(data)[:2], tmp_path / "q")
    with open(tmp_path / "q" / JOURNAL_NAME, "a") as f:
        f.write('{"op":"mov')  # a write cut short
    assert sorted(q.restore(tmp_path / "q")["restored"]) == ["a/0.png", "a/1.png"]
    lines = (tmp_path / "q" / JOURNAL_NAME).read_text().splitlines()
    assert all(json.loads(line) for line in lines)
