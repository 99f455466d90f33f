import pytest
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.core.manifest import manifest_csv, read_manifest
from imgclf.data.scan import require_trainable, scan_folder
from imgclf.data.split import stratified_split


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, "PNG")


def test_scan_finds_all_extensions_any_case_and_ignores_junk(tmp_path):
    for ext in ("jpg", "JPEG", "png", "Bmp", "gif", "webp", "tif", "TIFF"):
        _img(tmp_path / "a" / f"x.{ext}")
    _img(tmp_path / "b" / "deeper" / "y.png")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "README.md").write_text("x")
    scan = scan_folder(tmp_path)
    assert scan.classes == ["a", "b"] and scan.layout == "folders"
    assert scan.counts() == {"a": 8, "b": 1}
    reasons = {r for _, r in scan.ignored}
    assert reasons == {"hidden or system file", "not an image file extension", "file outside class folders"}


def test_split_layout_is_used(tmp_path):
    for split in ("train", "validation", "test"):
        for c in ("x", "y"):
            _img(tmp_path / split / c / "1.png")
    scan = scan_folder(tmp_path)
    assert scan.layout == "splits"
    assert {r["split"] for r in scan.rows} == {"train", "val", "test"}


def test_val_class_missing_from_train_is_error(tmp_path):
    _img(tmp_path / "train" / "x" / "1.png")
    _img(tmp_path / "train" / "y" / "1.png")
    _img(tmp_path / "val" / "z" / "1.png")
    with pytest.raises(UserError, match="classes that train/ lacks: z"):
        scan_folder(tmp_path)


@pytest.mark.parametrize("layout, message", [
    ({}, "No class folders"),
    ({"only": 2}, "Only one class"),
    ({"a": 2, "empty": 0}, "no images.*empty"),
])
def test_untrainable_folders(tmp_path, layout, message):
    tmp_path.joinpath("d").mkdir()
    for c, n in layout.items():
        (tmp_path / "d" / c).mkdir()
        for i in range(n):
            _img(tmp_path / "d" / c / f"{i}.png")
    with pytest.raises(UserError, match=message):
        require_trainable(scan_folder(tmp_path / "d"))


def test_missing_folder_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        scan_folder(tmp_path / "nope")


def _rows(counts):
    return [{"path": f"/d/{c}/{i:03d}.png", "label": c, "split": ""} for c, n in counts.items() for i in range(n)]


def test_stratified_split_is_per_class_and_deterministic():
    rows = _rows({"a": 100, "b": 20, "c": 3})
    one = stratified_split(rows, 0.1, 0.2, seed=1)
    two = stratified_split(list(reversed(rows)), 0.1, 0.2, seed=1)
    assert manifest_csv(one) == manifest_csv(two)
    count = lambda rs, c, s: sum(r["label"] == c and r["split"] == s for r in rs)
    assert (count(one, "a", "test"), count(one, "a", "val"), count(one, "a", "train")) == (20, 8, 72)
    assert count(one, "c", "train") >= 1 and count(one, "c", "val") == 1
    other = stratified_split(rows, 0.1, 0.2, seed=2)
    assert manifest_csv(other) != manifest_csv(one)


def test_manifest_roundtrip(tmp_path):
    rows = stratified_split(_rows({"a": 5, "b": 5}), 0.2, 0.0, seed=0)
    (tmp_path / "m.csv").write_text(manifest_csv(rows))
    back = read_manifest(tmp_path / "m.csv")
    assert sorted((r["path"], r["split"]) for r in back) == sorted((r["path"], r["split"]) for r in rows)
