"""Issue 17: `imgclf runs`, `imgclf compare`, `imgclf tune` (with `--refit`) and `--track mlflow`.

The runs and compare tests build run folders by hand (as an older imgclf
wrote them, and with known paired predictions), so they need no TensorFlow;
the tune test trains a few one-epoch models of one convolution on a tiny
folder, then their refit on train + validation, which it evaluates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.stats import binomtest

from conftest import make_image_folder
from imgclf.cli import main
from imgclf.core.config import load_yaml, make_config
from imgclf.evaluation.compare import compare_runs
from imgclf.evaluation.runs_table import format_runs, list_runs

CLASSES = ["cat", "dog"]


def _old_run(folder: Path, model: str, accuracy: float | None, answers=None, paths=None, labels=None) -> Path:
    """A run folder as imgclf wrote them before this change: settings, classes, summary, maybe an evaluation."""
    folder.mkdir(parents=True)
    (folder / "classes.json").write_text(json.dumps(CLASSES))
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": "data/", "model": model, "weights": "none", "epochs": 5,
                                                        "time_budget": 0.0, "versions": {"imgclf": "0.9"}}))
    (folder / "summary.json").write_text(json.dumps({"train_time_s": 12.5}))
    (folder / "model.keras").write_bytes(b"0" * 2000)
    if accuracy is not None:
        metrics = {"accuracy": accuracy, "balanced_accuracy": accuracy, "macro_avg": {"f1": accuracy - 0.01},
                   "expected_calibration_error": 0.05, "evaluated_on": "test split of the run", "evaluation_id": "e1"}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if answers is not None:
        probs = np.eye(2)[answers] * 0.8 + 0.1
        np.savez(folder / "predictions.npz", y_true=np.asarray(labels), probs=probs, paths=np.asarray(paths),
                 classes=np.asarray(CLASSES), evaluation_id=np.asarray("e1"))
    return folder


def test_runs_lists_runs_made_before_this_change(tmp_path, capsys):
    _old_run(tmp_path / "runs" / "a", "small_cnn", 0.81)
    _old_run(tmp_path / "runs" / "group" / "b", "mobilenet_v2", 0.93)
    _old_run(tmp_path / "runs" / "c", "resnet50", None)  # trained, never evaluated
    rows = list_runs(tmp_path / "runs", sort="accuracy", descending=True)
    assert [r["run"] for r in rows] == ["group/b", "a", "c"]
    assert rows[0]["model"] == "mobilenet_v2" and rows[0]["budget"] == "5 epochs" and rows[0]["train_time_s"] == 12.5
    assert rows[2]["accuracy"] is None and rows[0]["size_mb"] == 0.0
    assert format_runs(rows, "markdown").splitlines()[2].startswith("| group/b | data/ | mobilenet_v2 |")
    assert main(["runs", str(tmp_path / "runs"), "--format", "csv", "--sort", "model"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run,data,model,") and [line.split(",")[0] for line in out[1:]] == ["group/b", "c", "a"]
    assert main(["runs", str(tmp_path / "runs"), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.fixture
def paired_runs(tmp_path):
    """Two runs evaluated on the same 40 images: 8 only A gets right, 1 only B, 27 both, 4 neither."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        path = tmp_path / "images" / f"{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    y = np.array([i % 2 for i in range(40)])
    a_right = np.array([1] * 8 + [0] * 1 + [1] * 27 + [0] * 4, bool)
    b_right = np.array([0] * 8 + [1] * 1 + [1] * 27 + [0] * 4, bool)
    pred_a, pred_b = np.where(a_right, y, 1 - y), np.where(b_right, y, 1 - y)
    a = _old_run(tmp_path / "runs" / "a", "small_cnn", float(a_right.mean()), pred_a, paths, y)
    # B's predictions list the same images in another order: they are matched by path
    order = rng.permutation(40)
    b = _old_run(tmp_path / "runs" / "b", "small_cnn", float(b_right.mean()), pred_b[order], [paths[i] for i in order], y[order])
    return a, b


def test_compare_gives_the_exact_mcnemar_p_value(paired_runs, tmp_path, capsys):
    a, b = paired_runs
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*")}
    result = compare_runs(a, b, out=tmp_path / "cmp", resamples=500, verbose=False)
    m = result["mcnemar"]
    assert (m["only_a"], m["only_b"], m["both_right"], m["both_wrong"]) == (8, 1, 27, 4)
    assert m["p_value"] == pytest.approx(2 * (1 + 9) / 2**9) == pytest.approx(binomtest(8, 9, 0.5).pvalue)
    assert result["answers"]["a"].startswith("saved predictions") and result["answers"]["b"].startswith("saved")
    acc = result["bootstrap"]["accuracy"]
    assert acc["difference"] == pytest.approx(-7 / 40) and acc["low"] < acc["difference"] < acc["high"] < 0
    assert result["verdict"].startswith("A is better than B")
    assert [r["class"] for r in result["per_class"]] == CLASSES
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "A is better than B" in page and "data:image/png;base64" in page and "<script" not in page
    assert (tmp_path / "cmp" / "disagreements.png").exists()
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*")} == before  # the runs are read, never written
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp2"), "--bootstrap", "200"]) == 0
    assert "McNemar exact p = 0.03906" in capsys.readouterr().out


def test_two_runs_tracked_to_mlflow_show_up_with_their_metrics(paired_runs, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from imgclf.evaluation.tracked import log_evaluation

    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())  # a file store: no database to create, quick
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    ids = [log_evaluation(run, "mlflow") for run in paired_runs]
    client = mlflow.MlflowClient(store.as_uri())
    found = {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name("imgclf").experiment_id])}
    assert set(found) == set(ids)
    assert {round(r.data.metrics["eval_accuracy"], 3) for r in found.values()} == {0.875, 0.7}
    assert all(json.loads((run / "tracking.json").read_text())["run_id"] in ids for run in paired_runs)
    assert log_evaluation(paired_runs[0], "none") is None  # nothing logged unless asked


