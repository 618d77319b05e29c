import numpy as np
import pytest
import torch

from workbench.errors import DataError
from workbench.tasks import Classification, Unlabelled


def test_arrays_tensors_and_loaders_give_the_same_task():
    x = np.random.default_rng(0).random((20, 4), dtype=np.float32)
    y = np.arange(20) % 3
    a = Classification(x, y)
    b = Classification(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=6)
    c = Classification(loader)
    for t in (b, c):
        np.testing.assert_array_equal(t.inputs, a.inputs)
        np.testing.assert_array_equal(t.labels, a.labels)
    assert a.fingerprint() == c.fingerprint()
    assert a.num_classes == 3 and len(a) == 20


def test_accuracy_and_fidelity_on_known_numbers():
    task = Classification(np.zeros((4, 2), np.float32), np.array([0, 1, 1, 0]))
    logits = np.array([[2, 1], [0, 3], [5, 1], [1, 0]], np.float32)  # predicts 0, 1, 0, 0
    assert task.score(logits) == 0.75
    other = logits.copy()
    other[0] = [1, 2]  # flips the first prediction
    f = task.fidelity(other, logits)
    assert f["fidelity_top1"] == 0.75 and f["fidelity"] == 0.75
    assert f["fidelity_max_abs"] == 1.0
    assert f["fidelity_cosine_min"] == pytest.approx(0.8) and f["fidelity_cosine"] < 1
    same = task.fidelity(logits, logits)
    assert same["fidelity"] == 1.0 and same["fidelity_cosine"] == pytest.approx(1.0)


def test_unlabelled_task_scores_nothing_and_uses_cosine():
    task = Unlabelled(np.ones((3, 2), np.float32))
    out = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    assert task.score(out) is None and task.metric_name is None
    assert task.fidelity(out, out)["fidelity"] == pytest.approx(1.0)


@pytest.mark.parametrize("x, y, fragment", [
    (np.zeros((0, 4)), np.zeros(0, int), "empty"),
    (np.zeros((5, 4)), np.zeros(4, int), "5 samples but y has 4"),
    (np.full((2, 2), np.nan), np.zeros(2, int), "NaN/Inf"),
    (np.zeros((2, 2)), np.zeros((2, 2), int), "1-D"),
    (np.zeros((2, 2)), np.array([0.5, 1.0]), "integer class indices"),
    (np.zeros((2, 2)), np.array([-1, 0]), "negative"),
    (np.zeros((2, 2)), None, "needs labels"),
    ([[1, 2], [3]], np.zeros(2, int), "rectangular numeric array"),
    (np.array(["a", "b"], dtype=object), np.zeros(2, int), "not numeric"),
    (np.float32(3), np.zeros(1, int), "scalar"),
])
def test_bad_data_raises_naming_the_problem(x, y, fragment):
    with pytest.raises(DataError, match=fragment):
        Classification(x, y)


def test_bad_training_data():
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, int)
    with pytest.raises(DataError, match="per sample"):
        Classification(x, y, train=(np.zeros((4, 3), np.float32), y))
    with pytest.raises(DataError, match="same number"):
        Classification(x, y, train=(x, y[:2]))
    with pytest.raises(DataError, match="pair"):
        Classification(x, y, train="train.csv")
    with pytest.raises(DataError, match="no batches"):
        Classification(torch.utils.data.DataLoader([]))


def test_sample_repeats_small_tasks_and_checks_size():
    task = Classification(np.arange(6, dtype=np.float32).reshape(3, 2), np.array([0, 1, 0]))
    assert task.sample(5).shape == (5, 2)
    with pytest.raises(DataError):
        task.sample(0)
    assert task.calibration(2).shape == (2, 2)


def test_outputs_that_do_not_fit_the_labels():
    task = Classification(np.zeros((3, 2), np.float32), np.array([0, 4, 1]))
    with pytest.raises(DataError, match="labels go up to 4"):
        task.check_outputs(np.zeros((3, 3), np.float32))
    with pytest.raises(DataError, match="2 outputs for 3 inputs"):
        task.check_outputs(np.zeros((2, 5), np.float32))
