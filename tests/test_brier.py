"""skfusion.metrics: survival curves at any times, the integrated Brier score and its bootstrap."""

import numpy as np
import pytest
from sksurv.functions import StepFunction
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import integrated_brier_score as sksurv_integrated_brier_score
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from skfusion.metrics import (
    IntegratedBrierScore,
    bootstrap_ci,
    integrated_brier_score,
    kaplan_meier_integrated_brier_score,
    kaplan_meier_survival,
    paired_bootstrap_test,
    survival_at,
)
from skfusion.metrics._bootstrap import _MetricOnRows, _on_rows


def _exponential(n, seed, censoring=2.0):
    """Exponential event times with hazard ``exp(x)``, and their true survival curves."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    event_time, censor_time = rng.exponential(np.exp(-x)), rng.exponential(censoring, n)
    y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    return x, y


@pytest.fixture
def fitted():
    """A Cox model fitted on 200 rows, its test rows, and evaluation times inside their follow-up."""
    x, y = _exponential(400, 0)
    X = np.column_stack([x, np.random.default_rng(1).normal(size=len(x))])
    model = CoxPHSurvivalAnalysis().fit(X[:200], y[:200])
    times = np.quantile(y[200:]["time"], np.linspace(0.1, 0.8, 12))
    return model, X[200:], y[:200], y[200:], times


# --------------------------------------------------------------------------- survival_at


def test_survival_at_arrays_on_a_grid_equal_step_functions(fitted):
    model, X, _, _, times = fitted
    functions = model.predict_survival_function(X)
    array = model.predict_survival_function(X, return_array=True)
    expected = np.vstack([fn(times) for fn in functions])
    np.testing.assert_array_equal(survival_at(array, times, survival_times=model.unique_times_), expected)
    np.testing.assert_array_equal(survival_at(functions, times), expected)
    np.testing.assert_array_equal(survival_at(expected, times), expected)


def test_survival_at_is_one_before_the_grid_and_constant_after_it():
    grid = np.array([1.0, 2.0, 3.0])
    curves = np.array([[0.9, 0.5, 0.2], [0.8, 0.7, 0.6]])
    times = [0.0, 0.99, 1.0, 2.5, 3.0, 100.0]
    expected = [[1.0, 1.0, 0.9, 0.5, 0.2, 0.2], [1.0, 1.0, 0.8, 0.7, 0.6, 0.6]]
    np.testing.assert_array_equal(survival_at(curves, times, survival_times=grid), expected)
    functions = [StepFunction(grid, row) for row in curves]
    np.testing.assert_array_equal(survival_at(np.array(functions), times), expected)


def test_survival_at_rejects_bad_input():
    curves = np.array([[0.9, 0.5, 0.2], [0.8, 0.7, 0.6]])
    with pytest.raises(ValueError, match="survival has 3 columns but times has 2 values; pass survival_times="):
        survival_at(curves, [1.0, 2.0])
    with pytest.raises(ValueError, match="survival has 3 columns but survival_times has 2 values"):
        survival_at(curves, [1.0], survival_times=[1.0, 2.0])
    with pytest.raises(ValueError, match="survival_times must be strictly increasing"):
        survival_at(curves, [1.0], survival_times=[1.0, 3.0, 2.0])
    with pytest.raises(ValueError, match="times must hold finite non-negative times"):
        survival_at(curves, [-1.0], survival_times=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"survival must hold probabilities in \[0, 1\]; rows \[1\]"):
        survival_at(np.array([[0.5], [1.2]]), [1.0])
    with pytest.raises(ValueError, match=r"survival contains NaN or infinite values in rows \[0\]"):
        survival_at(np.array([[np.nan], [0.2]]), [1.0])
    with pytest.raises(ValueError, match="survival must be an array of StepFunctions or a 2-D array"):
        survival_at(np.ones(3), [1.0])
    with pytest.raises(ValueError, match="survival_times is the grid of an array survival"):
        survival_at(np.array([StepFunction(np.array([1.0]), np.array([0.5]))]), [1.0], survival_times=[1.0])


# --------------------------------------------------------------------------- integrated_brier_score


def test_integrated_brier_score_of_curves_on_the_estimator_grid_equals_sksurv(fitted):
    model, X, y_train, y, times = fitted
    expected = sksurv_integrated_brier_score(
        y_train, y, np.vstack([fn(times) for fn in model.predict_survival_function(X)]), times
    )
    array = model.predict_survival_function(X, return_array=True)
    assert integrated_brier_score(y_train, y, array, times, estimate_times=model.unique_times_) == expected
    assert IntegratedBrierScore(y_train, times, estimate_times=model.unique_times_)(y, array) == expected


def test_integrated_brier_score_rejects_bad_times(fitted):
    model, X, y_train, y, times = fitted
    array = model.predict_survival_function(X, return_array=True)
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        integrated_brier_score(y_train, y, array, times[::-1], estimate_times=model.unique_times_)
    with pytest.raises(ValueError, match="times needs at least 2 values, got 1"):
        integrated_brier_score(y_train, y, array, times[:1], estimate_times=model.unique_times_)
    with pytest.raises(ValueError, match="times needs at least 2 values"):
        IntegratedBrierScore(y_train, times[:1])
    with pytest.raises(ValueError, match="survival_train must be a structured array"):
        IntegratedBrierScore(y_train["time"], times)
    with pytest.raises(ValueError, match="estimate has 10 rows but survival_test has 200"):
        integrated_brier_score(y_train, y, array[:10], times, estimate_times=model.unique_times_)


def test_brier_row_terms_average_to_the_sksurv_score_on_every_resample(fitted):
    model, X, y_train, y, times = fitted
    curves = model.predict_survival_function(X, return_array=True)
    metric = IntegratedBrierScore(y_train, times, estimate_times=model.unique_times_)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(y), size=(60, len(y)))
    # A resample without the longest follow-ups no longer covers the last evaluation time.
    indices[:5] = rng.choice(np.flatnonzero(y["time"] < times[-1]), size=(5, len(y)))
    fast = _on_rows(metric, y, [curves])(indices)
    slow = _MetricOnRows(metric, y, [curves])(indices)
    assert np.isnan(fast[:5]).all() and np.isnan(slow[:5]).all()
    np.testing.assert_allclose(fast[5:], slow[5:], rtol=0, atol=1e-12)


def test_brier_bootstrap_equals_the_generic_bootstrap(fitted):
    model, X, y_train, y, times = fitted
    curves = model.predict_survival_function(X, return_array=True)
    metric = IntegratedBrierScore(y_train, times, estimate_times=model.unique_times_)

    def generic(y_test, estimate):
        return integrated_brier_score(y_train, y_test, estimate, times, estimate_times=model.unique_times_)

    fast = bootstrap_ci(metric, y, curves, n_resamples=100, random_state=0)
    slow = bootstrap_ci(generic, y, curves, n_resamples=100, random_state=0)
    assert fast.estimate == slow.estimate
    np.testing.assert_allclose(fast.resamples, slow.resamples, rtol=0, atol=1e-12)
    assert fast.low < fast.estimate < fast.high


# --------------------------------------------------------------------------- Kaplan-Meier reference


def test_kaplan_meier_survival_equals_the_sksurv_estimator():
    _, y = _exponential(150, 3)
    km_time, km_survival = kaplan_meier_estimator(y["event"], y["time"])
    times = np.concatenate([[0.0], np.quantile(y["time"], [0.1, 0.5, 0.9]), km_time[[3, 40]]])
    expected = [1.0 if t < km_time[0] else km_survival[np.searchsorted(km_time, t, side="right") - 1] for t in times]
    np.testing.assert_allclose(kaplan_meier_survival(y, times), expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="times must be at most the last time of survival_train"):
        kaplan_meier_survival(y, [y["time"].max() + 1.0])


def test_kaplan_meier_reference_is_beaten_by_the_true_curves():
    x, y = _exponential(1200, 4)
    y_train, y_test, x_test = y[:600], y[600:], x[600:]
    times = np.quantile(y_test["time"], np.linspace(0.05, 0.8, 15))
    km = kaplan_meier_integrated_brier_score(y_train, y_test, times)
    tiled = np.tile(kaplan_meier_survival(y_train, times), (len(y_test), 1))
    assert km == sksurv_integrated_brier_score(y_train, y_test, tiled, times)
    true_curves = np.exp(-np.exp(x_test)[:, None] * times)
    metric = IntegratedBrierScore(y_train, times)
    test = paired_bootstrap_test(metric, y_test, true_curves, tiled, n_resamples=200, random_state=0)
    assert test.estimate_b == km
    assert test.difference < -0.02 and test.pvalue < 0.01


def test_metrics_take_a_fusion_estimator_s_curves_on_unique_times():
    from skfusion import ConcatSurvival
    from skfusion.datasets import make_multimodal_survival
    from skfusion.metrics import calibration_slope, d_calibration

    X, y = make_multimodal_survival(n_samples=240, n_features=(8, 4), random_state=0)
    model = ConcatSurvival(max_epochs=3, random_state=0).fit(X[:160], y[:160])
    X_test, y_train, y_test = X[160:], y[:160], y[160:]
    times = np.quantile(y_test["time"], [0.2, 0.4, 0.6])
    array = model.predict_survival_function(X_test, return_array=True)
    functions = model.predict_survival_function(X_test)
    grid = model.unique_times_
    expected = sksurv_integrated_brier_score(y_train, y_test, np.vstack([fn(times) for fn in functions]), times)
    assert integrated_brier_score(y_train, y_test, array, times, estimate_times=grid) == expected
    horizon = times[1]
    assert calibration_slope(y_test, array, horizon, survival_times=grid) == calibration_slope(y_test, functions, horizon)
    on_grid = d_calibration(y_test, array, survival_times=grid)
    np.testing.assert_allclose(on_grid.counts, d_calibration(y_test, functions).counts, rtol=0, atol=1e-12)
