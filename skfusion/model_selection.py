"""Compare fusion strategies on the same splits: Table 1 of Zhang et al. (2026) in one call.

:func:`compare_fusion` fits every model on the same cross-validation splits (and/or on the
whole training set, scored on held-out or external cohorts), then reports per cohort the
metric with its bootstrap confidence interval and paired bootstrap p-values against the
unimodal reference and against concatenation. :func:`fusion_models` builds the models of
the table; :func:`format_comparison` prints it as in the paper, and
:func:`skfusion.plot.plot_comparison` draws it as a forest plot.
"""

import numbers
from functools import partial

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.parallel import Parallel, delayed

from ._data import _rows, infer_layout, take_rows
from .fusion import (
    CoAttentionClassifier,
    CoAttentionSurvival,
    ConcatClassifier,
    ConcatSurvival,
    ContrastiveClassifier,
    ContrastiveSurvival,
    CrossAttentionClassifier,
    CrossAttentionSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    UnimodalClassifier,
    UnimodalSurvival,
)
from .metrics import BootstrapDraws, MeanOverSplits, auroc, concordance_index
from .metrics._bootstrap import check_bootstrap_parameters

__all__ = ["compare_fusion", "format_comparison", "fusion_models"]

_FAMILIES = {
    "survival": (
        UnimodalSurvival,
        ConcatSurvival,
        LateFusionSurvival,
        ContrastiveSurvival,
        CrossAttentionSurvival,
        CoAttentionSurvival,
    ),
    "classification": (
        UnimodalClassifier,
        ConcatClassifier,
        LateFusionClassifier,
        ContrastiveClassifier,
        CrossAttentionClassifier,
        CoAttentionClassifier,
    ),
}

CV_COHORT = "cross-validation"


def _task(y):
    names = getattr(np.asarray(y).dtype, "names", None)
    return "survival" if names is not None and len(names) == 2 else "classification"


def fusion_models(X, task="survival", **params):
    """The models of Table 1 of Zhang et al. (2026) for the modalities of ``X``.

    One unimodal model per modality, then concatenation (the cross-modal reference), late
    fusion, 2-step contrastive alignment, bidirectional cross-attention (when ``X`` has
    exactly two modalities) and co-attention guided by each modality.

    Parameters
    ----------
    X : pandas.DataFrame or array-like
        Data whose modalities (``name__i`` blocks, token columns, or an array split by
        ``modality_dims``) name the models.
    task : {"survival", "classification"}, default="survival"
        Build the ``*Survival`` or the ``*Classifier`` twins.
    **params
        Settings given to every model that has them, e.g. ``max_epochs=50, random_state=0``
        (all models) or ``attention_dim=16`` (the attention models).

    Returns
    -------
    models : dict of str to estimator
        In table order: ``"<m> only"`` for each modality ``m``, ``"concatenation"``,
        ``"late fusion"``, ``"contrastive"``, ``"cross-attention"``,
        ``"co-attention (<m> guide)"`` for each ``m``.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.model_selection import fusion_models
    >>> X, y = make_multimodal_survival(n_samples=50, random_state=0)
    >>> list(fusion_models(X))
    ['img only', 'ehr only', 'concatenation', 'late fusion', 'contrastive', 'cross-attention', 'co-attention (img guide)', 'co-attention (ehr guide)']
    """
    if task not in _FAMILIES:
        raise ValueError(f"task must be 'survival' or 'classification', got {task!r}.")
    unimodal, concat, late, contrastive, cross, co = _FAMILIES[task]
    frame = X if isinstance(X, pd.DataFrame) else np.asarray(X)
    names = [spec.name for spec in infer_layout(frame, None, params.get("modality_dims"))]
    if len(names) < 2:
        raise ValueError(f"fusion needs at least two modalities; X has {names}.")
    models = {f"{name} only": unimodal(modality=name) for name in names}
    models.update(
        {"concatenation": concat(), "late fusion": late(), "contrastive": contrastive()}
    )
    if len(names) == 2:
        models["cross-attention"] = cross()
    models.update({f"co-attention ({name} guide)": co(guide=name) for name in names})
    accepted = set()
    for model in models.values():
        own = {key: value for key, value in params.items() if key in model.get_params(deep=False)}
        model.set_params(**own)
        accepted.update(own)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"no model of the table has a parameter {unknown[0]!r}.")
    return models


