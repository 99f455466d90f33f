import pytest

from imgclf.core.config import TrainConfig, load_yaml, make_config
from imgclf.core.errors import UserError


def test_defaults_validate():
    cfg = make_config()
    assert cfg == TrainConfig()


def test_later_sources_win_and_values_are_coerced():
    cfg = make_config({"epochs": "3", "lr": 0.1}, {"lr": "0.02", "img-size": 32})
    assert cfg.epochs == 3 and cfg.lr == 0.02 and cfg.img_size == 32


def test_unknown_key_suggests_closest():
    with pytest.raises(UserError, match=r"Unknown setting 'epoch'.*Did you mean 'epochs'"):
        make_config({"epoch": 3})


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 0}, "epochs"),
    ({"lr": -1}, "lr"),
    ({"lr": "fast"}, "Invalid lr"),
    ({"optimizer": "adamm"}, "Did you mean 'adam"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "leaves almost nothing"),
    ({"batch_size": "big"}, "expected int"),
])
def test_invalid_values_are_user_errors(settings, message):
    with pytest.raises(UserError, match=message):
        make_config(settings)


def test_yaml_roundtrip_ignores_versions(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 4\nmodel: small_cnn\nversions:\n  keras: 3\n")
    assert make_config(load_yaml(path)).epochs == 4


def test_bad_yaml_is_user_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(path)
    with pytest.raises(UserError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_default_learning_rate_and_label_smoothing_are_the_models_own(image_folder, tmp_path):
    """`--lr model` and `--label-smoothing model` (the defaults) resolve to the values the model was tuned with
    from scratch, and the run records them."""
    import imgclf
    from imgclf.models.registry import DEFAULT_LABEL_SMOOTHING, DEFAULT_LR, default_label_smoothing, default_lr

    assert make_config().lr == "model" and make_config({"lr": "model"}).lr == "model"
    assert make_config().label_smoothing == "model" and make_config({"label_smoothing": "0.2"}).label_smoothing == 0.2
    with pytest.raises(UserError, match="label_smoothing"):
        make_config({"label_smoothing": "auto"})
    assert default_label_smoothing("small_cnn") == DEFAULT_LABEL_SMOOTHING == 0.1
    assert default_label_smoothing("small_resnet") == 0.15  # chosen on validation (bench/RESULTS.md, issue 5)
    assert default_label_smoothing("small_resnet", weights="imagenet") == DEFAULT_LABEL_SMOOTHING
    assert default_lr("small_cnn") == DEFAULT_LR == 0.002
    assert default_lr("small_resnet") == 0.004  # chosen on validation in bench/ (bench/RESULTS.md, issue 5)
    assert default_lr("small_resnet", weights="imagenet") == DEFAULT_LR  # pretrained: the transfer-learning rate
    run = imgclf.train(image_folder, out=str(tmp_path / "r"), model="small_resnet", epochs=1, img_size=16,
                       batch_size=8, verbose=0)
    import csv

    with open(run.path / "history.csv") as f:
        first = next(csv.DictReader(f))
    assert run.config["lr"] == 0.004 and 0 < float(first["lr"]) <= 0.004
    assert run.config["label_smoothing"] == 0.15
