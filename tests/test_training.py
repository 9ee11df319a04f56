"""Training options: early stopping, user callbacks, validation split and parameter checks."""

import numpy as np
import pytest
from skorch.callbacks import Callback

from skfusion import ConcatClassifier, ConcatSurvival
from skfusion.datasets import make_multimodal_classification, make_multimodal_survival


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(n_samples=300, n_features=(8, 8), random_state=0)


def test_early_stopping_stops_and_restores_best(data):
    X, y = data
    model = ConcatSurvival(
        max_epochs=300, lr=0.05, early_stopping=True, n_iter_no_change=3, validation_fraction=0.2, random_state=0
    ).fit(X, y)
    history = model.net_.history
    assert len(history) < 300
    valid = history[:, "valid_loss"]
    assert int(np.argmin(valid)) == len(valid) - 1 - 3


def test_user_callbacks_are_called(data):
    X, y = data
    epochs = []

    class Count(Callback):
        def on_epoch_end(self, net, **kwargs):
            epochs.append(len(net.history))

    ConcatSurvival(max_epochs=4, callbacks=[Count()], random_state=0).fit(X, y)
    assert epochs == [1, 2, 3, 4]


def test_every_submodule_is_in_the_batch_mode(data):
    """Training batches run every submodule in train mode and validation batches in eval mode,
    even one left in the other mode (here by a callback) while its parents are not."""
    X, y = data
    modes = []

    class FlipOneSubmodule(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            net.module_.head[2].train(not training)

        def on_batch_end(self, net, training=False, **kwargs):
            modes.append((training, {m.training for m in net.module_.modules()}))

    ConcatSurvival(
        max_epochs=2, early_stopping=True, validation_fraction=0.2, callbacks=[FlipOneSubmodule()], random_state=0
    ).fit(X, y)
    assert {training for training, _ in modes} == {True, False}
    assert all(flags == {training} for training, flags in modes)


def test_validation_split_is_stratified_by_class():
    X, y = make_multimodal_classification(n_samples=200, n_features=(4, 4), random_state=0)
    model = ConcatClassifier(max_epochs=2, early_stopping=True, validation_fraction=0.25, random_state=0).fit(X, y)
    valid = model.net_.history[-1, "valid_batch_count"]
    assert valid >= 1


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
