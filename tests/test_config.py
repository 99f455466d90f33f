import pytest

from imgclf.config import TrainConfig, load_yaml, make_config
from imgclf.errors import UserError


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
