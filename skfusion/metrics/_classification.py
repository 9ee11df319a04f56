"""Classification metrics of the papers: AUROC/AUPRC, calibration error, length-of-stay scores.

AUROC and AUPRC come from scikit-learn, Cohen's kappa too; what is added is reading any
``predict_proba`` layout (binary, multi-class, multi-label) and returning NaN rather than a
made-up number where a metric is undefined, so that :func:`bootstrap_ci` skips the resample.
"""

import numbers
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, cohen_kappa_score, mean_absolute_error, roc_auc_score
from sklearn.utils.validation import check_scalar

from ._checks import as_rows, check_finite, check_lengths, check_numeric

_AVERAGES = ("macro", "micro", "weighted")


def auroc(y_true, y_score, *, average="macro", labels=None, pos_label=None):
    """Area under the ROC curve for binary, multi-class and multi-label predictions.

    :func:`sklearn.metrics.roc_auc_score` on one-vs-rest columns, so that ``y_score`` can be
    any ``predict_proba`` output: a 1-D score, an ``(n, 2)`` binary probability matrix
    (column 1 is the positive class), an ``(n, K)`` multi-class matrix (one-vs-rest) or an
    ``(n, L)`` multi-label matrix with a label-indicator ``y_true``. The macro average over
    labels is the main metric of [1]_ and [2]_.

    Parameters
    ----------
    y_true : array-like, shape (n_samples,) or (n_samples, n_labels)
        Class labels, or a 0/1 label-indicator matrix.
    y_score : array-like, shape (n_samples,) or (n_samples, n_columns)
        Scores or probabilities.
    average : {"macro", "micro", "weighted"}, default="macro"
        Average over labels (ignored for a binary problem).
    labels : array-like, default=None
        Classes in the column order of ``y_score`` (e.g. ``estimator.classes_``); default
        the sorted classes of ``y_true``. Pass it when bootstrapping so that a resample
        missing a class keeps the columns aligned.
    pos_label : int, float, bool or str, default=None
        Positive class for a 1-D ``y_score``; needed unless ``y_true`` is in {0, 1} or {-1, 1}.

    Returns
    -------
    auroc : float
        NaN (with an ``UndefinedMetricWarning``) if a label has a single class.

    See Also
    --------
    sklearn.metrics.roc_auc_score : The wrapped function.
    auprc : Area under the precision-recall curve.

    References
    ----------
    .. [1] Anonymous authors (under review). Modular multimodal alignment using time-series
           EHR data for enhancing medical image classification (MedCAM). Paper under
           double-blind review, section 4 (macro-averaged AUROC and AUPRC).
    .. [2] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 4.

    Examples
    --------
    >>> from skfusion.metrics import auroc
    >>> auroc([0, 0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    0.75
    >>> auroc([[1, 0], [0, 1], [1, 1], [0, 0]], [[0.8, 0.3], [0.2, 0.9], [0.7, 0.6], [0.1, 0.4]])
    1.0
    """
    indicator, score = _one_vs_rest(y_true, y_score, labels, pos_label, average)
    if indicator.shape[1] == 1:
        return float(roc_auc_score(indicator[:, 0], score[:, 0]))
    return float(roc_auc_score(indicator, score, average=average))


def auprc(y_true, y_score, *, average="macro", labels=None, pos_label=None):
    """Area under the precision-recall curve (average precision), any ``predict_proba`` layout.

    :func:`sklearn.metrics.average_precision_score` (the step-wise sum
    ``sum_n (R_n - R_{n-1}) P_n``, not the trapezoidal area) on one-vs-rest columns; the
    inputs are read as in :func:`auroc`.

    Parameters
    ----------
    y_true : array-like, shape (n_samples,) or (n_samples, n_labels)
    y_score : array-like, shape (n_samples,) or (n_samples, n_columns)
    average : {"macro", "micro", "weighted"}, default="macro"
    labels : array-like, default=None
    pos_label : int, float, bool or str, default=None
        See :func:`auroc`.

    Returns
    -------
    auprc : float
        NaN (with an ``UndefinedMetricWarning``) if a label has no positive sample, where
        scikit-learn would return 0.

    See Also
    --------
    sklearn.metrics.average_precision_score : The wrapped function.
    auroc : Area under the ROC curve.

    Examples
    --------
    >>> from skfusion.metrics import auprc
    >>> round(auprc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 3)
    0.833
    """
    indicator, score = _one_vs_rest(y_true, y_score, labels, pos_label, average)
    has_positive = indicator.any(axis=0)
    if not (has_positive.any() if average == "micro" else has_positive.all()):
        warnings.warn(
            "AUPRC is undefined: a label has no positive sample in y_true.", UndefinedMetricWarning, stacklevel=2
        )
        return np.nan
    if indicator.shape[1] == 1:
        return float(average_precision_score(indicator[:, 0], score[:, 0]))
    return float(average_precision_score(indicator, score, average=average))


