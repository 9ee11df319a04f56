"""Scalar survival metrics: thin adapters over scikit-survival's functions.

scikit-survival's metrics return tuples (C-index with pair counts, AUC per time with its
mean); :func:`~skfusion.metrics.bootstrap_ci` needs ``metric(y_true, y_score) -> float``.
The adapters here validate their input, call scikit-survival, and return the one number.
"""

import numpy as np
from sksurv.functions import StepFunction
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc
from sksurv.metrics import integrated_brier_score as _sksurv_integrated_brier_score
from sksurv.nonparametric import CensoringDistributionEstimator, SurvivalFunctionEstimator

from ._checks import (
    as_rows,
    check_finite,
    check_lengths,
    check_numeric,
    check_probabilities,
    check_survival,
    check_times,
)


def _check_scores(y, scores, y_name, scores_name):
    scores = as_rows(scores, scores_name)
    check_lengths(**{y_name: y, scores_name: scores})
    return check_finite(check_numeric(scores, scores_name), scores_name)


def concordance_index(y, risk, *, tied_tol=1e-8):
    """Harrell's concordance index of a risk score, as a float.

    A scalar wrapper of :func:`sksurv.metrics.concordance_index_censored` that reads a
    structured survival array, the target every skfusion survival estimator takes. It is
    the score of ``estimator.score`` and of Table 1 in [1]_.

    Parameters
    ----------
    y : structured array, shape (n_samples,)
        Event indicator and time, e.g. from ``sksurv.util.Surv.from_arrays(event, time)``.
    risk : array-like, shape (n_samples,)
        Predicted risk (higher means an earlier event), e.g. ``estimator.predict(X)``.
    tied_tol : float, default=1e-8
        Risks closer than this count as tied (half a concordant pair).

    Returns
    -------
    cindex : float
        Concordant pairs (ties count one half) over comparable pairs.

    Raises
    ------
    ValueError
        If ``y`` is not a structured survival array, has no event, or its length differs
        from ``risk``'s, or ``risk`` holds NaN.

    See Also
    --------
    sksurv.metrics.concordance_index_censored : The wrapped function.
    concordance_index_ipcw_score : Uno's inverse-probability-of-censoring weighted C.
    bootstrap_ci : Confidence interval of this (or any) metric.

    References
    ----------
    .. [1] Harrell, F. E., Califf, R. M., Pryor, D. B., Lee, K. L., Rosati, R. A. (1982).
           "Evaluating the yield of medical tests". JAMA, 247(18), 2543-2546.

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import concordance_index
    >>> y = Surv.from_arrays(event=[True, True, False, True], time=[1.0, 3.0, 4.0, 6.0])
    >>> concordance_index(y, [4.0, 2.0, 3.0, 1.0])
    0.8
    """
    event, time = check_survival(y, "y")
    risk = _check_scores(y, risk, "y", "risk")
    return float(concordance_index_censored(event, time, risk, tied_tol=tied_tol)[0])


def concordance_index_ipcw_score(y_train, y, risk, *, tau=None, tied_tol=1e-8):
    """Uno's inverse-probability-of-censoring weighted concordance index, as a float.

    A scalar wrapper of :func:`sksurv.metrics.concordance_index_ipcw`. The censoring
    distribution is estimated (Kaplan-Meier) on ``y_train``; under the bootstrap only the
    test rows ``y``, ``risk`` are resampled.

    Parameters
    ----------
    y_train : structured array, shape (n_train_samples,)
        Training targets, used for the censoring distribution.
    y : structured array, shape (n_samples,)
        Test targets.
    risk : array-like, shape (n_samples,)
        Predicted risk of the test samples.
    tau : float, default=None
        Truncation time: only pairs whose earlier time is before ``tau`` count.
    tied_tol : float, default=1e-8
        Risks closer than this count as tied.

    Returns
    -------
    cindex : float

    See Also
    --------
    sksurv.metrics.concordance_index_ipcw : The wrapped function (returns a tuple).
    concordance_index : Harrell's C.

    References
    ----------
    .. [1] Uno, H., Cai, T., Pencina, M. J., D'Agostino, R. B., Wei, L. J. (2011). "On the
           C-statistics for evaluating overall adequacy of risk prediction procedures with
           censored survival data". Statistics in Medicine, 30(10), 1105-1117.

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import concordance_index_ipcw_score
    >>> y_train = Surv.from_arrays([True, False, True, True, False], [1.0, 2.0, 4.0, 5.0, 7.0])
    >>> y = Surv.from_arrays([True, True, False, True], [1.0, 3.0, 4.0, 6.0])
    >>> round(concordance_index_ipcw_score(y_train, y, [4.0, 2.0, 3.0, 1.0]), 3)
    0.729
    """
    check_survival(y_train, "y_train")
    check_survival(y, "y")
    risk = _check_scores(y, risk, "y", "risk")
    return float(concordance_index_ipcw(y_train, y, risk, tau=tau, tied_tol=tied_tol)[0])


