"""Calibration of predicted survival curves: D-calibration, and the slope and mean at a horizon.

A model can rank patients well (high C-index) and still predict the wrong probabilities.
:func:`d_calibration` tests the whole curve at once (Haider et al., 2020);
:func:`calibration_slope` and :func:`calibration_in_the_large` describe the predicted event
probability at one horizon, as the calibration hierarchy of Van Calster et al. (2016) orders
them, and :func:`skfusion.plot.plot_calibration` draws it by risk group.
"""

import numbers
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.utils.validation import check_scalar
from sksurv.functions import StepFunction
from sksurv.nonparametric import kaplan_meier_estimator

from ._checks import as_rows, check_lengths, check_survival
from ._survival import survival_at, survival_at_own_times

# log(-log S) is infinite at S = 0 and S = 1; probabilities are kept this far inside (0, 1).
_EDGE = 1e-10
# A survival curve may rise by this much from one time to the next: float32 round-off (a few
# units of 1.2e-7) of a curve that cannot rise, not a curve of something else.
_RISE_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class DCalibrationResult:
    """Result of :func:`d_calibration`.

    Parameters
    ----------
    statistic, pvalue, counts, bin_edges
        As the attributes below.

    Attributes
    ----------
    statistic : float
        Pearson's chi-square statistic of ``counts`` against ``n_samples / n_bins`` per bin.
    pvalue : float
        Its p-value (``n_bins - 1`` degrees of freedom). A model is D-calibrated at level 0.05
        when ``pvalue > 0.05``.
    counts : ndarray, shape (n_bins,)
        How many samples (censored ones spread over several bins) have ``S_i(T_i)`` in each
        bin; they sum to ``n_samples``.
    bin_edges : ndarray, shape (n_bins + 1,)
        ``0, 1/n_bins, ..., 1``; bin ``j`` is ``[bin_edges[j], bin_edges[j + 1])``, the last one
        closed.
    """

    statistic: float
    pvalue: float
    counts: np.ndarray
    bin_edges: np.ndarray


def d_calibration(y, survival, *, survival_times=None, n_bins=10):
    """D-calibration of predicted survival curves: a test that the ``S_i(T_i)`` are uniform.

    If the curves are the true survival distributions, each patient's predicted survival
    probability at their own event time, ``S_i(T_i)``, is uniform on [0, 1], so every one of
    ``n_bins`` equal-width bins should hold ``n / n_bins`` of them. An event counts 1 in the
    bin of ``S_i(T_i)``. A patient censored at ``c`` had the event later, at a ``S_i(T_i)``
    below ``s = S_i(c)``, uniform on ``[0, s)`` under the model: they count
    ``(s - l_k) / s`` in the bin ``[l_k, u_k)`` holding ``s`` and ``1 / (n_bins s)`` in each
    bin below it (Haider et al. [1]_, Section 4.4 and Appendix B). Pearson's chi-square test
    of the counts against the uniform histogram gives the p-value.

    Parameters
    ----------
    y : structured array, shape (n_samples,)
        Test targets.
    survival : array of StepFunction, shape (n_samples,), or array-like, shape (n_samples, n_grid)
        Predicted survival functions (``predict_survival_function(X)``), or probabilities on
        ``survival_times`` (``predict_survival_function(X, return_array=True)``).
    survival_times : array-like, shape (n_grid,), default=None
        Grid of an array ``survival``, e.g. ``estimator.unique_times_``; see
        :func:`survival_at` for how the curves are read between and beyond its times.
    n_bins : int, default=10
        Number of equal-width bins of [0, 1], at least 2.

    Returns
    -------
    result : DCalibrationResult
        ``statistic``, ``pvalue``, ``counts``, ``bin_edges``.

    Raises
    ------
    ValueError
        If ``y`` is not a survival array, ``survival`` does not have one curve per sample of
        ``y``, holds values outside [0, 1] or curves that rise over time (by more than
        float32 round-off; curves given as callables other than StepFunctions are not
        checked), or ``n_bins`` is below 2.

    See Also
    --------
    calibration_slope, calibration_in_the_large : Calibration at one horizon.

    References
    ----------
    .. [1] Haider, H., Hoehn, B., Davis, S., Greiner, R. (2020). "Effective ways to build and
           evaluate individual survival distributions". Journal of Machine Learning Research,
           21(85), 1-63.

    Examples
    --------
    True exponential curves are D-calibrated; curves of twice the true hazard are not:

    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import d_calibration
    >>> rng = np.random.default_rng(0)
    >>> hazard = np.exp(rng.normal(size=2000))
    >>> event_time, censor_time = rng.exponential(1 / hazard), rng.exponential(2.0, 2000)
    >>> y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    >>> grid = np.unique(y["time"])  # curves on the observed times: S_i(T_i) is exact
    >>> true_curves = np.exp(-hazard[:, None] * grid)
    >>> bool(d_calibration(y, true_curves, survival_times=grid).pvalue > 0.05)
    True
    >>> bool(d_calibration(y, true_curves**2, survival_times=grid).pvalue < 0.05)
    True
    """
    check_scalar(n_bins, "n_bins", numbers.Integral, min_val=2)
    event, time = check_survival(y, "y", allow_all_censored=True)
    survival = as_rows(survival, "survival")
    check_lengths(y=y, survival=survival)
    at_own_time = survival_at_own_times(survival, time, survival_times)
    _check_non_increasing(survival)
    counts = _d_calibration_counts(event, at_own_time, n_bins)
    statistic, pvalue = stats.chisquare(counts)
    return DCalibrationResult(float(statistic), float(pvalue), counts, _bin_edges(n_bins))