def expected_calibration_error(
    y_true, y_prob, *, n_bins=10, strategy="uniform", labels=None, pos_label=None, average="macro"
):
    r"""Expected calibration error (ECE) of predicted probabilities.

    .. math:: \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{n} \left| \mathrm{acc}(B_b)
              - \mathrm{conf}(B_b) \right|

    over bins :math:`B_b` of the confidence ([1]_ eq. 3, [2]_), the calibration score of
    Appendix F of [3]_. What ``acc`` and ``conf`` are depends on the problem:

    - binary (1-D ``y_prob``, or ``(n, 2)``): ``conf`` is the mean predicted probability of
      the positive class in the bin, ``acc`` the fraction of positives (the points of a
      reliability diagram, as in :func:`sklearn.calibration.calibration_curve`, whose bins
      are used);
    - multi-label (2-D ``y_true`` indicator): the binary ECE of each label, averaged;
    - multi-class (``(n, K)`` with ``K > 2``): top-label ECE of [1]_: ``conf`` is the
      largest probability, ``acc`` the fraction of samples whose most probable class is right.

    Bins are right-closed, :math:`((b-1)/B, b/B]` with 0 in the first, for ``"uniform"``;
    quantiles of the confidence for ``"quantile"``. Empty bins contribute nothing.

    Parameters
    ----------
    y_true : array-like, shape (n_samples,) or (n_samples, n_labels)
        Class labels, or a 0/1 label-indicator matrix.
    y_prob : array-like, shape (n_samples,) or (n_samples, n_columns)
        Probabilities in [0, 1].
    n_bins : int, default=10
    strategy : {"uniform", "quantile"}, default="uniform"
    labels : array-like, default=None
        Classes in the column order of a 2-D ``y_prob`` (default: sorted classes of
        ``y_true``); pass it when bootstrapping.
    pos_label : int, float, bool or str, default=None
        Positive class for a 1-D ``y_prob``; needed unless ``y_true`` is in {0, 1} or {-1, 1}.
    average : {"macro"} or None, default="macro"
        Multi-label only: mean over labels, or None for the ECE of each label.

    Returns
    -------
    ece : float, or ndarray of shape (n_labels,) for a multi-label ``average=None``

    Raises
    ------
    ValueError
        If ``y_prob`` is outside [0, 1] or holds NaN, the lengths differ, or a parameter is
        invalid.

    See Also
    --------
    sklearn.calibration.calibration_curve : The per-bin points of the binary case.

    References
    ----------
    .. [1] Guo, C., Pleiss, G., Sun, Y., Weinberger, K. Q. (2017). "On calibration of modern
           neural networks". ICML.
    .. [2] Naeini, M. P., Cooper, G., Hauskrecht, M. (2015). "Obtaining well calibrated
           probabilities using Bayesian binning". AAAI.
    .. [3] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, appendix F, Table 10.

    Examples
    --------
    >>> from skfusion.metrics import expected_calibration_error
    >>> round(expected_calibration_error([0, 0, 1, 1], [0.1, 0.3, 0.7, 0.8], n_bins=2), 3)
    0.225
    """
    check_scalar(n_bins, "n_bins", numbers.Integral, min_val=1)
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}.")
    if average not in ("macro", None):
        raise ValueError(f"average must be 'macro' or None, got {average!r}.")
    y_true, y_prob = _check_pair(y_true, y_prob, "y_prob")
    if np.any((y_prob < 0) | (y_prob > 1)):
        raise ValueError("y_prob must hold probabilities in [0, 1].")
    if y_true.ndim == 1 and y_prob.ndim == 2 and y_prob.shape[1] > 2:
        classes = _classes(y_true, labels, y_prob.shape[1], "y_prob")
        correct = classes[y_prob.argmax(axis=1)] == y_true
        return _binned_gap(correct, y_prob.max(axis=1), n_bins, strategy)
    indicator, prob = _one_vs_rest(y_true, y_prob, labels, pos_label, "macro")
    per_label = np.array([_binned_gap(indicator[:, j], prob[:, j], n_bins, strategy) for j in range(prob.shape[1])])
    if average is None and y_true.ndim == 2:
        return per_label
    return float(per_label.mean())


