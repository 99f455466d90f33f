"""imgclf check: the report on a folder with every problem, quarantine and restore losing nothing."""

import hashlib
import json
import os
import shutil

import pytest
from PIL import Image
from problem_data import IS_ROOT, make_problem_folder

from imgclf.cli import main
from imgclf.data.check.health import EXIT_BLOCKING, check, check_folder
from imgclf.data.check.quarantine import restore
from imgclf.data.check.report import format_report


@pytest.fixture
def problem_folder(tmp_path):
    expected = make_problem_folder(tmp_path / "data", empty_class=True)
    yield tmp_path / "data", expected
    for dirpath, _, files in os.walk(tmp_path):  # let pytest clean up the unreadable file
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


def _found(report):
    return {k: {f["path"] for f in v["files"]} for k, v in report["problems"].items()}


def test_report_finds_every_problem_with_its_reason(problem_folder):
    data, expected = problem_folder
    report = check_folder(data, verbose=False)
    found = _found(report)
    for kind, paths in expected.items():
        if not kind.startswith("_"):
            assert found.get(kind) == paths, kind
    unexpected = set(found) - set(expected) - {"near_label_conflict", "near_leakage"}
    assert not unexpected, {k: found[k] for k in unexpected}
    reasons = {f["path"]: f["reason"] for v in report["problems"].values() for f in v["files"]}
    assert reasons["circle/empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in reasons["circle/truncated.jpg"]
    assert "12000x9000 pixels is over the limit of 100,000,000" in reasons["stripes/bomb.png"]
    assert reasons["square/really_png.jpg"] == "named .jpg but is PNG"
    assert reasons["stripes/anim.gif"].startswith("3 frames")
    assert reasons["circle/loop.jpg"] == "symbolic-link loop"
    assert "also in class(es) square" in reasons["circle/img_5.png"]

    assert report["blocking"] and report["exit_status"] == EXIT_BLOCKING == 3
    # Classes count usable images: 12 drawn + cmyk, palette, tiny, copy (+ locked when root reads it).
    assert report["classes"]["circle"]["images"] == 16 + IS_ROOT
    assert report["classes"]["stripes"]["images"] == 6 + 4  # anim, sixteen, float, near copy
    assert report["classes"]["unused"] == {"files": 0, "images": 0, "share": 0.0}
    assert report["imbalance_ratio"] == round((16 + IS_ROOT) / 10, 3)
    images = report["images"]
    assert images["exif_orientation_not_normal"] == 1 and images["animated"] == 1
    assert {"CMYK", "I;16", "F", "RGBA", "P", "RGB"} <= set(images["modes"])
    assert images["bit_depths"][16] == 1 and images["formats"]["TIFF"] == 1
    assert images["width"]["min"] == 10 and images["width"]["max"] == 24
    assert report["ignored"]["hidden_or_system"]["files"] == sorted(expected["_hidden"])
    assert report["ignored"]["other_extension"]["files"] == ["stripes/labels.csv"]

    dup = report["duplicates"]
    groups = {(g["kind"], "|".join(m["path"] for m in g["files"])) for g in dup["groups"]}
    assert groups == {("exact", g) for g in expected["_exact_groups"]} | {("near", g) for g in expected["_near_groups"]}
    assert dup["groups"][0]["label_conflict"]  # conflicts are listed first

    text = format_report(report)
    assert "Blocking problems:" in text and "exit status 3" in text and "stripes/bomb.png" in text
    assert text.index("label_conflict") < text.index("too_small")
    # Scripts gate on the exit status; the JSON has every path.
    assert main(["check", str(data), "--json", str(data.parent / "r.json"), "--workers", "2"]) == 3
    saved = json.loads((data.parent / "r.json").read_text())
    assert saved["problems"]["corrupt"]["files"] == report["problems"]["corrupt"]["files"]


def test_leakage_between_the_users_splits(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
    for i, c in enumerate("ab"):
        for j in range(3):
            Image.new("RGB", (20, 20), (40 * i + 10 * j, 255 - 60 * j, 30 * j)).save(tmp_path / "train" / c / f"{j}.png")
    shutil.copy(tmp_path / "train" / "a" / "0.png", tmp_path / "test" / "a" / "same.png")
    Image.new("RGB", (20, 20), (200, 10, 90)).save(tmp_path / "test" / "b" / "own.png")
    report = check_folder(tmp_path, verbose=False, near_distance=0)
    assert _found(report)["leakage"] == {"train/a/0.png", "test/a/same.png"}
    assert report["splits"] == {"train": 6, "test": 2} and report["exit_status"] == 3


def _snapshot(root):
    """Every entry under root: file -> sha1 (or 'unreadable'), link -> its target."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in files + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            elif os.access(p, os.R_OK):
                out[rel] = hashlib.sha1(open(p, "rb").read()).hexdigest()
            else:
                out[rel] = f"unreadable:{os.path.getsize(p)}"
    return out


def test_quarantine_and_restore_lose_nothing(problem_folder, tmp_path, capsys):
    data, _ = problem_folder
    shutil.rmtree(data / "unused")  # an empty class is fixed by the user, not by moving files
    before = _snapshot(data)
    qdir = tmp_path / "quarantine"
    status = main(["check", str(data), "--quarantine", str(qdir), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert status == 0, out  # what is left has no blocking problem
    moved = _snapshot(qdir)
    log = json.loads((qdir / "quarantine.json").read_text())
    left = _snapshot(data)
    # Nothing lost: what stayed plus what moved is exactly what was there.
    assert {k: v for k, v in moved.items() if k not in ("quarantine.json", "quarantine.jsonl")} | left == before
    assert not set(left) & set(moved)
    reasons = {e["from"]: e["reason"].split(":")[0] for e in log["entries"]}
    assert reasons["circle/empty.jpg"] == "empty" and reasons["stripes/bomb.png"] == "too_large"
    assert reasons["square/conflict.png"] == reasons["circle/img_5.png"] == "label_conflict"
    assert reasons["circle/img_3_copy.png"] == "exact_duplicate" and "circle/img_3.png" in left
    assert reasons["square/again"] == "symlink_loop" and "stripes/anim.gif" in left  # warnings stay
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_status"] == 0 and len(report["quarantine"]["moved"]) == len(log["entries"])

    assert main(["check", "--restore", str(qdir)]) == 0
    assert _snapshot(data) == before
    assert json.loads((qdir / "quarantine.json").read_text())["entries"] == []


def test_restore_never_overwrites(tmp_path):
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (80 * i, 100 if c == "a" else 0, 5)).save(data / c / f"{i}.png")
    (data / "a" / "bad.png").write_bytes(b"nope")
    report = check(data, quarantine_dir=tmp_path / "q", verbose=False)
    assert [e["from"] for e in report["quarantine"]["moved"]] == ["a/bad.png"]
    (data / "a" / "bad.png").write_bytes(b"a new file the user made")
    result = restore(tmp_path / "q")
    assert result["restored"] == [] and result["kept"][0]["path"] == "a/bad.png"
    assert (data / "a" / "bad.png").read_bytes() == b"a new file the user made"
    assert (tmp_path / "q" / "a" / "bad.png").read_bytes() == b"nope"


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert main(["check"]) == 2
    assert main(["check", "--restore", str(tmp_path)]) == 2
    (tmp_path / "d" / "a").mkdir(parents=True)
    assert main(["check", str(tmp_path / "d"), "--quarantine", str(tmp_path / "d" / "q")]) == 2
    err = capsys.readouterr().err
    assert "inside the data folder" in err and "Traceback" not in err


def test_worker_processes_give_the_same_report(problem_folder):
    """Big folders go to worker processes; the report must not depend on it."""
    import subprocess
    import sys

    from imgclf.data.check.report import report_json

    data, _ = problem_folder
    threads = json.loads(report_json(check_folder(data, verbose=False)))
    code = ("import sys, imgclf.data.parallel as p; p.PROCESS_MIN_FILES = 1; p.CHUNK = 4\n"
            "from imgclf.data.check.health import check_folder; from imgclf.data.check.report import report_json\n"
            "assert p._can_fork()\n"
            f"sys.stdout.write(report_json(check_folder({str(data)!r}, verbose=False, workers=2)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == threads


@pytest.mark.skipif(not IS_ROOT, reason="runs as root only; as a normal user the main report test covers it")
def test_unreadable_file_when_not_root(tmp_path_factory):
    """Root reads any file, so drop to an unprivileged user to see a real permission error."""
    import subprocess
    import sys
    import tempfile

    base = tempfile.mkdtemp(prefix="imgclf-perm-")
    try:
        os.chmod(base, 0o755)
        data = os.path.join(base, "data")
        for c in ("a", "b"):
            os.makedirs(os.path.join(data, c))
            for i in range(2):
                Image.new("RGB", (20, 20), (90 * i, 50, 200 if c == "a" else 0)).save(os.path.join(data, c, f"{i}.png"))
        locked = os.path.join(data, "a", "locked.png")
        Image.new("RGB", (20, 20)).save(locked)
        os.chmod(locked, 0)
        for dirpath, dirs, _ in os.walk(base):
            os.chmod(dirpath, 0o755)
        code = ("import json, sys; from imgclf.data.check.health import check_folder; "
                f"r = check_folder({data!r}, verbose=False); print(json.dumps(r['problems'].get('unreadable')))")
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                 preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
        except (PermissionError, OSError) as e:
            pytest.skip(f"cannot switch to an unprivileged user here: {e}")
        if out.returncode != 0 and "Permission denied" in out.stderr and "imgclf" not in out.stderr:
            pytest.skip("the unprivileged user cannot run this Python")
        assert out.returncode == 0, out.stderr
        problem = json.loads(out.stdout)
        assert problem["files"] == [{"path": "a/locked.png", "reason": "unreadable: permission denied"}]
        assert problem["blocking"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_single_class_is_a_blocking_problem(tmp_path):
    for i in range(3):
        (tmp_path / "only").mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), (i * 50, 0, 0)).save(tmp_path / "only" / f"{i}.png")
    report = check_folder(tmp_path)
    assert report["blocking"] and report["exit_status"] == EXIT_BLOCKING
    assert "too_few_classes" in report["problems"]


def test_near_duplicates_see_colour(tmp_path):
    """A recoloured picture with the very same grey levels is not a near duplicate; a JPEG copy still is."""
    import io

    import numpy as np

    from imgclf.data.fingerprint import duplicate_groups, perceptual_hash

    rng = np.random.default_rng(0)
    shape = rng.random((8, 8)).repeat(8, 0).repeat(8, 1) > 0.5  # blocky two-tone picture, 64x64
    red, green = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[shape] = (200, 0, 0)
    green[shape] = (0, 102, 0)  # the same luma as (200, 0, 0): identical greyscale pictures
    imgs = [Image.fromarray(red), Image.fromarray(green)]
    buf = io.BytesIO()
    imgs[0].save(buf, "JPEG", quality=90)
    imgs.append(Image.open(io.BytesIO(buf.getvalue())))
    assert np.array_equal(np.asarray(imgs[0].convert("L")), np.asarray(imgs[1].convert("L")))
    hashes, thumbs = zip(*(perceptual_hash(im) for im in imgs))
    _, near = duplicate_groups(["r", "g", "j"], list(hashes), list(thumbs))
    assert near == [[0, 2]]
