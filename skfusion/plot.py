"""Figures. matplotlib is the optional ``plot`` extra, imported when a figure is drawn."""

import numpy as np
import pandas as pd


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
        If a column is missing, or a row has a missing value or ``low > high``.

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
        # The interval is drawn around its midpoint: a percentile bootstrap interval need not
        # contain the full-sample estimate, which is drawn on its own.
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
