"""Bootstrap confidence intervals of any metric, and the paired bootstrap test.

We draw the resamples (rows, optionally within strata), evaluate the metric on each (in
parallel with joblib, skipping resamples where it is undefined) and hand the resulting
bootstrap distribution to :func:`scipy.stats.bootstrap` (``n_resamples=0``,
``bootstrap_result=...``) for the interval itself: scipy owns the percentile, basic and BCa
formulas. scipy's own resampling is not used because it cannot skip undefined resamples,
stratify, or run the metric in parallel, and it would resample a structured survival array
field by field rather than by row.
"""

import math
import numbers
import warnings
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np
from joblib import effective_n_jobs
from scipy import stats
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils import check_random_state, gen_even_slices
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_scalar

from ._checks import as_rows, check_finite, check_lengths, check_survival
from ._survival import IntegratedBrierScore, concordance_index, harrell_on_counts

#: More skipped resamples than this fraction of ``n_resamples`` triggers a warning.
MAX_SKIPPED_FRACTION = 0.05

_METHODS = {"percentile": "percentile", "basic": "basic", "bca": "BCa"}
_ALTERNATIVES = ("two-sided", "less", "greater")
# Index matrices handed to one task stay under this many entries (64 MiB of int64).
_MAX_INDEX_ENTRIES = 2**23
_SEED_BOUND = np.iinfo(np.int32).max

