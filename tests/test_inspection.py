"""Gradient saliency and integrated gradients: against finite differences and completeness."""

import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_float32_close
from sksurv.util import Surv

from skfusion import CoAttentionClassifier, CoAttentionSurvival, ConcatSurvival, LateFusionClassifier
from skfusion.inspection import gradient_saliency, integrated_gradients, token_importance

# hidden_dims=[] keeps the network smooth (no ReLU kink), so the midpoint rule of the path
# integral converges fast and completeness can be checked tightly.
SMOOTH = {"attention_dim": 8, "n_tokens": 3, "hidden_dims": [], "max_epochs": 10, "lr": 0.02, "random_state": 0}


def token_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, size=n)
    img = [rng.normal(size=(t, 4)).astype(np.float32) for t in lengths]
    ehr = rng.normal(size=(n, 6)).astype(np.float32)
    eta = 1.5 * np.array([s[:, 0].mean() for s in img]) + ehr[:, 0]
    X = pd.DataFrame({f"ehr__{j}": ehr[:, j] for j in range(6)})
    X["img"] = pd.Series(img, dtype=object)
    return X, Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta))), (eta > 0).astype(int)


@pytest.fixture(scope="module")
def tokens():
    return token_frame()


@pytest.fixture(scope="module")
def survival_model(tokens):
    X, y, _ = tokens
    return CoAttentionSurvival(guide="ehr", **SMOOTH).fit(X, y)


def _with_tokens(X, cells):
    return X.assign(img=pd.Series(cells, index=X.index, dtype=object))


def test_integrated_gradients_are_complete_over_tokens(tokens, survival_model):
    X, _, _ = tokens
    rows = X.iloc[:8]
    attributions = integrated_gradients(survival_model, rows, "img", n_steps=128)
    # Aligned with the input: one (T_i, d) array per row, its own tokens only.
    assert [a.shape for a in attributions] == [cell.shape for cell in rows["img"]]
    baseline = _with_tokens(rows, [np.zeros_like(cell) for cell in rows["img"]])
    expected = survival_model.predict(rows) - survival_model.predict(baseline)
    got = np.array([a.sum() for a in attributions])
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose([v.sum() for v in token_importance(attributions)], got, rtol=1e-12)


def test_integrated_gradients_with_another_baseline(tokens, survival_model):
    X, _, _ = tokens
    rows = X.iloc[:4]
    attributions = integrated_gradients(survival_model, rows, "img", baseline=0.5, n_steps=128)
    baseline = _with_tokens(rows, [np.full_like(cell, 0.5) for cell in rows["img"]])
    expected = survival_model.predict(rows) - survival_model.predict(baseline)
    np.testing.assert_allclose([a.sum() for a in attributions], expected, rtol=1e-3, atol=1e-4)


def test_gradient_saliency_matches_finite_differences(tokens, survival_model):
    X, _, _ = tokens
    rows = X.iloc[:3]
    saliency = gradient_saliency(survival_model, rows, "img")
    eps = 1e-2
    for i in range(len(rows)):
        cell = rows["img"].iloc[i]
        for t, k in [(0, 0), (len(cell) - 1, 3), (1, 2)]:
            shifted = []
            for sign in (1, -1):
                moved = cell.copy()
                moved[t, k] += sign * eps
                shifted.append(survival_model.predict(_with_tokens(rows.iloc[[i]], [moved]))[0])
            np.testing.assert_allclose(saliency[i][t, k], (shifted[0] - shifted[1]) / (2 * eps), rtol=2e-2, atol=2e-4)


def test_gradient_saliency_over_a_numeric_block(tokens, survival_model):
    X, _, _ = tokens
    rows = X.iloc[:2]
    saliency = gradient_saliency(survival_model, rows, "ehr")
    assert saliency.shape == (2, 6)
    eps = 1e-2
    up, down = rows.copy(), rows.copy()
    up["ehr__0"] += eps
    down["ehr__0"] -= eps
    fd = (survival_model.predict(up) - survival_model.predict(down)) / (2 * eps)
    np.testing.assert_allclose(saliency[:, 0], fd, rtol=2e-2, atol=2e-4)


@pytest.mark.float32_batch
def test_classifier_attributions_explain_a_class_logit(tokens):
    X, _, labels = tokens
    model = CoAttentionClassifier(guide="img", **SMOOTH).fit(X, labels)
    rows = X.iloc[:6]
    baseline = _with_tokens(rows, [np.zeros_like(cell) for cell in rows["img"]])
    for target in (0, 1):
        attributions = integrated_gradients(model, rows, "img", target=target, n_steps=128)
        logits = [model.net_.predict_outputs(_dataset(model, frame))[:, target] for frame in (rows, baseline)]
        np.testing.assert_allclose([a.sum() for a in attributions], logits[0] - logits[1], rtol=1e-3, atol=1e-4)
    # Default: each row's predicted class (the 6-row batch against each row alone).
    predicted = model.predict(rows)
    default = gradient_saliency(model, rows, "img")
    for i, label in enumerate(predicted):
        assert_float32_close(default[i], gradient_saliency(model, rows.iloc[[i]], "img", target=label)[0])