def cumulative_dynamic_auc_score(y_train, y, risk, times, *, tied_tol=1e-8):
    """Mean cumulative/dynamic time-dependent AUC over ``times``, as a float.

    A scalar wrapper of :func:`sksurv.metrics.cumulative_dynamic_auc` returning its
    ``mean_auc``: the AUC at each time weighted by the Kaplan-Meier estimate of the event
    probability increments (Lambert and Chevret, 2016).

    Parameters
    ----------
    y_train : structured array, shape (n_train_samples,)
        Training targets, used for the censoring distribution.
    y : structured array, shape (n_samples,)
        Test targets.
    risk : array-like, shape (n_samples,) or (n_samples, n_times)
        Predicted risk, constant or one column per time in ``times``.
    times : array-like, shape (n_times,)
        Time points, inside the follow-up of ``y``. Under the bootstrap keep them well inside
        (e.g. below the 80th percentile of the observed times): a resample whose follow-up
        ends before ``max(times)`` leaves the metric undefined and is skipped.
    tied_tol : float, default=1e-8
        Risks closer than this count as tied.

    Returns
    -------
    mean_auc : float

    See Also
    --------
    sksurv.metrics.cumulative_dynamic_auc : The wrapped function (returns the AUC per time too).

    References
    ----------
    .. [1] Uno, H., Cai, T., Tian, L., Wei, L. J. (2007). "Evaluating prediction rules for
           t-year survivors with censored regression models". JASA, 102, 527-537.
    .. [2] Lambert, J., Chevret, S. (2016). "Summary measure of discrimination in survival
           models based on cumulative/dynamic time-dependent ROC curves". Statistical Methods
           in Medical Research, 25(5), 2088-2102.

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import cumulative_dynamic_auc_score
    >>> y_train = Surv.from_arrays([True, False, True, True, False], [1.0, 2.0, 4.0, 5.0, 7.0])
    >>> y = Surv.from_arrays([True, True, False, True], [1.0, 3.0, 4.0, 6.0])
    >>> cumulative_dynamic_auc_score(y_train, y, [4.0, 2.0, 3.0, 1.0], times=[2.0, 5.0])
    1.0
    """
    check_survival(y_train, "y_train")
    check_survival(y, "y")
    risk = _check_scores(y, risk, "y", "risk")
    return float(cumulative_dynamic_auc(y_train, y, risk, times, tied_tol=tied_tol)[1])