def _binned_gap(outcome, confidence, n_bins, strategy):
    """``sum_b |sum_{i in b} outcome_i - sum_{i in b} confidence_i| / n``, which is the ECE."""
    if strategy == "quantile":
        edges = np.percentile(confidence, np.linspace(0, 100, n_bins + 1))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted on the inner edges, as calibration_curve does: right-closed bins.
    bins = np.searchsorted(edges[1:-1], confidence)
    gap = np.bincount(bins, outcome.astype(float), n_bins) - np.bincount(bins, confidence, n_bins)
    return float(np.abs(gap).sum() / len(confidence))


def linear_weighted_kappa(y_true, y_pred, *, labels=None, sample_weight=None):
    """Cohen's kappa with linear weights, for ordered classes such as length-of-stay buckets.

    :func:`sklearn.metrics.cohen_kappa_score` with ``weights="linear"``: disagreements
    cost ``|i - j|``, the distance between the positions of the two classes in ``labels``.
    The length-of-stay score of [1]_ (10 buckets) following [2]_. A 2-D ``y_pred`` is read
    as class probabilities and replaced by its most probable class.

    Parameters
    ----------
    y_true : array-like, shape (n_samples,)
        True buckets.
    y_pred : array-like, shape (n_samples,) or (n_samples, n_buckets)
        Predicted buckets, or their probabilities.
    labels : array-like, default=None
        All buckets, in order (default ``arange(n_buckets)`` for a 2-D ``y_pred``, else the
        buckets present in ``y_true`` or ``y_pred``). Pass it when bootstrapping: the weights
        are positions in ``labels``, so a bucket missing from a resample would otherwise
        shrink the distances across it.
    sample_weight : array-like, shape (n_samples,), default=None

    Returns
    -------
    kappa : float

    See Also
    --------
    sklearn.metrics.cohen_kappa_score : The wrapped function.
    mean_absolute_deviation : The other length-of-stay score.

    References
    ----------
    .. [1] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 4, Table 3.
    .. [2] Harutyunyan, H., Khachatrian, H., Kale, D. C., Ver Steeg, G., Galstyan, A. (2019).
           "Multitask learning and benchmarking with clinical time series data".
           Scientific Data, 6, 96.

    Examples
    --------
    >>> from skfusion.metrics import linear_weighted_kappa
    >>> round(linear_weighted_kappa([0, 1, 2, 3], [0, 2, 2, 3], labels=range(4)), 3)
    0.8
    """
    y_pred = as_rows(y_pred, "y_pred")
    if y_pred.ndim == 2:
        labels = np.arange(y_pred.shape[1]) if labels is None else as_rows(labels, "labels")
        y_pred = labels[y_pred.argmax(axis=1)]
    return float(cohen_kappa_score(y_true, y_pred, labels=labels, weights="linear", sample_weight=sample_weight))


