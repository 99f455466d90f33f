"""One crafted image never crashes a command (issue 19, item 3).

A deterministic mutation fuzz of small seed files: whatever the bytes, the
decoder returns an array or raises `DecodeError`, and `imgclf check`'s and
the split's per-file readers return a reason. Formats imgclf does not
document (DDS, BLP, SPIDER, IM, ...) are refused before any of Pillow's
readers for them runs. Then the commands themselves: `imgclf check` and
`imgclf predict` on a folder with one crafted file finish and name it.
"""

import csv
import io
import random
import struct
import time
import warnings

import numpy as np
import pytest
from PIL import Image
from tiny_model import write_tiny_onnx

from imgclf.cli import main
from imgclf.data.check.health import inspect_file
from imgclf.data.decode import DecodeError, DecodeErrorKind, decode_image
from imgclf.data.fingerprint import fingerprint_file

DOCUMENTED = {"PNG": "RGB", "JPEG": "RGB", "BMP": "RGB", "GIF": "P", "TIFF": "RGB", "WEBP": "RGB"}
UNDOCUMENTED = {"DDS": "RGB", "BLP": "P", "SPIDER": "F", "IM": "RGB"}


def _saved(fmt: str, mode: str) -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, fmt)
    return buf.getvalue()


def _crafted_dds() -> bytes:
    data = bytearray(_saved("DDS", "RGB"))
    data[80:88] = struct.pack("<I", 0x4) + b"XXXX"  # a FourCC pixel format Pillow does not implement
    return bytes(data)


def _crafted_blp() -> bytes:
    data = bytearray(_saved("BLP", "P"))
    data[4] = 9  # an unknown compression
    return bytes(data)


def _mutants(seed: bytes, n: int, rng: random.Random):
    for _ in range(n):
        b = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            if not b:
                break
            pos, op = rng.randrange(len(b)), rng.random()
            if op < 0.6:
                b[pos] = rng.randrange(256)
            elif op < 0.85:
                b[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\0\0\0"])
            else:
                del b[pos:]
        yield bytes(b)


def _decodes_or_refuses(data: bytes):
    try:
        out = decode_image(data, size=8)
    except DecodeError as e:
        return e
    assert isinstance(out, np.ndarray) and out.shape == (8, 8, 3)
    return out


@pytest.mark.parametrize("make", [_crafted_dds, _crafted_blp] + [
    (lambda fmt=fmt, mode=mode: _saved(fmt, mode)) for fmt, mode in UNDOCUMENTED.items()],
    ids=["DDS-crafted", "BLP-crafted", *UNDOCUMENTED])
def test_undocumented_formats_are_refused_unread(make):
    with pytest.raises(DecodeError) as info:
        decode_image(make(), size=8)
    assert info.value.kind is DecodeErrorKind.NOT_AN_IMAGE and info.value.reason.startswith("not an image")


def test_mutation_fuzz_only_arrays_or_decode_errors(tmp_path):
    rng = random.Random(19)
    seeds = {fmt: _saved(fmt, mode) for fmt, mode in {**DOCUMENTED, **UNDOCUMENTED}.items()}
    seeds["DDS-crafted"], seeds["BLP-crafted"] = _crafted_dds(), _crafted_blp()
    start, cases, decoded = time.perf_counter(), 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about damaged TIFF tags; not the point here
        for fmt, seed in seeds.items():
            n = 400 if fmt in DOCUMENTED else 100
            for i, data in enumerate(_mutants(seed, n, rng)):
                cases += 1
                decoded += isinstance(_decodes_or_refuses(data), np.ndarray)
                if i % 10 == 0:  # the per-file readers of `imgclf check` and of the split (fingerprints)
                    path = tmp_path / f"{fmt}_{i}.png"
                    path.write_bytes(data)
                    rec = inspect_file(str(path))
                    assert rec["usable"] or rec["problems"]
                    assert isinstance(fingerprint_file(str(path))["error"], str)
    assert cases == 3000 and 0 < decoded < cases  # some mutants still decode, many do not
    assert time.perf_counter() - start < 30  # about 2 s on one idle core; no mutant may make decoding crawl


def _folder_with_crafted_file(root):
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), colour).save(root / label / f"{i}.png")
    (root / "red" / "crafted.png").write_bytes(_crafted_dds())
    return root


def test_check_and_predict_skip_a_crafted_file(tmp_path, capsys):
    data = _folder_with_crafted_file(tmp_path / "data")
    assert main(["check", str(data), "--workers", "1", "--json", str(tmp_path / "health.json")]) == 3  # a blocking problem
    out = capsys.readouterr().out
    assert "red/crafted.png" in out and "DDS is not supported" in out
    model = write_tiny_onnx(tmp_path / "tiny.onnx")
    assert main(["predict", str(model), str(data), "--format", "csv", "--output", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", newline="") as f:
        rows = {r["path"].rsplit("/", 2)[-2] + "/" + r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    assert len(rows) == 7 and rows["red/crafted.png"]["class"] == ""
    assert rows["red/crafted.png"]["error"].startswith("not an image")
    assert rows["red/0.png"]["class"] == "red" and rows["blue/0.png"]["class"] == "blue"


def test_server_answers_a_crafted_upload_with_a_4xx(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import imgclf
    from imgclf.serve.app import create_app

    good = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(good, "PNG")
    with TestClient(create_app(imgclf.load(write_tiny_onnx(tmp_path / "tiny.onnx"))), base_url="http://localhost") as client:
        r = client.post("/predict", files={"file": ("x.png", _crafted_blp(), "image/png")})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/json"), r.text
        files = [("files", ("good.png", good.getvalue(), "image/png")), ("files", ("bad.png", _crafted_dds(), "image/png"))]
        r = client.post("/predict/batch", files=files)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["class"] == "blue" and results[1]["error"] == "not an image"


def test_training_split_and_decode_skip_a_crafted_file(tmp_path):
    from imgclf.data.pipeline import decode_all
    from imgclf.data.split import training_rows

    data = _folder_with_crafted_file(tmp_path / "data")
    (data / "blue" / "crafted.bmp").write_bytes(_crafted_blp())
    rows, classes = training_rows(str(data), workers=1, verbose=False)
    skipped = {r["path"].rsplit("/", 1)[-1]: r["status"] for r in rows if r.get("status", "").startswith("skipped")}
    assert classes == ["blue", "red"] and set(skipped) == {"crafted.png", "crafted.bmp"}
    ds = decode_all([r["path"] for r in rows], [classes.index(r["label"]) for r in rows], size=8, color_mode="rgb",
                    workers=1, verbose=False)
    assert len(ds) == 6 and sorted(p.rsplit("/", 1)[-1] for p, _ in ds.skipped) == ["crafted.bmp", "crafted.png"]
    assert all(reason.startswith("not an image") for _, reason in ds.skipped)