def compare_fusion(
    X,
    y,
    *,
    models=None,
    cv=5,
    groups=None,
    cohorts=None,
    reference=None,
    fusion_reference="concatenation",
    metric=None,
    response_method=None,
    greater_is_better=True,
    n_resamples=1000,
    confidence_level=0.95,
    method="percentile",
    n_jobs=None,
    random_state=None,
    verbose=0,
):
    """Fit fusion strategies and unimodal baselines on the same splits and compare them.

    The "mean (95% CI)" table of Zhang et al. (2026, Table 1) with its "p < 0.05 versus image-only"
    and "versus concatenation" markers, for any set of estimators.

    - **Cross-validation** (``cv``): every model is fitted on the same training folds and
      scored on each test fold; the cohort's estimate is the mean of the per-fold metric
      (as :func:`sklearn.model_selection.cross_val_score`), so that risk scores from
      different fold models are never ranked against each other.
    - **Cohorts** (``cohorts``): every model is also fitted once on all of ``(X, y)`` and
      scored on each given cohort, e.g. a held-out internal test set and external sites.

    Intervals and p-values come from one patient-level bootstrap per cohort: the rows are
    resampled ``n_resamples`` times, and every model is scored on the same resamples
    (:class:`~skfusion.metrics.BootstrapDraws`), so the paired tests keep the correlation
    between models. For cross-validation a resampled patient brings its out-of-fold
    predictions of every repetition of the splits.

    Parameters
    ----------
    X : pandas.DataFrame or array-like, shape (n_samples, n_features)
        The training (internal) cohort, in skfusion's data contract.
    y : array-like
        Survival: a structured array (:func:`sksurv.util.Surv.from_arrays`). Classification:
        labels or a label-indicator matrix.
    models : dict of str to estimator, default=None
        The models to compare, in table order; default :func:`fusion_models` of ``X`` with
        ``random_state``. Any scikit-learn estimator or ``Pipeline`` works.
    cv : int, cross-validation splitter, iterable or None, default=5
        An int (at least 2) is that many folds, shuffled with ``random_state`` and
        stratified by event (survival) or class, and, with ``groups``, keeping each group
        in one fold (``StratifiedGroupKFold``; ``GroupKFold`` for a label-indicator
        matrix); a splitter may repeat the folds (e.g. ``RepeatedStratifiedKFold``; it is
        given the event indicator or the labels as ``y``, and ``groups``); an iterable
        gives ``(train, test)`` pairs of row positions. Every split needs training and test
        rows, within ``X``, none in both. ``None`` skips cross-validation (then ``cohorts``
        is required).
    groups : array-like of shape (n_samples,), default=None
        Group labels of the rows of ``X``, e.g. the patient of each image: required by a
        group-wise splitter (``GroupKFold``, ``LeaveOneGroupOut``, ...). With ``groups``,
        every split must keep each group on one side (a splitter that ignores them, such
        as ``KFold``, is refused where it puts a group on both).
    cohorts : dict of str to (X, y), default=None
        Evaluation cohorts for the models fitted on all of ``(X, y)``.
    reference : str, default=None
        The unimodal reference of the p-values (Zhang et al., 2026: image only); default the first
        model.
    fusion_reference : str or None, default="concatenation"
        The cross-modal reference (the "+" marker); ``None`` skips that test.
    metric : callable, default=None
        ``metric(y_true, y_score) -> float`` on the predictions of ``response_method``;
        default Harrell's C-index (:func:`~skfusion.metrics.concordance_index`) on
        ``predict`` for survival, macro AUROC (:func:`~skfusion.metrics.auroc`) on
        ``predict_proba`` for classification.
    response_method : {"predict", "predict_proba", "decision_function"}, default=None
        Which method's output the metric scores; default as ``metric``.
    greater_is_better : bool, default=True
        Whether the best model has the highest (or the lowest) estimate.
    n_resamples, confidence_level, method
        The bootstrap: see :func:`~skfusion.metrics.bootstrap_ci`.
    n_jobs : int, default=None
        Model fits (one per model and split) and bootstrap chunks run in parallel through
        joblib; inside ``with joblib.parallel_backend("dask"):`` they run on a Dask cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds (when ``cv`` is an int), the default models and the bootstrap.
    verbose : int, default=0
        joblib's progress messages for the fits.

    Returns
    -------
    table : pandas.DataFrame
        One row per cohort and model (cohorts in order: ``"cross-validation"`` first, then
        ``cohorts``), with columns ``cohort``, ``model``, ``estimate``, ``low``, ``high``,
        ``p_reference`` and ``p_fusion_reference`` (two-sided paired bootstrap p-values,
        NaN on the reference's own row) and ``best``. ``table.attrs`` records the metric,
        the references and the confidence level. :func:`format_comparison` gives the
        paper's layout and :func:`skfusion.plot.plot_comparison` a forest plot.

    Raises
    ------
    ValueError
        If neither ``cv`` nor ``cohorts`` is given, ``cv`` is none of the kinds above or
        gives a split with rows outside ``X``, without training or test rows, or with rows
        (or, with ``groups``, groups) on both sides, a group-wise splitter is given without
        ``groups``, a reference is not a model, a cohort is not an ``(X, y)`` pair,
        ``response_method`` or a bootstrap parameter is out of range. An error of a model's
        fit or of the metric on one test fold names the model and the split.

    See Also
    --------
    fusion_models : The default models.
    skfusion.metrics.paired_bootstrap_test : One paired comparison.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, Table 1.

    Examples
    --------
    >>> from skfusion import ConcatSurvival, UnimodalSurvival
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.model_selection import compare_fusion
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> models = {
    ...     "img only": UnimodalSurvival(modality="img", random_state=0),
    ...     "concatenation": ConcatSurvival(random_state=0),
    ... }
    >>> table = compare_fusion(X, y, models=models, cv=3, n_resamples=200, random_state=0)
    >>> table[["cohort", "model", "best"]]
                 cohort          model   best
    0  cross-validation       img only  False
    1  cross-validation  concatenation   True
    """
    task = _task(y)
    y = np.asarray(y)
    if models is None:
        models = fusion_models(X, task, random_state=random_state)
    names = list(models)
    reference = names[0] if reference is None else reference
    for role, name in (("reference", reference), ("fusion_reference", fusion_reference)):
        if name is not None and name not in models:
            raise ValueError(f"{role}={name!r} is not one of the models {names}.")
    metric, response_method = _default_scoring(task, y, metric, response_method)
    check_bootstrap_parameters(n_resamples, confidence_level, method)
    splits = _splits(cv, X, y, groups, task, random_state)
    cohorts = _check_cohorts(cohorts)
    if not splits and not cohorts:
        raise ValueError("nothing to evaluate: pass cv (folds) and/or cohorts (held-out data).")

    jobs = [
        (name, f"cross-validation split {k}", train, [take_rows(X, test)])
        for name in names
        for k, (train, test) in enumerate(splits)
    ]
    if cohorts:
        every_row = np.arange(len(y))
        jobs += [(name, "all of (X, y)", every_row, [cx for cx, _ in cohorts.values()]) for name in names]
    outputs = Parallel(n_jobs=n_jobs, verbose=verbose)(
        delayed(_fit_predict)(models[name], X, y, train, evaluations, response_method, f"model {name!r}, {where}")
        for name, where, train, evaluations in jobs
    )

    evaluations = []
    if splits:
        tests = [test for _, test in splits]
        per_split = iter(outputs[: len(names) * len(splits)])
        scores = {name: MeanOverSplits.pack(tests, [next(per_split)[0] for _ in splits], len(y)) for name in names}
        evaluations.append((CV_COHORT, MeanOverSplits(metric), y, scores))
    if cohorts:
        full_fits = outputs[len(names) * len(splits) :]
        for k, (cohort, (_, cy)) in enumerate(cohorts.items()):
            evaluations.append((cohort, metric, cy, {name: fit[k] for name, fit in zip(names, full_fits)}))

    rows = []
    for cohort, cohort_metric, cohort_y, scores in evaluations:
        draws = BootstrapDraws(
            cohort_metric, cohort_y, scores, n_resamples=n_resamples, random_state=random_state, n_jobs=n_jobs
        )
        rows += _cohort_rows(cohort, draws, names, reference, fusion_reference, confidence_level, method)
    table = pd.DataFrame(rows)
    best = table.groupby("cohort", sort=False)["estimate"].transform("max" if greater_is_better else "min")
    table["best"] = table["estimate"] == best
    table.attrs.update(
        metric=_metric_name(metric),
        reference=reference,
        fusion_reference=fusion_reference,
        confidence_level=confidence_level,
        greater_is_better=greater_is_better,
    )
    return table


