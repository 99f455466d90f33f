"""imgclf split: byte-identical manifests, duplicates and groups never straddling splits."""

import io
import shutil

import numpy as np
import pytest
from conftest import draw
from PIL import Image

from imgclf.cli import main
from imgclf.core.manifest import read_manifest
from imgclf.data.fingerprint import duplicate_groups, near_pairs, perceptual_hash
from imgclf.data.split import split_folder, stratified_split


def _folder_with_duplicates(root, per_class=20):  # per_class >= 16
    """3 classes; 6 exact copies (two across classes) and 6 re-encoded near copies."""
    rng = np.random.default_rng(3)
    classes = ("circle", "square", "stripes")
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(draw(c, rng, 32)).save(root / c / f"{c}_{i:02d}.png")
    for i in range(6):
        c = classes[i % 3]
        target = classes[(i + 1) % 3] if i < 2 else c  # two label conflicts
        shutil.copy(root / c / f"{c}_{i:02d}.png", root / target / f"copy_{i}.png")
        img = Image.open(root / c / f"{c}_{10 + i:02d}.png")
        (img if c == "stripes" else img.resize((40, 40))).save(root / c / f"near_{i}.jpg", quality=85)
    return root


def _by_group(rows):
    groups = {}
    for r in rows:
        if r["group"]:
            groups.setdefault(r["group"], set()).add(r["split"])
    return groups


def test_same_seed_same_bytes_other_seed_other_split(tmp_path):
    data = _folder_with_duplicates(tmp_path / "data")
    split_folder(data, tmp_path / "a.csv", seed=0, verbose=False)
    split_folder(data, tmp_path / "b.csv", seed=0, verbose=False)
    split_folder(data, tmp_path / "c.csv", seed=1, verbose=False)
    a = (tmp_path / "a.csv").read_bytes()
    assert a == (tmp_path / "b.csv").read_bytes()
    assert a != (tmp_path / "c.csv").read_bytes()
    assert a.startswith(b"path,label,split,sha1,status,group\n") and b"/tmp" not in a  # relative paths
    rows = read_manifest(tmp_path / "a.csv")
    assert all(Image.open(r["path"]).size for r in rows)  # paths resolve from the manifest's folder


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_duplicates_never_straddle_splits(tmp_path, seed):
    data = _folder_with_duplicates(tmp_path / "data")
    rows = split_folder(data, tmp_path / "s.csv", val_fraction=0.2, test_fraction=0.2, seed=seed, verbose=False)
    groups = _by_group(rows)
    assert len([g for g in groups if g.startswith("dup:")]) == 12  # 6 exact pairs, 6 near pairs
    assert all(len(splits) == 1 for splits in groups.values()), groups
    for c in ("circle", "square", "stripes"):  # still stratified: about 20% per held-out split
        n = {s: sum(r["label"] == c and r["split"] == s for r in rows) for s in ("train", "val", "test")}
        assert 3 <= n["test"] <= 6 and 3 <= n["val"] <= 6, (c, n)


def test_group_by_keeps_each_patient_in_one_split(tmp_path, capsys):
    rng = np.random.default_rng(5)
    for c in ("healthy", "sick"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for patient in range(12):
            for k in range(3):
                Image.fromarray(draw("circle" if c == "sick" else "square", rng, 20)).save(
                    tmp_path / "data" / c / f"patient{patient:02d}_{c}_{k}.png")
    out = tmp_path / "split.csv"
    assert main(["split", str(tmp_path / "data"), "--out", str(out), "--group-by", r"patient(\d+)_", "--seed", "4"]) == 0
    assert "group(s) kept whole" in capsys.readouterr().out
    rows = read_manifest(out)
    splits = {}
    for r in rows:
        splits.setdefault(r["group"], set()).add(r["split"])
    assert len(splits) == 12 and all(len(s) == 1 for s in splits.values())  # the same patient in both classes too
    assert {"train", "val", "test"} == {s for v in splits.values() for s in v}


def test_split_usage_errors(tmp_path):
    data = _folder_with_duplicates(tmp_path / "data", per_class=16)
    assert main(["split", str(data), "--out", str(tmp_path / "s.csv"), "--val", "0.6", "--test", "0.4"]) == 2
    assert main(["split", str(data), "--out", str(tmp_path / "s.csv"), "--group-by", "("]) == 2
    assert main(["split", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")]) == 2


def test_groups_keep_the_old_behaviour_for_singletons():
    rows = [{"path": f"/d/{c}/{i:03d}.png", "label": c, "split": ""} for c in "ab" for i in range(30)]
    plain = stratified_split(rows, 0.2, 0.1, seed=3)
    grouped = stratified_split(rows, 0.2, 0.1, seed=3, groups=[""] * len(rows))
    assert [r["split"] for r in plain] == [r["split"] for r in grouped]
    keys = [f"g{i // 5}" for i in range(len(rows))]  # groups of five
    split = stratified_split(rows, 0.2, 0.1, seed=3, groups=keys)
    by_key = {}
    for k, r in zip(keys, split):
        by_key.setdefault(k, set()).add(r["split"])
    assert all(len(v) == 1 for v in by_key.values())
    assert sum(r["split"] == "test" for r in split) == 10 and sum(r["split"] == "val" for r in split) == 10


def test_near_duplicate_hashing():
    rng = np.random.default_rng(0)
    img = Image.fromarray(draw("circle", rng, 64))
    buf = io.BytesIO()
    img.resize((48, 48)).save(buf, "JPEG", quality=80)
    other = Image.fromarray(draw("circle", rng, 64))  # the same kind of picture, not the same photo
    (h0, t0), (h1, t1), (h2, t2) = perceptual_hash(img), perceptual_hash(Image.open(buf)), perceptual_hash(other)
    assert bin(h0 ^ h1).count("1") <= 4
    exact, near = duplicate_groups(["x", "y", "z", "x"], [h0, h1, h2, h0], [t0, t1, t2, t0])
    assert exact == [[0, 3]] and near == [[0, 1, 3]]
    # Many hashes: the multi-index search agrees with comparing every pair.
    many = [int(v) for v in rng.integers(0, 2**63, 400)]
    many += [many[i] ^ (1 << (i * 7)) ^ (1 << 60) for i in range(5)] + [many[7]]
    brute = sorted((i, j) for i in range(len(many)) for j in range(i + 1, len(many))
                   if bin(many[i] ^ many[j]).count("1") <= 8)
    assert near_pairs(many) == brute and len(brute) >= 6


def test_training_copies_of_the_users_test_images_are_excluded_not_moved(tmp_path):
    """A user's own test/ folder is the evaluation set: it keeps its size; train copies of it are left out."""
    import shutil

    from imgclf.data.split import training_rows
    from tests.conftest import make_image_folder

    make_image_folder(tmp_path / "d" / "train", per_class=8, seed=1)
    make_image_folder(tmp_path / "d" / "test", per_class=3, seed=2)
    copy_source = sorted((tmp_path / "d" / "test" / "square").iterdir())[0]
    shutil.copy(copy_source, tmp_path / "d" / "train" / "square" / ("copy_of_test" + copy_source.suffix))
    rows, _ = training_rows(tmp_path / "d", val_fraction=0.2, seed=0, verbose=False)
    test_rows = [r for r in rows if r["split"] == "test"]
    assert len(test_rows) == 9 and all("/test/" in r["path"] for r in test_rows)
    excluded = [r for r in rows if r["split"] == "excluded"]
    assert [r["path"].split("/")[-1] for r in excluded] == ["copy_of_test" + copy_source.suffix]
    assert excluded[0]["status"].startswith("excluded: duplicate")
