"""MedFuse estimators: missing images, batch independence, the two-stage procedure, contracts."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_batch_invariant, assert_float32_close, skip_float32_batch_check
from _sample_weight_checks import WEIGHTS_ARE_NOT_ROWS
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from sksurv.util import Surv

from skfusion.fusion._pretraining import _ClassifierPretrainer
from skfusion.fusion.medfuse import MedFuseClassifier, MedFuseSurvival

TINY = {"lstm_dim": 8, "fusion_dim": 8, "max_epochs": 15, "lr": 0.01, "early_stopping": False, "random_state": 0}


def sequence_frame(n=80, n_missing=25, seed=0):
    """A "ts" column of (T_i, 3) arrays (T_i from 1 to 6), an img__0..3 block with all-NaN rows.

    The label and the risk depend on both modalities; returns ``(X, labels, survival y)``.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, size=n)
    ts = [rng.normal(size=(t, 3)).astype(np.float32) for t in lengths]
    img = rng.normal(size=(n, 4)).astype(np.float32)
    eta = np.array([s[:, 0].mean() for s in ts]) + img[:, 0]
    labels = (eta + 0.3 * rng.normal(size=n) > 0).astype(int)
    time = rng.exponential(np.exp(-eta))
    y_surv = Surv.from_arrays(rng.random(n) < 0.8, time)
    img[rng.permutation(n)[:n_missing]] = np.nan
    X = pd.DataFrame({f"img__{j}": img[:, j] for j in range(4)})
    X["ts"] = pd.Series(ts, dtype=object)
    return X, labels, y_surv


@pytest.fixture(scope="module")
def data():
    return sequence_frame()


@pytest.fixture(scope="module")
def fitted(data):
    X, labels, _ = data
    return MedFuseClassifier(**TINY).fit(X, labels)


def test_layout_defaults_to_first_sequence_and_first_vector(fitted):
    assert [(spec.name, spec.kind) for spec in fitted.layout_] == [("ts", "sequence"), ("img", "vector")]


def test_missing_image_at_fit_and_predict(data, fitted):
    X, _, _ = data
    absent = X["img__0"].isna().to_numpy()
    assert absent.any()
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(axis=1)])


@pytest.mark.float32_batch
def test_row_prediction_does_not_depend_on_batch(data, fitted):
    X, _, _ = data
    mixed = fitted.predict_proba(X)
    absent = np.flatnonzero(X["img__0"].isna().to_numpy())
    present = np.flatnonzero(X["img__0"].notna().to_numpy())
    for row in [absent[0], present[0]]:
        alone = fitted.predict_proba(X.iloc[[row]])
        assert_float32_close(alone[0], mixed[row])
    only_absent = fitted.predict_proba(X.iloc[absent])
    assert_float32_close(only_absent, mixed[absent])


def test_missing_image_differs_from_zero_image(data, fitted):
    X, _, _ = data
    row = X[X["img__0"].isna()].iloc[[0]]
    zeros = row.copy()
    zeros[[f"img__{j}" for j in range(4)]] = 0.0
    assert not np.allclose(fitted.predict_proba(row), fitted.predict_proba(zeros))


def test_missing_ehr_raises_naming_modality_and_rows(data):
    X, labels, _ = data
    X = X.copy()
    X.loc[[3, 7], "ts"] = None
    with pytest.raises(ValueError, match=r"modality 'ts' is missing .* rows \[3, 7\].*MedFuse needs its EHR"):
        MedFuseClassifier(**TINY).fit(X, labels)


@pytest.mark.parametrize(
    ("params", "columns", "match"),
    [
        ({}, ["ts"], r"MedFuse needs two modalities.*\['ts'\]"),
        ({"ehr": "img", "image": "img"}, None, "ehr and image must be different modalities; both are 'img'"),
        ({"image": "cxr"}, None, r"unknown modality name\(s\) \['cxr'\]"),
        ({"freeze_encoders": True, "pretrain_encoders": False}, None, "freeze_encoders=True needs pretrain_encoders"),
    ],
)
def test_bad_configuration(data, params, columns, match):
    X, labels, _ = data
    X = X if columns is None else X[columns]
    with pytest.raises(ValueError, match=match):
        MedFuseClassifier(**{**TINY, **params}).fit(X, labels)


@pytest.mark.parametrize(
    ("cls", "params", "name"),
    [
        (MedFuseClassifier, {"uni_modal_fraction": 1.5}, "uni_modal_fraction"),
        (MedFuseClassifier, {"projection_dim": 0}, "projection_dim"),
        (MedFuseClassifier, {"fusion_dim": 2.5}, "fusion_dim"),
        (MedFuseClassifier, {"pretrain_encoders": "yes"}, "pretrain_encoders"),
        (MedFuseSurvival, {"loss": "logistic"}, "loss"),
    ],
)
def test_invalid_parameters(data, cls, params, name):
    X, labels, y = data
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        cls(**params).fit(X, y if cls is MedFuseSurvival else labels)


