"""DAFT and MMTM estimators: paired rows, the learnable missing image, contracts."""

import numpy as np
import pytest
from _batch_invariance import assert_batch_invariant, assert_float32_close, skip_float32_batch_check
from _sample_weight_checks import WEIGHTS_ARE_NOT_ROWS
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_medfuse import check_survival_contract, sequence_frame

from skfusion.fusion.daft import DAFTClassifier, DAFTSurvival
from skfusion.fusion.mmtm import MMTMClassifier, MMTMSurvival

CLASSIFIERS = [DAFTClassifier, MMTMClassifier]
SURVIVAL = [DAFTSurvival, MMTMSurvival]


def tiny(cls, **params):
    """Small settings; DAFT's bottleneck keeps several units at these widths (``(8 + 4) / 7`` is 1)."""
    extra = {"bottleneck_factor": 1.0} if cls in (DAFTClassifier, DAFTSurvival) else {}
    return cls(**{"lstm_dim": 8, "max_epochs": 15, "lr": 0.01, "early_stopping": False, "random_state": 0, **extra, **params})


@pytest.fixture(scope="module")
def data():
    return sequence_frame(n=60, n_missing=12, seed=1)


@pytest.mark.parametrize("cls", CLASSIFIERS + SURVIVAL)
def test_missing_image_raises_naming_modality_and_rows(data, cls):
    X, labels, y = data
    target = y if cls in SURVIVAL else labels
    rows = np.flatnonzero(X["img__0"].isna().to_numpy())
    shown = ", ".join(str(r) for r in rows[:8])
    with pytest.raises(ValueError, match=rf"modality 'img' is missing .* rows \[{shown}, .*missing='learn'"):
        tiny(cls).fit(X, target)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_missing_image_raises_at_predict_too(data, cls):
    X, labels, _ = data
    paired = X["img__0"].notna().to_numpy()
    model = tiny(cls).fit(X[paired], labels[paired])
    with pytest.raises(ValueError, match="modality 'img' is missing"):
        model.predict(X)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_missing_ehr_always_raises(data, cls):
    X, labels, _ = data
    X = X.copy()
    X.loc[[2], "ts"] = None
    with pytest.raises(ValueError, match=r"modality 'ts' is missing .* rows \[2\].*needs its EHR"):
        tiny(cls, missing="learn").fit(X, labels)


@pytest.mark.float32_batch
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_learnable_missing_image(data, cls):
    X, labels, _ = data
    model = tiny(cls, missing="learn").fit(X, labels)
    assert model.network_.missing.vector.abs().sum() > 0
    absent = np.flatnonzero(X["img__0"].isna().to_numpy())
    mixed = model.predict_proba(X)
    assert_float32_close(model.predict_proba(X.iloc[absent[:1]])[0], mixed[absent[0]])


def test_daft_directions(data):
    X, labels, _ = data
    paired = X["img__0"].notna().to_numpy()
    X, labels = X[paired], labels[paired]
    image = tiny(DAFTClassifier).fit(X, labels).network_
    ehr = tiny(DAFTClassifier, conditioning="ehr", bottleneck_factor=2).fit(X, labels).network_
    # conditioning="image": the EHR's 8 channels get a scale and a shift; the head reads the EHR.
    assert image.daft.aux[2].out_features == 16 and image.head[0].in_features == 8
    assert ehr.daft.aux[2].out_features == 8 and ehr.daft.aux[0].out_features == 6 and ehr.head[0].in_features == 4


def test_mmtm_joint_width_follows_reduction(data):
    X, labels, _ = data
    model = tiny(MMTMClassifier, missing="learn", reduction=3).fit(X, labels)
    assert model.network_.mmtm.squeeze.out_features == (8 + 4) // 3


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_pretrained_frozen_ehr_encoder(data, cls):
    X, labels, _ = data
    model = tiny(cls, missing="learn", pretrain_encoders=True, freeze_encoders=True).fit(X, labels)
    encoder = model.network_.ehr_encoder
    assert not any(p.requires_grad for p in encoder.parameters())
    assert any(p.requires_grad for p in model.network_.head.parameters())


@pytest.mark.parametrize(
    ("cls", "params", "name"),
    [
        (DAFTClassifier, {"conditioning": "cxr"}, "conditioning"),
        (DAFTClassifier, {"bottleneck_factor": 0}, "bottleneck_factor"),
        (DAFTSurvival, {"missing": "zero"}, "missing"),
        (MMTMClassifier, {"reduction": -1.0}, "reduction"),
        (MMTMSurvival, {"loss": "logistic"}, "loss"),
        (MMTMClassifier, {"lstm_dim": 0}, "lstm_dim"),
    ],
)
def test_invalid_parameters(data, cls, params, name):
    X, labels, y = data
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        cls(**params).fit(X, y if cls in SURVIVAL else labels)


@pytest.mark.parametrize("cls", SURVIVAL)
def test_survival_contract(data, cls):
    X, _, y = data
    check_survival_contract(tiny(cls, max_epochs=5, missing="learn"), X, y)


CHECKED = [tiny(cls, max_epochs=10, lr=0.05) for cls in CLASSIFIERS]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: WEIGHTS_ARE_NOT_ROWS)
def test_sklearn_compatible_classifier(estimator, check):
    # oneDNN's float32 LSTM (PyTorch's CPU default) rounds a row by its batch position on some CPUs
    skip_float32_batch_check(check, ["check_methods_sample_order_invariance"])
    check(estimator)


@pytest.mark.parametrize("estimator", CHECKED, ids=lambda e: type(e).__name__)
@pytest.mark.float32_batch
def test_row_outputs_do_not_depend_on_the_batch(estimator):
    assert_batch_invariant(estimator)
