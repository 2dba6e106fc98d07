import warnings

import pytest
import sklearn.metrics as sklearn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aptune.train.metrics import classification_metrics

pytestmark = pytest.mark.filterwarnings("error")


def test_perfect_predictions():
    metrics = classification_metrics([0, 1, 2, 1], [0, 1, 2, 1])
    assert metrics == {"accuracy": 1.0, "macro_f1": 1.0, "mcc": 1.0, "n": 4.0}
    assert all(type(v) is float for v in metrics.values())


def test_all_wrong_binary():
    metrics = classification_metrics([0, 1, 0, 1], [1, 0, 1, 0])
    assert metrics == {"accuracy": 0.0, "macro_f1": 0.0, "mcc": -1.0, "n": 4.0}


def test_three_classes_by_hand():
    # per class (precision, recall, F1): 0 -> (1/2, 1/2, 1/2); 1 -> (2/3, 1, 4/5); 2 -> (1, 1/2, 2/3)
    # MCC = (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)), c=4, s=6, t=(2,2,2), p=(2,3,1)
    metrics = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert metrics["mcc"] == pytest.approx((4 * 6 - (4 + 6 + 2)) / ((36 - 14) * (36 - 12)) ** 0.5)
    assert metrics["n"] == 6.0


@pytest.mark.parametrize(("labels", "predictions"), [([0, 0], [0, 1]), ([0, 1], [0, 0])])
def test_class_never_true_or_never_predicted_has_f1_zero(labels, predictions):
    # class 0: F1 = 2/3; class 1 has no true positive, so F1 = 0; macro = mean over both classes
    assert classification_metrics(labels, predictions)["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


@pytest.mark.parametrize(
    ("labels", "predictions"), [([1, 1, 1], [1, 1, 1]), ([0, 1, 0], [1, 1, 1]), ([2, 2], [0, 0])]
)
def test_undefined_mcc_is_zero(labels, predictions):
    assert classification_metrics(labels, predictions)["mcc"] == 0.0


def test_accepts_tensors():
    metrics = classification_metrics(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    assert metrics["accuracy"] == pytest.approx(2 / 3) and type(metrics["accuracy"]) is float


@pytest.mark.parametrize(("labels", "predictions"), [([0, 1], [0]), ([], [])])
def test_rejects_mismatched_or_empty(labels, predictions):
    with pytest.raises(ValueError, match="equally long, non-empty"):
        classification_metrics(labels, predictions)


def test_rejects_an_empty_class_list():
    with pytest.raises(ValueError, match="at least one class"):
        classification_metrics([0, 1], [0, 1], classes=[])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 3)), min_size=1, max_size=40),
    st.booleans(),
)
def test_equals_scikit_learn(pairs, restrict):
    """The counts-based formulas give scikit-learn's accuracy, macro F1 and MCC on any input."""
    labels, predictions = [y for y, _ in pairs], [p for _, p in pairs]
    classes = [0, 1, 2, 3] if restrict else None
    ours = classification_metrics(labels, predictions, classes)
    assert ours["accuracy"] == pytest.approx(sklearn.accuracy_score(labels, predictions))
    f1 = sklearn.f1_score(labels, predictions, labels=classes, average="macro", zero_division=0)
    assert ours["macro_f1"] == pytest.approx(f1)
    if len(set(labels) | set(predictions)) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns where MCC is undefined and returns 0
            assert ours["mcc"] == pytest.approx(sklearn.matthews_corrcoef(labels, predictions), abs=1e-12)