def _dataset(model, X):
    from skfusion._data import ModalityDataset

    blocks, _ = model._blocks(X, reset=False)
    return ModalityDataset(blocks, device=model.net_.device)


class SmoothCNN(torch.nn.Module):
    """(n, 1, 8, 8) -> (n, 4), with tanh so the path integral is smooth."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def test_pixel_attributions_with_the_image_encoder_in_the_network():
    rng = np.random.default_rng(0)
    n = 40
    images = 0.9 * rng.random((n, 8, 8, 1)).astype(np.float32)  # (H, W, C) in [0, 1], room for the step below
    ehr = rng.normal(size=(n, 3)).astype(np.float32)
    eta = 4 * images[:, 2:5, 2:5, 0].mean(axis=(1, 2)) + ehr[:, 0]
    X = pd.DataFrame({f"ehr__{j}": ehr[:, j] for j in range(3)})
    X["cxr"] = pd.Series(list(images), dtype=object)
    y = Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta)))
    model = ConcatSurvival(
        image_encoder=SmoothCNN(), hidden_dims=[], max_epochs=5, early_stopping=False, random_state=0
    ).fit(X, y)
    rows = X.iloc[:4]
    attributions = integrated_gradients(model, rows, "cxr", n_steps=128)
    assert attributions.shape == (4, 8, 8, 1)  # the layout of the cells
    black = rows.assign(cxr=pd.Series([np.zeros_like(im) for im in rows["cxr"]], index=rows.index, dtype=object))
    expected = model.predict(rows) - model.predict(black)
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), expected, rtol=1e-3, atol=1e-4)
    saliency = gradient_saliency(model, rows, "cxr")
    eps = 1e-2
    moved = [im.copy() for im in rows["cxr"]]
    for im in moved:
        im[3, 4, 0] += eps
    up = rows.assign(cxr=pd.Series(moved, index=rows.index, dtype=object))
    fd = (model.predict(up) - model.predict(rows)) / eps
    assert saliency.shape == (4, 8, 8, 1)
    np.testing.assert_allclose(saliency[:, 3, 4, 0], fd, rtol=5e-2, atol=1e-3)


def test_bad_input(tokens, survival_model):
    X, y, labels = tokens
    with pytest.raises(ValueError, match=r"modality='ct' is not a modality of the fitted model; .* \['ehr', 'img'\]"):
        gradient_saliency(survival_model, X, "ct")
    with pytest.raises(ValueError, match="n_steps must be a positive integer; got 0"):
        integrated_gradients(survival_model, X, "img", n_steps=0)
    with pytest.raises(ValueError, match="baseline must be a finite number"):
        integrated_gradients(survival_model, X, "img", baseline=np.nan)
    missing = X.iloc[:3].copy()
    missing.loc[missing.index[1], "img"] = None
    late = LateFusionClassifier(max_epochs=2, random_state=0).fit(X, labels)
    with pytest.raises(ValueError, match=r"modality 'img' is missing in rows \[1\]"):
        gradient_saliency(late, missing, "img")
    with pytest.raises(ValueError, match="target=7 is not a class of the model; its classes are \\[0, 1\\]"):
        gradient_saliency(late, X, "img", target=7)
    weibull = CoAttentionSurvival(guide="ehr", loss="weibull", **{**SMOOTH, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="loss='weibull': refit with loss='cox'"):
        gradient_saliency(weibull, X, "img")
    Y = np.column_stack([labels, 1 - labels])
    multilabel = LateFusionClassifier(max_epochs=2, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="multi-label model has no single predicted class"):
        gradient_saliency(multilabel, X, "img")
    with pytest.raises(ValueError, match=r"attributions\[0\] has shape \(3,\)"):
        token_importance([np.zeros(3)])


@pytest.mark.parametrize("method", [gradient_saliency, integrated_gradients])
def test_target_of_a_survival_model_is_refused(tokens, survival_model, method):
    X, _, _ = tokens
    match = r"target=1 names a class, but CoAttentionSurvival is a survival model: it explains its risk score"
    with pytest.raises(ValueError, match=match):
        method(survival_model, X.iloc[:2], "img", target=1)


def test_a_model_that_is_not_skfusions_is_named(tokens):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, _, labels = tokens
    ehr = X.filter(like="ehr__")
    foreign = LogisticRegression().fit(ehr, labels)
    with pytest.raises(ValueError, match=r"LogisticRegression is not a skfusion fusion estimator: .*survival model or classifier"):
        gradient_saliency(foreign, ehr, "ehr")
    pipeline = make_pipeline(FunctionTransformer(), LateFusionClassifier(max_epochs=1, random_state=0)).fit(X, labels)
    with pytest.raises(
        ValueError,
        match=r"step 'functiontransformer' \(FunctionTransformer\) is not a skfusion encoder: .*pass pipe\[-1\] and "
        r"pipe\[:-1\]\.transform\(X\)",
    ):
        integrated_gradients(pipeline, X, "img")
