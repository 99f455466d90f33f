import numpy as np
import pytest
from sklearn import metrics as skm

from imgclf.metrics import classification_metrics, confusion_matrix, most_confused, top_k_accuracy


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
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
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
