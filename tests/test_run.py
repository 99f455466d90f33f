import pytest

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_json, atomic_write_text, new_run_dir
from imgclf.core.run import Run


def test_new_run_dir_never_reuses_a_name(tmp_path):
    a = new_run_dir(tmp_path / "runs" / "x")
    b = new_run_dir(tmp_path / "runs" / "x")
    c = new_run_dir(tmp_path / "runs" / "x")
    assert [p.name for p in (a, b, c)] == ["x", "x-2", "x-3"]


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    atomic_write_json(tmp_path / "b.json", {"v": 1})
    assert (tmp_path / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]


def test_run_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="Run folder not found"):
        Run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an imgclf run"):
        Run(tmp_path / "empty")


def test_written_files_follow_the_umask_like_open_does(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_refuse_overwrite(tmp_path):
    from imgclf.core.fs import refuse_overwrite

    (tmp_path / "mine.csv").write_text("precious")
    with pytest.raises(UserError, match="already exists.*--overwrite"):
        refuse_overwrite(tmp_path / "mine.csv")
    assert refuse_overwrite(tmp_path / "mine.csv", overwrite=True).name == "mine.csv"
    assert refuse_overwrite(tmp_path / "new.csv").name == "new.csv"
