"""skfusion.metrics: D-calibration, calibration slope and calibration-in-the-large."""

import functools

import numpy as np
import pytest
from scipy import optimize, stats
from sksurv.functions import StepFunction
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from skfusion.metrics import (
    bootstrap_ci,
    calibration_in_the_large,
    calibration_slope,
    d_calibration,
)
from skfusion.metrics._calibration import cox_coefficient


def _exponential(n, seed):
    """Exponential event times with hazard ``h_i = exp(x_i)`` and uniform censoring."""
    rng = np.random.default_rng(seed)
    hazard = np.exp(rng.normal(size=n))
    event_time, censor_time = rng.exponential(1 / hazard), rng.uniform(0, 3, n)
    return hazard, Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))


def _curves(hazard, y):
    """The exponential curves ``exp(-h_i t)`` on the observed times (so ``S_i(T_i)`` is exact)."""
    grid = np.unique(y["time"])
    return np.exp(-hazard[:, None] * grid), grid


# --------------------------------------------------------------------------- D-calibration


def _d_calibration_reference(event, at_own_time, n_bins):
    """Haider et al. (2020), Appendix B, one sample and one bin at a time."""
    counts = [0.0] * n_bins
    for d, s in zip(event, at_own_time):
        for j in range(n_bins):
            low, high = j / n_bins, (j + 1) / n_bins
            inside = low <= s < high or (j == n_bins - 1 and s == 1.0)
            if d:
                counts[j] += 1.0 if inside else 0.0
            elif s == 0.0:
                counts[j] += 1.0 if j == 0 else 0.0
            elif inside:
                counts[j] += (s - low) / s
            elif high <= s:
                counts[j] += (high - low) / s
    expected = len(event) / n_bins
    statistic = sum((c - expected) ** 2 / expected for c in counts)
    return counts, statistic, stats.chi2.sf(statistic, n_bins - 1)


@pytest.mark.parametrize("n_bins", [2, 4, 10])
def test_d_calibration_equals_the_slow_transcription(n_bins):
    # Events and censorings at hand-picked S_i(T_i), on and between bin edges, 0 and 1.
    at_own_time = np.array([0.0, 0.05, 0.3, 0.5, 0.75, 0.999, 1.0, 0.0, 0.05, 0.3, 0.5, 0.62, 0.9, 1.0])
    event = np.array([True] * 7 + [False] * 7)
    time = np.arange(1.0, 15.0)
    # Row i's curve drops to at_own_time[i] at its own time, and to 0 later.
    functions = np.array(
        [StepFunction(np.array([0.0, t, 20.0]), np.array([1.0, s, 0.0])) for t, s in zip(time, at_own_time)]
    )
    result = d_calibration(Surv.from_arrays(event, time), functions, n_bins=n_bins)
    counts, statistic, pvalue = _d_calibration_reference(event, at_own_time, n_bins)
    np.testing.assert_allclose(result.counts, counts, rtol=0, atol=1e-12)
    assert result.counts.sum() == pytest.approx(len(event))
    assert result.statistic == pytest.approx(statistic, rel=1e-12)
    assert result.pvalue == pytest.approx(pvalue, rel=1e-12)
    np.testing.assert_array_equal(result.bin_edges, np.arange(n_bins + 1) / n_bins)


def test_d_calibration_of_arrays_on_a_grid_equals_step_functions():
    hazard, y = _exponential(300, 0)
    curves, grid = _curves(hazard, y)
    coarse = grid[::7]
    on_grid = d_calibration(y, curves[:, ::7], survival_times=coarse)
    functions = d_calibration(y, np.array([StepFunction(coarse, row) for row in curves[:, ::7]]))
    np.testing.assert_allclose(on_grid.counts, functions.counts, rtol=0, atol=1e-12)


def test_true_curves_are_d_calibrated_and_mis_scaled_ones_are_not():
    hazard, y = _exponential(3000, 1)
    curves, grid = _curves(hazard, y)
    assert d_calibration(y, curves, survival_times=grid).pvalue > 0.05
    assert d_calibration(y, curves**2, survival_times=grid).pvalue < 1e-3  # twice the hazard
    over_confident = np.exp(-(hazard[:, None] ** 2) * grid)
    assert d_calibration(y, over_confident, survival_times=grid).pvalue < 1e-3


