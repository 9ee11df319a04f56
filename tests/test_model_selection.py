"""compare_fusion: the same splits for every model, intervals and paired tests from shared resamples."""

import joblib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import GroupKFold, KFold, RepeatedStratifiedKFold, cross_val_score  # noqa: E402

import skfusion  # noqa: E402
from skfusion import (  # noqa: E402
    ConcatClassifier,
    ConcatSurvival,
    LateFusionSurvival,
    UnimodalClassifier,
    UnimodalSurvival,
)
from skfusion.datasets import make_multimodal_classification, make_multimodal_survival  # noqa: E402
from skfusion.metrics import (  # noqa: E402
    MeanOverSplits,
    bootstrap_ci,
    concordance_index,
    paired_bootstrap_test,
)
from skfusion.metrics._bootstrap import _MetricOnRows, _on_rows  # noqa: E402
from skfusion.model_selection import _splits, compare_fusion, format_comparison, fusion_models  # noqa: E402
from skfusion.plot import plot_comparison  # noqa: E402

FAST = {"max_epochs": 8, "random_state": 0}


@pytest.fixture(scope="module")
def survival():
    return make_multimodal_survival(n_samples=240, n_external=120, random_state=0)


ROWS = np.arange(240)


def _survival_models():
    return {
        "img only": UnimodalSurvival(modality="img", **FAST),
        "concatenation": ConcatSurvival(**FAST),
        "late fusion": LateFusionSurvival(**FAST),
    }


def test_cohort_rows_equal_bootstrap_ci_and_paired_test(survival):
    X, y, X_ext, y_ext = survival
    table = compare_fusion(
        X, y, models=_survival_models(), cv=None, cohorts={"external": (X_ext, y_ext)},
        n_resamples=200, random_state=3,
    )
    risks = {name: model.fit(X, y).predict(X_ext) for name, model in _survival_models().items()}
    for row in table.itertuples():
        ci = bootstrap_ci(concordance_index, y_ext, risks[row.model], n_resamples=200, random_state=3)
        assert (row.estimate, row.low, row.high) == pytest.approx((ci.estimate, ci.low, ci.high), abs=1e-12)
        for column, ref in (("p_reference", "img only"), ("p_fusion_reference", "concatenation")):
            p = getattr(row, column)
            if row.model == ref:
                assert np.isnan(p)
            else:
                test = paired_bootstrap_test(
                    concordance_index, y_ext, risks[row.model], risks[ref], n_resamples=200, random_state=3
                )
                assert p == test.pvalue
    # Every row with the top estimate is marked (models that end at their linear start tie).
    assert table["best"].tolist() == (table["estimate"] == table["estimate"].max()).tolist()
    assert table.attrs["metric"] == "concordance_index"


def test_cross_validation_estimate_is_the_mean_fold_score(survival):
    X, y, _, _ = survival
    cv = KFold(3, shuffle=True, random_state=0)
    table = compare_fusion(X, y, models=_survival_models(), cv=cv, n_resamples=50, random_state=0)
    assert (table["cohort"] == "cross-validation").all()
    for row in table.itertuples():
        # SurvivalMixin.score is Harrell's C of predict, the default metric.
        folds = cross_val_score(_survival_models()[row.model], X, y, cv=cv)
        assert row.estimate == pytest.approx(folds.mean(), abs=1e-12)
        assert row.low <= row.high


def test_classification_and_repeated_splits():
    X, y = make_multimodal_classification(n_samples=200, random_state=1)
    models = {"img only": UnimodalClassifier(modality="img", **FAST), "concatenation": ConcatClassifier(**FAST)}
    cv = RepeatedStratifiedKFold(n_splits=2, n_repeats=2, random_state=0)
    table = compare_fusion(X, y, models=models, cv=cv, n_resamples=50, random_state=0)
    splits = list(cv.split(X, y))
    for row in table.itertuples():
        folds = []
        for train, test in splits:
            proba = models[row.model].fit(X.iloc[train], y[train]).predict_proba(X.iloc[test])
            folds.append(roc_auc_score(y[test], proba[:, 1]))
        assert row.estimate == pytest.approx(np.mean(folds), abs=1e-12)
    assert table.attrs["metric"] == "auroc"


def test_harrell_over_splits_fast_path_equals_the_metric():
    rng = np.random.default_rng(0)
    n = 60
    X, y = make_multimodal_survival(n_samples=n, random_state=0)
    tests = [t for _, t in KFold(3, shuffle=True, random_state=0).split(X)] * 2
    scores = [MeanOverSplits.pack(tests, [rng.normal(size=len(t)) for t in tests], n) for _ in range(3)]
    metric = MeanOverSplits(concordance_index)
    indices = rng.integers(0, n, size=(20, n))
    fast = _on_rows(metric, y, scores)
    assert type(fast).__name__ == "_HarrellOverSplitsOnRows"
    np.testing.assert_allclose(fast(indices), _MetricOnRows(metric, y, scores)(indices), atol=1e-12)


