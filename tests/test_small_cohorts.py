"""Small cohorts: the linear start, the epochs chosen on held-out rows, the budget and the ConvergenceWarning."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from skfusion import ConcatClassifier, ConcatSurvival, LateFusionClassifier, LateFusionSurvival, MedFuseClassifier
from skfusion._classifier import cross_entropy
from skfusion._survival import CoxModel
from skfusion._training import (
    ALPHAS,
    EpochSelection,
    auto_max_epochs,
    auto_patience,
    auto_width,
    fit_linear_start,
    folds,
    warn_if_cut_short,
)
from skfusion.modules._blocks import linear_inputs


def _linear_cohort(n, seed, task="survival"):
    """Two blocks (12 + 10 features), the truth linear in 3 of them."""
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, 22))
    eta = 0.8 * x[:, 0] - 0.6 * x[:, 5] + 0.7 * x[:, 14]
    X = pd.DataFrame(x.astype(np.float32), columns=[f"img__{i}" for i in range(12)] + [f"ehr__{i}" for i in range(10)])
    if task == "survival":
        time = rng.exponential(np.exp(-eta)) * 10
        censor = rng.exponential(15, size=n)
        return X, Surv.from_arrays(time <= censor, np.minimum(time, censor)), eta
    return X, (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), eta


def test_linear_start_is_scikit_survivals_ridge_cox_model():
    """Cox partial likelihood (Efron) + alpha / 2 ||b||^2, the mean over events: sksurv's ridge Cox
    model with its penalty on the summed log-likelihood, alpha times the number of events."""
    X, y, _ = _linear_cohort(150, 0)
    z = (X - X.mean()) / X.std(ddof=0)
    z = z.astype(np.float64)
    cox = CoxModel()
    target = torch.from_numpy(cox.prepare(y["time"], y["event"], np.ones(len(y))))
    alpha = 0.05
    layer, chosen = fit_linear_start(torch.tensor(z.to_numpy()), target, cox.loss, 1, None, alpha, intercept=False)
    reference = CoxPHSurvivalAnalysis(alpha=alpha * y["event"].sum(), ties="efron").fit(z, y).coef_
    assert chosen == alpha
    assert layer.bias.item() == 0.0  # the partial likelihood has no intercept: nothing but round-off moves it
    # L-BFGS-B's line search ends at the round-off of the loss, 1e-7 of the objective
    # above scikit-survival's Newton optimum: coefficients within a few 1e-4.
    np.testing.assert_allclose(layer.weight.detach().numpy().ravel(), reference, rtol=1e-3, atol=5e-4)


def test_linear_start_is_scikit_learns_multinomial_ridge_regression():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(240, 5))
    labels = np.argmax(x[:, :3] + rng.normal(size=(240, 3)), axis=1)
    alpha = 0.02
    target = torch.from_numpy(np.column_stack([labels, np.ones(len(x))]))
    layer, _ = fit_linear_start(torch.tensor(x), target, cross_entropy, 3, None, alpha)
    reference = LogisticRegression(C=1 / (alpha * len(x)), tol=1e-10, max_iter=10_000).fit(x, labels)
    np.testing.assert_allclose(layer.weight.detach().numpy(), reference.coef_, rtol=1e-3, atol=1e-4)
    # The intercepts are free: equal up to a constant.
    bias = layer.bias.detach().numpy()
    np.testing.assert_allclose(bias - bias.mean(), reference.intercept_ - reference.intercept_.mean(), atol=1e-4)


def test_the_penalty_is_chosen_on_held_out_rows():
    """Noise features get one of the two strongest penalties of the grid, a strong signal on many rows a weak one."""
    rng = np.random.RandomState(0)
    x = torch.tensor(rng.normal(size=(600, 4)))
    noise = torch.from_numpy(np.column_stack([rng.randint(0, 2, 600), np.ones(600)]))
    signal = torch.from_numpy(np.column_stack([(x[:, 0] > 0).numpy(), np.ones(600)]))
    splits = folds(600, None, 0)
    assert fit_linear_start(x, noise, cross_entropy, 2, splits, 1.0)[1] >= ALPHAS[1]
    assert fit_linear_start(x, signal, cross_entropy, 2, splits, 1.0)[1] <= 1e-3


def test_the_start_from_the_splits_solutions_reaches_the_same_optimum():
    """The final fit starts from the mean of the splits' solutions: the optimum is the one a fit from zero reaches."""
    rng = np.random.RandomState(2)
    x = torch.tensor(rng.normal(size=(300, 6)))
    target = torch.from_numpy(np.column_stack([(x[:, 0] - x[:, 1] + rng.normal(size=300) > 0).numpy(), np.ones(300)]))
    layer, alpha = fit_linear_start(x, target, cross_entropy, 2, folds(300, None, 0), 1.0)
    alone, _ = fit_linear_start(x, target, cross_entropy, 2, None, alpha)
    np.testing.assert_allclose(layer.weight.detach().numpy(), alone.weight.detach().numpy(), atol=1e-4)
    # Fitted on some rows only, it is the model of those rows.
    rows = np.arange(0, 300, 2)
    some, _ = fit_linear_start(x, target, cross_entropy, 2, folds(300, None, 0), 1.0, rows)
    those, _ = fit_linear_start(x[rows], target[rows], cross_entropy, 2, None, alpha)
    np.testing.assert_allclose(some.weight.detach().numpy(), those.weight.detach().numpy(), atol=1e-4)