def survival_at(survival, times, *, survival_times=None):
    """Survival probabilities of every sample at the requested times.

    Evaluates what an estimator's ``predict_survival_function`` returns, StepFunctions or
    the ``return_array=True`` array on ``unique_times_``, on any grid, e.g. the evaluation
    times of :func:`integrated_brier_score`. A curve is a right-continuous step function:
    at time ``t`` it takes its value at the last grid time ``<= t``, 1 before its first grid
    time (no event has happened yet) and its last value after its last grid time (a Breslow
    or Kaplan-Meier curve does not change after the last training time).

    Parameters
    ----------
    survival : array of StepFunction, shape (n_samples,), or array-like, shape (n_samples, n_grid)
        Survival functions (StepFunctions, or any callable ``fn(times) -> probabilities``),
        or survival probabilities on ``survival_times`` (on ``times`` when
        ``survival_times`` is None).
    times : array-like, shape (n_times,)
        Non-negative times at which to evaluate the curves.
    survival_times : array-like, shape (n_grid,), default=None
        Increasing grid of the columns of an array ``survival``, e.g.
        ``estimator.unique_times_``.

    Returns
    -------
    probabilities : ndarray, shape (n_samples, n_times)
        ``S_i(times[j])`` in row ``i``, column ``j``.

    Raises
    ------
    ValueError
        If ``times`` or ``survival_times`` is not a finite non-negative (for
        ``survival_times``: increasing) 1-D array, an array ``survival`` does not have one
        column per grid time, or holds values outside [0, 1].

    See Also
    --------
    integrated_brier_score : Takes the same ``survival_times`` (there ``estimate_times``).

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion.metrics import survival_at
    >>> curves = np.array([[0.9, 0.5, 0.2], [0.8, 0.7, 0.6]])
    >>> survival_at(curves, [0.5, 2.0, 2.5, 9.0], survival_times=[1.0, 2.0, 3.0])
    array([[1. , 0.5, 0.5, 0.2],
           [1. , 0.7, 0.7, 0.6]])
    """
    times = check_times(times, "times")
    survival = as_rows(survival, "survival")
    if survival.dtype.kind == "O" and survival.ndim == 1:
        if survival_times is not None:
            raise ValueError("survival_times is the grid of an array survival; survival holds functions.")
        values = np.vstack([_function_at(fn, times) for fn in survival])
        return check_probabilities(values, "survival")
    if survival.ndim != 2:
        raise ValueError(
            f"survival must be an array of StepFunctions or a 2-D array (samples, times), got shape {survival.shape}."
        )
    check_probabilities(survival, "survival")
    if survival_times is None:
        if survival.shape[1] != len(times):
            raise ValueError(
                f"survival has {survival.shape[1]} columns but times has {len(times)} values; pass "
                "survival_times= (e.g. estimator.unique_times_) to evaluate curves given on another grid."
            )
        return survival.astype(float)
    grid = check_times(survival_times, "survival_times", increasing=True)
    if len(grid) != survival.shape[1]:
        raise ValueError(f"survival has {survival.shape[1]} columns but survival_times has {len(grid)} values.")
    return _steps(grid, survival.astype(float), times)


def survival_at_own_times(survival, time, survival_times=None):
    """``S_i(t_i)``: each sample's survival curve at its own observed time, shape (n_samples,)."""
    survival = as_rows(survival, "survival")
    if survival.dtype.kind == "O" and survival.ndim == 1:
        if survival_times is not None:
            raise ValueError("survival_times is the grid of an array survival; survival holds functions.")
        values = np.array([_function_at(fn, t[None])[0] for fn, t in zip(survival, time)])
        return check_probabilities(values, "survival")
    if survival.ndim != 2 or survival_times is None:
        raise ValueError(
            "survival must be an array of StepFunctions, or a 2-D array of probabilities on survival_times "
            "(e.g. predict_survival_function(X, return_array=True) and estimator.unique_times_)."
        )
    grid = check_times(survival_times, "survival_times", increasing=True)
    if len(grid) != survival.shape[1]:
        raise ValueError(f"survival has {survival.shape[1]} columns but survival_times has {len(grid)} values.")
    check_probabilities(survival, "survival")
    index = np.searchsorted(grid, time, side="right") - 1
    values = survival[np.arange(len(time)), np.maximum(index, 0)].astype(float)
    return np.where(index >= 0, values, 1.0)


def _function_at(fn, times):
    if isinstance(fn, StepFunction):
        return _steps(np.asarray(fn.x, dtype=float), (fn.a * np.asarray(fn.y, dtype=float) + fn.b)[None], times)[0]
    if not callable(fn):
        raise ValueError(f"survival must hold survival functions (StepFunction), got {type(fn).__name__}.")
    return np.broadcast_to(np.asarray(fn(times), dtype=float), times.shape)


def _steps(grid, values, times):
    """Right-continuous step curves ``values`` (rows) on ``grid`` at ``times``; 1 before the grid."""
    index = np.searchsorted(grid, times, side="right") - 1
    out = np.ones((len(values), len(times)))
    inside = index >= 0
    out[:, inside] = values[:, index[inside]]
    return out