def test_uni_modal_fraction_without_any_image_raises(data):
    X, labels, _ = data
    X = X.copy()
    X[[f"img__{j}" for j in range(4)]] = np.nan
    with pytest.raises(ValueError, match="uni_modal_fraction=0.0 leaves no rows.*modality 'img'"):
        MedFuseClassifier(**{**TINY, "uni_modal_fraction": 0.0}).fit(X, labels)


def _trained_rows(model):
    return sum(batch["train_batch_size"] for batch in model.net_.history[0, "batches"])


@pytest.mark.parametrize("fraction", [0.0, 0.4])
def test_uni_modal_fraction_keeps_that_share_of_image_less_rows(data, fraction):
    X, labels, _ = data
    n_absent = int(X["img__0"].isna().sum())
    model = MedFuseClassifier(**{**TINY, "max_epochs": 1, "uni_modal_fraction": fraction}).fit(X, labels)
    assert _trained_rows(model) == len(X) - n_absent + round(fraction * n_absent)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_pretrained_frozen_encoder_is_the_first_stage_encoder(data):
    X, labels, _ = data
    model = MedFuseClassifier(**{**TINY, "freeze_encoders": True}).fit(X, labels)
    encoder = model.network_.encoders["ts"]
    assert not any(p.requires_grad for p in encoder.parameters())
    # The first stage: the EHR encoder alone with a linear head, seeded by the first draw.
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    settings = {k: getattr(model, k) for k in ("lr", "batch_size", "max_epochs", "early_stopping", "weight_decay", "device")}
    alone = _ClassifierPretrainer(modality="ts", encoder=model._make_encoder, random_state=seed, **settings)
    expected = _state(alone.fit(X, labels).network_.encoder)
    for name, value in _state(encoder).items():
        torch.testing.assert_close(value, expected[name])
    # Fine-tuning (the default) moves the same starting weights.
    tuned = MedFuseClassifier(**TINY).fit(X, labels).network_.encoders["ts"]
    assert any(not torch.equal(value, expected[name]) for name, value in _state(tuned).items())


def test_random_init_when_not_pretrained_and_other_sizes(data):
    X, labels, _ = data
    model = MedFuseClassifier(**{**TINY, "pretrain_encoders": False, "projection_dim": 5, "hidden_dims": [4]})
    model.fit(X, labels)
    net = model.network_
    assert net.fusion.input_size == 5 and net.fusion.hidden_size == 8
    assert isinstance(net.projections["ts"], torch.nn.Linear)
    assert model.score(X, labels) > 0.5


def test_sequence_image_gets_and_pretrains_an_lstm(data):
    X, labels, _ = data
    X = X[["ts"]].assign(cxr=[np.vstack([s, s]) for s in X["ts"]])
    model = MedFuseClassifier(**{**TINY, "image": "cxr", "freeze_encoders": True}).fit(X, labels)
    encoders = model.network_.encoders
    assert [spec.name for spec in model.layout_] == ["ts", "cxr"]
    assert all(not p.requires_grad for name in ("ts", "cxr") for p in encoders[name].parameters())


def test_multilabel(data):
    X, labels, _ = data
    Y = np.column_stack([labels, 1 - labels, labels])
    proba = MedFuseClassifier(**TINY).fit(X, Y).predict_proba(X)
    assert proba.shape == (len(X), 3)


CHECKED = [MedFuseClassifier(lstm_dim=8, fusion_dim=8, max_epochs=10, lr=0.05, random_state=0)]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: WEIGHTS_ARE_NOT_ROWS)
def test_sklearn_compatible_classifier(estimator, check):
    # oneDNN's float32 LSTM (PyTorch's CPU default) rounds a row by its batch position on some CPUs
    skip_float32_batch_check(check, ["check_methods_sample_order_invariance"])
    check(estimator)


@pytest.mark.parametrize("estimator", CHECKED, ids=lambda e: type(e).__name__)
@pytest.mark.float32_batch
def test_row_outputs_do_not_depend_on_the_batch(estimator):
    assert_batch_invariant(estimator)


def check_survival_contract(estimator, X, y):
    """scikit-survival's contract on a fitted-from-scratch clone: predictions, functions, pickling, CV."""
    model = clone(estimator).fit(X, y)
    risk = model.predict(X)
    assert risk.shape == (len(X),)
    surv = model.predict_survival_function(X.iloc[:5], return_array=True)
    assert surv.shape == (5, len(model.unique_times_))
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 1e-12)
    funcs = model.predict_survival_function(X.iloc[:5])
    np.testing.assert_allclose(np.vstack([f(model.unique_times_) for f in funcs]), surv)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), risk)
    assert clone(model).get_params() == model.get_params()
    cv = KFold(2, shuffle=True, random_state=0)
    scores = cross_val_score(clone(estimator), X, y, cv=cv)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    search = GridSearchCV(clone(estimator), {"dropout": [0.0, 0.2]}, cv=cv).fit(X, y)
    assert search.best_params_["dropout"] in (0.0, 0.2)