def test_default_models_run_end_to_end(survival):
    X, y, X_ext, y_ext = survival
    models = fusion_models(X, max_epochs=2, random_state=0)
    table = skfusion.compare_fusion(
        X, y, models=models, cv=2, cohorts={"external": (X_ext, y_ext)}, n_resamples=40, random_state=0
    )
    assert table["cohort"].unique().tolist() == ["cross-validation", "external"]
    assert table["model"].unique().tolist() == list(models)
    top = table.groupby("cohort")["estimate"].transform("max")
    assert table["best"].tolist() == (table["estimate"] == top).tolist()
    text = format_comparison(table)
    assert text.shape == (len(models), 2)
    bold = text.map(lambda cell: cell.startswith("**")).sum().tolist()
    assert bold == table.groupby("cohort", sort=False)["best"].sum().tolist() and min(bold) >= 1
    ax = plot_comparison(table, reference=0.5)
    assert ax.get_xlabel() == "Harrell's C-index (95% CI)"
    plt.close(ax.figure)


def test_fusion_models_names_and_settings():
    X, _ = make_multimodal_classification(n_samples=30, random_state=0)
    models = fusion_models(X, task="classification", max_epochs=3, lr=0.01, attention_dim=8)
    assert list(models) == [
        "img only", "ehr only", "concatenation", "late fusion", "contrastive", "cross-attention",
        "co-attention (img guide)", "co-attention (ehr guide)",
    ]
    assert all(type(m).__name__.endswith("Classifier") for m in models.values())
    assert {m.max_epochs for m in models.values()} == {3}
    assert models["co-attention (ehr guide)"].guide == "ehr"
    assert models["cross-attention"].attention_dim == models["co-attention (img guide)"].attention_dim == 8
    three = make_multimodal_survival(n_samples=30, random_state=0)[0].assign(
        lab__0=np.arange(30.0), lab__1=np.ones(30)
    )
    assert "cross-attention" not in fusion_models(three)


PARALLEL_KWARGS = {"cv": 2, "n_resamples": 40, "random_state": 0}


@pytest.fixture(scope="module")
def serial_table(survival):
    # One torch thread, as in the workers below: the serial fits are then theirs operation for
    # operation (a multi-threaded reduction adds in another order), so the tables agree exactly.
    X, y, _, _ = survival
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return compare_fusion(X, y, models=_survival_models(), **PARALLEL_KWARGS)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_parallel_runs_give_the_same_table(survival, serial_table):
    X, y, _, _ = survival
    with joblib.parallel_backend("loky", inner_max_num_threads=1):
        parallel = compare_fusion(X, y, models=_survival_models(), n_jobs=2, **PARALLEL_KWARGS)
    np.testing.assert_array_equal(serial_table[["estimate", "low", "high"]], parallel[["estimate", "low", "high"]])


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_table(survival, serial_table):
    distributed = pytest.importorskip("distributed")
    X, y, _, _ = survival
    # Worker processes, as on a real cluster: threads of one process would share the torch
    # generator that every fit seeds, and race for it.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0", processes=True
    ) as cluster, distributed.Client(cluster):
        with joblib.parallel_backend("dask"):
            on_dask = compare_fusion(X, y, models=_survival_models(), n_jobs=2, **PARALLEL_KWARGS)
    np.testing.assert_array_equal(serial_table[["estimate", "low", "high"]], on_dask[["estimate", "low", "high"]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cv": None}, "nothing to evaluate"),
        ({"reference": "ehr only"}, r"reference='ehr only' is not one of the models \['img only', 'concatenation'"),
        ({"fusion_reference": "late"}, "fusion_reference='late' is not one of the models"),
        ({"cohorts": [1, 2]}, "cohorts must be a dict"),
        ({"cohorts": {"site B": "frame"}}, "cohort 'site B' must be an"),
        ({"response_method": "predict_survival_function"}, "response_method must be"),
        ({"cv": 2.5}, r"cv must be an int of at least 2 .* or None; got 2\.5"),
        ({"cv": "3"}, r"cv must be an int of at least 2 .*; got '3'"),
        ({"cv": 1}, r"cv must be an int of at least 2 .*; got 1\."),
        ({"cv": [(ROWS, ROWS)]}, r"cv split 0: rows \[0, 1, 2, .* \(240 rows\)\] are both training and test rows"),
        ({"cv": [(ROWS[:120], ROWS[120:]), (ROWS[:200], ROWS[190:])]}, r"cv split 1: rows \[190, 191, .*\] are both"),
        ({"cv": [(ROWS[:200], np.r_[ROWS[200:], 240, 300])]}, r"cv split 0: test row positions \[240, 300\] are outside X"),
        ({"cv": [(ROWS[:200] - 5, ROWS[200:])]}, r"cv split 0: training row positions \[-5, -4, -3, -2, -1\] are outside X"),
        ({"cv": [(ROWS[:200] * 1.0, ROWS[200:])]}, r"cv split 0: its training rows must be integer row positions"),
        ({"cv": [(ROWS, [])]}, r"cv split 0 has no test rows"),
        ({"cv": [ROWS]}, r"cv split 0 must be a \(train, test\) pair"),
        ({"cv": GroupKFold(3)}, r"cv=GroupKFold\(.*\) splits by groups: pass groups= to compare_fusion"),
        ({"cv": 3, "groups": ROWS[:-1]}, r"groups must hold one label per row of X \(240 rows\); got shape \(239,\)"),
        ({"cv": KFold(3), "groups": ROWS % 40}, r"cv split 0: groups \[0, 1, 2, .*\] have rows in both the training and the test"),
        ({"n_resamples": 20}, r"n_resamples=20 is too few for a two-sided 95% interval"),
    ],
)
def test_bad_arguments(survival, kwargs, match):
    X, y, _, _ = survival
    models = {"img only": UnimodalSurvival(modality="img"), "concatenation": ConcatSurvival()}
    with pytest.raises(ValueError, match=match):
        compare_fusion(X, y, models=models, **kwargs)


