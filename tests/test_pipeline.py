import numpy as np
from PIL import Image

from imgclf.data.pipeline import decode_all, make_dataset


def test_decode_all_skips_bad_files_with_reasons(tmp_path):
    good = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(p)
        good.append(str(p))
    (tmp_path / "bad.png").write_bytes(b"nope")
    (tmp_path / "empty.jpg").write_bytes(b"")
    paths = good[:2] + [str(tmp_path / "bad.png")] + good[2:] + [str(tmp_path / "empty.jpg")]
    labels = [0, 1, 0, 1, 0, 1, 1]
    ds = decode_all(paths, labels, size=4, color_mode="rgb", verbose=False)
    assert len(ds) == 5 and ds.images.shape == (5, 4, 4, 3)
    assert ds.paths == good
    assert ds.labels.tolist() == [0, 1, 1, 0, 1]
    assert [r for _, r in ds.skipped] == ["not an image (unknown or corrupt format)", "empty file (0 bytes)"]
    assert len(ds.sha1[0]) == 40


def test_disk_cache_gives_same_pixels(tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((6, 6), i * 30, np.uint8)).save(p)
        paths.append(str(p))
    (tmp_path / "bad.png").write_bytes(b"nope")
    mem = decode_all(paths + [str(tmp_path / "bad.png")], list(range(7)), 6, "grayscale", verbose=False)
    disk = decode_all(paths + [str(tmp_path / "bad.png")], list(range(7)), 6, "grayscale", cache="disk",
                      cache_path=tmp_path / "cache" / "x.npy", verbose=False)
    assert np.array_equal(np.asarray(disk.images), mem.images)
    batches = list(make_dataset(disk, batch_size=4, shuffle=True, seed=0))
    assert sorted(np.concatenate([y.numpy() for _, y in batches]).tolist()) == list(range(6))


def test_dataset_batches_are_float_pixels_and_cover_everything(tmp_path):
    paths = []
    for i in range(10):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (5, 5), (i, i, i)).save(p)
        paths.append(str(p))
    ds = decode_all(paths, list(range(10)), 5, "rgb", verbose=False)
    batches = list(make_dataset(ds, batch_size=4, shuffle=True, seed=3))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, _ = batches[0]
    assert x.dtype.name == "float32" and x.shape[1:] == (5, 5, 3)
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert sorted(labels.tolist()) == list(range(10)) and labels.tolist() != list(range(10))


def test_pipelines_run_without_the_autotuning_thread():
    # Deleting an autotuned iterator waits out the tuner's period (up to 60 s): a tune's pruned
    # trials lost 22 and 57 s to it (bench/RESULTS.md, issue 17). Training and validation pipelines both turn it off.
    from imgclf.data.augment import make_train_map
    from imgclf.data.pipeline import DecodedSet

    data = DecodedSet(np.zeros((6, 8, 8, 3), np.uint8), np.array([0, 1, 0, 1, 0, 1], np.int32), [])
    train = make_dataset(data, 4, shuffle=True, map_fn=make_train_map("standard", "horizontal", 2, one_hot=True, mixup=0.2))
    val = make_dataset(data, 4)
    assert not train.options().autotune.enabled and not val.options().autotune.enabled
    assert sum(int(x.shape[0]) for x, _ in train) == 6  # the parallel maps still run