def format_comparison(table, *, alpha=0.05, digits=3):
    """The Table 1 layout of Zhang et al. (2026) for a :func:`compare_fusion` result.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`compare_fusion`.
    alpha : float, default=0.05
        Significance level of the markers: ``*`` p < alpha versus the unimodal reference,
        ``+`` versus the fusion reference (concatenation).
    digits : int, default=3

    Returns
    -------
    formatted : pandas.DataFrame
        One row per model, one column per cohort, cells such as ``"0.738*+ (0.724–0.752)"``;
        the best model of each cohort is in Markdown bold (``**...**``).

    Examples
    --------
    >>> import pandas as pd
    >>> from skfusion.model_selection import format_comparison
    >>> table = pd.DataFrame({
    ...     "cohort": ["internal", "internal"], "model": ["img only", "contrastive"],
    ...     "estimate": [0.837, 0.862], "low": [0.828, 0.856], "high": [0.847, 0.868],
    ...     "p_reference": [float("nan"), 0.01], "p_fusion_reference": [0.2, 0.03],
    ...     "best": [False, True],
    ... })
    >>> print(format_comparison(table).to_string())  # doctest: +NORMALIZE_WHITESPACE
    cohort                        internal
    model
    img only           0.837 (0.828–0.847)
    contrastive  **0.862*+ (0.856–0.868)**
    """
    cells = []
    for row in table.itertuples(index=False):
        marks = ("*" if row.p_reference < alpha else "") + ("+" if row.p_fusion_reference < alpha else "")
        cell = f"{row.estimate:.{digits}f}{marks} ({row.low:.{digits}f}–{row.high:.{digits}f})"
        cells.append(f"**{cell}**" if row.best else cell)
    wide = table.assign(cell=cells).pivot(index="model", columns="cohort", values="cell")
    return wide.loc[table["model"].unique(), table["cohort"].unique()]


