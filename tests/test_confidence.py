"""Issue 16, the math on synthetic data: temperature scaling, conformal coverage, unknown scores (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgclf.core.errors import UserError
from imgclf.inference.confidence import conformal, ood
from imgclf.inference.confidence.calibration import apply_temperature, ece, fit_temperature, nll
from imgclf.inference.confidence.fit import fit_confidence
from imgclf.inference.confidence.store import Confidence


def overconfident(n: int, k: int = 5, sharpen: float = 3.0, seed: int = 0):
    """Labels and probabilities of a model `sharpen` times too sure of itself (true posterior softmax(1.5 x))."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    z = 1.5 * sharpen * x
    p = np.exp(z - z.max(1, keepdims=True))
    return y, p / p.sum(1, keepdims=True)


def test_temperature_lowers_nll_and_ece_and_keeps_every_argmax():
    y, p = overconfident(4000)
    yt, pt = overconfident(4000, seed=1)
    t = fit_temperature(p, y)
    assert 2.5 < t < 3.5
    cal = apply_temperature(pt, t)
    assert nll(cal, yt) < nll(pt, yt) - 0.1
    assert ece(cal, yt) < 0.03 and ece(pt, yt) > 0.1
    assert (cal.argmax(1) == pt.argmax(1)).all()
    np.testing.assert_allclose(cal.sum(1), 1, atol=1e-5)


def test_underconfident_model_gets_a_temperature_below_one():
    y, p = overconfident(3000, sharpen=0.5)
    assert 0.35 < fit_temperature(p, y) < 0.65


def test_tiny_validation_set_without_errors_does_not_collapse_the_temperature():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.85, 0.15]])
    assert 0.5 < fit_temperature(p, np.array([0, 1, 0])) <= 1.0


@pytest.mark.parametrize("coverage", [0.9, 0.95])
def test_conformal_sets_reach_their_coverage_on_fresh_data(coverage):
    y, p = overconfident(3000, k=10, sharpen=1.0)
    yt, pt = overconfident(20000, k=10, sharpen=1.0, seed=1)
    table = conformal.fit_conformal(p, y)
    hit, size = conformal.coverage_and_size(pt, yt, conformal.threshold(table, coverage))
    assert coverage - 0.005 <= hit <= coverage + 0.015
    assert 1.0 <= size < 10


def test_unknown_scores_rank_far_points_above_near_ones():
    rng = np.random.default_rng(0)
    means = rng.normal(scale=4.0, size=(4, 16))
    y = rng.integers(0, 4, 2000)
    feats = means[y] + rng.normal(size=(2000, 16))
    near = means[rng.integers(0, 4, 300)] + rng.normal(size=(300, 16))
    far = rng.normal(scale=0.5, size=(300, 16))  # weak features in no class direction, as a blank image gives
    kernel = np.linalg.lstsq(np.c_[feats, np.ones(len(feats))], np.eye(4)[y] * 8, rcond=None)[0]
    stats = ood.fit_stats(feats, y, 4, kernel[:-1], kernel[-1])
    for method in ("energy", "mahalanobis", "knn"):
        s_near, s_far = (ood.scores(method, None, f, stats) for f in (near, far))
        assert ood.auroc(s_near, s_far) > 0.95, method
        assert ood.fpr_at_95(s_near, s_far) < 0.2, method


def test_fitted_confidence_round_trips_through_json_and_metadata(tmp_path):
    y, p = overconfident(600)
    feats = np.random.default_rng(0).normal(size=(600, 8)) + np.eye(5, 8)[y] * 3
    conf = fit_confidence(p, y, feats, feats, y, kernel=np.ones((8, 5)), bias=np.zeros(5), reject_rate=0.05)
    assert conf.method == "mahalanobis" and set(conf.info["reject"]["tables"]) == set(ood.METHODS)
    scores = conf.unknown_scores(conf.calibrate(p), feats)
    assert 0.02 < np.mean(scores > conf.reject_threshold()) < 0.08  # about the asked rate on its own data
    conf.save(tmp_path)
    back = Confidence.load(tmp_path)
    assert back.temperature == conf.temperature and back.reject_threshold() == conf.reject_threshold()
    meta = json.loads(json.dumps({"confidence": conf.info}))
    no_stats = Confidence.from_metadata(meta, tmp_path / "model.onnx")  # no model.confidence.npz beside it
    assert no_stats.temperature == conf.temperature and no_stats.reject_threshold() is None
    assert back.reject_threshold(0) is None and back.qhat(0.9) < back.qhat(0.95)


def test_runs_without_calibration_are_identity_and_refuse_sets(tmp_path):
    conf = Confidence.load(tmp_path)
    p = np.array([[0.7, 0.3]], np.float32)
    assert not conf.calibrated and conf.temperature == 1.0 and conf.reject_threshold() is None
    assert (conf.calibrate(p) == p).all()
    with pytest.raises(UserError, match="calibrate"):
        conf.qhat(0.9)
    (tmp_path / "confidence.json").write_text('{"temperature": -1}')
    with pytest.raises(UserError, match="temperature"):
        Confidence.load(tmp_path)