def _states(out: Path) -> list[str]:
    import optuna

    study = optuna.load_study(study_name="imgclf-tune", storage=f"sqlite:///{out / 'study.db'}")
    return [t.state.name for t in study.trials]


TINY = "one_conv"


def _register_one_conv_model(monkeypatch):
    """Register TINY, a backbone of one 3x3 convolution on 12 px inputs, in a copy of the registry that
    monkeypatch puts back afterwards (so no other test sees it)."""
    from imgclf.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_model(TINY, default_size=12, min_size=8, preprocessing="unit", color_modes=("rgb", "grayscale"))
    def one_conv(input_shape, weights=None, bn_momentum=0.9):
        import keras

        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs), name=TINY)


class _Killed(BaseException):
    """A kill -9 as the study sees it: Optuna records a trial that raises Exception or KeyboardInterrupt as FAIL,
    but one this escapes is left RUNNING in study.db, exactly as a killed process leaves it."""


@pytest.mark.slow
def test_tune_resumes_after_a_kill_refits_and_its_best_yaml_trains(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    mlflow = pytest.importorskip("mlflow")
    import optuna

    import imgclf
    from imgclf.core.run import Run
    from imgclf.models.registry import default_lr
    from imgclf.tuning.study import tune

    # 6 images of 12 px per class: 4 train, 1 validation, 1 test each. The search's logic is the same over a tiny
    # space, and most of a trial's time is TensorFlow tracing its graphs: trials of one epoch of a one-convolution
    # model (registered for this test only) without augmentation, MixUp or CutMix. In-process: a subprocess would
    # pay TensorFlow's import again.
    data = make_image_folder(tmp_path / "data", per_class=6, size=12)
    out = tmp_path / "tune"
    for name in ("AUGMENT", "MIXUP", "CUTMIX"):
        monkeypatch.setattr(f"imgclf.tuning.space.{name}", ("none",) if name == "AUGMENT" else (0.0,))
    _register_one_conv_model(monkeypatch)
    passages = []

    def kill_at_second_checkpoint(name):
        passages.append(name)
        if name == "checkpoint.saved" and passages.count(name) == 2:
            raise _Killed  # trial 1's first checkpoint is saved, then the process "dies"

    monkeypatch.setattr("imgclf.training.callbacks.kill_point", kill_at_second_checkpoint)
    with pytest.raises(_Killed):
        tune(data, out, time_budget=10, trials=2, trial_epochs=1, models=TINY, batch_size=8)
    assert _states(out) == ["COMPLETE", "RUNNING"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert main(["tune", data, "--time-budget", "10", "--trials", "2", "--trial-epochs", "1", "--out", str(out),
                 "--batch-size", "8", "--models", TINY, "--track", "mlflow", "--refit"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "tune.json").read_text())
    assert _states(out) == ["COMPLETE", "FAIL", "COMPLETE"]  # the interrupted trial failed, then tried again
    assert result["trials"]["complete"] + result["trials"]["pruned"] == 2
    first, interrupted, retried = optuna.load_study(study_name="imgclf-tune", storage=f"sqlite:///{out / 'study.db'}").trials
    assert retried.params == interrupted.params and retried.user_attrs["retry_of"] == 1  # with the same settings
    # The first trial is the default recipe, the baseline the search reports its gain against.
    assert first.user_attrs["baseline"] and first.params["lr"] == default_lr(TINY)
    assert first.params["dropout"] == 0.2 and first.params["epochs"] == 1
    assert result["default"] == {"trial": 0, "value": first.value, "gain": pytest.approx(result["best"]["value"] - first.value)}
    assert "The default recipe (trial 0" in (out / "tune.html").read_text()
    assert 0 <= interrupted.user_attrs["spent_s"] < 60  # the budget counts it until its last epoch, not until the resume
    assert (out / "tune.html").exists() and "Optimisation history" in (out / "tune.html").read_text()
    assert sorted(p.name for p in (out / "trials").iterdir())[:2] == ["trial-0000", "trial-0001"]
    assert 0 <= result["best"]["value"] <= 1 and result["sessions"][-1]["train_s"] > 0
    session = result["sessions"][-1]  # the overhead's parts add up to it
    parts = session["objective_s"] + session["optuna_s"] + session["callback_s"] + session["tracker_s"]
    assert session["overhead_s"] == pytest.approx(parts, abs=0.05) and 0 <= session["longest_between_trials_s"] <= session["optuna_s"]
    assert 0 <= session["release_s"] + session["stop_s"] <= session["objective_s"]  # both inside the objective, outside train

    client = mlflow.MlflowClient((tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("imgclf").experiment_id])
    trials = [r for r in runs if "imgclf.trial" in r.data.tags]  # this session's: the retried trial
    assert len(trials) == 1 and all("val_accuracy" in r.data.metrics and r.data.params["model"] == TINY for r in trials)
    refits = [r for r in runs if "imgclf.refit" in r.data.tags]
    assert len(refits) == 1 and "loss" in refits[0].data.metrics and "val_accuracy" not in refits[0].data.metrics
    assert all(r.data.tags["mlflow.parentRunId"] in {x.info.run_id for x in runs} for r in trials + refits)

    # best.yaml trained (the refit is `train --config best.yaml` with the split and epochs of the refit), on the
    # trials' training and validation images together, for the best trial's kept epochs, with no validation split.
    best = out / "best.yaml"
    cfg = make_config(load_yaml(best))
    assert cfg.model == TINY and cfg.data == os.path.abspath(data)
    refit = Run(out / "refit")
    assert result["refit"]["run"] == str(refit.path) and f"Refit: {refit.path}" in printed
    settings = load_yaml(refit.file("config.yaml"))
    assert settings["val_fraction"] == 0.0 and settings["monitor"] == "none"
    assert {k: settings[k] for k in ("lr", "dropout", "augment", "weight_decay")} == {
        k: getattr(cfg, k) for k in ("lr", "dropout", "augment", "weight_decay")}
    trial = Run(result["best"]["run"])
    assert settings["epochs"] == trial.read_json("summary.json")["best_epoch"] == 1
    summary = refit.read_json("summary.json")
    assert summary["images"] == {"train": 15, "val": 0} and summary["best_epoch"] == 1
    splits = {s: sorted(r["path"] for r in refit.manifest() if r["split"] == s) for s in ("train", "val", "test")}
    held_out = {s: sorted(r["path"] for r in trial.manifest() if r["split"] == s) for s in ("train", "val", "test")}
    assert splits == {"train": sorted(held_out["train"] + held_out["val"]), "val": [], "test": held_out["test"]}
    ev = imgclf.evaluate(refit, verbose=False, plots=False, explain=False)
    assert ev.metrics["num_samples"] == 3 and 0 <= ev.metrics["accuracy"] <= 1
    answer = next(iter(imgclf.load(refit.path).predict_paths(held_out["test"][:1])))
    assert answer["class"] in refit.classes


def test_the_default_recipe_is_the_first_trial_of_a_study():
    from imgclf.tuning.space import default_params, suggest

    optuna = pytest.importorskip("optuna")
    facts = {"median_side": 28, "grayscale": True, "per_class": 6000}
    params = default_params(["small_cnn"], facts, trial_epochs=8)
    assert params == {"model": "small_cnn", "img_size_small_cnn": 0, "lr": 0.002, "label_smoothing": 0.1, "epochs": 8,
                      "weight_decay": 1e-4, "mixup": 0.0, "cutmix": 0.0, "dropout": 0.2, "augment": "none"}
    assert default_params(["small_cnn"], facts, trial_epochs=20)["augment"] == "light"  # --augment auto's rule
    # Every value lies in the space `suggest` draws from, so TPE learns from the baseline like any trial.
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params)
    trial = study.ask()
    assert suggest(trial, ["small_cnn"], facts, trial_epochs=8)["lr"] == 0.002 and trial.params == params


def test_compare_refuses_images_a_run_trained_on(paired_runs, tmp_path):
    from imgclf.core.errors import UserError

    a, b = paired_runs
    saved = np.load(b / "predictions.npz")
    (b / "manifest.csv").write_text("path,label,split\n" + f"{saved['paths'][0]},cat,train\n")
    with pytest.raises(UserError, match="trained .* on 1 of the 40 images"):
        compare_runs(a, b, out=tmp_path / "cmp", verbose=False)


def test_the_pruning_callback_prunes_and_stops_at_the_deadline():
    optuna = pytest.importorskip("optuna")
    from imgclf.tuning.pruning import PruneTrial

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    callback = PruneTrial(trial, deadline=None)
    callback.on_epoch_end(0, {"val_accuracy": 0.9})  # above the threshold: goes on
    with pytest.raises(optuna.TrialPruned):
        callback.on_epoch_end(1, {"val_accuracy": 0.1})
    stored = trial.storage.get_trial(trial._trial_id)
    assert stored.intermediate_values == {1: 0.9, 2: 0.1} and stored.user_attrs["alive_s"] >= 0
    late = PruneTrial(study.ask(), deadline=0.0)  # the tune's time is spent: the trial stops after its epoch
    late.set_params({"epochs": 2})
    with pytest.raises(optuna.TrialPruned, match="time budget"):
        late.on_epoch_end(0, {"val_accuracy": 0.9})
    late.on_epoch_end(1, {"val_accuracy": 0.9})  # but its last epoch ends it anyway: it completes


def test_the_pruner_waits_until_a_trial_has_run_half_its_length():
    optuna = pytest.importorskip("optuna")
    from imgclf.tuning.pruning import PruneTrial

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    by_epochs = PruneTrial(study.ask(), warmup=0.5, epochs=4)
    by_epochs.on_epoch_end(0, {"val_accuracy": 0.1})  # a quarter of its epochs: reported, not judged
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        by_epochs.on_epoch_end(1, {"val_accuracy": 0.1})  # half: judged
    by_budget = PruneTrial(study.ask(), warmup=0.5, budget_s=3600)  # an hour's trial, seconds in
    by_budget.on_train_begin()
    by_budget.on_epoch_end(0, {"val_accuracy": 0.1})
    assert study.trials[-1].intermediate_values == {1: 0.1}
    by_budget.budget_s = 1e-6  # its budget run out: judged
    with pytest.raises(optuna.TrialPruned):
        by_budget.on_epoch_end(1, {"val_accuracy": 0.1})


def test_a_search_whose_trials_train_for_the_final_runs_budget(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from imgclf.core.errors import UserError
    from imgclf.core.run import Run
    from imgclf.tuning.space import default_params
    from imgclf.tuning.study import tune

    facts = {"median_side": 28, "grayscale": True, "per_class": 6000}
    # The baseline is `imgclf train DATA --time-budget 10`: no epochs drawn, --augment auto's choice at 10 minutes.
    assert "epochs" not in default_params(["small_cnn"], facts, trial_budget=10)
    assert default_params(["small_cnn"], facts, trial_budget=10)["augment"] == "light"
    assert default_params(["small_cnn"], facts, trial_budget=3)["augment"] == "none"

    data = make_image_folder(tmp_path / "data", per_class=6, size=12)
    for name in ("AUGMENT", "MIXUP", "CUTMIX"):
        monkeypatch.setattr(f"imgclf.tuning.space.{name}", ("none",) if name == "AUGMENT" else (0.0,))
    _register_one_conv_model(monkeypatch)
    out = tmp_path / "tune"
    result = tune(data, out, time_budget=5, trials=1, trial_budget=0.05, models=TINY, batch_size=8)
    assert result["trial_budget"] == 0.05 and "epochs" not in result["best"]["params"]
    trial = Run(result["best"]["run"])
    assert load_yaml(trial.file("config.yaml"))["time_budget"] == 0.05  # trained as `train --time-budget 0.05`
    assert trial.read_json("summary.json")["epochs_run"] >= 1
    assert make_config(load_yaml(out / "best.yaml")).time_budget == 0.05  # `train --config best.yaml` keeps it
    with pytest.raises(UserError, match="other settings: trial_budget"):  # a resume must keep the trials' length
        tune(data, out, time_budget=5, trials=2, trial_budget=0.1, models=TINY, batch_size=8)
    with pytest.raises(UserError, match="Invalid trial budget"):
        tune(data, tmp_path / "other", time_budget=5, trial_budget=6)
