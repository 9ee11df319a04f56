"""skfusion.metrics: bootstrap intervals, the paired test, survival adapters, ECE, LOS scores."""

import functools
import warnings

import numpy as np
import pytest
from joblib import parallel_config
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, cohen_kappa_score, mean_absolute_error, roc_auc_score
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.metrics import integrated_brier_score as sksurv_integrated_brier_score
from sksurv.util import Surv

from skfusion.metrics import (
    auprc,
    auroc,
    bootstrap_ci,
    concordance_index,
    concordance_index_ipcw_score,
    cumulative_dynamic_auc_score,
    expected_calibration_error,
    integrated_brier_score,
    linear_weighted_kappa,
    mean_absolute_deviation,
    paired_bootstrap_test,
)
from skfusion.metrics._survival import harrell_on_counts


def _mean(_, x):
    return float(np.mean(x))


def _auc(y, score):
    """Mann-Whitney form of the empirical AUC, ties counting one half: a fast roc_auc_score."""
    y = np.asarray(y)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if not n_pos or not n_neg:
        return np.nan
    return (stats.rankdata(score)[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _binormal(n, separation, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    return y, rng.normal(size=n) + separation * y


def _survival(n, seed, rounded=False):
    """Exponential times with risk ``x``; rounding makes ties in time and in risk."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    event_time = rng.exponential(np.exp(-x))
    censor_time = rng.exponential(1.5, size=n)
    time = np.minimum(event_time, censor_time)
    if rounded:
        x, time = np.round(x, 1), np.round(time, 1) + 0.1
    return Surv.from_arrays(event_time <= censor_time, time), x


# --------------------------------------------------------------------------- bootstrap_ci


def test_ci_contains_estimate_and_is_reproducible():
    y, score = _binormal(200, 1.0, 0)
    first = bootstrap_ci(_auc, y, score, n_resamples=200, random_state=0)
    again = bootstrap_ci(_auc, y, score, n_resamples=200, random_state=0)
    other = bootstrap_ci(_auc, y, score, n_resamples=200, random_state=1)
    assert first.low < first.estimate < first.high
    assert np.array_equal(first.resamples, again.resamples) and (first.low, first.high) == (again.low, again.high)
    assert not np.array_equal(first.resamples, other.resamples)
    assert first.std == pytest.approx(np.std(first.resamples, ddof=1))
    assert (len(first.resamples), first.n_skipped) == (200, 0)
    assert f"{first:.2f}" == f"{first.estimate:.2f} ({first.low:.2f}–{first.high:.2f})"
    assert str(first) == f"{first:.3f}"
    sklearn_auc = bootstrap_ci(roc_auc_score, y, score, n_resamples=200, random_state=0)
    assert sklearn_auc.estimate == roc_auc_score(y, score)
    np.testing.assert_allclose(sklearn_auc.resamples, first.resamples, rtol=1e-12)


def test_ci_does_not_depend_on_n_jobs():
    y, score = _binormal(60, 1.0, 0)
    serial = bootstrap_ci(_auc, y, score, n_resamples=40, random_state=0)
    with parallel_config(backend="threading"):
        parallel = bootstrap_ci(_auc, y, score, n_resamples=40, random_state=0, n_jobs=2)
    assert np.array_equal(serial.resamples, parallel.resamples)


def test_ci_shrinks_with_n():
    rng = np.random.default_rng(0)
    width = {}
    for n in (100, 1600):
        x = rng.normal(size=n)
        result = bootstrap_ci(_mean, np.zeros(n), x, n_resamples=500, random_state=0)
        width[n] = result.high - result.low
    # sqrt(1600 / 100) = 4 times narrower, up to sampling noise.
    assert 3.0 < width[100] / width[1600] < 5.3


@pytest.mark.parametrize("method", ["percentile", "basic", "bca"])
def test_ci_of_a_normal_mean_is_close_to_the_t_interval(method):
    x = np.random.default_rng(1).normal(loc=2.0, scale=3.0, size=200)
    result = bootstrap_ci(_mean, np.zeros(len(x)), x, n_resamples=4000, method=method, random_state=0)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    half_width = (high - low) / 2
    assert abs(result.low - low) < 0.1 * half_width
    assert abs(result.high - high) < 0.1 * half_width
    assert result.std == pytest.approx(stats.sem(x), rel=0.08)


def _delong_variance(y, score):
    """DeLong et al. (1988) variance of the empirical AUC, from its structural components."""
    pos, neg = score[y == 1], score[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1).var(ddof=1) / len(pos) + psi.mean(axis=0).var(ddof=1) / len(neg)


def test_auroc_bootstrap_of_a_binormal_model():
    y, score = _binormal(400, 1.0, 2)
    result = bootstrap_ci(_auc, y, score, n_resamples=2000, random_state=0)
    true_auc = stats.norm.cdf(1.0 / np.sqrt(2.0))
    assert result.low < true_auc < result.high
    assert result.std == pytest.approx(np.sqrt(_delong_variance(y, score)), rel=0.12)


def test_ci_method_and_level():
    y, score = _binormal(200, 1.0, 0)
    narrow = bootstrap_ci(_auc, y, score, n_resamples=300, confidence_level=0.8, random_state=0)
    wide = bootstrap_ci(_auc, y, score, n_resamples=300, confidence_level=0.99, random_state=0)
    assert wide.low < narrow.low < narrow.high < wide.high
    assert (narrow.low, narrow.high) == pytest.approx(tuple(np.percentile(narrow.resamples, [10, 90])))
    basic = bootstrap_ci(_auc, y, score, n_resamples=300, method="basic", random_state=0)
    quantiles = np.percentile(basic.resamples, [97.5, 2.5])
    assert (basic.low, basic.high) == pytest.approx(tuple(2 * basic.estimate - quantiles))


def test_stratify_keeps_stratum_sizes():
    y = np.array([1] * 5 + [0] * 45)
    score = np.arange(50.0)
    seen = []

    def positives(y_true, _):
        seen.append(int(y_true.sum()))
        return 0.0

    bootstrap_ci(positives, y, score, n_resamples=40, stratify=y, random_state=0)
    assert set(seen) == {5}


def test_undefined_resamples_are_skipped_and_counted():
    y = np.array([1, 1] + [0] * 28)
    score = np.random.default_rng(0).normal(size=30) + y
    with pytest.warns(UndefinedMetricWarning, match="were skipped"):
        result = bootstrap_ci(_auc, y, score, n_resamples=300, random_state=0)
    assert result.n_skipped > 0.05 * 300
    assert len(result.resamples) + result.n_skipped == 300 and np.isfinite(result.resamples).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stratified = bootstrap_ci(_auc, y, score, n_resamples=300, stratify=y, random_state=0)
    assert stratified.n_skipped == 0


def test_metric_undefined_everywhere_or_on_full_sample():
    def distinct_rows_only(_, score):
        return 1.0 if len(np.unique(score)) == len(score) else np.nan

    x = np.arange(50.0)
    with pytest.raises(ValueError, match="undefined on all 40 bootstrap resamples"):
        bootstrap_ci(distinct_rows_only, x, x, n_resamples=40, random_state=0)
    with pytest.raises(ValueError, match="undefined on the full sample"):
        bootstrap_ci(_auc, np.ones(10), x[:10], n_resamples=40)
    with pytest.raises(ValueError, match="undefined on the full sample"), pytest.warns(UndefinedMetricWarning):
        bootstrap_ci(roc_auc_score, np.ones(10), x[:10], n_resamples=40)


def test_structured_survival_y_is_resampled_by_whole_rows():
    y, _ = _survival(40, 0)
    row_id = y["time"].copy()

    def aligned(y_true, score):
        assert np.array_equal(y_true["time"], score)
        assert set(zip(y_true["event"], y_true["time"])) <= set(zip(y["event"], y["time"]))
        return 0.0

    bootstrap_ci(aligned, y, row_id, n_resamples=40, random_state=0)


# --------------------------------------------------------------------------- Harrell's C fast path


def test_harrell_on_counts_equals_sksurv_on_every_resample():
    y, risk = _survival(150, 3, rounded=True)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(y), size=(40, len(y)))
    censored_only = np.flatnonzero(~y["event"])
    indices[0] = rng.choice(censored_only, size=len(y))
    counts = np.stack([np.bincount(rows, minlength=len(y)) for rows in indices])
    fast = harrell_on_counts(y, [risk, -risk], counts)
    assert np.isnan(fast[0]).all()
    for rows, values in zip(indices[1:], fast[1:]):
        for k, score in enumerate([risk, -risk]):
            expected = concordance_index_censored(y["event"][rows], y["time"][rows], score[rows])[0]
            assert values[k] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_bootstrap_of_concordance_index_matches_the_per_resample_loop():
    y, risk = _survival(120, 4, rounded=True)
    other = risk + np.random.default_rng(0).normal(size=len(risk))

    def via_sksurv(y_true, score):
        return concordance_index_censored(y_true["event"], y_true["time"], score)[0]

    fast = bootstrap_ci(concordance_index, y, risk, n_resamples=50, random_state=0)
    slow = bootstrap_ci(via_sksurv, y, risk, n_resamples=50, random_state=0)
    assert fast.estimate == slow.estimate
    np.testing.assert_allclose(fast.resamples, slow.resamples, rtol=1e-12)
    fast_test = paired_bootstrap_test(concordance_index, y, risk, other, n_resamples=50, random_state=0)
    slow_test = paired_bootstrap_test(via_sksurv, y, risk, other, n_resamples=50, random_state=0)
    np.testing.assert_allclose(fast_test.resamples, slow_test.resamples, rtol=1e-10, atol=1e-12)
    assert fast_test.pvalue == slow_test.pvalue


def test_bca_of_concordance_index_matches_the_per_resample_loop():
    y, risk = _survival(60, 5)
    fast = bootstrap_ci(concordance_index, y, risk, n_resamples=100, method="bca", random_state=0)
    slow = bootstrap_ci(lambda a, b: concordance_index(a, b), y, risk, n_resamples=100, method="bca", random_state=0)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), rel=1e-10)


# --------------------------------------------------------------------------- paired test


def test_paired_test_detects_a_clearly_better_model():
    y, good = _binormal(300, 1.5, 0)
    weak = y * 0.3 + np.random.default_rng(1).normal(size=300)
    result = paired_bootstrap_test(roc_auc_score, y, good, weak, n_resamples=100, random_state=0)
    assert result.difference == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, weak))
    assert (result.estimate_a, result.estimate_b) == (roc_auc_score(y, good), roc_auc_score(y, weak))
    fast = paired_bootstrap_test(_auc, y, good, weak, n_resamples=100, random_state=0)
    np.testing.assert_allclose(result.resamples, fast.resamples, rtol=1e-10, atol=1e-12)
    # Every resample favours A: the smallest p-value B resamples can give.
    assert result.pvalue == pytest.approx(2 / 101) and result.low > 0
    assert paired_bootstrap_test(_auc, y, good, weak, n_resamples=1000, random_state=0).pvalue < 0.01


def test_paired_test_of_identical_and_equally_noisy_models():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    signal = y + rng.normal(size=300)
    same = paired_bootstrap_test(_auc, y, signal, signal.copy(), n_resamples=200, random_state=0)
    assert same.pvalue == 1.0 and same.difference == 0.0 and not same.resamples.any()
    noisy_a, noisy_b = signal + rng.normal(size=300), signal + rng.normal(size=300)
    result = paired_bootstrap_test(_auc, y, noisy_a, noisy_b, n_resamples=500, random_state=0)
    assert result.pvalue > 0.05 and result.low < 0 < result.high
    swapped = paired_bootstrap_test(_auc, y, noisy_b, noisy_a, n_resamples=500, random_state=0)
    np.testing.assert_allclose(swapped.resamples, -result.resamples)
    assert swapped.pvalue == result.pvalue


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_paired_pvalue_is_the_documented_formula(alternative):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150)
    a, b = y + rng.normal(size=150), y + 1.3 * rng.normal(size=150)
    result = paired_bootstrap_test(_auc, y, a, b, n_resamples=300, alternative=alternative, random_state=0)
    d, n = result.resamples, len(result.resamples)
    greater = (1 + np.sum(d <= 0)) / (n + 1)
    less = (1 + np.sum(d >= 0)) / (n + 1)
    expected = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
    assert result.pvalue == expected
    if alternative == "greater":
        assert result.high == np.inf and result.low == pytest.approx(np.percentile(d, 5))
    if alternative == "less":
        assert result.low == -np.inf and result.high == pytest.approx(np.percentile(d, 95))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_resamples": 0}, "n_resamples == 0, must be >= 1"),
        ({"n_resamples": 1}, "n_resamples=1 is too few for a two-sided 95% interval: it needs at least 39"),
        ({"n_resamples": 38}, "n_resamples=38 is too few for a two-sided 95% interval: it needs at least 39"),
        ({"n_resamples": 18, "confidence_level": 0.9}, "n_resamples=18 .* 90% interval: it needs at least 19"),
        ({"n_resamples": 198, "confidence_level": 0.99}, "n_resamples=198 .* 99% interval: it needs at least 199"),
        ({"confidence_level": 1.0}, "confidence_level == 1.0, must be < 1"),
        ({"confidence_level": 0.0}, "confidence_level == 0.0, must be > 0"),
        ({"confidence_level": 1.5}, "confidence_level == 1.5"),
        ({"method": "BCA"}, "method must be one of"),
        ({"stratify": np.zeros(9)}, "stratify has 9 rows but y_true has 10"),
    ],
)
def test_bootstrap_ci_rejects_bad_parameters(kwargs, match):
    y, score = _binormal(10, 1.0, 0)
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(_auc, y, score, **kwargs)


def test_the_fewest_resamples_allowed_give_an_interval_of_order_statistics():
    y, score = _binormal(200, 1.0, 0)
    result = bootstrap_ci(_auc, y, score, n_resamples=39, random_state=0)
    ordered = np.sort(result.resamples)
    assert ordered[0] <= result.low <= ordered[1] and ordered[-2] <= result.high <= ordered[-1]
    paired = paired_bootstrap_test(_auc, y, score, -score, n_resamples=19, alternative="greater", random_state=0)
    ordered = np.sort(paired.resamples)
    assert ordered[0] <= paired.low <= ordered[1] and paired.high == np.inf
    with pytest.raises(ValueError, match=r"n_resamples=18 is too few for a one-sided 95% interval: .* at least 19"):
        paired_bootstrap_test(_auc, y, score, -score, n_resamples=18, alternative="less")


def test_a_metric_defined_on_too_few_resamples_is_refused():
    x = np.arange(50.0)

    def needs_row_zero_once(_, score):
        return 1.0 if np.count_nonzero(score == 0) == 1 else np.nan

    # Row 0 is drawn exactly once in about 37% of the resamples: some 22 of 60.
    with pytest.raises(ValueError, match=r"metric is defined on only \d+ of 60 bootstrap resamples .* \(at least 39\)"):
        bootstrap_ci(needs_row_zero_once, x, x, n_resamples=60, random_state=0)


def test_bca_refuses_an_undefined_jackknife_and_a_degenerate_distribution():
    rng = np.random.default_rng(0)
    y = Surv.from_arrays(np.arange(40) == 3, rng.exponential(size=40))
    risk = rng.normal(size=40)
    # Without row 3, the only event, no pair is comparable.
    with pytest.raises(ValueError, match=r"method='bca' needs the metric on every leave-one-out sample.*row\(s\) \[3\]"):
        bootstrap_ci(concordance_index, y, risk, n_resamples=200, method="bca", random_state=0)
    assert np.isfinite(bootstrap_ci(concordance_index, y, risk, n_resamples=200, random_state=0).low)
    with pytest.raises(ValueError, match=r"the BCa interval is undefined here: the bootstrap distribution is degenerate"):
        bootstrap_ci(lambda t, s: 1.0, y["time"], risk, n_resamples=100, method="bca", random_state=0)
    other = risk + rng.normal(size=40)
    with pytest.raises(ValueError, match=r"row\(s\) \[3\]"):
        paired_bootstrap_test(concordance_index, y, risk, other, n_resamples=100, method="bca", random_state=0)


def test_metrics_refuse_string_scores_naming_the_argument():
    y, risk = _survival(30, 0)
    labels, score = _binormal(30, 1.0, 0)
    text = risk.astype(str)
    with pytest.raises(ValueError, match=r"risk must hold numbers, got strings \(e\.g\. '"):
        concordance_index(y, text)
    with pytest.raises(ValueError, match="risk must hold numbers"):
        concordance_index_ipcw_score(y, y, text.astype(object))
    with pytest.raises(ValueError, match="risk must hold numbers"):
        bootstrap_ci(concordance_index, y, text, n_resamples=50)
    with pytest.raises(ValueError, match=r"y_score must hold numbers, got strings \(e\.g\. 'a'\)"):
        auroc(labels, ["a"] * 30)
    with pytest.raises(ValueError, match="y_prob must hold numbers"):
        expected_calibration_error(labels, score.astype(str))
    with pytest.raises(ValueError, match="estimate must hold numbers"):
        integrated_brier_score(y, y, np.full((30, 2), "0.5"), np.percentile(y["time"], [20, 50]))


def test_bootstrap_rejects_bad_arrays():
    y, score = _binormal(10, 1.0, 0)
    with pytest.raises(ValueError, match="y_score has 9 rows but y_true has 10"):
        bootstrap_ci(_auc, y, score[:9])
    score[[2, 7]] = np.nan
    with pytest.raises(ValueError, match=r"y_score contains NaN or infinite values in rows \[2, 7\]"):
        bootstrap_ci(_auc, y, score)
    with pytest.raises(ValueError, match=r"y_true contains NaN or infinite values in rows \[0\]"):
        bootstrap_ci(_mean, np.r_[np.nan, np.ones(9)], np.ones(10))
    with pytest.raises(ValueError, match="y_true needs at least 2 samples"):
        bootstrap_ci(_mean, [1.0], [1.0])
    with pytest.raises(ValueError, match="score_b has 9 rows but y_true has 10"):
        paired_bootstrap_test(_mean, y, np.ones(10), np.ones(9))
    with pytest.raises(ValueError, match=r"score_a contains NaN or infinite values in rows \[2, 7\]"):
        paired_bootstrap_test(_mean, y, score, np.ones(10))
    with pytest.raises(ValueError, match="alternative must be one of"):
        paired_bootstrap_test(_mean, y, np.ones(10), np.ones(10), alternative="two_sided")


def test_survival_metrics_reject_bad_targets():
    y, risk = _survival(30, 0)
    with pytest.raises(ValueError, match="y must be a structured array with an event field and a time field"):
        concordance_index(y["time"], risk)
    with pytest.raises(ValueError, match="y_train must be a structured array"):
        concordance_index_ipcw_score(np.ones(30), y, risk)
    with pytest.raises(ValueError, match="survival_test must be a structured array"):
        integrated_brier_score(y, [1, 2], np.ones((2, 2)), [0.1, 0.2])
    censored = Surv.from_arrays(np.zeros(30, dtype=bool), y["time"])
    with pytest.raises(ValueError, match="y: all samples are censored"):
        concordance_index(censored, risk)
    with pytest.raises(ValueError, match="y: all samples are censored"):
        bootstrap_ci(concordance_index, censored, risk)
    with pytest.raises(ValueError, match="risk has 29 rows but y has 30"):
        concordance_index(y, risk[:29])
    risk[4] = np.nan
    with pytest.raises(ValueError, match=r"risk contains NaN or infinite values in rows \[4\]"):
        cumulative_dynamic_auc_score(y, y, risk, [0.5])


# --------------------------------------------------------------------------- survival adapters


def test_survival_adapters_equal_the_sksurv_functions():
    y_train, _ = _survival(200, 0)
    y, risk = _survival(120, 1)
    event, time = y["event"], y["time"]
    assert concordance_index(y, risk) == concordance_index_censored(event, time, risk)[0]
    assert concordance_index_ipcw_score(y_train, y, risk) == concordance_index_ipcw(y_train, y, risk)[0]
    tau = np.percentile(time, 70)
    truncated = concordance_index_ipcw(y_train, y, risk, tau=tau)[0]
    assert concordance_index_ipcw_score(y_train, y, risk, tau=tau) == truncated
    times = np.percentile(time, [20, 40, 60])
    assert cumulative_dynamic_auc_score(y_train, y, risk, times) == cumulative_dynamic_auc(y_train, y, risk, times)[1]


def test_integrated_brier_score_takes_arrays_and_step_functions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 2))
    y_all, _ = _survival(150, 2)
    model = CoxPHSurvivalAnalysis().fit(X[:100], y_all[:100])
    y_train, y = y_all[:100], y_all[100:]
    times = np.percentile(y["time"], [10, 30, 50, 70])
    functions = model.predict_survival_function(X[100:])
    array = np.vstack([fn(times) for fn in functions])
    expected = sksurv_integrated_brier_score(y_train, y, array, times)
    assert integrated_brier_score(y_train, y, array, times) == expected
    assert integrated_brier_score(y_train, y, functions, times) == expected


def test_bootstrap_of_ipcw_metrics_resamples_the_test_rows_only():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 2))
    y_all, _ = _survival(150, 2)
    model = CoxPHSurvivalAnalysis().fit(X[:100], y_all[:100])
    y_train, y = y_all[:100], y_all[100:]
    times = np.percentile(y["time"], [10, 30, 50])
    functions = model.predict_survival_function(X[100:])

    def ibs(y_test, survival):
        return integrated_brier_score(y_train, y_test, survival, times)

    result = bootstrap_ci(ibs, y, functions, n_resamples=40, stratify=y["event"], random_state=0)
    assert result.estimate == integrated_brier_score(y_train, y, functions, times)
    assert result.low <= result.estimate <= result.high
    risk = model.predict(X[100:])
    uno_c = functools.partial(concordance_index_ipcw_score, y_train)
    uno = bootstrap_ci(uno_c, y, risk, n_resamples=40, random_state=0)
    assert uno.estimate == concordance_index_ipcw(y_train, y, risk)[0]


# --------------------------------------------------------------------------- ECE


def _ece_reference(outcome, confidence, edges):
    """Direct transcription: sum_b |B_b|/n |acc(B_b) - conf(B_b)|, bins (e_b, e_b+1], the first closed."""
    n, total = len(confidence), 0.0
    for b in range(len(edges) - 1):
        members = [
            i
            for i in range(n)
            if (b == 0 or confidence[i] > edges[b]) and (b == len(edges) - 2 or confidence[i] <= edges[b + 1])
        ]
        if members:
            acc = sum(float(outcome[i]) for i in members) / len(members)
            conf = sum(float(confidence[i]) for i in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_binary_equals_the_formula(strategy):
    rng = np.random.default_rng(0)
    prob = rng.uniform(size=300)
    y = (rng.uniform(size=300) < prob**1.5).astype(int)
    edges = np.linspace(0, 1, 11) if strategy == "uniform" else np.percentile(prob, np.linspace(0, 100, 11))
    expected = _ece_reference(y, prob, edges)
    assert expected > 0.02
    assert expected_calibration_error(y, prob, strategy=strategy) == pytest.approx(expected, rel=1e-12)
    two_columns = np.column_stack([1 - prob, prob])
    assert expected_calibration_error(y, two_columns, strategy=strategy) == pytest.approx(expected, rel=1e-12)


def test_ece_bins_match_calibration_curve_on_bin_edges():
    prob = np.array([0.0, 0.1, 0.2, 0.3, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0, 1.0, 0.25])
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0])
    edges = np.linspace(0, 1, 6)
    assert expected_calibration_error(y, prob, n_bins=5) == pytest.approx(_ece_reference(y, prob, edges), rel=1e-12)
    prob_true, prob_pred = calibration_curve(y, prob, n_bins=5)
    counts = np.bincount(np.searchsorted(edges[1:-1], prob), minlength=5)
    counts = counts[counts > 0]
    weighted = np.sum(counts / len(y) * np.abs(prob_true - prob_pred))
    assert expected_calibration_error(y, prob, n_bins=5) == pytest.approx(weighted, rel=1e-12)


def test_ece_multilabel_and_multiclass_top_label():
    rng = np.random.default_rng(1)
    prob = rng.uniform(size=(200, 3))
    y = (rng.uniform(size=(200, 3)) < prob).astype(int)
    edges = np.linspace(0, 1, 11)
    per_label = [_ece_reference(y[:, j], prob[:, j], edges) for j in range(3)]
    np.testing.assert_allclose(expected_calibration_error(y, prob, average=None), per_label, rtol=1e-12)
    assert expected_calibration_error(y, prob) == pytest.approx(np.mean(per_label), rel=1e-12)

    proba = rng.dirichlet(np.ones(4), size=200)
    classes = np.array(["a", "b", "c", "d"])
    labels = classes[[rng.choice(4, p=p) for p in proba]]
    correct = classes[proba.argmax(axis=1)] == labels
    expected = _ece_reference(correct, proba.max(axis=1), edges)
    assert expected_calibration_error(labels, proba, labels=classes) == pytest.approx(expected, rel=1e-12)


def test_ece_of_a_calibrated_constant_forecast_is_zero():
    y = np.array([1, 0, 0, 0] * 25)
    assert expected_calibration_error(y, np.full(100, 0.25)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0, 1], [0.2, 1.2]), {}, r"y_prob must hold probabilities in \[0, 1\]"),
        (([0, 1], [0.2, np.nan]), {}, r"y_prob contains NaN or infinite values in rows \[1\]"),
        (([0, 1, 1], [0.2, 0.3]), {}, "y_prob has 2 rows but y_true has 3"),
        (([0, 1], [0.2, 0.3]), {"n_bins": 0}, "n_bins == 0, must be >= 1"),
        (([0, 1], [0.2, 0.3]), {"strategy": "kmeans"}, "strategy must be"),
        (([0, 1], [0.2, 0.3]), {"average": "micro"}, "average must be"),
        ((["no", "yes"], [0.2, 0.3]), {}, "pass pos_label="),
        (([0, 1, 2], np.full((3, 4), 0.25)), {}, "y_prob has 4 columns but there are 3 classes"),
        (([0, 1, 5], np.full((3, 3), 1 / 3)), {"labels": [0, 1, 2]}, r"y_true has labels not in labels, in rows \[2\]"),
    ],
)
def test_ece_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(*args, **kwargs)


def test_ece_with_pos_label():
    y = np.array(["no", "yes", "yes", "no"])
    prob = np.array([0.2, 0.6, 0.9, 0.4])
    assert expected_calibration_error(y, prob, pos_label="yes") == expected_calibration_error(y == "yes", prob)


# --------------------------------------------------------------------------- AUROC / AUPRC


def test_auroc_and_auprc_equal_sklearn_for_every_layout():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    score = y + rng.normal(size=100)
    proba = np.column_stack([1 - score, score])
    assert auroc(y, score) == auroc(y, proba) == roc_auc_score(y, score)
    assert auprc(y, score) == auprc(y, proba) == average_precision_score(y, score)

    classes = rng.integers(0, 3, 100)
    proba = rng.dirichlet(np.ones(3), size=100) + np.eye(3)[classes]
    proba /= proba.sum(axis=1, keepdims=True)
    assert auroc(classes, proba) == pytest.approx(roc_auc_score(classes, proba, multi_class="ovr"), rel=1e-12)
    assert auprc(classes, proba) == pytest.approx(average_precision_score(classes, proba), rel=1e-12)

    indicator = rng.integers(0, 2, (100, 4))
    scores = indicator + rng.normal(size=(100, 4))
    for average in ("macro", "micro", "weighted"):
        assert auroc(indicator, scores, average=average) == roc_auc_score(indicator, scores, average=average)
        assert auprc(indicator, scores, average=average) == average_precision_score(indicator, scores, average=average)


def test_auprc_without_positives_is_undefined():
    with pytest.warns(UndefinedMetricWarning, match="no positive"):
        assert np.isnan(auprc([0, 0, 0], [0.1, 0.2, 0.3]))
    indicator = np.array([[1, 0], [0, 0], [1, 0]])
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(auprc(indicator, np.ones((3, 2))))
    assert auprc(indicator, np.ones((3, 2)), average="micro") == average_precision_score(
        indicator, np.ones((3, 2)), average="micro"
    )


def test_auroc_keeps_columns_aligned_with_labels():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]])
    y = np.array([0, 1, 2, 0])
    assert auroc(y, proba, labels=[0, 1, 2]) == auroc(y, proba)
    with pytest.raises(ValueError, match="y_score has 3 columns but there are 2 classes"):
        auroc(np.array([0, 1, 1, 0]), proba)
    with pytest.raises(ValueError, match="average must be one of"):
        auroc(y, proba, average=None)
    with pytest.raises(ValueError, match="y_score has shape"):
        auroc(np.eye(4, 2, dtype=int), proba)


# --------------------------------------------------------------------------- length of stay


def test_linear_weighted_kappa_is_sklearns():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    pred = np.clip(y + rng.integers(-2, 3, 200), 0, 9)
    assert linear_weighted_kappa(y, pred) == cohen_kappa_score(y, pred, weights="linear")
    proba = np.eye(10)[pred] * 0.5 + 0.05
    assert linear_weighted_kappa(y, proba) == cohen_kappa_score(y, pred, labels=np.arange(10), weights="linear")


def test_mean_absolute_deviation():
    assert mean_absolute_deviation([10.0, 20.0, 40.0], [12.0, 15.0, 41.0]) == pytest.approx(8 / 3)
    bin_values = np.array([11.5, 35.0, 59.0])
    buckets = np.array([0, 2, 1, 1])
    y = np.array([5.0, 70.0, 30.0, 40.0])
    expected = mean_absolute_error(y, bin_values[buckets])
    assert mean_absolute_deviation(y, buckets, bin_values=bin_values) == expected
    assert mean_absolute_deviation(y, np.eye(3)[buckets], bin_values=bin_values) == expected
    with pytest.raises(ValueError, match=r"rows \[1\] do not"):
        mean_absolute_deviation(y, [0, 3, 1, 1], bin_values=bin_values)
    with pytest.raises(ValueError, match="y_pred has 4 columns but bin_values has 3"):
        mean_absolute_deviation(y, np.eye(4), bin_values=bin_values)
    with pytest.raises(ValueError, match="y_pred has 3 rows but y_true has 4"):
        mean_absolute_deviation(y, [1.0, 2.0, 3.0])
