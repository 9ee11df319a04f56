"""skfusion.plot on the Agg backend: forest plots, Kaplan-Meier curves by risk group, calibration."""

import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from sksurv.nonparametric import kaplan_meier_estimator  # noqa: E402
from sksurv.util import Surv  # noqa: E402

from skfusion.metrics import bootstrap_ci  # noqa: E402
from skfusion.plot import plot_calibration, plot_forest, plot_km_by_risk_group  # noqa: E402


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
        (lambda t: t.assign(estimate=[*t["estimate"][:4], 0.5, 0.8]),
         r"table rows \[4, 5\] have estimate outside \[low, high\] \(row 4: 0\.5 not in \[0\.61, 0\.63\]\)"),
        (lambda t: t.assign(estimate=[np.nan, *t["estimate"][1:]]), r"missing or non-finite values in rows \[0\]"),
        (lambda t: t.iloc[:0], "table has no rows"),
    ],
)
def test_bad_tables(table, change, match):
    with pytest.raises(ValueError, match=match):
        plot_forest(change(table))


def test_an_estimate_on_a_bound_of_its_interval_is_drawn(table):
    ax = plot_forest(table.assign(estimate=table["low"]))
    points = [line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() == "o"]
    assert points == table["low"].tolist()
    plt.close(ax.figure)


def test_missing_group_column(table):
    with pytest.raises(ValueError, match="table has no column 'site'"):
        plot_forest(table, group="site")


def test_missing_matplotlib_names_the_plot_extra(table, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skfusion\[plot\]"):
        plot_forest(table)


# --------------------------------------------------------------------------- survival figures


def _exponential(n, seed):
    rng = np.random.default_rng(seed)
    hazard = np.exp(rng.normal(size=n))
    event_time, censor_time = rng.exponential(1 / hazard), rng.exponential(2.0, n)
    return hazard, Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))


@pytest.mark.parametrize("n_groups", [2, 3, 5])
def test_km_by_risk_group_draws_each_group_s_kaplan_meier_curve(n_groups):
    risk, y = _exponential(300, 0)
    ax = plot_km_by_risk_group(risk, y, n_groups=n_groups)
    lines = ax.get_lines()
    assert len(lines) == n_groups
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == n_groups
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == n_groups and all(f"(n={300 // n_groups})" in t for t in texts)
    # The highest-risk group is the last curve: its (upper quantile) rows and their Kaplan-Meier curve.
    high = risk >= np.quantile(risk, 1 - 1 / n_groups)
    km_time, km_survival = kaplan_meier_estimator(y["event"][high], y["time"][high])
    np.testing.assert_allclose(lines[-1].get_xdata(), np.r_[0.0, km_time])
    np.testing.assert_allclose(lines[-1].get_ydata(), np.r_[1.0, km_survival])
    # Higher risk, lower survival at the median time.
    median = np.median(y["time"])
    at_median = [line.get_ydata()[np.searchsorted(line.get_xdata(), median, side="right") - 1] for line in lines]
    assert at_median == sorted(at_median, reverse=True)
    plt.close(ax.figure)


def test_km_by_risk_group_labels_and_no_bands():
    risk, y = _exponential(100, 1)
    fig, ax = plt.subplots()
    assert plot_km_by_risk_group(risk, y, 2, labels=["low", "high"], confidence_level=None, ax=ax) is ax
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["low (n=50)", "high (n=50)"]
    assert not ax.collections
    plt.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_groups": 1}, "n_groups == 1, must be >= 2"),
        ({"n_groups": 101}, r"risk has too few distinct values \(100\) for n_groups=101"),
        ({"labels": ["a", "b"]}, "labels has 2 entries but n_groups is 3"),
        ({"confidence_level": 1.5}, "confidence_level == 1.5, must be < 1"),
    ],
)
def test_km_by_risk_group_rejects_bad_parameters(kwargs, match):
    risk, y = _exponential(100, 2)
    with pytest.raises(ValueError, match=match):
        plot_km_by_risk_group(risk, y, **kwargs)


def test_km_by_risk_group_rejects_a_non_integer_n_groups():
    risk, y = _exponential(100, 2)
    # scikit-learn's check_scalar: a wrong type is a TypeError, as for every skfusion parameter.
    with pytest.raises(TypeError, match="n_groups must be an instance of int, not float"):
        plot_km_by_risk_group(risk, y, n_groups=2.5)


def test_km_by_risk_group_rejects_bad_data():
    risk, y = _exponential(100, 3)
    with pytest.raises(ValueError, match="y has 100 rows but risk has 99"):
        plot_km_by_risk_group(risk[:99], y)
    with pytest.raises(ValueError, match="y must be a structured array"):
        plot_km_by_risk_group(risk, y["time"])
    with pytest.raises(ValueError, match=r"risk contains NaN or infinite values in rows \[3\]"):
        plot_km_by_risk_group(np.where(np.arange(100) == 3, np.nan, risk), y)
    with pytest.raises(ValueError, match=r"risk has too few distinct values \(2\) for n_groups=3"):
        plot_km_by_risk_group(np.arange(100) % 2, y)


def test_calibration_plot_has_one_point_per_group_at_kaplan_meier():
    hazard, y = _exponential(1000, 4)
    grid = np.linspace(0, 5, 201)
    curves = np.exp(-hazard[:, None] * grid)
    ax = plot_calibration(y, curves, 1.0, survival_times=grid, n_groups=5)
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    points = bars.lines[0]
    predicted = 1 - np.exp(-hazard)
    top = predicted >= np.quantile(predicted, 0.8)
    km_time, km_survival = kaplan_meier_estimator(y["event"][top], y["time"][top])
    assert points.get_xdata()[-1] == pytest.approx(predicted[top].mean())
    assert points.get_ydata()[-1] == pytest.approx(1 - km_survival[np.searchsorted(km_time, 1.0, side="right") - 1])
    # True curves: every group's observed probability within a few points of the prediction.
    np.testing.assert_allclose(points.get_ydata(), points.get_xdata(), atol=0.08)
    assert len(bars.lines[2][0].get_segments()) == 5  # one error bar per group
    assert [line.get_linestyle() for line in ax.get_lines()].count("--") == 1  # the diagonal
    plt.close(ax.figure)


def test_calibration_plot_rejects_bad_input():
    hazard, y = _exponential(100, 5)
    grid = np.linspace(0, 5, 51)
    curves = np.exp(-hazard[:, None] * grid)
    with pytest.raises(ValueError, match="n_groups == 1, must be >= 2"):
        plot_calibration(y, curves, 1.0, survival_times=grid, n_groups=1)
    with pytest.raises(ValueError, match="survival has 99 rows but y has 100"):
        plot_calibration(y, curves[1:], 1.0, survival_times=grid)
    with pytest.raises(ValueError, match="horizon=50.0 must be inside the follow-up of y"):
        plot_calibration(y, curves, 50.0, survival_times=grid)
    with pytest.raises(ValueError, match=r"survival at horizon has too few distinct values \(1\)"):
        plot_calibration(y, np.ones_like(curves), 1.0, survival_times=grid)
