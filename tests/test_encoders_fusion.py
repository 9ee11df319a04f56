"""Per-modality encoders inside concatenation, late fusion and the unimodal baselines.

A sequence modality gets the MedFuse LSTM (``sequence_encoder="lstm"``) or its token mean
(``"mean"``); a vector block the identity. ``pretrain_encoders`` / ``freeze_encoders``
follow the MedFuse family's two-stage procedure.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_float32_close
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.util import Surv

from skfusion import (
    ConcatClassifier,
    ConcatSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    UnimodalClassifier,
    UnimodalSurvival,
)
from skfusion.fusion._pretraining import _ClassifierPretrainer
from skfusion.modules.encoders import IdentityEncoder, LSTMEncoder

TINY = {"lstm_dim": 8, "max_epochs": 8, "lr": 0.01, "early_stopping": False, "random_state": 0}


def sequence_frame(n=80, seed=0):
    """A "ts" column of (T_i, 3) arrays (T_i from 1 to 6) and an img__0..3 block; label, survival y."""
    rng = np.random.default_rng(seed)
    ts = [rng.normal(size=(t, 3)).astype(np.float32) for t in rng.integers(1, 7, size=n)]
    img = rng.normal(size=(n, 4)).astype(np.float32)
    eta = np.array([s[-1, 0] for s in ts]) + img[:, 0]
    labels = (eta + 0.3 * rng.normal(size=n) > 0).astype(int)
    y_surv = Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta)))
    X = pd.DataFrame({f"img__{j}": img[:, j] for j in range(4)})
    X["ts"] = pd.Series(ts, dtype=object)
    return X, labels, y_surv


@pytest.fixture(scope="module")
def data():
    return sequence_frame()


def _lstm_parameters(d, h, layers=2):
    """``nn.LSTM`` weights and both biases, layer by layer."""
    return sum(4 * h * (width + h) + 8 * h for width in [d] + [h] * (layers - 1))


def _n_parameters(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cls", [ConcatClassifier, LateFusionClassifier, UnimodalClassifier])
def test_sequence_modality_gets_the_lstm(data, cls):
    X, labels, _ = data
    params = {"modality": "ts"} if cls is UnimodalClassifier else {}
    model = cls(**TINY, hidden_dims=[5], **params).fit(X, labels)
    encoders = model.network_.encoders
    assert isinstance(encoders["ts"], LSTMEncoder) and len(encoders["ts"].layers) == 2
    assert _n_parameters(encoders["ts"]) == _lstm_parameters(3, 8)
    # MLP heads: in -> 5 -> 2 logits (binary classes get a softmax over two).
    heads = {
        ConcatClassifier: (8 + 4) * 5 + 5 + 5 * 2 + 2,
        LateFusionClassifier: sum(w * 5 + 5 + 5 * 2 + 2 for w in (8, 4)),
        UnimodalClassifier: 8 * 5 + 5 + 5 * 2 + 2,
    }[cls]
    assert _n_parameters(model.network_) == _lstm_parameters(3, 8) + heads
    if cls is not UnimodalClassifier:
        assert isinstance(encoders["img"], IdentityEncoder)


@pytest.mark.parametrize("cls", [ConcatClassifier, LateFusionClassifier, UnimodalClassifier])
def test_mean_encoder_is_the_token_mean(data, cls):
    X, labels, _ = data
    params = {"modality": "ts"} if cls is UnimodalClassifier else {}
    model = cls(sequence_encoder="mean", **TINY, **params).fit(X, labels)
    module = model.network_
    assert isinstance(module.encoders["ts"], IdentityEncoder)
    row = X.iloc[[0]]
    mean = torch.tensor(row["ts"].iloc[0].mean(axis=0)[None])
    series = torch.tensor(row["ts"].iloc[0][None])
    block = {"x": series, "mask": torch.ones(series.shape[:2], dtype=torch.bool), "present": torch.ones(1, dtype=bool)}
    with torch.no_grad():
        torch.testing.assert_close(module.encoders["ts"](block), mean)


@pytest.mark.float32_batch
@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (ConcatClassifier, {}),
        (ConcatClassifier, {"missing": "learn"}),
        (LateFusionClassifier, {}),
        (UnimodalClassifier, {"modality": "ts"}),
    ],
)
def test_row_output_does_not_depend_on_batch_padding(data, cls, params):
    X, labels, _ = data
    model = cls(**TINY, **params).fit(X, labels)
    together = model.predict_proba(X)
    lengths = X["ts"].map(len).to_numpy()
    short = np.flatnonzero(lengths < lengths.max())[:4]
    alone = np.vstack([model.predict_proba(X.iloc[[i]]) for i in short])
    assert_float32_close(alone, together[short])


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("cls", [ConcatClassifier, LateFusionClassifier])
def test_pretrained_frozen_encoder_is_the_first_stage_encoder(data, cls):
    X, labels, _ = data
    model = cls(**TINY, pretrain_encoders=True, freeze_encoders=True).fit(X, labels)
    encoder = model.network_.encoders["ts"]
    assert not any(p.requires_grad for p in encoder.parameters())
    # The first stage: the LSTM alone with a linear head, seeded by the first draw.
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    settings = {k: getattr(model, k) for k in ("lr", "batch_size", "max_epochs", "weight_decay", "device")}
    alone = _ClassifierPretrainer(modality="ts", encoder=model._make_encoder, random_state=seed, **settings)
    expected = _state(alone.fit(X, labels).network_.encoder)
    for name, value in _state(encoder).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    # Without freezing, the second stage moves the same starting weights; the head trains either way.
    tuned = cls(**TINY, pretrain_encoders=True).fit(X, labels).network_.encoders["ts"]
    assert any(not torch.equal(value, expected[name]) for name, value in _state(tuned).items())


@pytest.mark.parametrize("cls", [ConcatClassifier, LateFusionClassifier])
def test_freeze_without_pretrain_raises(data, cls):
    X, labels, _ = data
    with pytest.raises(ValueError, match="freeze_encoders=True needs pretrain_encoders=True"):
        cls(**TINY, freeze_encoders=True).fit(X, labels)


@pytest.mark.parametrize(
    ("cls", "params", "name"),
    [
        (ConcatClassifier, {"sequence_encoder": "gru"}, "sequence_encoder"),
        (LateFusionSurvival, {"lstm_dim": 0}, "lstm_dim"),
        (UnimodalSurvival, {"sequence_encoder": None}, "sequence_encoder"),
        (ConcatSurvival, {"pretrain_encoders": "yes"}, "pretrain_encoders"),
    ],
)
def test_invalid_parameters(data, cls, params, name):
    X, labels, y = data
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        cls(**params).fit(X, labels if cls is ConcatClassifier else y)


def test_missing_learn_substitutes_after_the_lstm(data):
    X, labels, _ = data
    X = X.copy()
    X.loc[[2, 5, 11], "ts"] = None
    # Unstandardized, so that the hand computation below reads the raw block.
    model = ConcatClassifier(**TINY, missing="learn", standardize=False, linear_path=False).fit(X, labels)
    module = model.network_
    vector = module.missing["ts"].vector
    assert vector.shape == (8,) and torch.any(vector != 0)
    row = X.iloc[[5]]
    img = torch.tensor(row.filter(like="img__").to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        # Concatenation order is the layout's: the img block first, then the ts column.
        expected = torch.softmax(module.head(torch.cat([img, vector[None]], dim=1)), dim=1).numpy()
    np.testing.assert_allclose(model.predict_proba(row), expected, rtol=1e-5)
    # missing="raise" names the rows.
    with pytest.raises(ValueError, match=r"modality 'ts' is missing .* rows \[2, 5, 11\]"):
        ConcatClassifier(**TINY).fit(X, labels)


@pytest.mark.parametrize("cls", [ConcatSurvival, LateFusionSurvival, UnimodalSurvival])
def test_survival_twins_pretrain_and_predict(data, cls):
    X, _, y = data
    params = {"modality": "ts"} if cls is UnimodalSurvival else {"pretrain_encoders": True, "freeze_encoders": True}
    model = cls(**TINY, **params, loss="cox").fit(X, y)
    assert isinstance(model.network_.encoders["ts"], LSTMEncoder)
    surv = model.predict_survival_function(X.iloc[:3], return_array=True)
    assert surv.shape == (3, len(model.unique_times_))
    # Risk scores and curves come from the same outputs: H_i(t) = H_0(t) exp(risk_i) (Cox).
    hazard = -np.log(surv[:, len(model.unique_times_) // 2])
    ratio = hazard / np.exp(model.predict(X.iloc[:3]))
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)


def test_grid_search_over_sequence_encoder(data):
    X, labels, _ = data
    search = GridSearchCV(
        ConcatClassifier(**TINY), {"sequence_encoder": ["lstm", "mean"]}, cv=KFold(2, shuffle=True, random_state=0)
    ).fit(X, labels)
    assert len(search.cv_results_["params"]) == 2
    best = search.best_estimator_
    kind = LSTMEncoder if best.sequence_encoder == "lstm" else IdentityEncoder
    assert isinstance(best.network_.encoders["ts"], kind)
