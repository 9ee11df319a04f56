"""Contrastive alignment fusion: the InfoNCE loss, the two steps, estimator contracts."""

import math
import pickle
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import torch
from _sample_weight_checks import WEIGHTS_ARE_NOT_ROWS
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from sksurv.util import Surv

from skfusion.fusion.contrastive import ContrastiveClassifier, ContrastiveSurvival
from skfusion.modules.contrastive import AlignmentLoss, ContrastiveProjections, info_nce

TINY = {"projection_dim": 8, "alignment_epochs": 10, "max_epochs": 15, "lr": 0.02, "batch_size": 64, "early_stopping": False, "random_state": 0}


def slow_info_nce(a, b, tau):
    """Paper 000's L with S_ij = cos(a_i, b_j) / tau, by loops and explicit exp / sum."""
    n = len(a)
    cos = [[a[i] @ b[j] / np.linalg.norm(a[i]) / np.linalg.norm(b[j]) for j in range(n)] for i in range(n)]
    S = np.array(cos) / tau
    total = 0.0
    for i in range(n):
        total += np.log(np.exp(S[i, i]) / sum(np.exp(S[i, j]) for j in range(n)))
        total += np.log(np.exp(S[i, i]) / sum(np.exp(S[j, i]) for j in range(n)))
    return -total / n


