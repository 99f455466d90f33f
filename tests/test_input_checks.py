"""Every value is checked where it enters (issue 19, item 10): flags, settings, a run's files, architectures.

Fast: nothing here imports TensorFlow (tests/test_input_checks_cli.py goes through models).
"""

import contextlib
import io
import json
import math
import re

import pytest

from imgclf.cli.parser import build_parser
from imgclf.core.config import MAX_IMG_SIZE, check_preprocess, load_yaml, make_config
from imgclf.core.errors import UserError
from imgclf.inference.writers import write_predictions
from imgclf.models.yaml_arch import spec_from_yaml

BAD_FLAGS = [
    (["train", "d", "--seed", "-1"], "--seed: expected a seed from 0 to 4294967295, received '-1'"),
    (["train", "d", "--seed", str(2**32)], "--seed"),
    (["train", "d", "--workers", "-1"], "--workers: expected a thread count"),
    (["train", "d", "--max-images", "-5"], "--max-images: expected a number of images"),
    (["train", "d", "--img-size", str(MAX_IMG_SIZE + 1)], f"--img-size: .* to {MAX_IMG_SIZE}"),
    (["train", "d", "--img-size", "4"], "--img-size: expected 0 .* or a side from 8"),
    (["train", "d", "--epochs", "0"], "--epochs"),
    (["train", "d", "--mixup", "nan"], "--mixup: expected a finite number, received 'nan'"),
    (["train", "d", "--weight-decay", "inf"], "--weight-decay: expected a finite number"),
    (["lr-find", "d", "--steps", "0"], "--steps"),
    (["split", "d", "--out", "s.csv", "--seed", "-1"], "--seed"),
    (["split", "d", "--out", "s.csv", "--val", "nan"], "--val: expected a share in \\[0, 0.9\\), received 'nan'"),
    (["check", "d", "--workers", "-1"], "--workers"),
    (["check", "d", "--near-distance", "65"], "--near-distance"),
    (["predict", "m", "a.png", "--threshold", "nan"], "--threshold: expected a finite probability, received .nan."),
    (["predict", "m", "a.png", "--top-k", "0"], "--top-k"),
    (["predict", "m", "a.png", "--batch-size", "-1"], "--batch-size"),
    (["evaluate", "r", "--folds", "1"], "--folds"),
    (["export", "r", "--format", "tflite", "--max-int8-drop", "inf"], "--max-int8-drop"),
    (["serve", "m", "--port", "70000"], "--port: expected a port from 0 to 65535"),
    (["serve", "m", "--max-upload-mb", "0"], "--max-upload-mb: expected a size in MB above 0"),
    (["augment-preview", "d", "--img-size", "99999"], "--img-size"),
    (["augment-preview", "d", "--cutmix", "-inf"], "--cutmix"),
    (["datasets", "pack", "d", "--out", "s", "--shard-size-mb", "nan"], "--shard-size-mb"),
    (["datasets", "pack", "d", "--out", "s", "--workers", "-2"], "--workers"),
]