def mean_absolute_deviation(y_true, y_pred, *, bin_values=None):
    """Mean absolute deviation of predicted length of stay, the ``MAD`` of MedMod [1]_.

    ``MAD = mean_i |y_true_i - y_pred_i|`` in the unit of ``y_true`` (hours of remaining
    stay in [1]_ and [2]_). A bucket classifier predicts a bucket, not a duration: pass
    ``bin_values``, the duration that stands for each bucket, and ``y_pred`` (bucket indices,
    or bucket probabilities whose argmax is taken) becomes ``bin_values[bucket]``. The
    benchmark of [2]_, whose evaluation MedMod reuses, takes the mean length of stay of the
    training samples in each bucket.

    MedMod's text expands MAD as "median absolute deviation", but the evaluation code of
    [2]_ it builds on computes the *mean* absolute error (``sklearn.metrics.
    mean_absolute_error``, labelled "mean absolute deviation"), and the magnitudes of its
    Table 3 (about 140 hours) match that; this is what is implemented.

    Parameters
    ----------
    y_true : array-like, shape (n_samples,)
        True length of stay (e.g. remaining hours in the ICU).
    y_pred : array-like, shape (n_samples,) or (n_samples, n_buckets)
        Predicted length of stay; with ``bin_values``, predicted bucket indices or bucket
        probabilities.
    bin_values : array-like, shape (n_buckets,), default=None
        Length of stay standing for each bucket.

    Returns
    -------
    mad : float

    Raises
    ------
    ValueError
        If a predicted bucket is not an integer in ``[0, len(bin_values))``, the lengths
        differ, or an input holds NaN.

    See Also
    --------
    sklearn.metrics.mean_absolute_error : Computes the mean.
    linear_weighted_kappa : The other length-of-stay score.

    References
    ----------
    .. [1] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 4, Table 3.
    .. [2] Harutyunyan, H., Khachatrian, H., Kale, D. C., Ver Steeg, G., Galstyan, A. (2019).
           "Multitask learning and benchmarking with clinical time series data".
           Scientific Data, 6, 96.

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion.metrics import mean_absolute_deviation
    >>> los_train = np.array([10.0, 14.0, 30.0, 40.0, 200.0])
    >>> bucket_train = np.array([0, 0, 1, 1, 2])
    >>> bin_values = [los_train[bucket_train == k].mean() for k in range(3)]
    >>> mean_absolute_deviation([18.0, 44.0, 170.0], [0, 1, 2], bin_values=bin_values)
    15.0
    """
    y_true, y_pred = _check_pair(y_true, y_pred, "y_pred")
    if bin_values is not None:
        y_pred = _bucket_values(y_pred, as_rows(bin_values, "bin_values").astype(float))
    return float(mean_absolute_error(y_true, y_pred))


def _bucket_values(y_pred, bin_values):
    if y_pred.ndim == 2:
        if y_pred.shape[1] != len(bin_values):
            raise ValueError(f"y_pred has {y_pred.shape[1]} columns but bin_values has {len(bin_values)} entries.")
        y_pred = y_pred.argmax(axis=1)
    bad = (y_pred != np.round(y_pred)) | (y_pred < 0) | (y_pred >= len(bin_values))
    if np.any(bad):
        raise ValueError(
            f"y_pred must hold bucket indices in [0, {len(bin_values)}) with bin_values; rows "
            f"{np.flatnonzero(bad)[:10].tolist()} do not."
        )
    return bin_values[y_pred.astype(int)]


def _check_pair(y_true, y_score, score_name):
    y_true, y_score = as_rows(y_true, "y_true"), as_rows(y_score, score_name)
    check_lengths(y_true=y_true, **{score_name: y_score})
    return check_finite(y_true, "y_true"), check_finite(check_numeric(y_score, score_name), score_name).astype(float)


def _one_vs_rest(y_true, y_score, labels, pos_label, average):
    """``(indicator, score)``, both ``(n, n_labels)``, from any supported layout."""
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}.")
    y_true, y_score = _check_pair(y_true, y_score, "y_score")
    if y_true.ndim == 2:
        if y_score.shape != y_true.shape:
            raise ValueError(
                f"y_score has shape {y_score.shape} but the label-indicator y_true has shape {y_true.shape}."
            )
        if not np.isin(y_true, (0, 1)).all():
            raise ValueError("a 2-D y_true must be a label-indicator matrix of 0 and 1.")
        return y_true == 1, y_score
    if y_score.ndim == 1:
        return _positive(y_true, pos_label)[:, None], y_score[:, None]
    classes = _classes(y_true, labels, y_score.shape[1], "y_score")
    if len(classes) == 2:
        return (y_true == classes[1])[:, None], y_score[:, [1]]
    return y_true[:, None] == classes, y_score


def _positive(y_true, pos_label):
    if pos_label is None:
        present = set(np.unique(y_true).tolist())
        if not (present <= {0, 1} or present <= {-1, 1}):
            raise ValueError(f"y_true has labels {sorted(present)}; pass pos_label= to say which one is positive.")
        pos_label = 1
    return y_true == pos_label


def _classes(y_true, labels, n_columns, score_name):
    classes = np.unique(y_true) if labels is None else as_rows(labels, "labels")
    if len(classes) != n_columns:
        raise ValueError(
            f"{score_name} has {n_columns} columns but there are {len(classes)} classes {classes.tolist()}; "
            "pass labels= (the classes in column order, e.g. estimator.classes_)."
        )
    unknown = ~np.isin(y_true, classes)
    if unknown.any():
        raise ValueError(f"y_true has labels not in labels, in rows {np.flatnonzero(unknown)[:10].tolist()}.")
    return classes