def paired_frame(n=160, seed=0):
    """Two modalities seeing one shared latent (so they can be aligned) and a survival target."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    img = z @ rng.normal(size=(3, 10)) + 0.3 * rng.normal(size=(n, 10))
    ehr = z @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(n, 6))
    eta = z[:, 0] - z[:, 1]
    X = pd.DataFrame(
        {**{f"img__{j}": img[:, j] for j in range(10)}, **{f"ehr__{j}": ehr[:, j] for j in range(6)}}
    ).astype(np.float32)
    y = Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta)))
    return X, y, (eta > 0).astype(int)


@pytest.fixture(scope="module")
def data():
    return paired_frame()


# --- the loss -------------------------------------------------------------------------------


def test_info_nce_hand_computed_3x3():
    # Image embeddings e1, e2, e3; EHR embeddings (1,0,0), (3,4,0), (0,0,1). Cosines:
    #   C = [[1, 0.6, 0], [0, 0.8, 0], [0, 0, 1]]; with tau = 0.5, S = 2C.
    img = torch.eye(3, dtype=torch.float64)
    ehr = torch.tensor([[1.0, 0, 0], [3, 4, 0], [0, 0, 1]], dtype=torch.float64)
    e = math.exp
    image_to_ehr = (
        math.log(e(2) / (e(2) + e(1.2) + e(0)))
        + math.log(e(1.6) / (e(0) + e(1.6) + e(0)))
        + math.log(e(2) / (e(0) + e(0) + e(2)))
    )
    ehr_to_image = (
        math.log(e(2) / (e(2) + e(0) + e(0)))
        + math.log(e(1.6) / (e(1.2) + e(1.6) + e(0)))
        + math.log(e(2) / (e(0) + e(0) + e(2)))
    )
    expected = -(image_to_ehr + ehr_to_image) / 3
    assert info_nce(img, ehr, 1 / 0.5).item() == pytest.approx(expected, rel=1e-12)
    # Swapping the modalities transposes S, which swaps the two (different) terms.
    assert info_nce(ehr, img, 2.0).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_info_nce_reference(tau):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = info_nce(torch.tensor(a), torch.tensor(b), 1 / tau).item()
    assert got == pytest.approx(slow_info_nce(a, b, tau), rel=1e-12)


def test_alignment_loss_averages_every_pair_of_modalities():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 3, 4))
    got = AlignmentLoss()((torch.tensor(z), torch.tensor(1 / 0.2))).item()
    expected = np.mean([slow_info_nce(z[:, i], z[:, j], 0.2) for i, j in combinations(range(3), 2)])
    assert got == pytest.approx(expected, rel=1e-12)


def test_logit_scale_is_clipped_at_100():
    assert ContrastiveProjections({"a": 2}, 3, 0.001, True).scale().item() == pytest.approx(100.0)
    assert ContrastiveProjections({"a": 2}, 3, 0.5, False).scale().item() == pytest.approx(2.0)


def test_token_modality_is_averaged_over_its_real_tokens_then_projected():
    rng = np.random.default_rng(2)
    seq = rng.normal(size=(3, 4, 5))
    lengths = np.array([4, 1, 2])
    mask = np.arange(4)[None, :] < lengths[:, None]
    seq[~mask] = 0.0
    present = torch.ones(3, dtype=torch.bool)
    blocks = {"s": {"x": torch.tensor(seq), "mask": torch.tensor(mask), "present": present}}
    projections = ContrastiveProjections({"s": 5}, 2, 0.1, False).double()
    (got,) = projections.embed(blocks)
    w, b = projections.linear["s"].weight.detach().numpy(), projections.linear["s"].bias.detach().numpy()
    expected = [w @ seq[i, : lengths[i]].mean(axis=0) + b for i in range(3)]
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12)


# --- the two steps --------------------------------------------------------------------------


def test_step_one_aligns_the_modalities(data):
    X, y, _ = data
    model = ContrastiveSurvival(**{**TINY, "alignment_epochs": 25, "max_epochs": 1}).fit(X, y)
    losses = model.alignment_net_.history[:, "train_loss"]
    assert len(losses) == 25 and losses[-1] < 0.5 * losses[0]
    blocks, _ = model._blocks(X, reset=False)
    with torch.no_grad():
        img, ehr = (torch.nn.functional.normalize(h, dim=1) for h in model.alignment_net_.module_.embed(blocks))
    cos = (img @ ehr.T).numpy()
    assert np.diag(cos).mean() > cos[~np.eye(len(cos), dtype=bool)].mean() + 0.5


def test_step_one_uses_complete_rows_only(data):
    X, y, labels = data
    X = X.copy()
    X.iloc[:30, :10] = np.nan  # no image
    X.iloc[30:40, 10:] = np.nan  # no EHR
    model = ContrastiveClassifier(missing="learn", **TINY).fit(X, labels)
    seen = sum(model.alignment_net_.history[0, "batches", :, "train_batch_size"])
    assert seen == len(X) - 40
    assert model.score(X, labels) > 0.8  # 0.98 measured; the majority class is 0.51
    # Rows without a modality use the learnable vector in place of its projection.
    assert model.network_.missing["img"].vector.abs().sum() > 0


@pytest.mark.parametrize("freeze", [True, False])
def test_step_two_starts_from_the_aligned_projections(data, freeze):
    X, y, _ = data
    model = ContrastiveSurvival(freeze_projections=freeze, **TINY).fit(X, y)
    aligned = model.alignment_net_.module_.linear["img"].weight
    tuned = model.network_.projections.linear["img"].weight
    assert torch.equal(aligned, tuned) == freeze


def test_learn_temperature(data):
    X, y, _ = data
    fixed = ContrastiveSurvival(temperature=0.2, **TINY).fit(X, y).alignment_net_.module_
    learned = ContrastiveSurvival(temperature=0.2, learn_temperature=True, **TINY).fit(X, y).alignment_net_.module_
    assert fixed.scale().item() == pytest.approx(5.0)
    assert learned.scale().item() != pytest.approx(5.0, rel=1e-3)


def test_no_alignment_epochs_skips_step_one(data):
    X, y, _ = data
    model = ContrastiveSurvival(**{**TINY, "alignment_epochs": 0}).fit(X, y)
    assert len(model.alignment_net_.history) == 0 and model.score(X, y) > 0.6


# --- contracts ------------------------------------------------------------------------------


def test_survival_contract(data):
    X, y, _ = data
    model = ContrastiveSurvival(**TINY).fit(X, y)
    risk = model.predict(X)
    assert risk.shape == (len(X),) and model.score(X, y) > 0.65
    surv = model.predict_survival_function(X.iloc[:5], return_array=True)
    assert surv.shape == (5, len(model.unique_times_))
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 1e-12)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), risk)
    np.testing.assert_array_equal(clone(model).fit(X, y).predict(X), risk)


def test_model_selection(data):
    X, y, _ = data
    cv = KFold(3, shuffle=True, random_state=0)
    assert cross_val_score(ContrastiveSurvival(**TINY), X, y, cv=cv).mean() > 0.6
    search = GridSearchCV(ContrastiveSurvival(**TINY), {"freeze_projections": [True, False]}, cv=cv).fit(X, y)
    assert search.best_estimator_.score(X, y) > 0.65


# --- bad input ------------------------------------------------------------------------------


def test_needs_two_modalities(data):
    X, y, _ = data
    with pytest.raises(ValueError, match=r"at least two modalities; X has only \['img'\] \(10 feature\(s\)\)"):
        ContrastiveSurvival(**TINY).fit(X.filter(like="img__"), y)


def test_needs_two_complete_rows(data):
    X, y, _ = data
    X = X.copy()
    X.iloc[1:, :10] = np.nan
    with pytest.raises(ValueError, match=r"at least 2 rows with every modality \['img', 'ehr'\].*X has 1"):
        ContrastiveSurvival(missing="learn", **TINY).fit(X, y)


def test_missing_raise_names_modality_and_rows(data):
    X, y, _ = data
    X = X.copy()
    X.iloc[[3, 5], 10:] = np.nan
    with pytest.raises(ValueError, match=r"modality 'ehr' is missing .* rows \[3, 5\]"):
        ContrastiveSurvival(**TINY).fit(X, y)


def test_temperature_must_be_positive(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="'temperature' parameter"):
        ContrastiveSurvival(temperature=0.0).fit(X, y)


# --- scikit-learn's checks ------------------------------------------------------------------

@parametrize_with_checks(
    [ContrastiveClassifier(projection_dim=8, alignment_epochs=3, max_epochs=10, lr=0.05, random_state=0)],
    expected_failed_checks=lambda estimator: WEIGHTS_ARE_NOT_ROWS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