def _check_non_increasing(survival):
    """Raise, naming the rows, where a survival curve (array row or StepFunction) rises over time.

    ``S_i(T_i)`` is uniform only for a survival function; a rising curve is something else
    (a cumulative incidence ``1 - S``, a hazard) and its test result would mean nothing.
    """
    if survival.dtype.kind == "O":
        steps = [fn for fn in survival if isinstance(fn, StepFunction)]
        rises = np.array([_largest_rise(fn.a * np.asarray(fn.y, dtype=float) + fn.b) for fn in steps])
        rows = np.flatnonzero([isinstance(fn, StepFunction) for fn in survival])
    else:
        values = survival.astype(float)
        rises = np.max(np.diff(values, axis=1), axis=1, initial=0.0)
        rows = np.arange(len(values))
    rising = rises > _RISE_TOLERANCE
    if rising.any():
        raise ValueError(
            f"survival must hold survival curves, which never increase over time; rows "
            f"{rows[rising][:10].tolist()} rise (by up to {rises.max():.3g}): pass S(t) = P(T > t), not a "
            "cumulative incidence 1 - S(t) or a hazard."
        )


def _largest_rise(values):
    return float(np.max(np.diff(values), initial=0.0))


def _bin_edges(n_bins):
    # j / n_bins exactly (linspace's 0.30000000000000004 would put 0.3 in the bin below).
    return np.arange(n_bins + 1) / n_bins


