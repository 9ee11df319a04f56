"""Late fusion's two training modes: joint heads, or separately trained unimodal models averaged."""

import numpy as np
import pytest

from skfusion import LateFusionClassifier, LateFusionSurvival
from skfusion.datasets import make_multimodal_classification, make_multimodal_survival

FAST = {"max_epochs": 15, "lr": 0.01, "hidden_dims": [8], "random_state": 0}
MISSING_IMG = slice(0, 15)
MISSING_EHR = slice(15, 25)


def _drop_modalities(X):
    """The first 15 rows lose the image, the next 10 the EHR."""
    X = X.copy()
    X.iloc[MISSING_IMG, [c.startswith("img__") for c in X.columns]] = np.nan
    X.iloc[MISSING_EHR, [c.startswith("ehr__") for c in X.columns]] = np.nan
    return X


@pytest.fixture(scope="module")
def classification():
    X, y = make_multimodal_classification(n_samples=160, n_classes=3, n_features=(12, 8), random_state=0)
    return _drop_modalities(X), y


@pytest.fixture(scope="module")
def survival():
    X, y = make_multimodal_survival(n_samples=160, n_features=(12, 8), random_state=0)
    return _drop_modalities(X), y


def _present(X, name):
    return X.filter(like=f"{name}__").notna().all(axis=1).to_numpy()


def _block(X, name):
    return X[[c for c in X.columns if c.startswith(f"{name}__")]]


def _unimodal(model, X, method):
    """Each unimodal model's predictions on the rows that have its modality (NaN elsewhere)."""
    out = {}
    for name, unimodal in model.estimators_.items():
        rows = _present(X, name)
        values = getattr(unimodal, method)(X[rows])
        out[name] = np.full((len(X), *values.shape[1:]), np.nan)
        out[name][rows] = values
    return out


def test_average_mode_averages_the_unimodal_probabilities(classification):
    X, y = classification
    model = LateFusionClassifier(mode="average", **FAST).fit(X, y)
    assert list(model.estimators_) == ["img", "ehr"]
    got = model.predict_proba(X)
    img, ehr = _unimodal(model, X, "predict_proba").values()
    np.testing.assert_allclose(got[25:], (img[25:] + ehr[25:]) / 2, atol=1e-6)
    # A row missing a modality gets the other model's prediction alone.
    np.testing.assert_allclose(got[MISSING_IMG], ehr[MISSING_IMG], atol=1e-6)
    np.testing.assert_allclose(got[MISSING_EHR], img[MISSING_EHR], atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_each_unimodal_model_is_trained_alone_on_the_rows_with_its_modality(classification):
    X, y = classification
    model = LateFusionClassifier(mode="average", **FAST).fit(X, y)
    rng = np.random.RandomState(0)
    for name in ("img", "ehr"):
        seed = rng.randint(np.iinfo(np.int32).max)
        rows = _present(X, name)
        alone = LateFusionClassifier(modalities=[name], linear_path=False, **{**FAST, "random_state": seed})
        alone.fit(X[rows], y[rows])
        np.testing.assert_allclose(
            model.estimators_[name].predict_proba(X[rows]), alone.predict_proba(X[rows]), atol=1e-6
        )
    # Trained on its own modality only: the image model reads no EHR column.
    rows = _present(X, "img")
    no_ehr = X.assign(**{c: 0.0 for c in _block(X, "ehr").columns})
    np.testing.assert_allclose(
        model.estimators_["img"].predict_proba(X[rows]), model.estimators_["img"].predict_proba(no_ehr[rows])
    )


def test_average_mode_multilabel_averages_per_label_sigmoids(classification):
    X, _ = classification
    rng = np.random.default_rng(0)
    Y = (rng.random((len(X), 3)) < 0.4).astype(int)
    model = LateFusionClassifier(mode="average", **FAST).fit(X, Y)
    img, ehr = _unimodal(model, X, "predict_proba").values()
    got = model.predict_proba(X)
    np.testing.assert_allclose(got[25:], (img[25:] + ehr[25:]) / 2, atol=1e-6)
    np.testing.assert_allclose(got[MISSING_IMG], ehr[MISSING_IMG], atol=1e-6)


def test_joint_mode_trains_the_heads_on_the_average(classification):
    X, y = classification
    joint = LateFusionClassifier(**FAST).fit(X, y)
    assert joint.mode == "joint" and not hasattr(joint, "estimators_")
    average = LateFusionClassifier(mode="average", **FAST).fit(X, y)
    assert not np.allclose(joint.predict_proba(X), average.predict_proba(X), atol=1e-3)


def test_average_mode_survival_averages_centred_log_hazards(survival):
    X, y = survival
    model = LateFusionSurvival(mode="average", **FAST).fit(X, y)
    centred = {name: risk - np.nanmean(risk) for name, risk in _unimodal(model, X, "predict").items()}
    got = model.predict(X)
    np.testing.assert_allclose(got[25:], (centred["img"][25:] + centred["ehr"][25:]) / 2, atol=1e-5)
    np.testing.assert_allclose(got[MISSING_IMG], centred["ehr"][MISSING_IMG], atol=1e-5)
    np.testing.assert_allclose(got[MISSING_EHR], centred["img"][MISSING_EHR], atol=1e-5)
    # The Breslow baseline is fitted on the averaged log-hazards: S(t) = exp(-H0(t) exp(risk)).
    surv = model.predict_survival_function(X, return_array=True)
    h0 = model.survival_model_.cum_baseline_hazard_
    expected = np.exp(-np.exp(got)[:, None] * h0(model.unique_times_)[None, :])
    np.testing.assert_allclose(surv, expected, rtol=1e-6)
    assert model.score(X, y) > 0.6


def test_average_mode_survival_needs_cox(survival):
    X, y = survival
    with pytest.raises(ValueError, match="mode='average' averages log relative hazards and needs loss='cox'"):
        LateFusionSurvival(mode="average", loss="weibull", **FAST).fit(X, y)


def test_average_mode_needs_every_class_in_each_modality(classification):
    X, y = classification
    y = y.copy()
    # Class 2 only on rows without the image.
    y[MISSING_IMG] = 2
    y[15:][y[15:] == 2] = 0
    with pytest.raises(ValueError, match=r"no row with modality 'img' has class\(es\) \[2\]"):
        LateFusionClassifier(mode="average", **FAST).fit(X, y)


def test_mode_is_validated(classification):
    X, y = classification
    with pytest.raises(ValueError, match="'mode' parameter of LateFusionClassifier must be a str among"):
        LateFusionClassifier(mode="vote").fit(X, y)
