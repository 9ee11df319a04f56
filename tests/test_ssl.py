"""ConVIRT, ALIGN and VICReg: losses against their equations, pipelines, inputs, contracts."""

import math
import warnings

import numpy as np
import pytest
import torch
from _batch_invariance import assert_batch_invariant, skip_float32_batch_check
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from skfusion.metrics import auroc
from skfusion.modules.ssl import (
    ALIGNLoss,
    PairedOutput,
    directional_info_nce,
    swap_pairs,
    vicreg_loss,
    weighted_info_nce,
)
from skfusion.ssl import ALIGN, ConVIRT, MedCAMAdapter, VICReg
from skfusion.datasets import make_paired_image_ehr

SMALL = {"projection_dim": 8, "hidden_dim": 16, "lstm_dim": 8, "max_epochs": 5, "lr": 0.01, "random_state": 0}


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _one_way(q, k, tau):
    """-1/B sum_i log exp(cos(q_i, k_i)/tau) / sum_j exp(cos(q_i, k_j)/tau), with loops."""
    total = 0.0
    for i in range(len(q)):
        den = sum(math.exp(_cos(q[i], k[j]) / tau) for j in range(len(k)))
        total -= math.log(math.exp(_cos(q[i], k[i]) / tau) / den)
    return total / len(q)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 5)), rng.normal(size=(7, 5))


def test_directional_info_nce_matches_its_equation(batch):
    a, b = batch
    got = directional_info_nce(torch.from_numpy(a), torch.from_numpy(b), 1 / 0.3)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.item(), _one_way(a, b, 0.3), rtol=1e-12)


def _one_way_negatives(q, k, tau):
    """MedMod's direction, with loops: -1/B sum_i [s_ii - log sum_{j != i} exp(s_ij)]."""
    total = 0.0
    for i in range(len(q)):
        den = sum(math.exp(_cos(q[i], k[j]) / tau) for j in range(len(k)) if j != i)
        total -= _cos(q[i], k[i]) / tau - math.log(den)
    return total / len(q)


def test_directional_info_nce_without_the_positive_matches_medmod(batch):
    a, b = batch
    got = directional_info_nce(torch.from_numpy(a), torch.from_numpy(b), 1 / 0.3, negatives_only=True)
    np.testing.assert_allclose(got.item(), _one_way_negatives(a, b, 0.3), rtol=1e-12)


@pytest.mark.parametrize("weight", [0.75, 0.5, 0.0])
def test_convirt_loss_matches_its_equation(batch, weight):
    a, b = batch
    expected = weight * _one_way(a, b, 0.1) + (1 - weight) * _one_way(b, a, 0.1)
    got = weighted_info_nce(torch.from_numpy(a), torch.from_numpy(b), 1 / 0.1, weight, 1 - weight)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)


def _paired_output(image, ehr, tau):
    return PairedOutput(torch.from_numpy(image), torch.from_numpy(ehr), None, None, torch.tensor(1 / tau))


def test_convirt_reproduces_medmods_loss(batch):
    # MedMod's ContrastiveLoss: -(nll_img->ehr + nll_ehr->img).mean(), positives out of the denominators.
    image, ehr = batch
    criterion = ConVIRT(image_weight=1.0, ehr_weight=1.0, negatives_only=True, temperature=0.01)._criterion()
    expected = _one_way_negatives(image, ehr, 0.01) + _one_way_negatives(ehr, image, 0.01)
    np.testing.assert_allclose(criterion(_paired_output(image, ehr, 0.01)).item(), expected, rtol=1e-12)
    default = ConVIRT()._criterion()(_paired_output(image, ehr, 0.1)).item()
    np.testing.assert_allclose(default, 0.75 * _one_way(image, ehr, 0.1) + 0.25 * _one_way(ehr, image, 0.1), rtol=1e-12)


