"""skfusion.plot.plot_forest on the Agg backend."""

import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from skfusion.metrics import bootstrap_ci  # noqa: E402
from skfusion.plot import plot_forest  # noqa: E402


@pytest.fixture
def table():
    return pd.DataFrame(
        {
            "cohort": ["internal", "internal", "internal", "external", "external", "external"],
            "model": ["image only", "EHR only", "concatenation"] * 2,
            "estimate": [0.837, 0.748, 0.819, 0.710, 0.620, 0.717],
            "low": [0.828, 0.735, 0.810, 0.697, 0.610, 0.708],
            "high": [0.847, 0.760, 0.828, 0.722, 0.630, 0.726],
        }
    )


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_one_errorbar_per_row_in_table_order(table):
    ax = plot_forest(table, reference=0.5, xlabel="C-index (95% CI)")
    bars = _errorbars(ax)
    assert len(bars) == len(table)
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    for bar, point, (_, row) in zip(bars, points, table.iterrows()):
        assert point.get_xdata()[0] == row["estimate"]
        segment = bar.lines[2][0].get_segments()[0]
        assert (segment[0][0], segment[1][0]) == pytest.approx((row["low"], row["high"]))
    assert [t.get_text() for t in ax.get_yticklabels()] == table["model"].tolist()
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [0.5]
    assert ax.get_xlabel() == "C-index (95% CI)"
    plt.close(ax.figure)


def test_groups_get_headings_and_colours(table):
    fig, ax = plt.subplots()
    assert plot_forest(table.iloc[[0, 3, 1, 4]], ax=ax, group="cohort") is ax
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["internal", "image only", "EHR only", "external", "image only", "EHR only"]
    assert [t.get_fontweight() for t in ax.get_yticklabels()][::3] == ["bold", "bold"]
    colours = [line.get_color() for line in ax.get_lines() if line.get_marker() == "o"]
    assert colours[0] == colours[2] != colours[1] == colours[3]
    plt.close(fig)


def test_table_from_bootstrap_results():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    rows = []
    for name, noise in [("A", 1.0), ("B", 2.0)]:
        score = y + noise * rng.normal(size=100)
        result = bootstrap_ci(lambda t, s: float(np.corrcoef(t, s)[0, 1]), y, score, n_resamples=50, random_state=0)
        rows.append({"model": name, "estimate": result.estimate, "low": result.low, "high": result.high})
    ax = plot_forest(pd.DataFrame(rows))
    assert len(_errorbars(ax)) == 2
    plt.close(ax.figure)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.drop(columns="high"), "table has no column 'high'"),
        (lambda t: t.assign(low=[0.9, *t["low"][1:]]), r"table rows \[0\] do not satisfy low <= high"),
        (lambda t: t.assign(estimate=[np.nan, *t["estimate"][1:]]), r"missing or non-finite values in rows \[0\]"),
        (lambda t: t.iloc[:0], "table has no rows"),
    ],
)
def test_bad_tables(table, change, match):
    with pytest.raises(ValueError, match=match):
        plot_forest(change(table))


def test_missing_group_column(table):
    with pytest.raises(ValueError, match="table has no column 'site'"):
        plot_forest(table, group="site")


def test_missing_matplotlib_names_the_plot_extra(table, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skfusion\[plot\]"):
        plot_forest(table)
