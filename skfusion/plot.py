"""Figures. matplotlib is the optional ``plot`` extra, imported when a figure is drawn."""

import numbers

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_scalar
from sksurv.nonparametric import kaplan_meier_estimator

from ._volumes import apply_window, check_image_shape, resolve_window
from .metrics._calibration import at_horizon_checked, kaplan_meier_at
from .metrics._checks import as_rows, check_finite, check_lengths, check_survival

__all__ = [
    "plot_calibration",
    "plot_comparison",
    "plot_forest",
    "plot_km_by_risk_group",
    "plot_saliency_overlay",
    "plot_slice_importance",
    "plot_slice_saliency",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skfusion.plot needs matplotlib; install the plot extra: pip install 'skfusion[plot]'."
        ) from exc
    return plt


def plot_forest(
    table,
    *,
    ax=None,
    model="model",
    estimate="estimate",
    low="low",
    high="high",
    group=None,
    reference=None,
    xlabel=None,
):
    """Forest plot: one point estimate with its confidence interval per row of ``table``.

    Rows are drawn top to bottom in table order; with ``group`` (e.g. the cohort: internal,
    external) they are gathered under one bold heading per group, in order of first
    appearance, each group in its own colour: Table 1 of [1]_ as a figure.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per model (and group), with the columns named below; e.g. built from
        :class:`~skfusion.metrics.BootstrapResult` objects.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; default a new figure's.
    model, estimate, low, high : str, default="model", "estimate", "low", "high"
        Columns with the row label, the point estimate and the interval bounds.
    group : str, default=None
        Column to group the rows by.
    reference : float, default=None
        Draw a dashed vertical line here (e.g. 0.5, a C-index or AUROC of chance).
    xlabel : str, default=None
        Label of the x axis (e.g. ``"C-index (95% CI)"``).

    Returns
    -------
    ax : matplotlib.axes.Axes
        With one ``errorbar`` container per row of ``table``.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If a column is missing, or a row has a missing value, ``low > high``, or an
        estimate outside its interval.

    See Also
    --------
    skfusion.metrics.bootstrap_ci : Computes the estimates and intervals.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, Table 1.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from skfusion.plot import plot_forest
    >>> table = pd.DataFrame({
    ...     "cohort": ["internal", "internal", "external", "external"],
    ...     "model": ["image only", "concatenation", "image only", "concatenation"],
    ...     "estimate": [0.837, 0.819, 0.710, 0.717],
    ...     "low": [0.828, 0.810, 0.697, 0.708],
    ...     "high": [0.847, 0.828, 0.722, 0.726],
    ... })
    >>> ax = plot_forest(table, group="cohort", reference=0.5, xlabel="C-index (95% CI)")
    >>> len(ax.containers)
    4
    """
    plt = _pyplot()
    table = _check_table(table, model, estimate, low, high, group)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 0.35 * (len(table) + 2 * _n_groups(table, group)) + 1.0))
    positions, ticks, tick_labels, headings = _layout(table, model, group)
    groups = [None] * len(table) if group is None else table[group].tolist()
    colors = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(groups))}
    for y, (_, row), g in zip(positions, table.iterrows(), groups):
        half = (row[high] - row[low]) / 2
        ax.errorbar(row[low] + half, y, xerr=half, fmt="none", ecolor=colors[g], capsize=3)
        ax.plot(row[estimate], y, "o", color=colors[g])
    ax.set_yticks(ticks, tick_labels)
    for i in headings:
        ax.get_yticklabels()[i].set_fontweight("bold")
    ax.set_ylim(max(ticks) + 0.5, min(ticks) - 0.5)
    if reference is not None:
        ax.axvline(reference, linestyle="--", color="0.5", linewidth=1)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    return ax


_METRIC_LABELS = {
    "concordance_index": "Harrell's C-index",
    "concordance_index_ipcw_score": "Uno's C-index",
    "cumulative_dynamic_auc_score": "time-dependent AUC",
    "auroc": "AUROC",
    "auprc": "AUPRC",
}