def _fit_predict(model, X, y, train, evaluations, response_method, where):
    """Fit a clone of ``model`` on rows ``train``; its predictions on each frame of ``evaluations``.

    A ValueError (e.g. "all samples are censored" in a training fold) is raised again with
    ``where``, the model and split: among dozens of fits the message alone names neither.
    """
    try:
        fitted = clone(model).fit(take_rows(X, train), y[train])
        return [np.asarray(getattr(fitted, response_method)(data), dtype=float) for data in evaluations]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _default_scoring(task, y, metric, response_method):
    if response_method not in (None, "predict", "predict_proba", "decision_function"):
        raise ValueError(
            "response_method must be 'predict', 'predict_proba' or 'decision_function', "
            f"got {response_method!r}."
        )
    if metric is None:
        if task == "survival":
            metric, default_method = concordance_index, "predict"
        else:
            labels = None if y.ndim == 2 else np.unique(y)
            metric, default_method = partial(auroc, labels=labels), "predict_proba"
        response_method = response_method or default_method
    elif response_method is None:
        response_method = "predict" if task == "survival" else "predict_proba"
    return metric, response_method


def _splits(cv, X, y, groups, task, random_state):
    """The ``(train, test)`` row positions of ``cv``, each split checked (:func:`_check_split`)."""
    if cv is None:
        return []
    if groups is not None:
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != len(y):
            raise ValueError(f"groups must hold one label per row of X ({len(y)} rows); got shape {groups.shape}.")
    strata = y[y.dtype.names[0]] if task == "survival" else y
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool) and cv >= 2:
        if groups is None:
            kind = KFold if strata.ndim == 2 else StratifiedKFold
        else:
            kind = GroupKFold if strata.ndim == 2 else StratifiedGroupKFold
        cv = kind(n_splits=int(cv), shuffle=True, random_state=random_state)
    elif isinstance(cv, (str, bytes, dict)) or not (hasattr(cv, "split") or hasattr(cv, "__iter__")):
        raise ValueError(
            "cv must be an int of at least 2 (the number of folds), a cross-validation splitter (e.g. "
            f"StratifiedKFold(5)), an iterable of (train, test) row positions, or None; got {cv!r}."
        )
    if hasattr(cv, "split"):
        if groups is None and _needs_groups(cv):
            raise ValueError(
                f"cv={cv!r} splits by groups: pass groups= to compare_fusion, one group label per row of X "
                "(e.g. the patient of each row)."
            )
        cv = cv.split(X, strata) if groups is None else cv.split(X, strata, groups)
    return [_check_split(k, split, len(y), groups) for k, split in enumerate(cv)]