def test_int_cv_with_groups_keeps_each_group_in_one_fold(survival):
    X, y, _, _ = survival
    groups = np.random.default_rng(0).integers(0, 60, len(y))
    splits = _splits(4, X, y, groups, "survival", random_state=0)
    assert len(splits) == 4
    assert sorted(np.concatenate([test for _, test in splits]).tolist()) == ROWS.tolist()
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert y["event"][test].any()


def test_a_group_splitter_gets_the_groups(survival):
    X, y, _, _ = survival
    groups = ROWS % 30
    models = {"img only": UnimodalSurvival(modality="img", **FAST)}
    table = compare_fusion(
        X, y, models=models, cv=GroupKFold(2), groups=groups, fusion_reference=None, n_resamples=40, random_state=0
    )
    folds = cross_val_score(models["img only"], X, y, cv=GroupKFold(2), groups=groups)
    assert table["estimate"].item() == pytest.approx(folds.mean(), abs=1e-12)


def test_errors_of_a_fold_name_the_model_and_the_split(survival):
    X, y, _, _ = survival
    events, censored = np.flatnonzero(y["event"]), np.flatnonzero(~y["event"])
    models = {"img only": UnimodalSurvival(modality="img", **FAST)}
    training_without_events = [(censored[:40], np.r_[censored[40:], events])]
    with pytest.raises(ValueError, match=r"model 'img only', cross-validation split 0: .*all samples are censored"):
        compare_fusion(X, y, models=models, cv=training_without_events, fusion_reference=None, n_resamples=40)
    test_without_events = [(ROWS[:120], ROWS[120:]), (np.r_[censored[:40], events], censored[40:])]
    with pytest.raises(ValueError, match=r"test fold of cross-validation split 1: y: all samples are censored"):
        compare_fusion(X, y, models=models, cv=test_without_events, fusion_reference=None, n_resamples=40)


def test_cohort_length_mismatch_is_named(survival):
    X, y, X_ext, y_ext = survival
    with pytest.raises(ValueError, match="cohort 'external': X has 120 rows but y has 119"):
        compare_fusion(X, y, models=_survival_models(), cv=None, cohorts={"external": (X_ext, y_ext[:-1])})


def test_fusion_models_bad_arguments():
    X, _ = make_multimodal_survival(n_samples=30, random_state=0)
    with pytest.raises(ValueError, match=r"no model of the table has a parameter 'n_trees'"):
        fusion_models(X, n_trees=3)
    with pytest.raises(ValueError, match="task must be"):
        fusion_models(X, task="regression")
    with pytest.raises(ValueError, match=r"at least two modalities; X has \['img'\]"):
        fusion_models(X.filter(like="img__"))


def test_format_and_plot_markers():
    import pandas as pd

    table = pd.DataFrame(
        {
            "cohort": ["a", "a", "a"],
            "model": ["img only", "concatenation", "contrastive"],
            "estimate": [0.70, 0.72, 0.75],
            "low": [0.65, 0.69, 0.70],
            "high": [0.74, 0.76, 0.78],
            "p_reference": [np.nan, 0.2, 0.01],
            "p_fusion_reference": [0.3, np.nan, 0.04],
            "best": [False, False, True],
        }
    )
    cells = format_comparison(table, digits=2)["a"].tolist()
    assert cells == ["0.70 (0.65–0.74)", "0.72 (0.69–0.76)", "**0.75*+ (0.70–0.78)**"]
    assert format_comparison(table, alpha=0.02, digits=2)["a"].iloc[2] == "**0.75* (0.70–0.78)**"
    ax = plot_comparison(table)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "img only", "concatenation", "contrastive *+ (best)"]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="pass the result of compare_fusion"):
        plot_comparison(table.drop(columns="best"))