def integrated_brier_score(survival_train, survival_test, estimate, times, *, estimate_times=None):
    """Integrated Brier score of predicted survival functions or probabilities.

    :func:`sksurv.metrics.integrated_brier_score` with the same arguments and result,
    extended to take what ``predict_survival_function`` returns: StepFunctions, or (with
    ``estimate_times``) the ``return_array=True`` array on the estimator's
    ``unique_times_``, which are evaluated at ``times`` first (see :func:`survival_at`).
    Lower is better; :func:`kaplan_meier_integrated_brier_score` is the score of no model.

    Parameters
    ----------
    survival_train : structured array, shape (n_train_samples,)
        Training targets, used for the censoring distribution.
    survival_test : structured array, shape (n_samples,)
        Test targets.
    estimate : array-like, shape (n_samples, n_times) or (n_samples, n_grid), or array of StepFunction
        Predicted survival probabilities at ``times`` (or on ``estimate_times``), or
        survival functions.
    times : array-like, shape (n_times,)
        At least two increasing time points inside the follow-up of ``survival_test``
        (see the note on the bootstrap in :func:`cumulative_dynamic_auc_score`).
    estimate_times : array-like, shape (n_grid,), default=None
        Grid of the columns of an array ``estimate``, e.g. ``estimator.unique_times_``.

    Returns
    -------
    ibs : float
        The Brier score integrated over ``[times[0], times[-1]]`` (trapezoid rule) divided
        by the length of that range.

    Raises
    ------
    ValueError
        If a target is not a survival array, ``times`` has fewer than two values or is not
        increasing, ``estimate`` does not match ``times`` or ``estimate_times``, or
        holds values outside [0, 1].

    See Also
    --------
    sksurv.metrics.integrated_brier_score : The wrapped function.
    IntegratedBrierScore : The same score as a metric for :func:`bootstrap_ci`.
    kaplan_meier_integrated_brier_score : The reference without a model.

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M. (1999). "Assessment and
           comparison of prognostic classification schemes for survival data". Statistics in
           Medicine, 18(17-18), 2529-2545.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import integrated_brier_score
    >>> y_train = Surv.from_arrays([True, False, True, True, False], [1.0, 2.0, 4.0, 5.0, 7.0])
    >>> y = Surv.from_arrays([True, True, False, True], [1.0, 3.0, 4.0, 6.0])
    >>> surv = np.array([[0.3, 0.1], [0.8, 0.3], [0.9, 0.6], [0.9, 0.8]])
    >>> round(integrated_brier_score(y_train, y, surv, times=[2.0, 5.0]), 3)
    0.044

    Curves on another grid, as ``predict_survival_function(X, return_array=True)`` gives
    them on ``unique_times_``:

    >>> grid = np.array([1.5, 4.5])
    >>> round(integrated_brier_score(y_train, y, surv, times=[2.0, 5.0], estimate_times=grid), 3)
    0.044
    """
    check_survival(survival_train, "survival_train")
    check_survival(survival_test, "survival_test")
    times = check_times(times, "times", increasing=True, at_least=2)
    estimate = _check_scores(survival_test, estimate, "survival_test", "estimate")
    estimate = survival_at(estimate, times, survival_times=estimate_times)
    return float(_sksurv_integrated_brier_score(survival_train, survival_test, estimate, times))