@pytest.mark.parametrize("loss", ["cox", "discrete"])
def test_survival_contract(data, loss):
    X, _, y = data
    check_survival_contract(MedFuseSurvival(**{**TINY, "max_epochs": 5, "loss": loss, "n_durations": 4}), X, y)


def test_survival_learns(data):
    X, _, y = data
    assert MedFuseSurvival(**{**TINY, "max_epochs": 40}).fit(X, y).score(X, y) > 0.65


# --- pre-training on labels other than the task's (MedFuse's CXR encoder on the findings) -----


def _with_findings(X, seed=1):
    """``cxr`` token images (their LSTM has weights) and a ``finding__0..2`` label block; 10 rows unlabelled."""
    rng = np.random.default_rng(seed)
    X = X[["ts"]].assign(cxr=[np.vstack([s, s]) for s in X["ts"]])
    findings = (rng.random((len(X), 3)) < 0.5).astype(float)
    findings[:10] = np.nan
    return X.assign(**{f"finding__{j}": findings[:, j] for j in range(3)}), findings


def test_pretrain_targets_pretrain_the_image_encoder_on_its_own_labels(data):
    X, labels, y_surv = data
    X, findings = _with_findings(X)
    settings = {**TINY, "image": "cxr", "freeze_encoders": True, "pretrain_targets": {"cxr": "finding"}}
    for model, target in [(MedFuseClassifier(**settings), labels), (MedFuseSurvival(**settings), y_surv)]:
        model.fit(X, target)
        assert "finding__0" not in model.feature_names_in_
        rng = np.random.RandomState(0)
        rng.randint(np.iinfo(np.int32).max)  # the EHR encoder's draw (pre-trained on the task)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        settings = {k: getattr(model, k) for k in ("lr", "batch_size", "max_epochs", "early_stopping", "weight_decay", "device")}
        alone = _ClassifierPretrainer(modality="cxr", encoder=model._make_encoder, random_state=seed, **settings)
        # A multi-label classifier of the findings, on the labelled rows only (the first 10 are not).
        expected = _state(alone.fit(X[["cxr"]].iloc[10:], findings[10:].astype(int)).network_.encoder)
        for name, value in _state(model.network_.encoders["cxr"]).items():
            torch.testing.assert_close(value, expected[name])
        # The label columns are not needed to predict, and ignored when there.
        np.testing.assert_allclose(model.predict(X.filter(regex="^(ts|cxr)$")), model.predict(X), atol=1e-6)
    unlabelled = X.drop(columns=[f"finding__{j}" for j in range(3)])
    on_task = MedFuseClassifier(**{**TINY, "image": "cxr", "freeze_encoders": True}).fit(unlabelled, labels)
    assert any(
        not torch.equal(v, expected[k]) for k, v in _state(on_task.network_.encoders["cxr"]).items()
    )


def test_pretrain_targets_follow_the_rows_through_cross_validation(data):
    from sklearn.model_selection import cross_val_score

    X, labels, _ = data
    X, _ = _with_findings(X)
    model = MedFuseClassifier(**{**TINY, "image": "cxr", "max_epochs": 3, "pretrain_targets": {"cxr": "finding"}})
    # A fold whose targets lost their rows would fail to fit: raised, not scored NaN.
    cross_val_score(model, X, labels, cv=2, error_score="raise")


def test_pretrain_targets_bad_input(data):
    X, labels, _ = data
    Xf, _ = _with_findings(X)
    base = {**TINY, "image": "cxr", "max_epochs": 1}
    with pytest.raises(ValueError, match="pretrain_targets\\['cxr'\\] = 'labels' names no column of X"):
        MedFuseClassifier(**base, pretrain_targets={"cxr": "labels"}).fit(Xf, labels)
    with pytest.raises(ValueError, match="pretrain_targets needs pretrain_encoders=True"):
        MedFuseClassifier(**{**base, "pretrain_encoders": False}, pretrain_targets={"cxr": "finding"}).fit(Xf, labels)
    with pytest.raises(ValueError, match="names 'img', which is not a fused modality with an encoder to pre-train"):
        MedFuseClassifier(**base, pretrain_targets={"img": "finding"}).fit(Xf, labels)
    with pytest.raises(ValueError, match="X must be a pandas DataFrame; got ndarray"):
        MedFuseClassifier(**base, pretrain_targets={"cxr": "finding"}).fit(np.zeros((10, 4)), labels[:10])
