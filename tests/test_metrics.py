import numpy as np
import pytest
from sklearn import metrics as skm

from imgclf.evaluation.metrics import classification_metrics, confusion_matrix, most_confused, top_k_accuracy


def _random_case(n, k, seed, drop_class=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]
    if drop_class is not None:
        logits[:, drop_class] = -50  # never predicted
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("n, k, seed, drop", [(200, 7, 0, None), (50, 2, 1, None), (120, 4, 2, 3), (1, 3, 3, None)])
def test_metrics_match_scikit_learn(n, k, seed, drop):
    y, probs = _random_case(n, k, seed, drop)
    classes = [f"c{i}" for i in range(k)]
    m = classification_metrics(y, probs, classes)
    pred = probs.argmax(1)
    labels = list(range(k))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for i, c in enumerate(classes):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == s[i]
    present = sorted(set(y))  # macro averages are over the classes the evaluated images contain
    assert m["absent_classes"] == [c for i, c in enumerate(classes) if i not in present]
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=present if avg == "macro" else labels,
                                                         average=avg, zero_division=0)
        assert m[f"{avg}_avg"]["precision"] == pytest.approx(p)
        assert m[f"{avg}_avg"]["recall"] == pytest.approx(r)
        assert m[f"{avg}_avg"]["f1"] == pytest.approx(f)
    if len(set(y)) > 1:
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=labels))
    if k > 5:
        assert m["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=5, labels=labels))
        assert m["top3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=3, labels=labels))
    else:
        assert "top5_accuracy" not in m


def test_top_k_with_k_at_least_classes_is_one():
    assert top_k_accuracy(np.array([1, 0]), np.array([[0.9, 0.1], [0.2, 0.8]]), 2) == 1.0


def test_most_confused_orders_by_count():
    cm = confusion_matrix(np.array([0, 0, 0, 1, 2, 2]), np.array([1, 1, 2, 1, 0, 2]), 3)
    pairs = most_confused(cm, ["a", "b", "c"])
    assert pairs[0] == {"true": "a", "predicted": "b", "count": 2}
    assert {(p["true"], p["predicted"]) for p in pairs} == {("a", "b"), ("a", "c"), ("c", "a")}


from imgclf.evaluation.metrics import average_precision, best_f1_threshold, calibration, roc_auc  # noqa: E402


@pytest.mark.parametrize("n, k, seed, drop", [(200, 7, 0, None), (60, 2, 1, None), (120, 4, 2, 3), (1, 3, 3, None), (40, 3, 4, None)])
def test_score_metrics_match_scikit_learn(n, k, seed, drop):
    y, probs = _random_case(n, k, seed, drop)
    if seed == 4:
        probs = np.round(probs, 1)  # heavy ties in the scores
        probs = probs / probs.sum(1, keepdims=True)
    classes = [f"c{i}" for i in range(k)]
    m = classification_metrics(y, probs, classes)
    pred = probs.argmax(1)
    labels = list(range(k))
    kappa = skm.cohen_kappa_score(y, pred, labels=labels)
    if np.isnan(kappa):
        assert m["cohen_kappa"] is None
    else:
        assert m["cohen_kappa"] == pytest.approx(kappa)
    assert np.allclose(m["confusion_matrix_normalized"], np.nan_to_num(skm.confusion_matrix(y, pred, labels=labels, normalize="true")))
    for i, c in enumerate(classes):
        yb = y == i
        if 0 < yb.sum() < n:
            assert m["roc_auc_per_class"][c] == pytest.approx(skm.roc_auc_score(yb, probs[:, i]))
            assert m["pr_auc_per_class"][c] == pytest.approx(skm.average_precision_score(yb, probs[:, i]))
        else:
            assert m["roc_auc_per_class"][c] is None
    if len(set(y)) == k and k > 2:
        assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
        onehot = np.eye(k)[y]
        assert m["pr_auc_macro"] == pytest.approx(skm.average_precision_score(onehot, probs, average="macro"))
    if k == 2:
        assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    if n == 1:
        assert m["roc_auc_macro"] is None and m["pr_auc_macro"] is not None


def test_ece_matches_scikit_learn_calibration_curve():
    from sklearn.calibration import calibration_curve

    y, probs = _random_case(300, 5, 9)
    cal = calibration(y, probs, n_bins=10)
    conf, correct = probs.max(1), (probs.argmax(1) == y)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    counts = np.array(cal["bin_count"])
    nonempty = counts > 0
    assert np.allclose(np.array(cal["bin_accuracy"])[nonempty], prob_true)
    assert np.allclose(np.array(cal["bin_confidence"])[nonempty], prob_pred)
    assert counts.sum() == 300
    ece_ref = np.sum(np.abs(prob_true - prob_pred) * counts[nonempty]) / 300
    assert cal["ece"] == pytest.approx(ece_ref)
    # A perfectly calibrated toy: confidence 0.75, three of four right.
    p = np.array([[0.75, 0.25]] * 4)
    assert calibration(np.array([0, 0, 0, 1]), p)["ece"] == pytest.approx(0.0)


def test_binary_best_f1_threshold_matches_scikit_learn():
    y, probs = _random_case(80, 2, 11)
    b = classification_metrics(y, probs, ["neg", "pos"])["binary"]
    precision, recall, thresholds = skm.precision_recall_curve(y, probs[:, 1])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert b["f1"] == pytest.approx(f1[:-1].max())
    pred = probs[:, 1] >= b["threshold"]
    assert b["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert b["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert b["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert b["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert b["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert "binary" not in classification_metrics(*_random_case(30, 3, 1), ["a", "b", "c"])
    assert best_f1_threshold(np.array([0, 0]), np.array([0.1, 0.2]))["threshold"] is None


def test_auc_helpers_on_degenerate_input():
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert average_precision(np.array([0, 0]), np.array([0.2, 0.3])) is None
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_macro_averages_leave_out_classes_with_no_images():
    """An evaluation folder without class c: macro recall is not dragged down by c's undefined recall."""
    classes = ["a", "b", "c"]
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])  # one 'a' called 'c'
    m = classification_metrics(y, probs, classes)
    assert m["absent_classes"] == ["c"]
    assert m["macro_avg"]["recall"] == pytest.approx((0.5 + 1.0) / 2)  # not (0.5 + 1 + 0) / 3
    assert m["accuracy"] == pytest.approx(0.75)  # the image called 'c' still counts as wrong