def plot_comparison(table, *, ax=None, alpha=0.05, reference=None):
    """Forest plot of a :func:`~skfusion.model_selection.compare_fusion` table.

    One point and interval per model, grouped by cohort; a model's label carries the
    paper's markers (``*``: p < ``alpha`` versus the unimodal reference, ``+``: versus the
    fusion reference) and the best model of each cohort is labelled ``(best)``.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`~skfusion.model_selection.compare_fusion`.
    ax : matplotlib.axes.Axes, default=None
    alpha : float, default=0.05
        Significance level of the markers.
    reference : float, default=None
        A dashed vertical line, e.g. 0.5 for the C-index or AUROC of chance.

    Returns
    -------
    ax : matplotlib.axes.Axes

    See Also
    --------
    plot_forest : The plot for any table of estimates and intervals.
    skfusion.model_selection.format_comparison : The same table as text.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from skfusion.plot import plot_comparison
    >>> table = pd.DataFrame({
    ...     "cohort": ["internal", "internal"], "model": ["img only", "contrastive"],
    ...     "estimate": [0.837, 0.862], "low": [0.828, 0.856], "high": [0.847, 0.868],
    ...     "p_reference": [float("nan"), 0.01], "p_fusion_reference": [0.2, 0.03],
    ...     "best": [False, True],
    ... })
    >>> ax = plot_comparison(table)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['internal', 'img only', 'contrastive *+ (best)']
    """
    attrs = getattr(table, "attrs", {})
    table = pd.DataFrame(table).reset_index(drop=True)
    missing = [c for c in ("p_reference", "p_fusion_reference", "best") if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column {missing[0]!r}: pass the result of compare_fusion.")
    marks = np.where(table["p_reference"] < alpha, "*", "") + np.where(table["p_fusion_reference"] < alpha, "+", "")
    labels = [
        f"{name} {mark}".rstrip() + (" (best)" if best else "")
        for name, mark, best in zip(table["model"], marks, table["best"])
    ]
    metric = attrs.get("metric", "metric")
    xlabel = f"{_METRIC_LABELS.get(metric, metric)} ({attrs.get('confidence_level', 0.95):.0%} CI)"
    return plot_forest(table.assign(model=labels), ax=ax, group="cohort", reference=reference, xlabel=xlabel)


def _check_table(table, model, estimate, low, high, group):
    table = pd.DataFrame(table).reset_index(drop=True)
    names = [model, estimate, low, high] + ([] if group is None else [group])
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column {missing[0]!r} (columns: {list(table.columns)}).")
    if not len(table):
        raise ValueError("table has no rows.")
    values = table[[estimate, low, high]].to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1) | table[names].isna().any(axis=1).to_numpy()
    if bad.any():
        raise ValueError(f"table has missing or non-finite values in rows {np.flatnonzero(bad).tolist()}.")
    unordered = values[:, 1] > values[:, 2]
    if unordered.any():
        raise ValueError(f"table rows {np.flatnonzero(unordered).tolist()} do not satisfy {low} <= {high}.")
    # A point outside its own interval reads as a contradiction in a figure: wrong columns, or
    # a bootstrap whose resamples lie beside the full-sample value.
    outside = (values[:, 0] < values[:, 1]) | (values[:, 0] > values[:, 2])
    if outside.any():
        rows = np.flatnonzero(outside)
        raise ValueError(
            f"table rows {rows.tolist()} have {estimate} outside [{low}, {high}] (row {rows[0]}: "
            f"{values[rows[0], 0]:.4g} not in [{values[rows[0], 1]:.4g}, {values[rows[0], 2]:.4g}]): check the "
            "columns; for a bootstrap interval biased away from its estimate, method='bca' corrects the bias, "
            "and more samples reduce it."
        )
    return table


def _n_groups(table, group):
    return 0 if group is None else table[group].nunique()


def _layout(table, model, group):
    """Row positions (top = 0), y ticks and labels, and which ticks are group headings."""
    if group is None:
        positions = list(range(len(table)))
        return positions, positions, table[model].tolist(), []
    positions = [0] * len(table)
    ticks, labels, headings, y = [], [], [], 0
    for name, rows in table.groupby(group, sort=False).groups.items():
        headings.append(len(ticks))
        ticks.append(y)
        labels.append(str(name))
        y += 1
        for row in rows:
            positions[row] = y
            ticks.append(y)
            labels.append(str(table.at[row, model]))
            y += 1
        y += 0.5
    return positions, ticks, labels, headings