_Distribution = namedtuple("_Distribution", "bootstrap_distribution")


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Point estimate and bootstrap confidence interval of a metric.

    Formats as in the papers' tables: ``f"{result}"`` gives ``0.837 (0.828–0.847)``, and
    ``f"{result:.2f}"`` uses two decimals.

    Attributes
    ----------
    estimate : float
        The metric on the full sample.
    low, high : float
        Confidence interval bounds.
    std : float
        Bootstrap standard error (standard deviation of ``resamples``, ddof=1).
    resamples : ndarray, shape (n_resamples - n_skipped,)
        The metric on each resample where it is defined (the bootstrap distribution).
    n_skipped : int
        Resamples on which the metric is undefined (e.g. no event, a single class).
    confidence_level : float
    method : str
    """

    estimate: float
    low: float
    high: float
    std: float
    resamples: np.ndarray = field(repr=False)
    n_skipped: int
    confidence_level: float
    method: str

    def __format__(self, spec):
        spec = spec or ".3f"
        return f"{self.estimate:{spec}} ({self.low:{spec}}–{self.high:{spec}})"

    def __str__(self):
        return format(self)


@dataclass(frozen=True, eq=False)
class PairedBootstrapResult:
    """Paired bootstrap comparison of two models' predictions on the same samples.

    Attributes
    ----------
    difference : float
        ``metric(y_true, score_a) - metric(y_true, score_b)`` on the full sample.
    low, high : float
        Confidence interval of the difference (one bound infinite for a one-sided
        ``alternative``).
    std : float
        Bootstrap standard error of the difference.
    pvalue : float
        See :func:`paired_bootstrap_test` for the definition.
    estimate_a, estimate_b : float
        The metric of each model on the full sample.
    resamples : ndarray, shape (n_resamples - n_skipped,)
        The difference on each resample where both metrics are defined.
    n_skipped : int
    alternative : str
    confidence_level : float
    method : str
    """

    difference: float
    low: float
    high: float
    std: float
    pvalue: float
    estimate_a: float
    estimate_b: float
    resamples: np.ndarray = field(repr=False)
    n_skipped: int
    alternative: str
    confidence_level: float
    method: str


def bootstrap_ci(
    metric,
    y_true,
    y_score,
    *,
    n_resamples=1000,
    confidence_level=0.95,
    method="percentile",
    stratify=None,
    random_state=None,
    n_jobs=None,
):
    """Bootstrap confidence interval of any metric ``metric(y_true, y_score) -> float``.

    Rows (samples) are drawn with replacement ``n_resamples`` times; ``y_true`` and
    ``y_score`` are resampled together, a structured survival ``y`` as whole rows. The
    estimate is the metric on the full sample, as reported with "mean (95% CI)" in Table 1
    of [1]_ and with bootstrapped 95% CIs of macro AUROC/AUPRC in [2]_.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_score)`` returning a float, e.g. :func:`concordance_index`,
        :func:`auroc`, ``sklearn.metrics.roc_auc_score``, or
        ``functools.partial(concordance_index_ipcw_score, y_train)``. It is called on the
        full sample first: errors there are raised as they are. On a resample, a
        ``ValueError`` or a non-finite value means "undefined here" (no event, one class):
        that resample is skipped and counted, and the metric's warnings are silenced.
    y_true : array-like, shape (n_samples,) or (n_samples, n_outputs)
        Targets: labels, a label-indicator matrix, or a structured survival array.
    y_score : array-like, shape (n_samples, ...)
        Predictions: scores, probabilities, risks, an array of StepFunctions.
    n_resamples : int, default=1000
        Number of bootstrap resamples: at least ``2 / (1 - confidence_level) - 1`` (39 for a
        95% interval, see Notes), and 1000 or more for bounds that do not move with the seed.
    confidence_level : float, default=0.95
        In (0, 1).
    method : {"percentile", "basic", "bca"}, default="percentile"
        Interval computed by :func:`scipy.stats.bootstrap` from the bootstrap distribution.
        ``"bca"`` (bias-corrected and accelerated) also evaluates the metric on the
        ``n_samples`` leave-one-out samples (jackknife), so the metric must be defined on each
        of them (not so for the C-index with a single event).
    stratify : array-like, shape (n_samples,), default=None
        Resample within each stratum, keeping its size, e.g. ``y["event"]`` so that every
        resample keeps the number of events, or the class labels for a rare class.
    random_state : int, RandomState instance or None, default=None
        Seeds the resamples; an int makes the result reproducible, whatever ``n_jobs``.
    n_jobs : int, default=None
        Parallel jobs (joblib) over chunks of resamples. ``None`` means 1 unless in a
        ``joblib.parallel_backend`` context; ``-1`` uses all processors.

    Returns
    -------
    result : BootstrapResult
        ``estimate``, ``low``, ``high``, ``std``, ``resamples``, ``n_skipped``.

    Raises
    ------
    ValueError
        If the inputs have different lengths, ``y_score`` holds NaN, a parameter is out of
        range (``n_resamples`` too few for ``confidence_level``), the metric is undefined on
        the full sample or on all but fewer resamples than that minimum, or, for
        ``method="bca"``, on a leave-one-out sample, or the BCa interval is undefined (a
        degenerate bootstrap distribution).

    Warns
    -----
    sklearn.exceptions.UndefinedMetricWarning
        If more than ``MAX_SKIPPED_FRACTION`` (5%) of the resamples were skipped: the
        interval then describes the resamples on which the metric is defined only.

    See Also
    --------
    paired_bootstrap_test : Compare two models on the same samples.
    scipy.stats.bootstrap : Computes the interval from the bootstrap distribution.

    Notes
    -----
    The bounds of a two-sided interval at level ``1 - alpha`` are the ``alpha / 2`` and
    ``1 - alpha / 2`` quantiles of the ``B`` resamples. They are order statistics of the
    bootstrap distribution only when ``(B + 1) alpha / 2 >= 1`` ([3]_, Section 13.3; Davison
    and Hinkley, 1997, Section 5.2.1); with fewer resamples a bound is interpolated beyond
    the most extreme resample (one resample gives an interval of zero width, which excludes
    the estimate), so fewer are refused.

    Resample ``b`` draws its rows from its own seed, taken from ``random_state``, so results
    do not depend on ``n_jobs``. For :func:`concordance_index` all resamples are evaluated
    at once from row counts (see ``harrell_on_counts`` in ``skfusion/metrics/_survival.py``),
    which gives scikit-survival's value on every resample, 40 to 60 times faster than calling
    it once per resample at 1000 to 5000 samples (``benchmarks/bench_metrics.py``).

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, Table 1.
    .. [2] Anonymous authors (under review). Modular multimodal alignment using time-series
           EHR data for enhancing medical image classification (MedCAM). Paper under
           double-blind review, Tables 2-4.
    .. [3] Efron, B., Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman &
           Hall. Chapters 13-14.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.metrics import roc_auc_score
    >>> from skfusion.metrics import bootstrap_ci
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> score = y + rng.normal(size=200)
    >>> result = bootstrap_ci(roc_auc_score, y, score, n_resamples=200, random_state=0)
    >>> bool(result.low < result.estimate < result.high)
    True
    >>> print(f"{result:.2f}")  # doctest: +SKIP
    0.75 (0.68–0.81)
    """
    check_bootstrap_parameters(n_resamples, confidence_level, method)
    draws = BootstrapDraws(
        metric, y_true, {"y_score": y_score}, n_resamples=n_resamples, stratify=stratify,
        random_state=random_state, n_jobs=n_jobs,
    )
    return draws.interval("y_score", confidence_level=confidence_level, method=method)


def paired_bootstrap_test(
    metric,
    y_true,
    score_a,
    score_b,
    *,
    n_resamples=1000,
    alternative="two-sided",
    confidence_level=0.95,
    method="percentile",
    stratify=None,
    random_state=None,
    n_jobs=None,
):
    """Paired bootstrap test of the difference of one metric between two models.

    Both models are scored on the same resampled rows, so the bootstrap distribution of
    ``d = metric(y_true, score_a) - metric(y_true, score_b)`` keeps the correlation between
    their predictions. This gives the "p < 0.05 versus image-only / versus concatenation"
    markers of Table 1 in [1]_.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_score) -> float``, as in :func:`bootstrap_ci`. For a loss (e.g.
        the integrated Brier score) a positive difference means model A is worse.
    y_true : array-like, shape (n_samples, ...)
        Targets, shared by both models.
    score_a, score_b : array-like, shape (n_samples, ...)
        Predictions of model A and model B for the same samples.
    n_resamples : int, default=1000
        At least ``2 / (1 - confidence_level) - 1`` (``1 / (1 - confidence_level) - 1`` for a
        one-sided ``alternative``), as in :func:`bootstrap_ci`.
    alternative : {"two-sided", "greater", "less"}, default="two-sided"
        Alternative hypothesis: ``"greater"`` is "A scores higher than B".
    confidence_level : float, default=0.95
        Of the interval of the difference; one-sided for a one-sided ``alternative``.
    method : {"percentile", "basic", "bca"}, default="percentile"
        Interval method, see :func:`bootstrap_ci`.
    stratify, random_state, n_jobs
        As in :func:`bootstrap_ci`.

    Returns
    -------
    result : PairedBootstrapResult
        ``difference``, ``low``, ``high``, ``std``, ``pvalue``, ``estimate_a``,
        ``estimate_b``, ``resamples`` (the bootstrap differences), ``n_skipped``.

    Raises
    ------
    ValueError
        As :func:`bootstrap_ci`, naming ``score_a`` or ``score_b``; or for an unknown
        ``alternative``.

    See Also
    --------
    bootstrap_ci : Interval of one model's metric.

    Notes
    -----
    With ``d*_1 ... d*_B`` the differences on the ``B`` resamples where both metrics are
    defined, the p-value inverts the percentile interval of the difference [2]_ [3]_:

    - ``"greater"`` (H1: A > B): ``p = (1 + #{d*_b <= 0}) / (B + 1)``,
    - ``"less"`` (H1: A < B): ``p = (1 + #{d*_b >= 0}) / (B + 1)``,
    - ``"two-sided"``: ``p = min(1, 2 min(p_greater, p_less))``.

    So ``p < 1 - confidence_level`` exactly when the percentile interval with the same
    ``alternative`` excludes 0 (up to the ``+1`` and quantile interpolation), ``p`` lies
    in ``[1 / (B + 1), 1]``, and identical models get ``p = 1``. The ``+1`` counts the
    observed sample as one draw, as in Monte Carlo tests ([3]_, eq. 4.11), so that ``p`` is
    never 0. With another ``method``, the interval and ``p`` can disagree when the
    bootstrap distribution is skewed.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, Table 1.
    .. [2] Efron, B., Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman &
           Hall. Section 16.4 (bootstrap tests from confidence intervals).
    .. [3] Davison, A. C., Hinkley, D. V. (1997). Bootstrap Methods and their Application.
           Cambridge University Press. Sections 4.2.5 and 4.4.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.metrics import roc_auc_score
    >>> from skfusion.metrics import paired_bootstrap_test
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> good, weak = y + rng.normal(size=300), y + 3 * rng.normal(size=300)
    >>> test = paired_bootstrap_test(roc_auc_score, y, good, weak, n_resamples=200, random_state=0)
    >>> bool(test.difference > 0 and test.pvalue < 0.05)
    True
    """
    check_bootstrap_parameters(n_resamples, confidence_level, method, alternative)
    draws = BootstrapDraws(
        metric, y_true, {"score_a": score_a, "score_b": score_b}, n_resamples=n_resamples,
        stratify=stratify, random_state=random_state, n_jobs=n_jobs,
    )
    return draws.paired(
        "score_a", "score_b", alternative=alternative, confidence_level=confidence_level, method=method
    )


class BootstrapDraws:
    """One metric of several models' predictions on the full sample and on shared resamples.

    :func:`bootstrap_ci` and :func:`paired_bootstrap_test` are built on it; a comparison of
    many models (:func:`skfusion.model_selection.compare_fusion`) evaluates every model once
    per resample and reads every interval and paired test off the same draws, which gives
    exactly the results of those two functions with the same ``random_state``.

    Parameters
    ----------
    metric, y_true
        As in :func:`bootstrap_ci`.
    scores : dict of str to array-like
        Each model's predictions for the samples of ``y_true``; the names are used in
        error messages and by :meth:`interval` and :meth:`paired`.
    n_resamples, stratify, random_state, n_jobs
        As in :func:`bootstrap_ci`.
    """

    def __init__(self, metric, y_true, scores, *, n_resamples=1000, stratify=None, random_state=None, n_jobs=None):
        check_scalar(n_resamples, "n_resamples", numbers.Integral, min_val=1)
        self.y_true, checked = _check_inputs(y_true, scores, stratify)
        self.scores = dict(zip(scores, checked))
        self.metric, self.n_resamples, self.n_jobs = metric, n_resamples, n_jobs
        estimates, values = _run(metric, self.y_true, checked, n_resamples, stratify, random_state, n_jobs)
        self.estimates = dict(zip(scores, estimates))
        self.values = dict(zip(scores, values.T))

    def interval(self, name, *, confidence_level=0.95, method="percentile"):
        """:class:`BootstrapResult` of the model ``name``.

        Parameters
        ----------
        name : str
            One of the models of ``scores``.
        confidence_level, method
            As in :func:`bootstrap_ci`.
        """
        check_bootstrap_parameters(self.n_resamples, confidence_level, method)
        resamples, n_skipped = _defined(self.values[name], self.n_resamples, confidence_level, "two-sided")
        low, high, std = self._interval([name], _first, resamples, confidence_level, method, "two-sided")
        return BootstrapResult(self.estimates[name], low, high, std, resamples, n_skipped, confidence_level, method)

    def paired(self, name_a, name_b, *, alternative="two-sided", confidence_level=0.95, method="percentile"):
        """:class:`PairedBootstrapResult` of model ``name_a`` minus model ``name_b``.

        Parameters
        ----------
        name_a, name_b : str
            Two of the models of ``scores``.
        alternative, confidence_level, method
            As in :func:`paired_bootstrap_test`.
        """
        check_bootstrap_parameters(self.n_resamples, confidence_level, method, alternative)
        difference = self.values[name_a] - self.values[name_b]
        resamples, n_skipped = _defined(difference, self.n_resamples, confidence_level, alternative)
        low, high, std = self._interval([name_a, name_b], _difference, resamples, confidence_level, method, alternative)
        return PairedBootstrapResult(
            difference=self.estimates[name_a] - self.estimates[name_b],
            low=low,
            high=high,
            std=std,
            pvalue=float(_pvalue(resamples, alternative)),
            estimate_a=self.estimates[name_a],
            estimate_b=self.estimates[name_b],
            resamples=resamples,
            n_skipped=n_skipped,
            alternative=alternative,
            confidence_level=confidence_level,
            method=method,
        )

    def _interval(self, names, reduce, resamples, confidence_level, method, alternative):
        scores = [self.scores[name] for name in names]
        statistic = _StatisticOnIndices(self.metric, self.y_true, scores, reduce, self.n_jobs)
        return _interval(statistic, resamples, len(self.y_true), confidence_level, method, alternative)


def _check_inputs(y_true, scores, stratify):
    y_true = as_rows(y_true, "y_true")
    scores = {name: as_rows(score, name) for name, score in scores.items()}
    named = {"y_true": y_true, **scores}
    if stratify is not None:
        named["stratify"] = as_rows(stratify, "stratify")
    check_lengths(**named)
    if len(y_true) < 2:
        raise ValueError(f"y_true needs at least 2 samples to bootstrap, got {len(y_true)}.")
    if y_true.dtype.names is None:
        check_finite(y_true, "y_true")
    for name, score in scores.items():
        check_finite(score, name)
    return y_true, list(scores.values())


def check_bootstrap_parameters(n_resamples, confidence_level, method, alternative="two-sided"):
    """Raise a ValueError naming the first bootstrap parameter out of range.

    ``n_resamples`` must give the interval's bounds as order statistics of the bootstrap
    distribution (:func:`min_resamples`).
    """
    check_scalar(n_resamples, "n_resamples", numbers.Integral, min_val=1)
    check_scalar(
        confidence_level, "confidence_level", numbers.Real, min_val=0, max_val=1, include_boundaries="neither"
    )
    if method not in _METHODS:
        raise ValueError(f"method must be one of {tuple(_METHODS)}, got {method!r}.")
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}.")
    minimum = min_resamples(confidence_level, alternative)
    if n_resamples < minimum:
        raise ValueError(
            f"n_resamples={n_resamples} is too few for a {_level(confidence_level, alternative)} interval: it needs "
            f"at least {minimum} resamples, so that each bound is an order statistic of the bootstrap distribution "
            "rather than an extrapolation beyond it (1000 or more give bounds that do not move with the seed)."
        )


def min_resamples(confidence_level, alternative="two-sided"):
    """The fewest resamples ``B`` with ``(B + 1) * tail >= 1``, ``tail`` the interval's tail probability."""
    tail = (1 - confidence_level) / (2 if alternative == "two-sided" else 1)
    # The tolerance absorbs the round-off of 1 - 0.95 (which gives 39.99999999999996 for 1 / tail).
    return max(1, math.ceil(1 / tail - 1 - 1e-9))


def _level(confidence_level, alternative):
    sides = "two-sided" if alternative == "two-sided" else "one-sided"
    return f"{sides} {100 * confidence_level:.4g}%"


def _run(metric, y_true, scores, n_resamples, stratify, random_state, n_jobs):
    """Full-sample estimates (errors raised) and the (n_resamples, n_scores) resample values."""
    estimates = [_full_sample(metric, y_true, score) for score in scores]
    strata = _strata(stratify, len(y_true))
    seeds = check_random_state(random_state).randint(_SEED_BOUND, size=n_resamples)
    on_rows = _on_rows(metric, y_true, scores)
    chunks = _chunks(n_resamples, len(y_true), n_jobs)
    parts = Parallel(n_jobs=n_jobs)(delayed(_resample_and_score)(on_rows, seeds[c], strata) for c in chunks)
    return estimates, np.concatenate(parts)


def _full_sample(metric, y_true, score):
    value = float(metric(y_true, score))
    if not np.isfinite(value):
        raise ValueError(f"metric is undefined on the full sample: it returned {value}.")
    return value


def _strata(stratify, n):
    if stratify is None:
        return [np.arange(n)]
    _, codes = np.unique(as_rows(stratify, "stratify"), return_inverse=True)
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def _chunks(n_tasks, n_samples, n_jobs):
    per_chunk = max(1, _MAX_INDEX_ENTRIES // n_samples)
    n_chunks = max(effective_n_jobs(n_jobs), -(-n_tasks // per_chunk))
    return list(gen_even_slices(n_tasks, min(n_chunks, n_tasks)))


def _resample_and_score(on_rows, seeds, strata):
    """Draw one resample per seed (with replacement within each stratum) and score it."""
    indices = np.empty((len(seeds), sum(len(s) for s in strata)), dtype=np.intp)
    for r, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        indices[r] = np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata])
    return on_rows(indices)


def _on_rows(metric, y_true, scores):
    if metric is concordance_index:
        return _HarrellOnRows(y_true, scores)
    if isinstance(metric, IntegratedBrierScore):
        return _BrierOnRows(metric, y_true, scores)
    if isinstance(metric, MeanOverSplits) and metric.metric is concordance_index:
        if all(score.shape[2] == 2 for score in scores):
            return _HarrellOverSplitsOnRows(y_true, scores)
    return _MetricOnRows(metric, y_true, scores)


def _row_counts(indices, n):
    """``(m, n)`` number of times each row appears in each of the ``m`` index rows."""
    m = indices.shape[0]
    offsets = indices + n * np.arange(m)[:, None]
    return np.bincount(offsets.ravel(), minlength=m * n).reshape(m, n)


class MeanOverSplits:
    """A metric averaged over the test sets of cross-validation splits.

    Scores are packed (:meth:`pack`) as ``(n, n_splits, 1 + k)``: channel 0 says whether
    the row is in the split's test set, the rest is its out-of-fold prediction (``k``
    values; ``k = 1`` is a 1-D score). A bootstrap resample of the rows thus resamples every
    test fold, and a row brings its predictions from every repetition of the splits.
    Harrell's C over splits is evaluated for all resamples at once, as
    :func:`concordance_index` is.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_score) -> float`` on one test fold.
    """

    def __init__(self, metric):
        self.metric = metric

    def __call__(self, y_true, packed):
        values = []
        for s in range(packed.shape[1]):
            rows = packed[:, s, 0] > 0
            score = packed[rows, s, 1:]
            try:
                values.append(self.metric(y_true[rows], score[:, 0] if score.shape[1] == 1 else score))
            except ValueError as exc:
                # e.g. "all samples are censored": which of the folds, the message alone does not say.
                raise ValueError(f"test fold of cross-validation split {s}: {exc}") from exc
        return float(np.mean(values))

    @staticmethod
    def pack(tests, predictions, n):
        """Pack each split's test rows and out-of-fold predictions for the metric.

        Parameters
        ----------
        tests : list of ndarray of int
            The test rows of each split.
        predictions : list of ndarray
            Each split's predictions for its test rows, in their order.
        n : int
            Number of samples.

        Returns
        -------
        ndarray, shape (n, n_splits, 1 + k)
        """
        width = int(np.prod(predictions[0].shape[1:], dtype=int))
        packed = np.zeros((n, len(tests), 1 + width))
        for s, (test, pred) in enumerate(zip(tests, predictions)):
            packed[test, s, 0] = 1.0
            packed[test, s, 1:] = np.asarray(pred).reshape(len(test), width)
        return packed


class _MetricOnRows:
    """``(m, k)`` values of the metric for each of ``m`` index rows and ``k`` scores."""

    def __init__(self, metric, y_true, scores):
        self.metric, self.y_true, self.scores = metric, y_true, scores

    def __call__(self, indices):
        values = np.full((len(indices), len(self.scores)), np.nan)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for r, rows in enumerate(indices):
                y = self.y_true[rows]
                for k, score in enumerate(self.scores):
                    values[r, k] = self._value(y, score[rows])
        return values

    def _value(self, y, score):
        try:
            return float(self.metric(y, score))
        except (ValueError, ZeroDivisionError):
            return np.nan


class _HarrellOnRows:
    """Harrell's C on index rows, all at once, through row counts."""

    def __init__(self, y_true, scores):
        self.y_true = y_true
        self.scores = [np.asarray(s, dtype=float) for s in scores]

    def __call__(self, indices):
        return harrell_on_counts(self.y_true, self.scores, _row_counts(indices, len(self.y_true)))


class _BrierOnRows:
    """:class:`IntegratedBrierScore` on index rows, all at once: the mean of the row terms."""

    def __init__(self, metric, y_true, scores):
        self.metric, self.time = metric, check_survival(y_true, "y_true")[1]
        self.terms = np.column_stack([metric._row_terms(y_true, score) for score in scores])

    def __call__(self, indices):
        values = _row_counts(indices, len(self.time)) @ self.terms / indices.shape[1]
        covered = np.array([self.metric._covers(self.time[rows]) for rows in indices])
        values[~covered] = np.nan
        return values


class _HarrellOverSplitsOnRows:
    """:class:`MeanOverSplits` of Harrell's C on index rows, all at once, through row counts."""

    def __init__(self, y_true, scores):
        self.y_true, self.scores = y_true, scores

    def __call__(self, indices):
        counts = _row_counts(indices, len(self.y_true))
        n_splits = self.scores[0].shape[1]
        values = np.zeros((len(indices), len(self.scores)))
        for s in range(n_splits):
            # Scores with the same test rows share one evaluation.
            groups = {}
            for k, score in enumerate(self.scores):
                groups.setdefault((score[:, s, 0] > 0).tobytes(), []).append(k)
            for ks in groups.values():
                rows = np.flatnonzero(self.scores[ks[0]][:, s, 0] > 0)
                risks = [self.scores[k][rows, s, 1] for k in ks]
                values[:, ks] += harrell_on_counts(self.y_true[rows], risks, counts[:, rows])
        return values / n_splits


class _StatisticOnIndices:
    """The vectorized ``statistic(indices, axis=-1)`` scipy.stats.bootstrap calls.

    scipy calls it on ``arange(n)`` (the full sample, for the basic and BCa intervals) and
    on batches of leave-one-out index rows (the BCa jackknife).
    """

    def __init__(self, metric, y_true, scores, reduce, n_jobs):
        self.on_rows = _on_rows(metric, y_true, scores)
        self.reduce, self.n_jobs = reduce, n_jobs

    def __call__(self, indices, axis=-1):
        rows = np.atleast_2d(indices)
        chunks = _chunks(len(rows), rows.shape[1], self.n_jobs)
        parts = Parallel(n_jobs=self.n_jobs)(delayed(self.on_rows)(rows[c]) for c in chunks)
        values = self.reduce(np.concatenate(parts))
        if np.ndim(indices) == 1:
            return values[0]
        # Index rows come only from the BCa jackknife: scipy would turn one undefined
        # leave-one-out value into a (nan, nan) interval.
        undefined = ~np.isfinite(values)
        if undefined.any():
            n = rows.shape[1] + 1
            left_out = n * (n - 1) // 2 - rows[undefined].sum(axis=1)
            raise ValueError(
                f"method='bca' needs the metric on every leave-one-out sample (its jackknife acceleration), but "
                f"it is undefined without row(s) {left_out[:10].tolist()} (e.g. the only event, or the only "
                "sample of a class): use method='percentile' or 'basic'."
            )
        return values


def _first(values):
    return values[:, 0]


def _difference(values):
    return values[:, 0] - values[:, 1]


def _defined(values, n_resamples, confidence_level, alternative):
    """The finite values, after warning or raising about the undefined ones."""
    defined = values[np.isfinite(values)]
    n_skipped = n_resamples - len(defined)
    if not len(defined):
        raise ValueError(
            f"metric is undefined on all {n_resamples} bootstrap resamples (e.g. no event or a "
            "single class in each); use stratify= or more samples."
        )
    minimum = min_resamples(confidence_level, alternative)
    if len(defined) < minimum:
        raise ValueError(
            f"metric is defined on only {len(defined)} of {n_resamples} bootstrap resamples (e.g. no event or a "
            f"single class in the others), too few for a {_level(confidence_level, alternative)} interval "
            f"(at least {minimum}); use stratify= or more resamples."
        )
    if n_skipped > MAX_SKIPPED_FRACTION * n_resamples:
        warnings.warn(
            f"{n_skipped} of {n_resamples} bootstrap resamples were skipped because the metric is "
            "undefined on them (e.g. no event or a single class); the interval describes the "
            "other resamples only. Consider stratify=.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    return defined, n_skipped


def _interval(statistic, resamples, n_samples, confidence_level, method, alternative):
    """``(low, high, std)`` from scipy.stats.bootstrap applied to our bootstrap distribution."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # scipy's warning about a degenerate distribution becomes the error below.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(n_samples),),
            statistic,
            n_resamples=0,
            bootstrap_result=_Distribution(resamples),
            vectorized=True,
            confidence_level=confidence_level,
            alternative=alternative,
            method=_METHODS[method],
            batch=max(1, _MAX_INDEX_ENTRIES // n_samples),
            rng=0,
        )
    interval = result.confidence_interval
    if np.isnan(interval.low) or np.isnan(interval.high):
        # Only BCa fails so: a degenerate distribution makes its acceleration 0 / 0.
        raise ValueError(
            f"the BCa interval is undefined here: the bootstrap distribution is degenerate (the metric takes "
            f"{len(np.unique(resamples))} distinct value(s) on the resamples, or the estimate lies outside them); "
            "use method='percentile' or 'basic'."
        )
    return float(interval.low), float(interval.high), float(result.standard_error)


def _pvalue(differences, alternative):
    """Percentile-interval inversion p-value, see :func:`paired_bootstrap_test`."""
    n = len(differences)
    greater = (1 + np.count_nonzero(differences <= 0)) / (n + 1)
    less = (1 + np.count_nonzero(differences >= 0)) / (n + 1)
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return min(1.0, 2 * min(greater, less))
