"""Fingerprints kept between commands (imgclf.data.fingerprint_cache): used only while the file is unchanged."""

from __future__ import annotations

import os
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image

from imgclf.data import fingerprint_cache
from imgclf.data.fingerprint import fingerprint_files
from imgclf.data.fingerprint_cache import cached_fingerprint_files


def _age(path, seconds: float = 3600) -> None:
    """Date the file `seconds` back: the cache stores only files not modified in the last RACY_S seconds."""
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / "data" / f"img_{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
        _age(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """A private cache folder, and the paths `fingerprint_files` was asked to compute, call by call."""
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))
    asked: list[list[str]] = []

    def counting(paths, **kwargs):
        asked.append(list(paths))
        return fingerprint_files(paths, **kwargs)

    monkeypatch.setattr(fingerprint_cache, "fingerprint_files", counting)
    return asked


def test_a_second_pass_reads_unchanged_files_from_the_cache(images, counted):
    first = cached_fingerprint_files(images, verbose=False)
    second = cached_fingerprint_files(images, verbose=False)
    assert counted == [images, []]  # the second pass computed nothing
    assert second == first == fingerprint_files(images, verbose=False)
    assert all(p["phash"] is not None and p["phash"] >= 0 for p in second)  # 64-bit hashes survive SQLite's signed ints


def test_a_changed_file_is_fingerprinted_again(images, counted):
    before = cached_fingerprint_files(images, verbose=False)
    Image.new("RGB", (20, 20), (255, 0, 0)).save(images[1])  # same name, new picture
    _age(images[1], 60)
    after = cached_fingerprint_files(images, verbose=False)
    assert counted[-1] == [images[1]]
    assert after[1]["sha1"] != before[1]["sha1"] and after[1] == fingerprint_files([images[1]], verbose=False)[0]
    cached_fingerprint_files(images, max_pixels=10_000, verbose=False)  # another decoding limit: another entry
    assert counted[-1] == images


def test_new_files_and_failures_are_not_stored(images, counted, tmp_path):
    fresh = tmp_path / "data" / "fresh.png"
    Image.new("RGB", (20, 20)).save(fresh)  # modified just now: a rewrite within the clock tick could go unseen
    broken = tmp_path / "data" / "broken.png"
    broken.write_bytes(b"not an image")
    _age(broken)
    paths = images + [str(fresh), str(broken)]
    cached_fingerprint_files(paths, verbose=False)
    prints = cached_fingerprint_files(paths, verbose=False)
    assert counted[-1] == [str(fresh), str(broken)]
    assert prints[-1]["error"] and not prints[-2]["error"]


def test_the_cache_is_capped_and_can_be_turned_off(images, counted, monkeypatch, tmp_path):
    monkeypatch.setattr(fingerprint_cache, "MAX_ROWS", 3)
    cached_fingerprint_files(images, verbose=False)
    with sqlite3.connect(tmp_path / "cache" / "fingerprints.sqlite") as db:
        kept = [r[0] for r in db.execute("SELECT path FROM prints ORDER BY rowid")]
    assert kept == [os.fsencode(os.path.abspath(p)) for p in images[1:]]  # the oldest written went first
    monkeypatch.setenv("IMGCLF_CACHE_DIR", "off")
    assert fingerprint_cache.cache_dir() is None
    cached_fingerprint_files(images, verbose=False)
    assert counted[-1] == images


def test_a_cache_that_cannot_be_written_only_costs_time(images, counted, monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(blocker / "cache"))  # a folder under a file: cannot be made
    prints = cached_fingerprint_files(images, verbose=False)
    assert prints == fingerprint_files(images, verbose=False)
    assert "Fingerprint cache not used" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "fingerprints.sqlite").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(damaged))
    assert cached_fingerprint_files(images, verbose=False) == prints


def test_splitting_a_folder_twice_hashes_it_once(tmp_path, counted):
    from conftest import make_image_folder
    from imgclf.data.scan import scan_folder
    from imgclf.data.split import split_rows

    root = make_image_folder(tmp_path / "folder", per_class=4)
    for dirpath, _, files in os.walk(root):
        for f in files:
            _age(os.path.join(dirpath, f))
    scan = scan_folder(root)
    first = split_rows(scan.rows, 0.25, 0.0, seed=0, root=scan.root, verbose=False)
    second = split_rows(scan_folder(root).rows, 0.25, 0.0, seed=0, root=scan.root, verbose=False)
    assert len(counted[0]) == 12 and counted[1] == []
    assert first == second


def test_file_names_that_are_not_utf8_are_cached(tmp_path, counted):
    folder = tmp_path / "data"
    folder.mkdir()
    name = os.path.join(os.fsencode(folder), b"caf\xe9.png")  # Latin-1, as old cameras and zip files write
    Image.new("RGB", (20, 20), (0, 128, 0)).save(os.fsdecode(name))
    _age(name)
    paths = [os.fsdecode(name)]
    first = cached_fingerprint_files(paths, verbose=False)
    assert cached_fingerprint_files(paths, verbose=False) == first and counted == [paths, []]