def plot_km_by_risk_group(risk, y, n_groups=3, *, labels=None, confidence_level=0.95, ax=None):
    """Kaplan-Meier curves of the patients grouped by quantiles of their predicted risk.

    The usual figure of a survival model's discrimination: patients are split into
    ``n_groups`` groups of (nearly) equal size by their predicted risk, and each group's
    Kaplan-Meier curve (:func:`sksurv.nonparametric.kaplan_meier_estimator`) is drawn with
    its pointwise log-log confidence band. Well separated curves mean the model ranks the
    patients well.

    Parameters
    ----------
    risk : array-like, shape (n_samples,)
        Predicted risk, higher meaning an earlier event, e.g. ``estimator.predict(X)``.
    y : structured array, shape (n_samples,)
        Targets of the same samples.
    n_groups : int, default=3
        Number of risk groups (quantiles of ``risk``), at least 2.
    labels : list of str, default=None
        One legend label per group, from the lowest to the highest risk; default "low risk",
        "medium risk", "high risk" for three groups, "risk group k of n" otherwise. The
        group size is appended.
    confidence_level : float or None, default=0.95
        Of the confidence bands; None draws no band.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; default a new figure's.

    Returns
    -------
    ax : matplotlib.axes.Axes
        With one step line per group and, with ``confidence_level``, one band per group.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If ``y`` is not a survival array, ``risk`` and ``y`` differ in length, ``risk`` holds
        NaN or has too few distinct values for ``n_groups``, ``n_groups`` is below 2, or
        ``labels`` does not have ``n_groups`` entries.

    See Also
    --------
    plot_calibration : Predicted against observed event probability by risk group.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.plot import plot_km_by_risk_group
    >>> rng = np.random.default_rng(0)
    >>> risk = rng.normal(size=300)
    >>> event_time, censor_time = rng.exponential(np.exp(-risk)), rng.exponential(2.0, 300)
    >>> y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    >>> ax = plot_km_by_risk_group(risk, y, n_groups=3)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['low risk (n=100)', 'medium risk (n=100)', 'high risk (n=100)']
    """
    plt = _pyplot()
    event, time = check_survival(y, "y", allow_all_censored=True)
    risk = check_finite(as_rows(risk, "risk"), "risk").astype(float)
    check_lengths(risk=risk, y=y)
    groups = _quantile_groups(risk, n_groups, "risk")
    labels = _group_labels(labels, n_groups)
    _check_confidence_level(confidence_level)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.5))
    for g, label in enumerate(labels):
        rows = groups == g
        km = kaplan_meier_estimator(
            event[rows], time[rows], conf_level=confidence_level or 0.95, conf_type="log-log"
        )
        # The curves start at 1 at time 0, before the group's first time.
        km_time, km_survival = np.r_[0.0, km[0]], np.r_[1.0, km[1]]
        (line,) = ax.step(km_time, km_survival, where="post", label=f"{label} (n={rows.sum()})")
        if confidence_level is not None:
            low, high = np.r_[1.0, km[2][0]], np.r_[1.0, km[2][1]]
            ax.fill_between(km_time, low, high, step="post", alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set(xlabel="time", ylabel="survival probability", ylim=(0, 1.02))
    ax.legend()
    return ax


def plot_calibration(y, survival, horizon, *, survival_times=None, n_groups=10, confidence_level=0.95, ax=None):
    """Calibration plot at ``horizon``: predicted against observed event probability.

    Patients are grouped by quantiles of their predicted event probability ``1 - S_i(t)``
    at ``t = horizon``; each group is one point at its mean predicted probability and its
    Kaplan-Meier observed probability ``1 - KM(t)``, with the log-log confidence interval of
    the Kaplan-Meier estimate as error bar. A calibrated model's points lie on the diagonal
    (Austin et al. [1]_ draw it by grouping too; :func:`~skfusion.metrics.calibration_slope`
    and :func:`~skfusion.metrics.calibration_in_the_large` summarise it in two numbers).

    Parameters
    ----------
    y : structured array, shape (n_samples,)
        Test targets.
    survival : array of StepFunction, shape (n_samples,), or array-like, shape (n_samples, n_grid)
        Predicted survival functions, or probabilities on ``survival_times``, as in
        :func:`~skfusion.metrics.calibration_slope`.
    horizon : float
        Time ``t``, inside the follow-up of ``y``.
    survival_times : array-like, shape (n_grid,), default=None
        Grid of an array ``survival``, e.g. ``estimator.unique_times_``.
    n_groups : int, default=10
        Number of groups (quantiles of the predicted event probability), at least 2.
    confidence_level : float or None, default=0.95
        Of the error bars; None draws none.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; default a new figure's.

    Returns
    -------
    ax : matplotlib.axes.Axes
        With one ``errorbar`` container (one point per group) and the diagonal.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        As :func:`~skfusion.metrics.calibration_in_the_large`; or if ``n_groups`` is below 2 or
        the predictions have too few distinct values for it.

    See Also
    --------
    plot_km_by_risk_group : The Kaplan-Meier curves of risk groups.

    References
    ----------
    .. [1] Austin, P. C., Harrell, F. E., van Klaveren, D. (2020). "Graphical calibration
           curves and the integrated calibration index (ICI) for survival models". Statistics
           in Medicine, 39(21), 2714-2742.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from skfusion.plot import plot_calibration
    >>> rng = np.random.default_rng(0)
    >>> hazard = np.exp(rng.normal(size=1000))
    >>> event_time, censor_time = rng.exponential(1 / hazard), rng.exponential(2.0, 1000)
    >>> y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    >>> grid = np.linspace(0, 5, 101)
    >>> ax = plot_calibration(y, np.exp(-hazard[:, None] * grid), horizon=1.0, survival_times=grid)
    >>> len(ax.containers[0].lines[0].get_xdata())
    10
    """
    plt = _pyplot()
    _check_confidence_level(confidence_level)
    event, time, at_horizon = at_horizon_checked(y, survival, horizon, survival_times)
    predicted = 1.0 - at_horizon
    groups = _quantile_groups(predicted, n_groups, "survival at horizon")
    points = np.array(
        [
            (predicted[rows].mean(), *kaplan_meier_at(event[rows], time[rows], horizon, confidence_level or 0.95))
            for rows in (groups == g for g in range(n_groups))
        ]
    )
    mean_predicted, observed = points[:, 0], 1.0 - points[:, 1]
    # The interval of 1 - KM is 1 minus that of KM, bounds swapped.
    error = np.vstack([observed - (1.0 - points[:, 3]), (1.0 - points[:, 2]) - observed])
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    top = min(1.0, 1.1 * max(mean_predicted.max(), (observed + error[1]).max())) or 1.0
    ax.plot([0, top], [0, top], linestyle="--", color="0.5", linewidth=1, label="ideal")
    ax.errorbar(
        mean_predicted, observed, yerr=None if confidence_level is None else error, fmt="o", capsize=3,
        label="risk groups (Kaplan-Meier)",
    )
    ax.set(
        xlabel=f"predicted event probability by t = {horizon:g}",
        ylabel=f"observed event probability by t = {horizon:g}",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left")
    return ax


def _quantile_groups(values, n_groups, name):
    """Group index (0 = lowest) of each value among ``n_groups`` quantile groups."""
    check_scalar(n_groups, "n_groups", numbers.Integral, min_val=2)
    groups = np.digitize(values, np.quantile(values, np.arange(1, n_groups) / n_groups))
    sizes = np.bincount(groups, minlength=n_groups)
    if (sizes == 0).any():
        raise ValueError(
            f"{name} has too few distinct values ({len(np.unique(values))}) for n_groups={n_groups}: "
            f"groups {np.flatnonzero(sizes == 0).tolist()} would be empty."
        )
    return groups


def _group_labels(labels, n_groups):
    if labels is None:
        if n_groups == 3:
            return ["low risk", "medium risk", "high risk"]
        return [f"risk group {k + 1} of {n_groups}" for k in range(n_groups)]
    labels = list(labels)
    if len(labels) != n_groups:
        raise ValueError(f"labels has {len(labels)} entries but n_groups is {n_groups}.")
    return labels


def _check_confidence_level(confidence_level):
    if confidence_level is not None:
        check_scalar(
            confidence_level, "confidence_level", numbers.Real, min_val=0, max_val=1, include_boundaries="neither"
        )


# --- attributions (skfusion.inspection) --------------------------------------------------------


def plot_slice_importance(importance, *, ax=None, labels=None, cmap="viridis", colorbar_label="importance"):
    """Heatmap of one value per token (e.g. per CT slice over z), one row per sample.

    Rows may have different numbers of tokens: the cells beyond a row's last token are left
    blank. Draw the attention weights and an attribution (:func:`skfusion.inspection.token_importance`)
    on two axes to compare where a model looks with what moves its score, as in Fig. 2 of
    Zhang et al. [1]_.

    Parameters
    ----------
    importance : sequence of array-like of shape (T_i,)
        One 1-D array per sample.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; default a new figure's.
    labels : sequence of str, default=None
        Row labels (e.g. patient ids); default ``0 .. n-1``.
    cmap : str, default="viridis"
    colorbar_label : str, default="importance"

    Returns
    -------
    ax : matplotlib.axes.Axes
        With the heatmap as its only image (``ax.images[0]``) and a colour bar.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If ``importance`` is empty, a row is not 1-D or not finite, or ``labels`` has another
        length.

    References
    ----------
    .. [1] Zhang et al. (2026). Fusion is not one-size-fits-all: cross-modal representation
           alignment for time-to-event modeling. arXiv:2606.15038.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skfusion.plot import plot_slice_importance
    >>> ax = plot_slice_importance([np.array([0.1, 0.7, 0.2]), np.array([0.5, 0.5])])
    >>> ax.images[0].get_array().shape
    (2, 3)
    """
    rows = [np.asarray(row, dtype=np.float64) for row in importance]
    if not rows:
        raise ValueError("importance is empty: pass one 1-D array per sample.")
    for i, row in enumerate(rows):
        if row.ndim != 1 or not len(row) or not np.isfinite(row).all():
            raise ValueError(f"importance[{i}] must be a non-empty, finite 1-D array; got shape {row.shape}.")
    labels = [str(i) for i in range(len(rows))] if labels is None else [str(label) for label in labels]
    if len(labels) != len(rows):
        raise ValueError(f"labels has {len(labels)} entries for {len(rows)} rows of importance.")
    width = max(len(row) for row in rows)
    matrix = np.ma.masked_all((len(rows), width))
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.5))
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xlabel("slice (z)")
    ax.set_yticks(range(len(rows)), labels)
    ax.figure.colorbar(image, ax=ax, label=colorbar_label)
    return ax