def _d_calibration_counts(event, at_own_time, n_bins):
    edges = _bin_edges(n_bins)
    bins = np.clip(np.searchsorted(edges, at_own_time, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(bins[event], minlength=n_bins).astype(float)
    s, k = at_own_time[~event], bins[~event]
    # Censored at S = 0: the event, later still, has S = 0 too.
    counts[0] += np.count_nonzero(s == 0)
    s, k = s[s > 0], k[s > 0]
    counts += np.bincount(k, weights=(s - edges[k]) / s, minlength=n_bins)
    per_bin_below = np.bincount(k, weights=1.0 / (n_bins * s), minlength=n_bins)
    # Bin j receives the share of every censored sample whose own bin is above j.
    counts += np.concatenate([np.cumsum(per_bin_below[::-1])[::-1][1:], [0.0]])
    return counts


def calibration_slope(y, survival, horizon, *, survival_times=None):
    """Calibration slope at ``horizon``: Cox regression on ``log(-log S_i(horizon))``.

    The coefficient of a Cox proportional hazards model fitted to the test samples with the
    predicted complementary log-log ``log(-log S_i(t))`` as the only covariate and follow-up
    truncated at ``t = horizon`` (an event after ``t`` is censored at ``t``). If the curves
    are the true ones, the hazard up to ``t`` is proportional to ``-log S_i(t)`` (exactly so
    under proportional hazards) and the slope is 1; below 1 the predicted risks are too
    extreme (over-fitting), above 1 too moderate. This is the calibration slope of a
    survival model as in Crowson et al. [1]_ and Austin et al. [2]_, the "weak calibration"
    level of Van Calster et al. [3]_.

    Parameters
    ----------
    y : structured array, shape (n_samples,)
        Test targets, with at least one event up to ``horizon``.
    survival : array of StepFunction, shape (n_samples,), or array-like, shape (n_samples, n_grid)
        Predicted survival functions, or probabilities on ``survival_times``, or (with
        ``survival_times=None``) an ``(n_samples, 1)`` array of ``S_i(horizon)``.
    horizon : float
        Time ``t``, inside the follow-up of ``y``.
    survival_times : array-like, shape (n_grid,), default=None
        Grid of an array ``survival``, e.g. ``estimator.unique_times_``.

    Returns
    -------
    slope : float
        1 for calibrated predictions.

    Raises
    ------
    ValueError
        If ``horizon`` is not inside the follow-up of ``y``, ``y`` has no event up to it,
        ``S_i(horizon)`` is the same for every sample, or ``survival`` is malformed.

    See Also
    --------
    calibration_in_the_large : The mean predicted against the observed event probability.
    skfusion.plot.plot_calibration : The calibration plot at ``horizon``.

    References
    ----------
    .. [1] Crowson, C. S., Atkinson, E. J., Therneau, T. M. (2016). "Assessing calibration of
           prognostic risk scores". Statistical Methods in Medical Research, 25(4), 1692-1706.
    .. [2] Austin, P. C., Harrell, F. E., van Klaveren, D. (2020). "Graphical calibration
           curves and the integrated calibration index (ICI) for survival models". Statistics
           in Medicine, 39(21), 2714-2742.
    .. [3] Van Calster, B., Nieboer, D., Vergouwe, Y., De Cock, B., Pencina, M. J.,
           Steyerberg, E. W. (2016). "A calibration hierarchy for risk models was defined:
           from utopia to empirical data". Journal of Clinical Epidemiology, 74, 167-176.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import calibration_slope
    >>> rng = np.random.default_rng(0)
    >>> hazard = np.exp(rng.normal(size=2000))
    >>> event_time, censor_time = rng.exponential(1 / hazard), rng.exponential(2.0, 2000)
    >>> y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    >>> true_at_one = np.exp(-hazard)[:, None]
    >>> round(calibration_slope(y, true_at_one, horizon=1.0), 1)
    1.0
    >>> over_confident = np.exp(-hazard**2)[:, None]
    >>> round(calibration_slope(y, over_confident, horizon=1.0), 1)
    0.5
    """
    event, time, predicted = at_horizon_checked(y, survival, horizon, survival_times)
    covariate = np.log(-np.log(np.clip(predicted, _EDGE, 1.0 - _EDGE)))
    if np.ptp(covariate) == 0:
        raise ValueError(
            f"survival at horizon={horizon} is the same for every sample: the calibration slope is undefined."
        )
    truncated_event = event & (time <= horizon)
    if not truncated_event.any():
        raise ValueError(f"y has no event up to horizon={horizon}: the calibration slope is undefined.")
    return cox_coefficient(covariate, truncated_event, np.minimum(time, horizon))


def cox_coefficient(x, event, time, *, max_iter=100, tol=1e-10):
    """Cox partial-likelihood estimate of the coefficient of one covariate (Breslow ties).

    Newton-Raphson with step halving, the risk-set sums taken as reverse cumulative sums over
    the samples sorted by time: a bootstrap fits it once per resample, and scikit-survival's
    ``CoxPHSurvivalAnalysis`` loops over the event times in Python (0.2 s at 800 samples
    against 1 ms here; equal to 1e-8 in the tests).
    """
    order = np.argsort(time, kind="stable")
    x, event, time = x[order] - x.mean(), event[order], time[order]
    # Index of the first sample of each event's risk set {j : t_j >= t_i}.
    first = np.searchsorted(time, time[event], side="left")
    beta, log_lik = 0.0, _cox_log_likelihood(0.0, x, event, first)[0]
    for _ in range(max_iter):
        _, score, information = _cox_log_likelihood(beta, x, event, first)
        if information <= 0:
            break
        step = score / information
        for _ in range(60):
            candidate = _cox_log_likelihood(beta + step, x, event, first)[0]
            if candidate >= log_lik - 1e-12 * abs(log_lik):
                break
            step /= 2
        beta, log_lik = beta + step, candidate
        if abs(step) < tol * max(1.0, abs(beta)):
            return float(beta)
    raise ValueError(
        "the Cox model of the calibration slope did not converge: the predictions separate the events "
        "from the censored samples (e.g. too few events up to horizon)."
    )


def _cox_log_likelihood(beta, x, event, first):
    """Log partial likelihood, its derivative and the observed information at ``beta``."""
    eta = beta * x
    shift = eta.max()
    weight = np.exp(eta - shift)
    s0, s1, s2 = (np.cumsum((weight * x**p)[::-1])[::-1][first] for p in range(3))
    mean = s1 / s0
    log_lik = float(np.sum(eta[event] - shift - np.log(s0)))
    return log_lik, float(np.sum(x[event] - mean)), float(np.sum(s2 / s0 - mean**2))


def calibration_in_the_large(y, survival, horizon, *, survival_times=None):
    """Mean predicted minus observed (Kaplan-Meier) event probability at ``horizon``.

    ``mean_i (1 - S_i(t)) - (1 - KM(t))`` with ``KM`` the Kaplan-Meier curve of ``y``: 0 for
    a model calibrated on average ("mean calibration" in Van Calster et al. [1]_), positive
    when it over-estimates the risk of an event by ``t``, negative when it under-estimates it.

    Parameters
    ----------
    y : structured array, shape (n_samples,)
        Test targets.
    survival : array of StepFunction, shape (n_samples,), or array-like, shape (n_samples, n_grid)
        As in :func:`calibration_slope`.
    horizon : float
        Time ``t``, inside the follow-up of ``y``.
    survival_times : array-like, shape (n_grid,), default=None
        Grid of an array ``survival``, e.g. ``estimator.unique_times_``.

    Returns
    -------
    difference : float
        In [-1, 1].

    Raises
    ------
    ValueError
        If ``horizon`` is not inside the follow-up of ``y``, or ``survival`` is malformed.

    See Also
    --------
    calibration_slope : The spread of the predicted risks.

    References
    ----------
    .. [1] Van Calster, B., Nieboer, D., Vergouwe, Y., De Cock, B., Pencina, M. J.,
           Steyerberg, E. W. (2016). "A calibration hierarchy for risk models was defined:
           from utopia to empirical data". Journal of Clinical Epidemiology, 74, 167-176.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import calibration_in_the_large
    >>> y = Surv.from_arrays([True, True, False, True, False], [1.0, 2.0, 3.0, 4.0, 5.0])
    >>> predicted = np.array([[0.5], [0.6], [0.7], [0.8], [0.9]])  # S_i(2.5)
    >>> round(calibration_in_the_large(y, predicted, horizon=2.5), 3)  # 0.3 - 0.4
    -0.1
    """
    event, time, predicted = at_horizon_checked(y, survival, horizon, survival_times)
    observed = 1.0 - kaplan_meier_at(event, time, horizon)[0]
    return float(np.mean(1.0 - predicted) - observed)


def at_horizon_checked(y, survival, horizon, survival_times):
    """``(event, time, S_i(horizon))`` after checking the inputs."""
    event, time = check_survival(y, "y")
    check_horizon(horizon, time)
    survival = as_rows(survival, "survival")
    check_lengths(y=y, survival=survival)
    return event, time, survival_at(survival, [horizon], survival_times=survival_times)[:, 0]


def check_horizon(horizon, time):
    """Raise unless ``horizon`` is a time inside the follow-up ``[0, max(time))``."""
    check_scalar(horizon, "horizon", numbers.Real, min_val=0)
    if not horizon < time.max():
        raise ValueError(f"horizon={horizon} must be inside the follow-up of y: before its last time {time.max()}.")


def kaplan_meier_at(event, time, horizon, conf_level=0.95):
    """Kaplan-Meier survival at ``horizon`` and its log-log confidence interval (as sksurv)."""
    km_time, km_survival, interval = kaplan_meier_estimator(event, time, conf_level=conf_level, conf_type="log-log")
    i = np.searchsorted(km_time, horizon, side="right") - 1
    if i < 0:
        return 1.0, 1.0, 1.0
    return float(km_survival[i]), float(interval[0, i]), float(interval[1, i])