class IntegratedBrierScore:
    """The integrated Brier score as a metric ``metric(y_test, estimate) -> float``.

    Fixes the training targets (censoring distribution) and the evaluation times of
    :func:`integrated_brier_score`, so that :func:`bootstrap_ci`,
    :func:`paired_bootstrap_test` and :class:`BootstrapDraws` resample the test rows only.
    With the censoring distribution fixed the score is a mean over test rows of each row's
    integrated, inverse-probability-of-censoring weighted squared error, so the bootstrap
    evaluates all resamples at once from those row terms (equal to scikit-survival's score
    on every resample); a resample whose follow-up does not cover ``times`` is undefined
    and skipped.

    Parameters
    ----------
    survival_train : structured array, shape (n_train_samples,)
        Training targets, used for the censoring distribution.
    times : array-like, shape (n_times,)
        Evaluation times, as in :func:`integrated_brier_score`.
    estimate_times : array-like, shape (n_grid,), default=None
        Grid of the columns of an array ``estimate``, e.g. ``estimator.unique_times_``.

    See Also
    --------
    integrated_brier_score : The function it calls.
    kaplan_meier_survival : Curves of the reference without a model, for a paired test.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import IntegratedBrierScore, bootstrap_ci, kaplan_meier_survival
    >>> from skfusion.metrics import paired_bootstrap_test
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=400)
    >>> event_time, censor_time = rng.exponential(np.exp(-x)), rng.exponential(2.0, 400)
    >>> y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    >>> y_train, y_test, x_test = y[:200], y[200:], x[200:]
    >>> times = np.quantile(y_test["time"], [0.1, 0.3, 0.5, 0.7])
    >>> true_curves = np.exp(-np.exp(x_test)[:, None] * times)
    >>> ibs = IntegratedBrierScore(y_train, times)
    >>> result = bootstrap_ci(ibs, y_test, true_curves, n_resamples=200, random_state=0)
    >>> bool(result.low < result.estimate < result.high)
    True
    >>> no_model = np.tile(kaplan_meier_survival(y_train, times), (len(y_test), 1))
    >>> test = paired_bootstrap_test(ibs, y_test, true_curves, no_model, n_resamples=200, random_state=0)
    >>> bool(test.difference < 0 and test.pvalue < 0.05)
    True
    """

    def __init__(self, survival_train, times, *, estimate_times=None):
        check_survival(survival_train, "survival_train")
        self.survival_train = survival_train
        self.times = check_times(times, "times", increasing=True, at_least=2)
        self.estimate_times = estimate_times

    def __call__(self, survival_test, estimate):
        return integrated_brier_score(
            self.survival_train, survival_test, estimate, self.times, estimate_times=self.estimate_times
        )

    def _row_terms(self, survival_test, estimate):
        """Each test row's share of the score: the score is their mean, shape (n_samples,)."""
        event, time = check_survival(survival_test, "survival_test")
        estimate = survival_at(
            _check_scores(survival_test, estimate, "survival_test", "estimate"),
            self.times,
            survival_times=self.estimate_times,
        )
        censoring = CensoringDistributionEstimator().fit(self.survival_train)
        # As scikit-survival: a zero censoring probability gives the row no weight.
        at_times = _inverse(censoring.predict_proba(self.times))
        at_rows = _inverse(censoring.predict_proba(time))
        case = (time[:, None] <= self.times) & event[:, None]
        control = time[:, None] > self.times
        squared_error = estimate**2 * case * at_rows[:, None] + (1.0 - estimate) ** 2 * control * at_times
        return np.trapezoid(squared_error, self.times, axis=1) / (self.times[-1] - self.times[0])

    def _covers(self, time):
        """Whether the follow-up ``time`` of a (resampled) test set covers ``times``."""
        return time.min() <= self.times[0] and time.max() > self.times[-1]


def _inverse(probability):
    with np.errstate(divide="ignore"):
        return np.where(probability > 0, 1.0 / probability, 0.0)


def kaplan_meier_survival(survival_train, times):
    """The Kaplan-Meier survival curve of ``survival_train`` at ``times``, shape (n_times,).

    The prediction of no model: every patient gets the population curve. Tile it over the
    test rows to compare a model with it, e.g. in :func:`paired_bootstrap_test` with
    :class:`IntegratedBrierScore`.

    Parameters
    ----------
    survival_train : structured array, shape (n_train_samples,)
        Targets whose Kaplan-Meier curve is returned.
    times : array-like, shape (n_times,)
        Non-negative times, no later than the last time of ``survival_train`` unless its
        curve reaches 0.

    Returns
    -------
    survival : ndarray, shape (n_times,)
        The Kaplan-Meier estimate at each of ``times``.

    See Also
    --------
    sksurv.nonparametric.SurvivalFunctionEstimator : Computes the curve.
    kaplan_meier_integrated_brier_score : Its integrated Brier score.

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import kaplan_meier_survival
    >>> y_train = Surv.from_arrays([True, False, True, True], [1.0, 2.0, 3.0, 5.0])
    >>> kaplan_meier_survival(y_train, [0.5, 1.0, 4.0])
    array([1.   , 0.75 , 0.375])
    """
    event, time = check_survival(survival_train, "survival_train")
    times = check_times(times, "times")
    estimator = SurvivalFunctionEstimator().fit(survival_train)
    if times.max() > time.max() and estimator.prob_[-1] > 0:
        raise ValueError(
            f"times must be at most the last time of survival_train ({time.max()}): the Kaplan-Meier "
            "curve is undefined after it."
        )
    return estimator.predict_proba(times)