def _needs_groups(cv):
    """Whether the splitter asks for ``groups`` (scikit-learn's group-wise splitters do, through metadata routing)."""
    routing = getattr(cv, "get_metadata_routing", None)
    return routing is not None and routing().split.requests.get("groups") is True


def _check_split(k, split, n_rows, groups):
    """Split ``k`` as a pair of integer arrays of row positions, or a ValueError saying what is wrong with it."""
    if isinstance(split, (str, bytes)) or not hasattr(split, "__len__") or len(split) != 2:
        raise ValueError(f"cv split {k} must be a (train, test) pair of row positions; got {split!r:.80}.")
    parts = []
    for part, indices in zip(("training", "test"), split):
        indices = np.asarray(indices)
        if indices.ndim != 1 or not len(indices):
            raise ValueError(f"cv split {k} has no {part} rows (a 1-D array of row positions is needed).")
        if indices.dtype.kind not in "iu":
            raise ValueError(
                f"cv split {k}: its {part} rows must be integer row positions; got dtype {indices.dtype}."
            )
        outside = (indices < 0) | (indices >= n_rows)
        if outside.any():
            raise ValueError(
                f"cv split {k}: {part} row positions {np.unique(indices[outside])[:8].tolist()} are outside X, "
                f"which has rows 0 to {n_rows - 1}."
            )
        parts.append(indices)
    train, test = parts
    in_train, in_both = np.zeros(n_rows, dtype=bool), np.zeros(n_rows, dtype=bool)
    in_train[train] = True
    in_both[test] = in_train[test]
    if in_both.any():
        raise ValueError(
            f"cv split {k}: rows {_rows(in_both)} are both training and test rows; a test fold must be held out."
        )
    if groups is not None:
        shared = np.intersect1d(groups[train], groups[test])
        if len(shared):
            raise ValueError(
                f"cv split {k}: groups {shared[:8].tolist()} have rows in both the training and the test rows; "
                "use a group-wise splitter (e.g. StratifiedGroupKFold) or an int cv, which splits by groups."
            )
    return train, test


def _check_cohorts(cohorts):
    if cohorts is None:
        return {}
    if not isinstance(cohorts, dict):
        raise ValueError(f"cohorts must be a dict of name to (X, y), got {type(cohorts).__name__}.")
    checked = {}
    for name, pair in cohorts.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"cohort {name!r} must be an (X, y) tuple.")
        cohort_X, cohort_y = pair
        if len(cohort_X) != len(cohort_y):
            raise ValueError(f"cohort {name!r}: X has {len(cohort_X)} rows but y has {len(cohort_y)}.")
        checked[name] = (cohort_X, np.asarray(cohort_y))
    return checked


def _cohort_rows(cohort, draws, names, reference, fusion_reference, confidence_level, method):
    rows = []
    for name in names:
        result = draws.interval(name, confidence_level=confidence_level, method=method)
        rows.append(
            {
                "cohort": cohort,
                "model": name,
                "estimate": result.estimate,
                "low": result.low,
                "high": result.high,
                "p_reference": _pvalue(draws, name, reference, confidence_level, method),
                "p_fusion_reference": _pvalue(draws, name, fusion_reference, confidence_level, method),
            }
        )
    return rows


def _pvalue(draws, name, reference, confidence_level, method):
    if reference is None or name == reference:
        return np.nan
    return draws.paired(name, reference, confidence_level=confidence_level, method=method).pvalue


def _metric_name(metric):
    return getattr(metric.func if isinstance(metric, partial) else metric, "__name__", type(metric).__name__)