# --------------------------------------------------------------------------- at a horizon


def _cox_slope_reference(covariate, event, time):
    """Maximiser of the Cox partial likelihood of one covariate (no tied times)."""

    def negative_log_likelihood(beta):
        eta = beta * covariate
        at_risk = time[None, :] >= time[event][:, None]
        return -(eta[event] - np.log((at_risk * np.exp(eta)[None, :]).sum(axis=1))).sum()

    return optimize.minimize_scalar(negative_log_likelihood, bounds=(-5, 5), method="bounded").x


def test_calibration_slope_is_the_cox_coefficient_of_the_complementary_log_log():
    hazard, y = _exponential(400, 2)
    rng = np.random.default_rng(3)
    predicted = np.exp(-hazard * rng.uniform(0.5, 2.0, len(y)))  # S_i(1), noisy
    horizon = 1.0
    truncated_event = y["event"] & (y["time"] <= horizon)
    truncated_time = np.minimum(y["time"], horizon)
    expected = _cox_slope_reference(np.log(-np.log(predicted)), truncated_event, truncated_time)
    assert calibration_slope(y, predicted[:, None], horizon) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("rounded", [False, True])
def test_cox_coefficient_equals_sksurv_breslow(rounded):
    rng = np.random.default_rng(8)
    x = rng.normal(size=300)
    time = rng.exponential(np.exp(-0.7 * x))
    time = np.round(time, 1) + 0.1 if rounded else time  # tied event and censoring times
    event = rng.uniform(size=300) < 0.6
    model = CoxPHSurvivalAnalysis(ties="breslow", tol=1e-12).fit(x[:, None], Surv.from_arrays(event, time))
    assert cox_coefficient(x, event, time) == pytest.approx(model.coef_[0], abs=1e-8)


def test_cox_coefficient_raises_when_the_covariate_separates_the_events():
    time = np.arange(1.0, 11.0)
    event = np.array([True] * 5 + [False] * 5)
    with pytest.raises(ValueError, match="did not converge: the predictions separate the events"):
        cox_coefficient(-time, event, time)


def test_calibration_in_the_large_equals_mean_predicted_minus_kaplan_meier():
    hazard, y = _exponential(300, 4)
    curves, grid = _curves(hazard, y)
    horizon = 0.8
    km_time, km_survival = kaplan_meier_estimator(y["event"], y["time"])
    observed = 1 - km_survival[np.searchsorted(km_time, horizon, side="right") - 1]
    predicted = np.exp(-hazard * grid[np.searchsorted(grid, horizon, side="right") - 1])
    expected = np.mean(1 - predicted) - observed
    assert calibration_in_the_large(y, curves, horizon, survival_times=grid) == pytest.approx(expected, abs=1e-14)


def test_true_curves_have_slope_one_and_mis_scaled_ones_do_not():
    hazard, y = _exponential(3000, 5)
    curves, grid = _curves(hazard, y)
    horizon = 1.0
    assert calibration_slope(y, curves, horizon, survival_times=grid) == pytest.approx(1.0, abs=0.1)
    assert calibration_in_the_large(y, curves, horizon, survival_times=grid) == pytest.approx(0.0, abs=0.02)
    # Twice the hazard: same ranking and slope, but too many predicted events.
    assert calibration_slope(y, curves**2, horizon, survival_times=grid) == pytest.approx(1.0, abs=0.1)
    assert calibration_in_the_large(y, curves**2, horizon, survival_times=grid) > 0.1
    # Log-hazard doubled: risks too extreme, slope one half.
    over_confident = np.exp(-(hazard[:, None] ** 2) * grid)
    assert calibration_slope(y, over_confident, horizon, survival_times=grid) == pytest.approx(0.5, abs=0.05)