def kaplan_meier_integrated_brier_score(survival_train, survival_test, times):
    """Integrated Brier score of the Kaplan-Meier curve of ``survival_train``: no model.

    The reference a model's :func:`integrated_brier_score` has to beat: every test
    patient is given the training population's survival curve. A model scoring above it
    is worse than knowing nothing about the patients.

    Parameters
    ----------
    survival_train : structured array, shape (n_train_samples,)
        Training targets: the Kaplan-Meier curve and the censoring distribution.
    survival_test : structured array, shape (n_samples,)
        Test targets.
    times : array-like, shape (n_times,)
        As in :func:`integrated_brier_score`.

    Returns
    -------
    ibs : float
        :func:`integrated_brier_score` of the Kaplan-Meier curve.

    See Also
    --------
    kaplan_meier_survival : The curve; tile it for a bootstrap interval or paired test.

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M. (1999). "Assessment and
           comparison of prognostic classification schemes for survival data". Statistics in
           Medicine, 18(17-18), 2529-2545.

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> from skfusion.metrics import kaplan_meier_integrated_brier_score
    >>> y_train = Surv.from_arrays([True, False, True, True, False], [1.0, 2.0, 4.0, 5.0, 7.0])
    >>> y = Surv.from_arrays([True, True, False, True], [1.0, 3.0, 4.0, 6.0])
    >>> round(kaplan_meier_integrated_brier_score(y_train, y, times=[2.0, 5.0]), 3)
    0.21
    """
    check_survival(survival_test, "survival_test")
    curve = kaplan_meier_survival(survival_train, times)
    return integrated_brier_score(survival_train, survival_test, np.tile(curve, (len(survival_test), 1)), times)


def harrell_on_counts(y, risks, counts, tied_tol=1e-8):
    """Harrell's C of each risk on many resamples at once, given as row-count vectors.

    A resample that holds original row ``i`` ``w_i`` times has the C-index
    ``sum_ij w_i w_j K_ij / sum_ij w_i w_j A_ij``, where ``A_ij`` says the pair is comparable
    (``i`` an event and ``t_i < t_j``, or ``t_i == t_j`` with ``j`` censored; copies of one
    row are never comparable) and ``K_ij`` is 1 if ``risk_i - risk_j > tied_tol``, 1/2 if
    ``|risk_i - risk_j| <= tied_tol`` and 0 otherwise: exactly the pairs and ties of
    :func:`sksurv.metrics.concordance_index_censored` on the resampled rows. That turns
    ``n_resamples`` Python loops over the events into two matrix products per risk.

    Parameters
    ----------
    y : structured array, shape (n,)
    risks : sequence of k arrays, shape (n,)
    counts : ndarray, shape (m, n)
        How often each row appears in each of m resamples.
    tied_tol : float

    Returns
    -------
    cindex : ndarray, shape (m, k)
        NaN where a resample has no comparable pair.
    """
    event, time = check_survival(y, "y", allow_all_censored=True)
    # The float32 matrix products are exact: their entries are multiples of 1/2 no larger than
    # n (a resample's counts sum to n), far below float32's 2**24 integer range.
    weights = counts.astype(np.float32)
    numerator = np.zeros((len(weights), len(risks)))
    denominator = np.zeros(len(weights))
    events = np.flatnonzero(event)
    block = max(1, 2**22 // len(time))
    for start in range(0, len(events), block):
        rows = events[start : start + block]
        comparable = (time[rows, None] < time) | ((time[rows, None] == time) & ~event)
        w_rows = weights[:, rows].astype(np.float64)
        denominator += _pair_sum(w_rows, comparable.astype(np.float32), weights)
        for k, risk in enumerate(risks):
            gap = risk[rows, None] - risk
            score = np.where(gap > tied_tol, 1.0, np.where(np.abs(gap) <= tied_tol, 0.5, 0.0))
            numerator[:, k] += _pair_sum(w_rows, (score * comparable).astype(np.float32), weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator[:, None]


def _pair_sum(w_rows, pair_matrix, weights):
    """``sum_ij w_i P_ij w_j`` for every resample (row of ``weights``)."""
    return np.einsum("mb,bm->m", w_rows, (pair_matrix @ weights.T).astype(np.float64))
