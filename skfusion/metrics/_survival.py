"""Scalar survival metrics: thin adapters over scikit-survival's functions.

scikit-survival's metrics return tuples (C-index with pair counts, AUC per time with its
mean); :func:`~skfusion.metrics.bootstrap_ci` needs ``metric(y_true, y_score) -> float``.
The adapters here validate their input, call scikit-survival, and return the one number.
"""

import numpy as np
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc
from sksurv.metrics import integrated_brier_score as _sksurv_integrated_brier_score

from ._checks import as_rows, check_finite, check_lengths, check_survival


def _check_scores(y, scores, y_name, scores_name):
    scores = as_rows(scores, scores_name)
    check_lengths(**{y_name: y, scores_name: scores})
    return check_finite(scores, scores_name)


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


def integrated_brier_score(survival_train, survival_test, estimate, times):
    """Integrated Brier score of predicted survival functions or probabilities.

    :func:`sksurv.metrics.integrated_brier_score` with the same arguments, extended to
    accept the output of ``predict_survival_function(X)`` (an array of StepFunctions),
    which is evaluated at ``times`` first. Lower is better.

    Parameters
    ----------
    survival_train : structured array, shape (n_train_samples,)
        Training targets, used for the censoring distribution.
    survival_test : structured array, shape (n_samples,)
        Test targets.
    estimate : array-like, shape (n_samples, n_times), or array of StepFunction, shape (n_samples,)
        Predicted survival probabilities at ``times``, or survival functions.
    times : array-like, shape (n_times,)
        At least two time points inside the follow-up of ``survival_test`` (see the note on
        the bootstrap in :func:`cumulative_dynamic_auc_score`).

    Returns
    -------
    ibs : float

    See Also
    --------
    sksurv.metrics.integrated_brier_score : The wrapped function.
    sksurv.metrics.brier_score : The Brier score at each time.

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
    """
    check_survival(survival_train, "survival_train")
    check_survival(survival_test, "survival_test")
    estimate = _check_scores(survival_test, estimate, "survival_test", "estimate")
    if estimate.dtype.kind == "O" and callable(estimate[0]):
        estimate = np.vstack([fn(np.asarray(times, dtype=float)) for fn in estimate])
    return float(_sksurv_integrated_brier_score(survival_train, survival_test, estimate, times))


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
