"""Training options: early stopping, user callbacks, validation split and parameter checks."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skfusion import ConcatClassifier, ConcatSurvival
from skfusion._engine import ValidationSplit
from skfusion.datasets import make_multimodal_classification, make_multimodal_survival


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(n_samples=300, n_features=(8, 8), random_state=0)


def test_early_stopping_stops_and_restores_best(data):
    X, y = data
    weights = []  # the network's weights at the end of each epoch

    class Snapshot(Callback):
        def on_epoch_end(self, net, **kwargs):
            weights.append({name: value.clone() for name, value in net.module_.state_dict().items()})

    model = ConcatSurvival(
        max_epochs=300, lr=0.05, early_stopping=True, n_iter_no_change=3, validation_fraction=0.2,
        linear_path=False, callbacks=[Snapshot()], random_state=0,
    ).fit(X, y)
    history = model.net_.history
    assert len(history) < 300
    valid = history[:, "valid_loss"]
    best = int(np.argmin(valid))
    assert best == len(valid) - 1 - 3
    # The fitted network holds the best epoch's weights (epochs count from 1), not the last epoch's.
    assert model.best_epoch_ == best + 1
    fitted = model.net_.module_.state_dict()
    assert all(torch.equal(value, weights[best][name]) for name, value in fitted.items())
    assert not all(torch.equal(value, weights[-1][name]) for name, value in fitted.items())


def test_user_callbacks_are_called(data):
    X, y = data
    epochs = []

    class Count(Callback):
        def on_epoch_end(self, net, **kwargs):
            epochs.append(len(net.history))

    ConcatSurvival(max_epochs=4, early_stopping=False, callbacks=[Count()], random_state=0).fit(X, y)
    assert epochs == [1, 2, 3, 4]


def test_every_submodule_is_in_the_batch_mode(data):
    """Training batches run every submodule in train mode, even one left in eval mode (here by
    a callback) while its parents are not, and after the held-out loss of each epoch, which
    is computed in eval mode."""
    X, y = data
    modes = []

    class FlipOneSubmodule(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            net.module_.head[2].eval()

        def on_batch_end(self, net, training=False, **kwargs):
            modes.append((training, {m.training for m in net.module_.modules()}))

    ConcatSurvival(
        max_epochs=2, early_stopping=True, validation_fraction=0.2, callbacks=[FlipOneSubmodule()],
        linear_path=False, random_state=0,
    ).fit(X, y)
    assert modes and all(training and flags == {True} for training, flags in modes)


def test_validation_split_is_stratified_by_class(monkeypatch):
    X, y = make_multimodal_classification(n_samples=200, n_features=(4, 4), random_state=0)
    splits = []
    split = ValidationSplit.positions

    def spy(self, n):
        splits.append((self, *split(self, n)))
        return splits[-1][1:]

    monkeypatch.setattr(ValidationSplit, "positions", spy)
    ConcatClassifier(max_epochs=2, early_stopping=True, validation_fraction=0.25, random_state=0).fit(X, y)
    (splitter, train, valid), = splits
    np.testing.assert_array_equal(splitter.strata, y)
    assert set(train.tolist()).isdisjoint(valid.tolist()) and len(train) + len(valid) == len(y)
    held_out = np.bincount(y[valid], minlength=2)
    assert np.all(np.abs(held_out - 0.25 * np.bincount(y)) <= 1), held_out


class Rows:
    """What a ValidationSplit needs of a dataset: its length and its subsets."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def __len__(self):
        return len(self.rows)

    def subset(self, positions):
        return Rows(self.rows[positions])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_validation_split_holds_out_the_fraction_and_trains_on_the_rest(fraction):
    train, valid = ValidationSplit(fraction, seed=0)(Rows(np.arange(100) * 10))
    assert sorted(np.r_[train.rows, valid.rows].tolist()) == list(range(0, 1000, 10))  # every row, once
    assert len(valid) == round(fraction * 100)


def test_validation_split_keeps_every_stratum_on_both_sides():
    strata = np.repeat(["rare", "few", "some", "most"], [2, 3, 15, 80])
    rng = np.random.default_rng(0)
    strata = strata[rng.permutation(len(strata))]
    train, valid = ValidationSplit(0.2, seed=0, strata=strata)(Rows(np.arange(100)))
    assert set(train.rows.tolist()).isdisjoint(valid.rows.tolist()) and len(train) + len(valid) == 100
    for stratum in np.unique(strata):
        size, held_out = (strata == stratum).sum(), (strata[valid.rows] == stratum).sum()
        assert 1 <= held_out <= size - 1, stratum
        assert abs(held_out - 0.2 * size) <= 1, stratum


def test_validation_split_is_deterministic_for_a_seed():
    rows = Rows(np.arange(60))
    strata = np.arange(60) % 3

    def held_out(seed):
        return ValidationSplit(0.3, seed, strata)(rows)[1].rows.tolist()

    assert held_out(0) == held_out(0)
    assert held_out(0) != held_out(1)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"dropout": 1.5}, "dropout"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"loss": "hinge"}, "loss"),
        ({"missing": "zero"}, "missing"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_invalid_parameters(data, params, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        ConcatSurvival(**params).fit(X, y)
