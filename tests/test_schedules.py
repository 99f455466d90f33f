import json
import time

import pytest

import imgclf
from imgclf.training.schedules import lr_at


@pytest.mark.parametrize("kind", ["cosine", "onecycle", "constant"])
def test_schedules_start_low_peak_and_end_where_expected(kind):
    values = [lr_at(i / 100, 1.0, kind) for i in range(101)]
    assert max(values) == pytest.approx(1.0, abs=0.01)
    assert values[0] < 0.5
    if kind != "constant":
        assert values[-1] < 0.02
        peak_at = values.index(max(values))
        assert all(a >= b - 1e-12 for a, b in zip(values[peak_at:], values[peak_at + 1:]))  # decays after the peak


def test_time_budget_ends_within_budget_plus_one_epoch(image_folder, tmp_path):
    budget_min = 0.25
    start = time.perf_counter()
    run = imgclf.train(image_folder, out=str(tmp_path / "runs" / "b"), time_budget=budget_min, verbose=0, img_size=16,
                       batch_size=8)
    history = json.loads((run.path / "checkpoints" / "state.json").read_text())["history"]
    fit_time = sum(h["time_s"] for h in history)
    longest_epoch = max(h["time_s"] for h in history)
    assert len(history) >= 2
    assert fit_time <= 60 * budget_min + longest_epoch + 1.0
    assert fit_time >= 0.5 * 60 * budget_min  # it used the budget rather than stopping early
    assert history[-1]["lr"] < 0.2 * max(h["lr"] for h in history)  # the decay reached its end
    assert time.perf_counter() - start < 60 * budget_min + 60