@pytest.mark.parametrize("argv,message", BAD_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err


def test_good_flags_still_parse():
    args = build_parser().parse_args(["train", "d", "--seed", "4294967295", "--workers", "0", "--max-images", "0",
                                      "--img-size", "2048", "--mixup", "0.2", "--lr", "0.01"])
    assert (args.seed, args.workers, args.img_size, args.mixup) == (2**32 - 1, 0, 2048, 0.2)
    args = build_parser().parse_args(["predict", "m", "a.png", "--threshold", "1", "--top-k", "3"])
    assert (args.threshold, args.top_k) == (1.0, 3)


@pytest.mark.parametrize("settings,message", [
    ({"lr": "nan"}, "Invalid lr: expected a finite number, received nan"),
    ({"lr": float("inf")}, "Invalid lr: expected a finite number, received inf"),
    ({"lr": "-inf"}, "Invalid lr"),
    ({"time_budget": math.nan}, "Invalid time_budget"),
    ({"mixup": "nan"}, "Invalid mixup"),
    ({"seed": -1}, "Invalid seed: expected a seed from 0 to 4294967295"),
    ({"workers": -1}, "Invalid workers"),
    ({"max_images": -5}, "Invalid max_images"),
    ({"img_size": 100_000}, f"Invalid img_size: .* to {MAX_IMG_SIZE}"),
    ({"img_size": "abc"}, "Invalid img_size: expected int"),
    ({"verbose": 7}, "Invalid verbose"),
    ({"finetune_lr_scale": 0}, "Invalid finetune_lr_scale"),
    ({"epochs": float("inf")}, "Invalid epochs"),
])
def test_bad_settings_are_user_errors(settings, message):
    with pytest.raises(UserError, match=message):
        make_config(settings)


def test_good_settings_still_pass():
    cfg = make_config({"lr": "0.01", "seed": 2**32 - 1, "img_size": 0, "workers": 0, "label_smoothing": "model"})
    assert (cfg.lr, cfg.seed, cfg.img_size) == (0.01, 2**32 - 1, 0)
    assert make_config({"lr": "auto"}).lr == "auto"


@pytest.mark.parametrize("line,message", [
    ("img_size: abc", "Invalid img_size in .*config.yaml: expected int"),
    ("img_size: 100000", "Invalid img_size in .*config.yaml"),
    ("lr: .nan", "Invalid lr in .*config.yaml: expected a finite number"),
    ("color_mode: cmyk", "Invalid color_mode in .*config.yaml: expected one of auto, rgb, grayscale"),
    ("resize: zzz", "Invalid resize in .*config.yaml"),
    ("seed: -1", "Invalid seed in .*config.yaml"),
])
def test_a_bad_value_in_a_config_file_names_the_file(tmp_path, line, message):
    path = tmp_path / "config.yaml"
    path.write_text("model: small_cnn\n" + line + "\n")
    with pytest.raises(UserError, match=message):
        make_config(load_yaml(path))


GOOD_PRE = {"img_size": 28, "color_mode": "rgb", "channels": 3, "resize": "squash", "tta": "none"}


@pytest.mark.parametrize("change,message", [
    ({"img_size": 0}, "Invalid img_size in runs/x/preprocess.json: expected a whole number of pixels from 8 to 2048, received 0"),
    ({"img_size": "abc"}, "Invalid img_size .* received 'abc'"),
    ({"img_size": 100_000}, "Invalid img_size .* received 100000"),
    ({"img_size": 28.5}, "Invalid img_size"),
    ({"color_mode": "cmyk"}, "Invalid color_mode .* expected one of rgb, grayscale, received 'cmyk'"),
    ({"resize": "zzz"}, "Invalid resize .* expected one of squash, crop, pad, received 'zzz'"),
    ({"channels": 1}, "Invalid channels .* expected 3 for color_mode rgb"),
])
def test_bad_preprocessing_is_refused_naming_the_file(change, message):
    with pytest.raises(UserError, match=message):
        check_preprocess({**GOOD_PRE, **change}, "runs/x/preprocess.json")


def test_preprocessing_shape_is_checked():
    with pytest.raises(UserError, match="has no 'color_mode'"):
        check_preprocess({"img_size": 28}, "m.json")
    with pytest.raises(UserError, match="must hold a mapping"):
        check_preprocess([28, "rgb"], "m.json")
    assert check_preprocess(GOOD_PRE) == GOOD_PRE
    assert check_preprocess({"img_size": 8, "color_mode": "grayscale"})["img_size"] == 8


@pytest.mark.parametrize("where", ["name", "layer argument"])
def test_a_tagged_yaml_architecture_is_a_user_error_and_runs_nothing(tmp_path, where):
    marker = tmp_path / "pwned"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    text = (f"name: {tag}\nlayers:\n  - ReLU\n" if where == "name"
            else f"layers:\n  - Conv2D: {{filters: {tag}, kernel_size: 3}}\n")
    path = tmp_path / f"tagged_{where[:4]}.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=r"tagged_.*\.yaml line \d+: could not determine a constructor .*Remove the tag"):
        spec_from_yaml(path)
    assert not marker.exists()


def test_json_output_never_holds_bare_nan():
    """A model gone NaN gives null in JSON (json.loads with strict constants would refuse NaN)."""
    nan = float("nan")
    rows = [{"path": "a.png", "class": "unknown", "probability": nan, "top_k": [["cat", nan], ["dog", nan]], "error": ""},
            {"path": "b.png", "class": "", "probability": nan, "top_k": [], "error": "cannot decode"}]
    for fmt in ("json", "jsonl"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            write_predictions(rows, fmt, None, top_k=2)
        text = out.getvalue()
        assert "NaN" not in text, text

        def refuse(constant):
            raise AssertionError(f"JSON-invalid constant {constant}")

        docs = [json.loads(text, parse_constant=refuse)] if fmt == "json" else \
            [json.loads(line, parse_constant=refuse) for line in text.splitlines()]
        first = docs[0][0] if fmt == "json" else docs[0]
        assert first["probability"] is None and first["top_k"] == [["cat", None], ["dog", None]]


def test_predict_help_warns_about_savedmodels():
    """Issue 19, item 11: an untrusted SavedModel runs its graph's ops; the help says so and what to prefer."""
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["predict"]
    text = " ".join(sub.format_help().split())
    assert "A SavedModel runs its graph's ops" in text and "load one only from a source you trust" in text
    assert ".keras (loaded in Keras' safe mode) or .tflite / .onnx" in text


def test_a_yaml_architecture_cannot_ask_for_an_input_past_the_bound(tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text(f"input_size: {MAX_IMG_SIZE + 1}\nlayers:\n  - ReLU\n")
    with pytest.raises(UserError, match=f"wide.yaml line 1: input_size must be a whole number of pixels from 0 to {MAX_IMG_SIZE}"):
        spec_from_yaml(path)
