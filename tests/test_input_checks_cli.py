"""Input checks through the command line (issue 19, item 10): one line and exit status 2, never a traceback.

Tiny hand-built Keras models (no training): a Lambda model, a model whose
weights are NaN, and a plain one in a run folder with a broken preprocess.json.
"""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main

GOOD_PRE = {"img_size": 8, "color_mode": "rgb", "channels": 3, "resize": "squash", "tta": "none"}


def _save_run(folder, model_file, preprocess):
    folder.mkdir()
    shutil.copy(model_file, folder / "model.keras")
    (folder / "classes.json").write_text(json.dumps(["cat", "dog"]))
    (folder / "preprocess.json").write_text(json.dumps(preprocess))
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("models")
    image = root / "a.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(image)

    def plain():
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))

    plain().save(root / "plain.keras")
    nan_model = plain()
    nan_model.set_weights([np.full_like(w, np.nan) for w in nan_model.get_weights()])
    nan_model.save(root / "nan.keras")
    inputs = keras.Input((8, 8, 3))
    lam = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    lambda_model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(lam)))
    lambda_model.save(root / "lambda.keras")
    (root / "lambda.json").write_text(json.dumps({"classes": ["cat", "dog"], "preprocess": GOOD_PRE}))
    runs = {name: _save_run(root / name, root / "plain.keras", {**GOOD_PRE, **change})
            for name, change in [("cmyk", {"color_mode": "cmyk"}), ("zero", {"img_size": 0}),
                                 ("huge", {"img_size": 4096}), ("zzz", {"resize": "zzz"})]}
    runs["nan"] = _save_run(root / "nan", root / "nan.keras", GOOD_PRE)
    return {"image": str(image), "lambda": str(root / "lambda.keras"), **runs}


def _one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err


def test_a_lambda_keras_model_is_refused_in_one_line(models, capsys):
    _one_line_exit_2(capsys, ["predict", models["lambda"], models["image"]], "it holds a Lambda layer")


def test_a_broken_file_named_keras_is_refused_in_one_line(models, tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    (tmp_path / "broken.json").write_text(json.dumps({"classes": ["a", "b"], "preprocess": GOOD_PRE}))
    _one_line_exit_2(capsys, ["predict", str(bad), models["image"]], "Could not load")


@pytest.mark.parametrize("run,message", [("cmyk", "Invalid color_mode"), ("zero", "Invalid img_size"),
                                         ("huge", "received 4096"), ("zzz", "Invalid resize")])
def test_a_run_with_odd_preprocessing_is_refused_in_one_line(models, capsys, run, message):
    _one_line_exit_2(capsys, ["predict", models[run], models["image"]], message)


def test_json_predictions_of_a_nan_model_are_valid_json(models, capsys):
    assert main(["predict", models["nan"], models["image"], "--format", "json", "--top-k", "2"]) == 0
    out = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"JSON-invalid constant {constant} in {out}")

    row = json.loads(out, parse_constant=refuse)[0]
    assert row["probability"] is None and [p for _, p in row["top_k"]] == [None, None]


def test_train_refuses_a_nan_learning_rate(tmp_path, capsys):
    (tmp_path / "data" / "a").mkdir(parents=True)
    _one_line_exit_2(capsys, ["train", str(tmp_path / "data"), "--lr", "nan", "--out", str(tmp_path / "r")],
                     "Invalid lr: expected a finite number, received nan")
    assert not (tmp_path / "r").exists()


def test_a_tagged_yaml_architecture_is_refused_in_one_line(tmp_path, capsys):
    marker = tmp_path / "pwned"
    arch = tmp_path / "evil.yaml"
    arch.write_text(f'layers:\n  - Conv2D: {{filters: !!python/object/apply:os.system ["touch {marker}"]}}\n')
    (tmp_path / "data" / "a").mkdir(parents=True)
    _one_line_exit_2(capsys, ["train", str(tmp_path / "data"), "--model", str(arch), "--out", str(tmp_path / "r")],
                     "evil.yaml line 2")
    assert not marker.exists()
