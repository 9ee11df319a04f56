"""Reference tests of the survival head against scikit-survival, torchsurv and the formulas."""

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.util import Surv
from torchsurv.loss.weibull import survival_function_weibull

from skfusion import ConcatSurvival
from skfusion._survival import CoxModel, DiscreteTimeModel, WeibullModel, discrete_time_nll
from skfusion.datasets import make_multimodal_survival


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(0)
    n = 300
    X = rng.normal(size=(n, 4))
    beta = np.array([0.8, -0.5, 0.3, 0.0])
    time = rng.exponential(scale=np.exp(-X @ beta))
    censor = rng.exponential(scale=1.5, size=n)
    y = Surv.from_arrays(time <= censor, np.minimum(time, censor))
    frame = pd.DataFrame(X, columns=[f"a__{i}" for i in range(2)] + [f"b__{i}" for i in range(2)])
    return frame, y


@pytest.mark.parametrize("standardize", [True, False])
def test_linear_cox_matches_sksurv_coefficients(linear_data, standardize):
    X, y = linear_data
    if standardize:
        # Affine, non-uniform feature scales: the coefficients in the input's units must not depend on them.
        X = X * [1.0, 40.0, 0.01, 3.0] + [5.0, -200.0, 0.0, 1.0]
    model = ConcatSurvival(
        hidden_dims=[], dropout=0.0, weight_decay=0.0, lr=0.05, batch_size=len(X), max_epochs=600,
        early_stopping=False, standardize=standardize, linear_path=False, random_state=0,
    ).fit(X, y)
    weights = model.net_.module_.head[0].weight.detach().numpy().ravel()
    reference = CoxPHSurvivalAnalysis(alpha=0.0, ties="efron").fit(X.to_numpy(), y).coef_
    if standardize:
        # Standardization undone: a weight on z = (x - mean) / scale is weight / scale per unit of x.
        scale = np.concatenate([model.standardization_[m][1] for m in ("a", "b")])
        np.testing.assert_allclose(scale, X.std(ddof=0).to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(weights / scale, reference, rtol=2e-3, atol=1e-5)
    else:
        assert model.standardization_ == {}
        np.testing.assert_allclose(weights, reference, atol=2e-3)


def test_fitted_survival_curves_match_sksurv_breslow_on_the_model_risks():
    """The Breslow baseline pairs each training row's risk with its own target.

    Shuffled, event-stratified mini-batches regroup the rows; the baseline must still be
    scikit-survival's Breslow estimator given the fitted model's risk scores.
    """
    X, y = make_multimodal_survival(n_samples=400, random_state=3)
    model = ConcatSurvival(batch_size=32, max_epochs=5, early_stopping=False, random_state=0).fit(X, y)
    risk = model.predict(X)
    reference = BreslowEstimator().fit(risk, y["event"], y["time"])
    expected = np.vstack([f(model.unique_times_) for f in reference.get_survival_function(risk)])
    np.testing.assert_allclose(model.predict_survival_function(X, return_array=True), expected, rtol=1e-6)


def test_breslow_matches_sksurv_for_same_linear_predictor(linear_data):
    X, y = linear_data
    reference = CoxPHSurvivalAnalysis(alpha=0.0, ties="efron").fit(X.to_numpy(), y)
    lp = reference.predict(X.to_numpy())
    cox = CoxModel()
    cox.finalize(lp[:, None], cox.prepare(y["time"], y["event"], np.ones(len(y))))
    times = reference.unique_times_
    ours = np.exp(-cox.cumulative_hazard(lp[:, None], times))
    theirs = reference.predict_survival_function(X.to_numpy(), return_array=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    # Between, before and after the observed times: the step function's values.
    grid = np.concatenate([[0.0, times[0] / 2], (times[:-1] + times[1:]) / 2, [times[-1] * 2]])
    funcs = reference.predict_cumulative_hazard_function(X.to_numpy()[:3])
    expected = np.vstack([np.where(grid < times[0], 0.0, f(np.clip(grid, times[0], times[-1]))) for f in funcs])
    np.testing.assert_allclose(cox.cumulative_hazard(lp[:3, None], grid), expected, rtol=1e-10)


def test_weibull_survival_matches_torchsurv():
    rng = np.random.default_rng(1)
    out = rng.normal(scale=0.3, size=(5, 1))
    model = WeibullModel()
    time = rng.exponential(size=50) * 10
    model.prepare(time, np.ones(50, dtype=bool), np.ones(50))
    times = np.linspace(0.5, 20, 7)
    ours = np.exp(-model.cumulative_hazard(out, times))
    # The output is an offset from the marginal fit's log scale, soft-bounded (b * tanh(z / b));
    # every row has the marginal fit's shape.
    log_scale = 12 * np.tanh((out[:, 0] + model.offset_[0]) / 12)
    log_shape = np.full(5, 2 * np.tanh(model.offset_[1] / 2))
    params = np.column_stack([log_scale, log_shape])
    theirs = survival_function_weibull(torch.tensor(params), torch.tensor(times / model.time_scale_)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    # One shape: the risk orders rows as minus the expected log time, E[log T] = log(lambda) - gamma / rho.
    np.testing.assert_array_equal(np.argsort(model.risk(out)), np.argsort(-(log_scale - 0.5772 / np.exp(log_shape))))
    samples = np.exp(params[0, 0]) * rng.weibull(np.exp(params[0, 1]), size=400_000)
    assert abs(-model.risk(out)[0] - np.euler_gamma / np.exp(params[0, 1]) - np.log(samples).mean()) < 5e-3


def test_weibull_stays_finite_on_unscaled_inputs_and_zero_times():
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a__0": rng.normal(60, 12, 200), "a__1": rng.normal(0, 1e4, 200), "b__0": rng.normal(size=200)})
    time = rng.exponential(scale=100.0, size=200)
    time[:3] = 0.0  # events on the day of inclusion, as flchain has
    y = Surv.from_arrays(np.ones(200, dtype=bool), time)
    model = ConcatSurvival(loss="weibull", lr=1e-2, max_epochs=30, random_state=0).fit(X, y)
    # No feature carries the times: the curves put the sample's median time near survival 0.5
    # (0.51 on average measured; zero times mistaken for infinite hazards pull it far off).
    median = np.median(time)
    at_median = np.array([f(median) for f in model.predict_survival_function(X)])
    assert abs(at_median.mean() - 0.5) < 0.1, at_median.mean()
    # Without standardization a feature of scale 1e4 may blow the network up: then a clear
    # error, at fit or at prediction (which refuses outputs that are not finite).
    try:
        ConcatSurvival(loss="weibull", standardize=False, lr=1e-2, max_epochs=30, random_state=0).fit(
            X, y
        ).predict_survival_function(X, return_array=True)
    except ValueError as error:
        assert "training diverged" in str(error) or "not finite" in str(error), error


def _discrete_nll_by_hand(logits, bins, events):
    total = 0.0
    for z, j, d in zip(logits, bins, events):
        h = 1.0 / (1.0 + np.exp(-z))
        loglik = sum(np.log(1.0 - h[k]) for k in range(j))
        if d:
            loglik += np.log(h[j])
        total -= loglik
    return total / len(logits)


def test_discrete_time_nll_matches_formula():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(9, 5))
    bins = rng.integers(0, 5, size=9)
    events = rng.random(9) < 0.6
    ours = discrete_time_nll(
        torch.tensor(logits), torch.tensor(bins), torch.tensor(events, dtype=torch.float64), torch.ones(9)
    ).item()
    assert ours == pytest.approx(_discrete_nll_by_hand(logits, bins, events), rel=1e-12)


def test_discrete_survival_is_product_of_bin_survivals():
    rng = np.random.default_rng(3)
    time = rng.exponential(size=200)
    event = rng.random(200) < 0.7
    model = DiscreteTimeModel(n_durations=4)
    target = model.prepare(time, event, np.ones(200))
    assert target[:, 0].max() <= 3
    # An event at exactly a cut belongs to that cut's bin: (cut[j-1], cut[j]].
    assert model.bin_index(model.cuts_[:3]).tolist() == [0, 1, 2]
    logits = rng.normal(size=(2, 4))
    # The network's outputs are offsets from the life-table logits.
    hazards = 1.0 / (1.0 + np.exp(-(logits + model.offset_)))
    times = np.array([0.0, model.cuts_[0], (model.cuts_[1] + model.cuts_[2]) / 2, model.cuts_[-1]])
    expected = np.column_stack(
        [np.ones(2), 1 - hazards[:, 0], np.prod(1 - hazards[:, :2], axis=1), np.prod(1 - hazards, axis=1)]
    )
    np.testing.assert_allclose(np.exp(-model.cumulative_hazard(logits, times)), expected, rtol=1e-12)


@pytest.mark.parametrize(("n_events", "n_bins"), [(999, 5), (1000, 10)])
def test_auto_bins_follow_the_number_of_training_events(n_events, n_bins):
    rng = np.random.default_rng(5)
    time = rng.exponential(size=1500)
    event = np.arange(1500) < n_events
    model = DiscreteTimeModel(n_durations="auto")
    assert model.prepare(time, event, np.ones(1500))[:, 0].max() == n_bins - 1
    assert model.n_outputs == n_bins and len(model.cuts_) == n_bins


def test_auto_bins_in_a_fitted_model():
    X, y = make_multimodal_survival(n_samples=200, random_state=0)
    model = ConcatSurvival(loss="discrete", max_epochs=2, random_state=0).fit(X, y)
    assert model.survival_model_.n_durations == 5 and model.n_durations == "auto"
    assert model._predict_outputs(X.iloc[:3]).shape == (3, 5)


def test_life_table_offsets_are_the_covariate_free_maximum_likelihood():
    rng = np.random.default_rng(4)
    time = rng.exponential(size=300)
    event = rng.random(300) < 0.6
    model = DiscreteTimeModel(n_durations=5)
    target = torch.from_numpy(model.prepare(time, event, np.ones(300)))
    logits = torch.zeros(300, 5, requires_grad=True)
    offset = torch.from_numpy(model.offset_)
    discrete_time_nll(logits + offset, target[:, 0].long(), target[:, 1], target[:, -1]).backward()
    # The offset is the stationary point (up to the clipping of hazards to [1e-4, 1 - 1e-4]).
    assert logits.grad.sum(dim=0).abs().max() < 1e-4
    # By hand: events in bin j over the events there plus the rows leaving in later bins.
    bins = model.bin_index(time)
    j = 2
    hazard = (event & (bins == j)).sum() / ((event & (bins == j)).sum() + (bins > j).sum())
    assert model.offset_[j] == pytest.approx(np.log(hazard / (1 - hazard)), rel=1e-10)


def test_marginal_weibull_offset_is_the_covariate_free_maximum_likelihood():
    rng = np.random.default_rng(5)
    time = 3.0 * rng.weibull(1.5, size=4000)
    model = WeibullModel()
    target = model.prepare(time, np.ones(4000, dtype=bool), np.ones(4000))
    out = torch.zeros(4000, 1, requires_grad=True)
    model.loss(out, torch.from_numpy(target)).backward()
    assert out.grad.sum(dim=0).abs().max() < 1e-4
    log_scale, log_shape = model._params(np.zeros((1, 1)))[0]
    assert np.exp(log_shape) == pytest.approx(1.5, rel=0.05)
    assert np.exp(log_scale) * model.time_scale_ == pytest.approx(3.0, rel=0.05)


def test_cox_batches_always_hold_events():
    rng = np.random.default_rng(4)
    n = 200
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"a__{i}" for i in range(4)])
    event = np.zeros(n, dtype=bool)
    event[:5] = True  # 5 events, 20 nominal batches of 10
    y = Surv.from_arrays(event, rng.exponential(size=n) + 0.1)
    seen = []

    from skorch.callbacks import Callback

    class Record(Callback):
        def on_batch_begin(self, net, batch=None, training=None, **kwargs):
            if training:
                seen.append(int(batch[1][:, 1].sum()))

    ConcatSurvival(batch_size=10, max_epochs=3, early_stopping=False, callbacks=[Record()], random_state=0).fit(X, y)
    assert len(seen) == 15 and min(seen) >= 1


def test_survival_below_the_smallest_normal_float_is_zero():
    # exp(-H) by NumPy, except where it underflows float64's normal range (its slow path): 0.
    from skfusion._survival import survival_from_hazard

    hazard = np.array([[0.0, 1.0, 700.0, 708.39, 708.4, 745.0, 800.0, 1e300]])
    expected = np.exp(-hazard)
    expected[expected < np.finfo(np.float64).tiny] = 0.0
    np.testing.assert_array_equal(survival_from_hazard(hazard.copy()), expected)
    assert expected[0, 3] > 0 and expected[0, 4] == 0
    np.testing.assert_array_equal(survival_from_hazard(hazard[:, :4].copy()), np.exp(-hazard[:, :4]))