def test_with_a_validation_split_the_start_never_sees_the_held_out_rows(monkeypatch):
    """The rows that choose the epoch (epoch 0, the start alone, included) choose alpha and are not fitted on."""
    import skfusion._base

    X, y, _ = _linear_cohort(300, 7, task="classification")
    seen = {}
    positions = skfusion._base.ValidationSplit.positions

    def record_split(self, n):
        seen["train"], seen["valid"] = positions(self, n)
        return seen["train"], seen["valid"]

    def record_start(z, targets, loss, n_outputs, splits, fallback_alpha, rows=None, intercept=True):
        seen["splits"], seen["rows"] = splits, rows
        return fit_linear_start(z, targets, loss, n_outputs, splits, fallback_alpha, rows, intercept)

    monkeypatch.setattr(skfusion._base.ValidationSplit, "positions", record_split)
    monkeypatch.setattr(skfusion._base, "fit_linear_start", record_start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ConcatClassifier(early_stopping=True, validation_fraction=0.3, max_epochs=2, random_state=0).fit(X, y)
    ((train, valid),) = seen["splits"]
    np.testing.assert_array_equal(valid, seen["valid"])  # z holds every row in order: positions are rows
    np.testing.assert_array_equal(train, seen["train"])
    np.testing.assert_array_equal(seen["rows"], seen["train"])
    assert model.linear_alpha_ in ALPHAS


def test_linear_inputs_are_the_blocks_the_token_means_and_presence_flags():
    blocks = {
        "a": {"x": torch.tensor([[1.0, 2.0], [0.0, 0.0]]), "present": torch.tensor([True, False])},
        "s": {
            "x": torch.tensor([[[1.0], [3.0], [0.0]], [[4.0], [0.0], [0.0]]]),
            "mask": torch.tensor([[True, True, False], [True, False, False]]),
            "present": torch.tensor([True, True]),
        },
    }
    z = linear_inputs(blocks, ["a", "s"], ["a"])
    np.testing.assert_allclose(z.numpy(), [[1.0, 2.0, 2.0, 1.0], [0.0, 0.0, 4.0, 0.0]])


def test_budget_formulas():
    assert auto_max_epochs(7) == 572  # 200 rows in batches of 32 (rounded up): 4,000 steps
    assert auto_max_epochs(79) == 100  # 20,000 rows in batches of 256
    assert auto_max_epochs(1) == 1000
    assert auto_patience(5) == 100
    assert auto_patience(79) == 10


def test_auto_width_keeps_medfuses_weights_per_row():
    assert auto_width(256, 42_628, 76) == 256  # MedFuse's phenotyping training set
    assert auto_width(256, 200, 12) == 18  # 256 * sqrt(200 / 42,628) = 17.5
    assert auto_width(256, 2000, 12) == 55
    assert auto_width(256, 200, 76) == 76  # never narrower than its input
    assert auto_width(256, 10**6, 12) == 256  # never wider than MedFuse's
    assert auto_width(512, 200, 18) == 35
    assert auto_width(8, 200, 76) == 8  # a reference narrower than the input is the bound


def _series_cohort(n, seed):
    """A token column of (T, 3) series and a 2-feature image block, missing in a quarter of the rows."""
    rng = np.random.RandomState(seed)
    X = pd.DataFrame({"ts": [rng.normal(size=(rng.randint(2, 6), 3)).astype(np.float32) for _ in range(n)]})
    image = rng.normal(size=(n, 2)).astype(np.float32)
    image[: n // 4] = np.nan
    X[["img__0", "img__1"]] = image
    return X, (np.array([cell[:, 0].mean() for cell in X["ts"]]) > 0).astype(int)


def _lstm_widths(module):
    return sorted({layer.hidden_size for layer in module.modules() if isinstance(layer, torch.nn.LSTM)})


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs: widths only
def test_auto_widths_scale_to_the_training_rows_and_explicit_ones_are_kept():
    X, y = _series_cohort(120, 0)
    kw = {"max_epochs": 2, "early_stopping": False, "random_state": 0}
    model = LateFusionClassifier(mode="joint", **kw).fit(X, y)
    assert _lstm_widths(model.network_) == [auto_width(256, 120, 3)] == [14]
    model = LateFusionClassifier(mode="joint", lstm_dim=5, **kw).fit(X, y)
    assert _lstm_widths(model.network_) == [5]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_auto_widths_survive_pre_training_and_averaging():
    # MedFuse pre-trains its EHR encoder on all 120 rows, then fine-tunes on fewer
    # (uni_modal_fraction drops rows without an image): the encoder keeps the first stage's width.
    X, y = _series_cohort(120, 1)
    kw = {"max_epochs": 2, "early_stopping": False, "random_state": 0}
    model = MedFuseClassifier(pretrain_encoders=True, uni_modal_fraction=0.0, **kw).fit(X, y)
    ehr = auto_width(256, 120, 3)
    assert _lstm_widths(model.network_) == sorted({ehr, auto_width(512, 120, ehr)})
    # Late fusion's averaged models: the time-series model, fitted on the 90 rows that have a
    # series, has the width of the 120-row model that averages it (whose network loads its weights).
    X.loc[90:, "ts"] = None
    model = LateFusionClassifier(mode="average", **kw).fit(X, y)
    assert _lstm_widths(model.estimators_["ts"].network_) == _lstm_widths(model.network_) == [14]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 6 epochs: the rows only
def test_internal_folds_pre_train_without_their_held_out_rows(monkeypatch):
    """Each fold's encoder is pre-trained anew on the rows it does not hold out, for the epochs chosen on all rows."""
    from skfusion.fusion._pretraining import _EncoderPretraining

    calls = []
    pretrain = _EncoderPretraining._pretrain

    def spy(self, inputs, epochs=None, kept=None):
        fitted = pretrain(self, inputs, epochs, kept)
        calls.append((epochs, kept, {name: model.best_epoch_ for name, model in fitted.items()}))
        return fitted

    monkeypatch.setattr(_EncoderPretraining, "_pretrain", spy)
    X, y = _series_cohort(120, 2)  # rows 0-29 have no image; half of them are kept for fine-tuning
    model = MedFuseClassifier(uni_modal_fraction=0.5, max_epochs=6, n_iter_no_change=2, random_state=0)
    model.fit(X, y)
    (first_epochs, first_kept, chosen), *fold_calls = calls
    assert first_epochs is None and first_kept is None and len(fold_calls) == 3
    held_out = [np.flatnonzero(~kept) for epochs, kept, _ in fold_calls]
    assert all(epochs == chosen for epochs, _, _ in fold_calls)
    assert sorted(np.concatenate(held_out)) == sorted(set(np.concatenate(held_out)))  # each row held out once
    union = np.concatenate(held_out)
    assert set(range(30, 120)) <= set(union) and np.sum(union < 30) == 15
    assert all(33 <= len(rows) <= 37 for rows in held_out)


def test_folds_hold_every_row_out_once_and_every_stratum_in_each():
    strata = np.r_[np.ones(7, bool), np.zeros(20, bool)]
    pairs = folds(27, strata, 0)
    held_out = np.sort(np.concatenate([valid for _, valid in pairs]))
    np.testing.assert_array_equal(held_out, np.arange(27))
    assert all(strata[valid].any() and strata[train].any() for train, valid in pairs)
    assert folds(27, np.r_[np.ones(2, bool), np.zeros(25, bool)], 0) is None  # 2 events for 3 folds


def test_a_small_cohort_with_a_linear_truth_is_fitted_as_well_as_ridge_cox():
    X, y, _ = _linear_cohort(1200, 3)
    train, test = slice(0, 200), slice(200, None)
    model = ConcatSurvival(random_state=0).fit(X[train], y[train])
    ridge = CoxPHSurvivalAnalysis(alpha=10.0).fit(X[train], y[train])

    def c_index(risk):
        return concordance_index_censored(y[test]["event"], y[test]["time"], risk)[0]

    assert c_index(model.predict(X[test])) >= c_index(ridge.predict(X[test])) - 0.01
    assert model.linear_alpha_ in ALPHAS


def test_epoch_0_is_the_linear_start_alone(monkeypatch):
    """When the held-out rows prefer the untrained start, the model is the penalized linear model."""
    X, y, _ = _linear_cohort(150, 4, task="classification")
    monkeypatch.setattr("skfusion._base.mean_curve_best", lambda curves: 0)
    model = ConcatClassifier(random_state=0).fit(X, y)
    assert model.best_epoch_ == model.n_iter_ == 0
    assert model.net_.module_.use_deep is False
    # Two logits, both rows penalized: at the optimum w_1 = -w_0, so the penalty on w = w_1 - w_0
    # is alpha / 4 ||w||^2, scikit-learn's 1 / (2 C n) ||w||^2 for C = 2 / (alpha n).
    alpha = model.linear_alpha_
    z = (X - X.mean()) / X.std(ddof=0)
    reference = LogisticRegression(C=2 / (alpha * len(X)), tol=1e-10, max_iter=10_000).fit(z, y)
    logits = model.net_.module_.linear(torch.tensor(z.to_numpy(), dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], reference.decision_function(z), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(model.predict(X), reference.predict(z))


def test_the_held_out_best_epoch_is_restored():
    X, y, _ = _linear_cohort(300, 5)
    states = []

    class Snapshot(EpochSelection):
        def _record(self, net, loss):
            states.append({k: v.clone() for k, v in net.module_.state_dict().items()})
            super()._record(net, loss)

    model = ConcatSurvival(early_stopping=True, validation_fraction=0.3, n_iter_no_change=3, random_state=0)
    monkey = pytest.MonkeyPatch()
    monkey.setattr("skfusion._base.EpochSelection", Snapshot)
    try:
        model.fit(X, y)
    finally:
        monkey.undo()
    assert model.best_epoch_ < model.n_iter_ == len(model.net_.history) == len(states) - 1
    restored = model.net_.module_.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in states[model.best_epoch_].items())
    assert model.net_.module_.use_deep is (model.best_epoch_ > 0)


@pytest.mark.parametrize(
    "early_stopping, attributes",
    [("auto", "folds"), (True, "split"), (False, "all")],
)
def test_n_iter_and_best_epoch(early_stopping, attributes):
    X, y, _ = _linear_cohort(200, 6, task="classification")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ConcatClassifier(max_epochs=8, early_stopping=early_stopping, random_state=0).fit(X, y)
    if attributes == "folds":
        assert model.n_iter_ == model.best_epoch_ == len(model.net_.history) or model.n_iter_ == 0
    elif attributes == "split":
        assert model.best_epoch_ <= model.n_iter_ == len(model.net_.history)
    else:
        assert model.best_epoch_ == model.n_iter_ == 8


def test_a_fit_cut_short_warns():
    X, y, _ = _linear_cohort(300, 7, task="classification")
    with pytest.warns(ConvergenceWarning, match="max_epochs=3"):
        ConcatClassifier(max_epochs=3, early_stopping=False, linear_path=False, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="still falling"):
        ConcatClassifier(max_epochs=2, linear_path=False, lr=1e-4, random_state=0).fit(X, y)


def test_a_converged_fit_does_not_warn():
    X, y, _ = _linear_cohort(300, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LateFusionSurvival(random_state=0).fit(X, y)


def test_training_loss_criterion_of_a_fit_without_validation():
    falling = [2.0 - 0.01 * e for e in range(100)]
    flat = [max(2.0 - 0.05 * e, 1.0) for e in range(100)]
    with pytest.warns(ConvergenceWarning, match="training loss fell"):
        warn_if_cut_short(ConcatClassifier(), falling, [], 100, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_cut_short(ConcatClassifier(), flat, [], 100, 10)


@pytest.mark.parametrize("fraction, n", [(0.999, 80), (0.05, 20)])
def test_a_validation_split_too_small_on_either_side_is_refused(fraction, n):
    X, _, _ = _linear_cohort(n, 9, task="classification")
    y = np.r_[1, np.zeros(n - 1, int)]  # a class of one row: the split is not stratified
    with pytest.raises(ValueError, match=f"validation_fraction={fraction}"):
        ConcatClassifier(early_stopping=True, validation_fraction=fraction, max_epochs=2).fit(X, y)


def test_internal_folds_are_deterministic():
    X, y, _ = _linear_cohort(200, 10)
    first, second = (ConcatSurvival(max_epochs=20, random_state=3).fit(X, y) for _ in range(2))
    assert first.best_epoch_ == second.best_epoch_
    np.testing.assert_allclose(first.predict(X), second.predict(X), rtol=1e-6, atol=1e-6)


def test_a_pre_training_cut_short_is_named_by_its_estimator():
    rng = np.random.RandomState(11)
    X = pd.DataFrame({"ts": [rng.normal(size=(rng.randint(2, 6), 3)).astype(np.float32) for _ in range(60)]})
    X["img__0"] = rng.normal(size=60).astype(np.float32)
    y = (X["img__0"] > 0).astype(int)
    with pytest.warns(ConvergenceWarning, match="ConcatClassifier's pre-training of 'ts': training stopped"):
        ConcatClassifier(
            pretrain_encoders=True, lstm_dim=4, max_epochs=3, early_stopping=False, random_state=0
        ).fit(X, y)


def _convirt():
    from skfusion.datasets import make_paired_image_ehr
    from skfusion.ssl import ConVIRT

    X, _ = make_paired_image_ehr(n_samples=60, n_image_features=8, n_ehr_features=4, n_timesteps=(3, 5), random_state=0)
    return ConVIRT(projection_dim=4, hidden_dim=8, lstm_dim=4, lr=0.01, random_state=0), X


def _time_to_event():
    from skfusion.datasets import make_imaging_ehr_cohort
    from skfusion.ssl import TimeToEventPretraining

    X, _ = make_imaging_ehr_cohort(n_samples=16, volume_shape=(4, 16, 16), random_state=0)
    return TimeToEventPretraining(window="pe", batch_size=8, random_state=0, device="cpu"), X


def _clmbr():
    from skfusion.datasets._events_real import load_pbcseq_events
    from skfusion.encoders import CLMBREmbedder

    X = load_pbcseq_events(landmark=365)[0].iloc[:40][["ehr"]]
    settings = dict(hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=8, min_frequency=1, code_summary=False)
    return CLMBREmbedder(**settings, batch_size=16, device="cpu", random_state=0), X


@pytest.mark.parametrize("make", [_convirt, _time_to_event, _clmbr], ids=["ConVIRT", "TimeToEvent", "CLMBR"])
def test_pretraining_transformers_report_their_epochs(make):
    estimator, X = make()
    assert estimator.set_params(max_epochs=3).fit(X).n_iter_ == estimator.best_epoch_ == 3