def plot_saliency_overlay(image, saliency, *, ax=None, alpha=0.6, cmap="inferno"):
    """An image in grey with the magnitude of its saliency map drawn over it.

    The magnitude is the largest absolute attribution over the channels at each pixel, the
    rule of Simonyan et al. [1]_; the image is shown as its mean over channels.

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
        One image, channels last as the image columns hold them (e.g. a row of a raw image
        column), with ``C`` 1 or 3. A channels-first ``(C, H, W)`` array is refused.
    saliency : array-like of the same shape
        Its attributions (a row of :func:`skfusion.inspection.gradient_saliency` or
        :func:`skfusion.inspection.integrated_gradients`).
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; default a new figure's.
    alpha : float, default=0.6
        Opacity of the saliency layer, in [0, 1].
    cmap : str, default="inferno"

    Returns
    -------
    ax : matplotlib.axes.Axes
        With two images: the grey image (``ax.images[0]``) and the saliency magnitude
        (``ax.images[1]``).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If the shapes differ, are not ``(H, W)`` or ``(H, W, C)``, hold non-finite values, or
        ``alpha`` is outside [0, 1].

    References
    ----------
    .. [1] K. Simonyan, A. Vedaldi and A. Zisserman (2014). Deep inside convolutional
           networks: visualising image classification models and saliency maps. ICLR
           workshop.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skfusion.plot import plot_saliency_overlay
    >>> saliency = np.zeros((4, 4, 1))
    >>> saliency[1, 2, 0] = -3.0
    >>> ax = plot_saliency_overlay(np.ones((4, 4, 1)), saliency)
    >>> float(ax.images[1].get_array()[1, 2])
    3.0
    """
    image = np.asarray(image, dtype=np.float64)
    saliency = np.asarray(saliency, dtype=np.float64)
    if image.shape != saliency.shape:
        raise ValueError(
            f"image and saliency must have the same (H, W) or (H, W, C) shape; got {image.shape} and {saliency.shape}."
        )
    check_image_shape(image.shape, "plot_saliency_overlay")
    if not (np.isfinite(image).all() and np.isfinite(saliency).all()):
        raise ValueError("image and saliency must hold finite values only.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}.")
    grey = image if image.ndim == 2 else image.mean(axis=-1)
    magnitude = np.abs(saliency) if saliency.ndim == 2 else np.abs(saliency).max(axis=-1)
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(grey, cmap="gray", interpolation="nearest")
    ax.imshow(magnitude, cmap=cmap, alpha=alpha, interpolation="nearest")
    ax.set_axis_off()
    return ax