def test_bootstrap_intervals_of_the_slope_and_the_mean_calibration():
    hazard, y = _exponential(800, 6)
    curves, grid = _curves(hazard, y)
    slope = functools.partial(calibration_slope, horizon=1.0, survival_times=grid)
    true = bootstrap_ci(slope, y, curves, n_resamples=100, random_state=0)
    assert true.low < 1.0 < true.high
    over_confident = bootstrap_ci(slope, y, np.exp(-(hazard[:, None] ** 2) * grid), n_resamples=100, random_state=0)
    assert over_confident.high < 0.7
    mean = functools.partial(calibration_in_the_large, horizon=1.0, survival_times=grid)
    assert bootstrap_ci(mean, y, curves, n_resamples=100, random_state=0).low < 0.0
    assert bootstrap_ci(mean, y, curves**2, n_resamples=100, random_state=0).low > 0.05


# --------------------------------------------------------------------------- bad input


def test_calibration_rejects_bad_input():
    hazard, y = _exponential(100, 7)
    curves, grid = _curves(hazard, y)
    with pytest.raises(ValueError, match="horizon=100.0 must be inside the follow-up of y"):
        calibration_slope(y, curves, 100.0, survival_times=grid)
    with pytest.raises(ValueError, match="horizon == -1.0, must be >= 0"):
        calibration_in_the_large(y, curves, -1.0, survival_times=grid)
    with pytest.raises(ValueError, match="horizon=0.0 is the same for every sample: the calibration slope"):
        calibration_slope(y, curves, 0.0, survival_times=grid)
    with pytest.raises(ValueError, match="survival has 99 rows but y has 100"):
        calibration_slope(y, curves[1:], 1.0, survival_times=grid)
    early = np.sort(y["time"])[1]
    with pytest.raises(ValueError, match="y has no event up to horizon"):
        calibration_slope(Surv.from_arrays(y["time"] > early, y["time"]), curves, early, survival_times=grid)
    with pytest.raises(ValueError, match="survival has 99 rows but y has 100"):
        d_calibration(y, curves[1:], survival_times=grid)
    with pytest.raises(ValueError, match="n_bins == 1, must be >= 2"):
        d_calibration(y, curves, survival_times=grid, n_bins=1)
    with pytest.raises(ValueError, match="survival must be an array of StepFunctions, or a 2-D array of probabilities on"):
        d_calibration(y, curves)
    with pytest.raises(ValueError, match=r"survival must hold probabilities in \[0, 1\]"):
        d_calibration(y, curves * 2, survival_times=grid)
    with pytest.raises(ValueError, match="y must be a structured array"):
        d_calibration(y["time"], curves, survival_times=grid)


def test_d_calibration_refuses_curves_that_rise_and_allows_float_round_off():
    hazard, y = _exponential(100, 7)
    curves, grid = _curves(hazard, y)
    rising = curves.copy()
    rising[[3, 8], 60] = rising[[3, 8], 59] + 0.05
    assert rising.max() <= 1.0
    with pytest.raises(ValueError, match=r"never increase over time; rows \[3, 8\] rise \(by up to 0.05\)"):
        d_calibration(y, rising, survival_times=grid)
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, .*not a cumulative incidence 1 - S\(t\)"):
        d_calibration(y, 1 - curves, survival_times=grid)
    functions = np.array([StepFunction(grid, row) for row in rising])
    with pytest.raises(ValueError, match=r"rows \[3, 8\] rise"):
        d_calibration(y, functions)
    # float32 round-off of curves that cannot rise is no rise.
    jitter = np.random.default_rng(0).uniform(0, 2e-7, curves.shape)
    noisy = np.clip(curves.astype(np.float32) + jitter.astype(np.float32), 0, 1)
    result = d_calibration(y, noisy, survival_times=grid)
    np.testing.assert_allclose(result.counts, d_calibration(y, curves, survival_times=grid).counts, atol=1e-3)


def test_calibration_rejects_string_curves():
    hazard, y = _exponential(50, 7)
    curves, grid = _curves(hazard, y)
    with pytest.raises(ValueError, match=r"survival must hold numbers, got strings \(e\.g\. '0\.9"):
        d_calibration(y, curves.astype(str), survival_times=grid)
