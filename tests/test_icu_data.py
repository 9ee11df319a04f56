import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from skfusion.datasets._icu import (
    LOS_BUCKET_EDGES,
    PHENOTYPES,
    _intercept,
    make_icu_timeseries,
)
from skfusion.encoders.timeseries import VARIABLES, ClinicalTimeSeriesDiscretizer


@pytest.mark.parametrize(
    ("task", "y_shape"),
    [
        ("in_hospital_mortality", (20,)),
        ("decompensation", (20,)),
        ("length_of_stay", (20,)),
        ("phenotyping", (20, 25)),
        ("radiology", (20, 14)),
    ],
)
def test_shapes_and_event_frames(task, y_shape):
    X, y, truth = make_icu_timeseries(20, task=task, n_image_features=8, return_truth=True, random_state=0)
    assert list(X.columns) == ["ts"] + [f"img__{j}" for j in range(8)]
    assert y.shape == y_shape and y.dtype.kind == "i"
    assert truth.latent.shape == (20, 3) and truth.proba.shape[0] == 20
    events = pd.concat(list(X["ts"]))
    assert set(events["code"]) <= set(VARIABLES)
    assert (events["time"] >= 0).all()
    last = np.array([f["time"].max() for f in X["ts"]])
    assert np.all(last <= truth.hours + 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unknown variable, no implausible value
        series = ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"]
    assert all(s.shape[1] == 76 for s in series)


def test_in_hospital_mortality_covers_48_hours():
    X, _ = make_icu_timeseries(10, random_state=1)
    series = ClinicalTimeSeriesDiscretizer(max_hours=48).fit_transform(X)["ts"]
    assert {s.shape[0] for s in series} == {24}


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_missing_image_rate(rate):
    X, _, truth = make_icu_timeseries(30, missing_rate=rate, return_truth=True, random_state=2)
    image = X.filter(like="img__").to_numpy()
    missing = np.isnan(image).all(axis=1)
    assert missing.sum() == round(rate * 30)
    assert not np.isnan(image[~missing]).any()
    np.testing.assert_array_equal(~missing, truth.image_present)


def test_prevalence_as_asked():
    _, y, truth = make_icu_timeseries(400, prevalence=0.3, return_truth=True, random_state=3)
    assert abs(truth.proba.mean() - 0.3) < 0.03
    assert abs(y.mean() - 0.3) < 0.07
    _, y, truth = make_icu_timeseries(200, task="phenotyping", return_truth=True, random_state=3)
    expected = np.array([p[2] for p in PHENOTYPES])
    np.testing.assert_allclose(truth.proba.mean(axis=0), expected, atol=0.05)
    assert np.corrcoef(y.mean(axis=0), expected)[0, 1] > 0.9
    _, y = make_icu_timeseries(200, task="radiology", prevalence=0.2, random_state=3)
    assert abs(y.mean() - 0.2) < 0.05


def test_intercept_solves_the_population_prevalence():
    # Reference: Monte Carlo over the latent, independent of the quadrature.
    z = np.random.default_rng(0).normal(size=400_000)
    for scale, prevalence in [(0.5, 0.05), (1.8, 0.13), (3.0, 0.6)]:
        assert expit(_intercept(scale, prevalence) + scale * z).mean() == pytest.approx(prevalence, abs=3e-3)


def test_length_of_stay_buckets():
    _, y, truth = make_icu_timeseries(200, task="length_of_stay", return_truth=True, random_state=4)
    assert truth.proba.shape == (200, 10) and len(LOS_BUCKET_EDGES) == 11
    np.testing.assert_allclose(truth.proba.sum(axis=1), 1.0)
    assert y.min() >= 0 and y.max() <= 9 and len(np.unique(y)) >= 6
    # Sicker patients stay longer: the true expected bucket rises with severity.
    expected_bucket = truth.proba @ np.arange(10)
    assert np.corrcoef(expected_bucket, truth.severity)[0, 1] > 0.5


def test_deterministic_under_random_state():
    X1, y1 = make_icu_timeseries(8, task="phenotyping", random_state=5)
    X2, y2 = make_icu_timeseries(8, task="phenotyping", random_state=5)
    X3, _ = make_icu_timeseries(8, task="phenotyping", random_state=6)
    np.testing.assert_array_equal(y1, y2)
    pd.testing.assert_frame_equal(X1.drop(columns="ts"), X2.drop(columns="ts"))
    for a, b in zip(X1["ts"], X2["ts"]):
        pd.testing.assert_frame_equal(a, b)
    assert not X1["ts"][0].equals(X3["ts"][0])


def test_signal_in_the_vitals():
    X, y, truth = make_icu_timeseries(240, prevalence=0.25, return_truth=True, random_state=7)
    series = ClinicalTimeSeriesDiscretizer(max_hours=48).fit_transform(X)["ts"]
    features = np.stack([np.hstack([s.mean(axis=0), s[-1]]) for s in series])
    train, test = np.arange(160), np.arange(160, 240)
    model = LogisticRegression(C=0.1, max_iter=2000).fit(features[train], y[train])
    auc = roc_auc_score(y[test], model.predict_proba(features[test])[:, 1])
    oracle = roc_auc_score(y[test], truth.proba[test])
    assert auc > 0.65
    assert oracle > auc - 0.05


def test_signal_in_the_image():
    X, y, truth = make_icu_timeseries(300, task="radiology", missing_rate=0.0, return_truth=True, random_state=8)
    image = X.filter(like="img__").to_numpy()
    train, test = np.arange(200), np.arange(200, 300)
    aucs = []
    for k in np.flatnonzero((y[test].sum(axis=0) >= 5) & (y[train].sum(axis=0) >= 5)):
        model = LogisticRegression(C=0.1).fit(image[train], y[train, k])
        aucs.append(roc_auc_score(y[test, k], model.predict_proba(image[test])[:, 1]))
    assert len(aucs) >= 8 and np.mean(aucs) > 0.65
    # The image carries severity and the radiographic factor, not the physiological one.
    design = np.c_[image, np.ones(300)]
    fitted = design @ np.linalg.lstsq(design, truth.latent, rcond=None)[0]
    r2 = 1 - ((fitted - truth.latent) ** 2).mean(axis=0) / truth.latent.var(axis=0)
    assert r2[0] > 0.5 and r2[2] > 0.5 and r2[1] < 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "mortality"}, "task must be one of"),
        ({"n_samples": 0}, "n_samples"),
        ({"missing_rate": 1.5}, "missing_rate"),
        ({"n_image_features": 0}, "n_image_features"),
        ({"task": "length_of_stay", "prevalence": 0.2}, "prevalence does not apply"),
        ({"task": "phenotyping", "prevalence": [0.1, 0.2]}, "25 numbers"),
        ({"prevalence": 1.0}, "prevalence"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_icu_timeseries(**{"n_samples": 5, **kwargs})



def test_medfuse_reads_the_discretized_stays_and_missing_images():
    medfuse = pytest.importorskip("skfusion.fusion.medfuse")
    X, y = make_icu_timeseries(40, missing_rate=0.5, n_image_features=8, prevalence=0.4, random_state=0)
    Xt = ClinicalTimeSeriesDiscretizer(max_hours=48).fit_transform(X)
    model = medfuse.MedFuseClassifier(lstm_dim=8, fusion_dim=8, max_epochs=2, random_state=0).fit(Xt, y)
    assert [spec.name for spec in model.layout_] == ["ts", "img"]
    proba = model.predict_proba(Xt)
    assert proba.shape == (40, 2)
    np.testing.assert_array_equal(model.predict(Xt), model.classes_[proba.argmax(axis=1)])