def plot_slice_saliency(volume, saliency, slices, *, window="pe", ax=None, alpha=0.6, cmap="inferno"):
    """Axial slices of a CT volume, windowed, each with the magnitude of its voxel map drawn over it.

    One panel per slice, all with one colour scale, from 0 to the largest magnitude on the
    slices shown, so that the slices compare: the layout of Fig. 2 of Zhang et al. [1]_,
    one call per model.

    Parameters
    ----------
    volume : array-like of shape (z, y, x)
        A CT volume in Hounsfield units (HU), ``z`` from feet to head, as
        :class:`~skfusion.encoders.CTVolumeEmbedder` reads it.
    saliency : array-like of the same shape
        Its voxel attributions: a row of :func:`skfusion.inspection.gradient_saliency` or
        :func:`skfusion.inspection.integrated_gradients` for a CT volume column (of a model
        that trains a 3-D encoder on it, or of a Pipeline's ``CTVolumeEmbedder``).
    slices : int or sequence of int
        The axial indices to show, each in ``[0, z)``.
    window : {"pe", "mace"} or tuple of (float, float), default="pe"
        The HU window of the grey image, as ``CTVolumeEmbedder``'s: ``"pe"`` is
        [-1350, 150], ``"mace"`` [-125, 225], or a ``(low, high)`` pair.
    ax : matplotlib.axes.Axes or sequence of them, default=None
        One Axes per slice (e.g. a row of :func:`matplotlib.pyplot.subplots`); default a
        new figure with one row of panels.
    alpha : float, default=0.6
        Opacity of the saliency layer, in [0, 1].
    cmap : str, default="inferno"

    Returns
    -------
    axes : list of matplotlib.axes.Axes
        One per slice, titled with its index, each with two images: the windowed slice
        (``images[0]``) and the saliency magnitude (``images[1]``).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If ``volume`` is not 3-D, the shapes differ, a value is not finite, a slice index is
        not an integer in ``[0, z)``, ``ax`` holds another number of Axes than ``slices``,
        or ``window`` or ``alpha`` is invalid.

    See Also
    --------
    plot_saliency_overlay : the same overlay for a 2-D image.

    References
    ----------
    .. [1] Zhang et al. (2026). Fusion is not one-size-fits-all: cross-modal representation
           alignment for time-to-event modeling. arXiv:2606.15038.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skfusion.plot import plot_slice_saliency
    >>> volume = np.full((4, 8, 8), 40.0)
    >>> saliency = np.zeros((4, 8, 8))
    >>> saliency[2, 3, 5] = -0.5
    >>> axes = plot_slice_saliency(volume, saliency, [1, 2], window="mace")
    >>> [ax.get_title() for ax in axes], float(axes[1].images[1].get_array()[3, 5])
    (['z = 1', 'z = 2'], 0.5)
    """
    volume = np.asarray(volume, dtype=np.float64)
    saliency = np.asarray(saliency, dtype=np.float64)
    if volume.ndim != 3:
        raise ValueError(f"volume must be a 3-D (z, y, x) array in HU; got shape {volume.shape}.")
    if saliency.shape != volume.shape:
        raise ValueError(f"saliency has shape {saliency.shape}; it must have the volume's, {volume.shape}.")
    if not (np.isfinite(volume).all() and np.isfinite(saliency).all()):
        raise ValueError("volume and saliency must hold finite values only.")
    slices = [slices] if isinstance(slices, numbers.Integral) else list(slices)
    if not slices:
        raise ValueError("slices is empty: name at least one axial index.")
    n = len(volume)
    for k, index in enumerate(slices):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < n:
            raise ValueError(f"slices[{k}]={index!r} is not an axial index of the volume: an integer in [0, {n}).")
    low, high = resolve_window(window)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}.")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(1, len(slices), figsize=(2.6 * len(slices), 2.8), squeeze=False)
    axes = list(np.ravel(ax))
    if len(axes) != len(slices):
        raise ValueError(f"ax holds {len(axes)} Axes for {len(slices)} slices; pass one per slice.")
    magnitude = np.abs(saliency[slices])
    for panel, index, values in zip(axes, slices, magnitude):
        panel.imshow(apply_window(volume[index], low, high), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        panel.imshow(values, cmap=cmap, alpha=alpha, vmin=0, vmax=magnitude.max(), interpolation="nearest")
        panel.set_title(f"z = {index}")
        panel.set_axis_off()
    return axes