@pytest.mark.parametrize("negatives_only", [False, True])
def test_align_loss_is_the_symmetric_info_nce(batch, negatives_only):
    image, ehr = batch
    one_way = _one_way_negatives if negatives_only else _one_way
    expected = one_way(image, ehr, 0.2) + one_way(ehr, image, 0.2)
    loss = ALIGNLoss(swap_fraction=0.4, negatives_only=negatives_only).eval()
    # Out of training (eval mode) no pair is swapped.
    np.testing.assert_allclose(loss(_paired_output(image, ehr, 0.2)).item(), expected, rtol=1e-12)


@pytest.mark.parametrize("fraction, counts", [(0.2, {4}), ((0.16, 0.2), {3, 4}), (0.0, {0})])
def test_swap_pairs_exchanges_two_groups_of_rows(fraction, counts):
    z = torch.arange(20.0).reshape(20, 1)
    seen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        got = swap_pairs(z, fraction)[:, 0].long().tolist()
        moved = [i for i in range(20) if got[i] != i]
        # Each moved row holds its partner's value and the partner holds its own: transpositions.
        assert all(got[got[i]] == i for i in moved)
        assert len(moved) % 2 == 0
        seen.add(len(moved) // 2)
    # MedMod: count drawn from floor(0.16 B) .. floor(0.2 B) = 3 .. 4 for B = 20.
    assert seen == counts


def test_align_trains_on_swapped_pairs(batch):
    image, ehr = batch
    loss = ALIGNLoss(swap_fraction=(0.16, 0.2), negatives_only=True).train()
    torch.manual_seed(3)
    got = loss(_paired_output(image, ehr, 0.2)).item()
    torch.manual_seed(3)
    swapped = swap_pairs(torch.from_numpy(ehr), (0.16, 0.2)).numpy()
    assert not np.array_equal(swapped, ehr)
    expected = _one_way_negatives(image, swapped, 0.2) + _one_way_negatives(swapped, image, 0.2)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def _vicreg_reference(a, b, lam, mu, nu, gamma=1.0, eps=1e-4):
    n, d = a.shape
    invariance = sum((a[i, j] - b[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def variance(z):
        total = 0.0
        for j in range(d):
            mean = sum(z[i, j] for i in range(n)) / n
            var = sum((z[i, j] - mean) ** 2 for i in range(n)) / (n - 1)
            total += max(0.0, gamma - math.sqrt(var + eps))
        return total / d

    def covariance(z):
        means = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        total = 0.0
        for p in range(d):
            for q in range(d):
                if p != q:
                    c = sum((z[i, p] - means[p]) * (z[i, q] - means[q]) for i in range(n)) / (n - 1)
                    total += c**2
        return total / d

    # The official VICReg code (and MedMod's copy) averages the two variance hinges.
    return lam * invariance + mu * (variance(a) + variance(b)) / 2 + nu * (covariance(a) + covariance(b))


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_vicreg_loss_matches_its_equation(batch, scale):
    # scale 0.3: the variance hinge is active; 3.0: every std is above gamma = 1.
    a, b = (scale * z for z in batch)
    got = vicreg_loss(torch.from_numpy(a), torch.from_numpy(b), 25.0, 25.0, 1.0)
    np.testing.assert_allclose(got.item(), _vicreg_reference(a, b, 25.0, 25.0, 1.0), rtol=1e-12)
    got = vicreg_loss(torch.from_numpy(a), torch.from_numpy(b), 2.0, 3.0, 0.5)
    np.testing.assert_allclose(got.item(), _vicreg_reference(a, b, 2.0, 3.0, 0.5), rtol=1e-12)


def test_align_fits_on_medmods_noisy_pairs(data):
    X, _ = data
    kwargs = {**SMALL, "max_epochs": 2, "batch_size": 64}
    noisy = ALIGN(swap_fraction=[0.16, 0.2], negatives_only=True, temperature=0.07, **kwargs).fit(X)
    clean = ALIGN(negatives_only=True, temperature=0.07, **kwargs).fit(X)
    z_noisy, z_clean = noisy.transform(X), clean.transform(X)
    assert np.isfinite(z_noisy.to_numpy()).all()
    # Same seed, same batches: only the swapped pairs make the two fits differ.
    assert not np.allclose(z_noisy.to_numpy(), z_clean.to_numpy())


@pytest.fixture(scope="module")
def data():
    return make_paired_image_ehr(n_samples=300, n_image_features=16, n_ehr_features=6, n_timesteps=(3, 8), random_state=0)


@pytest.mark.parametrize("cls", [ConVIRT, ALIGN, VICReg])
def test_linear_probe_pipeline_image_only(cls, data):
    X, Y = data
    ssl = cls(output="image", **{**SMALL, "max_epochs": 20, "batch_size": 32})
    pipe = Pipeline([("ssl", ssl), ("probe", OneVsRestClassifier(LogisticRegression()))])
    pipe.fit(X.iloc[:200], Y[:200])
    proba = pipe.predict_proba(X.iloc[200:].drop(columns="ehr"))
    assert proba.shape == (100, Y.shape[1])
    assert auroc(Y[200:], proba) > 0.6


def test_both_output_and_cox_probe():
    X, _, truth = make_paired_image_ehr(
        n_samples=300, n_image_features=16, n_ehr_features=6, n_timesteps=(3, 8), return_truth=True, random_state=0
    )
    rng = np.random.default_rng(1)
    risk = truth.factors[:, 0] - truth.factors[:, 1]
    y = Surv.from_arrays(rng.random(len(X)) < 0.8, rng.exponential(np.exp(-risk)))
    ssl = ConVIRT(**{**SMALL, "max_epochs": 20, "batch_size": 32})
    pipe = Pipeline([("ssl", ssl), ("cox", CoxPHSurvivalAnalysis(alpha=1.0))]).fit(X, y)
    assert pipe.named_steps["ssl"].transform(X).shape == (len(X), 16)
    assert pipe.score(X, y) > 0.6


def test_transform_reads_only_the_output_columns(data):
    X, _ = data
    ehr_only = ALIGN(output="ehr", **SMALL).fit(X)
    Z = ehr_only.transform(X[["ehr"]])
    assert list(Z.columns) == [f"ehr__{i}" for i in range(8)]
    assert list(ehr_only.feature_names_in_) == list(X.columns)  # every column seen at fit
    both = VICReg(**SMALL).fit(X)
    with pytest.raises(ValueError, match="lacks column 'ehr' of the 'ehr' modality"):
        both.transform(X.drop(columns="ehr"))


def test_rows_missing_a_modality_are_left_out_of_fit(data):
    X, _ = data
    X = X.copy()
    X.iloc[:10, :16] = np.nan
    X.loc[10:14, "ehr"] = None
    model = ConVIRT(**SMALL).fit(X)
    assert model.n_paired_ == len(X) - 15
    Z = model.transform(X)
    assert np.isnan(Z.iloc[:10, :8]).all().all() and np.isfinite(Z.iloc[10:, :8]).all().all()
    assert np.isnan(Z.iloc[10:15, 8:]).all().all()


def test_equal_seeds_give_equal_embeddings(data):
    X, _ = data
    first = ConVIRT(**SMALL).fit_transform(X)
    second = clone(ConVIRT(**SMALL)).fit_transform(X)
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())


def test_bad_inputs(data):
    X, _ = data
    few = X.copy()
    few.iloc[1:, :16] = np.nan
    with pytest.raises(ValueError, match="at least 2 rows with both the image 'img' and the EHR 'ehr'.*got 1 paired"):
        VICReg(**SMALL).fit(few)
    partial = X.copy()
    partial.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="modality 'img' has NaN in rows \\[3\\]"):
        ConVIRT(**SMALL).fit(partial)
    bad_series = X.copy()
    bad_series.at[4, "ehr"] = np.full((3, 6), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="column 'ehr', row 4: token array contains NaN"):
        ConVIRT(**SMALL).fit(bad_series)
    with pytest.raises(ValueError, match="needs two modalities.*\\['img'\\]"):
        ConVIRT(**SMALL).fit(X.drop(columns="ehr"))
    tokens = X[["ehr"]].assign(scan=X["ehr"])
    with pytest.raises(ValueError, match="image modality 'scan' must be an embedding block"):
        ConVIRT(image="scan", ehr="ehr", **SMALL).fit(tokens)
    with pytest.raises(ValueError, match="image and ehr must be different modalities"):
        ConVIRT(image="img", ehr="img", **SMALL).fit(X)
    with pytest.raises(ValueError, match=r"duplicate column names \['img__0'\]"):
        ConVIRT(**SMALL).fit(X.rename(columns={"img__1": "img__0"}))
    with pytest.raises(ValueError, match="'image_weight' parameter of ConVIRT must be a float in the range \\[0.0, 1.0\\]"):
        ConVIRT(image_weight=1.5).fit(X)
    with pytest.raises(ValueError, match="'swap_fraction' parameter of ALIGN must be"):
        ALIGN(swap_fraction=0.6).fit(X)
    with pytest.raises(ValueError, match=r"swap_fraction must be .* a pair \(low, high\).*got \(0.3, 0.2\)"):
        ALIGN(swap_fraction=(0.3, 0.2), **SMALL).fit(X)
    with pytest.raises(ValueError, match="'ehr_weight' parameter of ConVIRT must be"):
        ConVIRT(ehr_weight=-1.0).fit(X)
    with pytest.raises(ValueError, match="'output' parameter of VICReg must be a str among"):
        VICReg(output="text").fit(X)


# 300 paired rows: 60 held out, in two batches of 30 (training deals 240 rows in batches of 30).
HELD_OUT = {**SMALL, "max_epochs": 40, "batch_size": 32, "early_stopping": True, "validation_fraction": 0.2,
            "n_iter_no_change": 3}
HELD_OUT_MODELS = {"ConVIRT": ConVIRT(**HELD_OUT), "ALIGN": ALIGN(swap_fraction=0.2, **HELD_OUT), "VICReg": VICReg(**HELD_OUT)}


@pytest.fixture(scope="module")
def held_out_fits(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each stopped by its patience: no ConvergenceWarning
        return {name: clone(model).fit(data[0]) for name, model in HELD_OUT_MODELS.items()}


def _selection(model):
    return dict(model.net_.callbacks_)["epoch_selection"]


@pytest.mark.parametrize("name", HELD_OUT_MODELS)
def test_the_kept_weights_are_those_of_the_best_held_out_epoch(name, held_out_fits, data):
    X, _ = data
    model = held_out_fits[name]
    curve = _selection(model).losses_  # epoch 0 (the initial weights) on
    assert model.best_epoch_ == np.argmin(curve) and 0 < model.best_epoch_ < model.n_iter_ < HELD_OUT["max_epochs"]
    np.testing.assert_array_equal(model.net_.history[:, "valid_loss"], curve[1:])
    # The same run cut at that epoch: its held-out loss was still falling.
    with pytest.warns(ConvergenceWarning, match="max_epochs=.* while the validation loss was still falling"):
        cut = clone(model).set_params(max_epochs=model.best_epoch_).fit(X)
    assert cut.n_iter_ == cut.best_epoch_ == model.best_epoch_
    np.testing.assert_allclose(cut.transform(X), model.transform(X), rtol=1e-5, atol=1e-6)


HELD_OUT_LOSSES = {
    "ConVIRT": lambda image, ehr, model: weighted_info_nce(image, ehr, 1 / model.temperature, 0.75, 0.25),
    "ALIGN": lambda image, ehr, model: weighted_info_nce(image, ehr, model.net_.module_.scale().item(), 1.0, 1.0),
    "VICReg": lambda image, ehr, model: vicreg_loss(image, ehr),
}


@pytest.mark.parametrize("name", HELD_OUT_MODELS)
def test_held_out_loss_is_the_mean_over_training_sized_batches(name, held_out_fits, data):
    X, _ = data
    model = held_out_fits[name]
    rows = _selection(model).valid.indices.cpu().numpy()
    Z = torch.tensor(model.transform(X.iloc[rows]).to_numpy())
    # Each batch of 30 held-out rows on its own (a row against 29 others, not all 59; VICReg's
    # statistics per batch), the pairs as given (no swap), with the kept weights.
    batches = np.array_split(np.arange(len(rows)), math.ceil(len(rows) / HELD_OUT["batch_size"]))
    expected = sum(len(b) * HELD_OUT_LOSSES[name](Z[b, :8], Z[b, 8:], model).item() for b in batches) / len(rows)
    np.testing.assert_allclose(_selection(model).losses_[model.best_epoch_], expected, rtol=1e-5)


def test_early_stopping_auto_holds_out_100_rows_and_a_batch_else_trains_on_every_row(data):
    X, _ = data
    held_out = {}
    for fraction, batch_size in [(0.3, 32), (0.34, 32), (0.34, 128)]:  # 90, 102, 102 rows held out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = ConVIRT(**{**SMALL, "max_epochs": 1, "batch_size": batch_size}, validation_fraction=fraction).fit(X)
        held_out[fraction, batch_size] = "epoch_selection" in dict(model.net_.callbacks_)
    assert held_out == {(0.3, 32): False, (0.34, 32): True, (0.34, 128): False}
    # Without held-out rows: max_epochs on every row, the last epoch kept, no warning on the training loss.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto, off = ALIGN(**SMALL).fit(X), ALIGN(early_stopping=False, **SMALL).fit(X)
    assert auto.n_iter_ == auto.best_epoch_ == off.n_iter_ == off.best_epoch_ == SMALL["max_epochs"]
    np.testing.assert_array_equal(auto.transform(X), off.transform(X))


@pytest.mark.parametrize("cls", [ConVIRT, ALIGN, VICReg])
@pytest.mark.parametrize(
    ("param", "value"), [("early_stopping", "yes"), ("validation_fraction", 1.0), ("validation_fraction", 0.0),
                         ("n_iter_no_change", 0)]
)
def test_bad_epoch_selection_parameters(cls, param, value, data):
    with pytest.raises(ValueError, match=f"The '{param}' parameter of {cls.__name__} must be"):
        cls(**{param: value}).fit(data[0])


def test_early_stopping_needs_two_rows_on_each_side(data):
    X, _ = data
    with pytest.raises(ValueError, match="each side needs at least 2 .*early_stopping=False"):
        VICReg(**SMALL, early_stopping=True).fit(X.iloc[:10])


SSL_CHECKED = [
    ConVIRT(**SMALL),
    ALIGN(output="image", **SMALL),
    VICReg(output="ehr", **SMALL),
    MedCAMAdapter(top_k=2, **SMALL),
]


def _outputs_the_lstm(estimator):
    return estimator.__class__ is not MedCAMAdapter and getattr(estimator, "output", "image") != "image"


@parametrize_with_checks(SSL_CHECKED)
def test_sklearn_compatible_transformer(estimator, check):
    if _outputs_the_lstm(estimator):
        # oneDNN's float32 LSTM (PyTorch's CPU default) rounds a row by its batch position on some CPUs
        skip_float32_batch_check(check, ["check_methods_sample_order_invariance"])
    check(estimator)


@pytest.mark.parametrize("estimator", SSL_CHECKED, ids=repr)
@pytest.mark.float32_batch
def test_row_outputs_do_not_depend_on_the_batch(estimator):
    assert_batch_invariant(estimator)
