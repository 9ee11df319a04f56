"""Saliency through a fitted Pipeline down to the CT voxels: forward value, gradient, completeness, bad input."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sksurv.util import Surv

from skfusion import ConcatSurvival, UnimodalSurvival
from skfusion._data import ModalityDataset
from skfusion.encoders import CTVolumeEmbedder
from skfusion.encoders._base import to_polars_frame
from skfusion.fusion.attention import CrossAttentionClassifier
from skfusion.inspection import gradient_saliency, integrated_gradients
from skfusion.inspection._volume import VolumeScore

# The models train a few epochs only: what is tested is the attribution of whatever they compute.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

WINDOW = (-300.0, 300.0)
KEPT = (1, 4)  # slices=(1, 4): slices 0 and 4 onwards are dropped
HOT = (2, 0, 0)  # a voxel of row 0 above the window


class SmoothCNN(torch.nn.Module):
    """(n, 3, H, W) -> (n, 4), with tanh so that the score is smooth in the voxels inside the window."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():  # fixed weights: every fixture and run fits the same models
            self.conv.weight.copy_(torch.linspace(-0.3, 0.3, self.conv.weight.numel()).view_as(self.conv.weight))
            self.conv.bias.copy_(torch.linspace(-0.1, 0.1, 4))

    def forward(self, x):
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def cohort(n=40, seed=0):
    rng = np.random.default_rng(seed)
    volumes = [np.clip(rng.normal(0, 60, (5, 12, 12)), -250, 250).astype(np.float32) for _ in range(n)]
    volumes[1] = np.clip(rng.normal(0, 60, (6, 10, 14)), -250, 250).astype(np.float32)  # another shape
    volumes[0][HOT] = 500.0
    ehr = rng.normal(size=(n, 3))
    eta = np.array([v[1:4, 3:9, 3:9].mean() for v in volumes]) / 10 + ehr[:, 0]
    X = pd.DataFrame({f"ehr__{j}": ehr[:, j] for j in range(3)})
    X["ct"] = pd.Series(volumes, dtype=object)
    X["pet"] = pd.Series([v[:2] + 40 for v in volumes], dtype=object)
    return X, Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta))), (eta > 0).astype(int)


def embedder(pool):
    return CTVolumeEmbedder(
        backbone=SmoothCNN(), window=WINDOW, slices=KEPT, image_size=8, pool=pool, batch_size=2, device="cpu"
    )


# hidden_dims=[] keeps the networks smooth, so that the midpoint rule converges fast.
TRAINING = {"hidden_dims": [], "max_epochs": 5, "early_stopping": False, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    return cohort()


@pytest.fixture(scope="module")
def pipelines(data):
    X, y, labels = data
    mean = Pipeline([("ct", embedder("mean")), ("fuse", ConcatSurvival(**TRAINING))]).fit(X.drop(columns="pet"), y)
    tokens = Pipeline(
        [("ct", embedder(None)), ("fuse", CrossAttentionClassifier(attention_dim=8, n_tokens=3, **TRAINING))]
    ).fit(X.drop(columns="pet"), labels)
    # A descriptor on another column and a passthrough step leave the volumes of "ct" as they are.
    longer = Pipeline(
        [
            ("pet", CTVolumeEmbedder(image="pet", window="mace")),
            ("nothing", "passthrough"),
            ("ct", embedder("mean")),
            ("fuse", ConcatSurvival(**TRAINING)),
        ]
    ).fit(X, y)
    return {"mean": (mean, X.drop(columns="pet")), "tokens": (tokens, X.drop(columns="pet")), "longer": (longer, X)}


def network_outputs(pipe, X):
    """What the Pipeline's model computes on ``pipe[:-1].transform(X)``: its network's raw outputs."""
    blocks, _ = pipe[-1]._blocks(pipe[:-1].transform(X), reset=False)
    return pipe[-1].net_.predict_outputs(ModalityDataset(blocks))


@pytest.mark.float32_batch
@pytest.mark.parametrize("kind", ["mean", "tokens", "longer"])
def test_the_score_differentiated_is_the_pipelines_own(pipelines, kind):
    pipe, X = pipelines[kind]
    rows = X.iloc[:4]
    explained = VolumeScore(pipe, pipe.named_steps["ct"], rows, "ct", None)
    scores = [explained.score(i, explained.tokens(*explained.read(i))[None]).item() for i in range(len(rows))]
    outputs = network_outputs(pipe, rows)
    np.testing.assert_allclose(scores, outputs[np.arange(len(rows)), explained.columns.numpy()], rtol=1e-4)


@pytest.mark.parametrize("kind", ["mean", "tokens"])
def test_voxel_maps_have_each_volumes_shape_and_zero_off_the_kept_slices(pipelines, kind):
    pipe, X = pipelines[kind]
    rows = X.iloc[:3]
    saliency = gradient_saliency(pipe, rows, "ct")
    assert saliency.dtype == object and saliency.shape == (3,)
    assert [s.shape for s in saliency] == [v.shape for v in rows["ct"]]  # (5, 12, 12), (6, 10, 14), (5, 12, 12)
    for s in saliency:
        assert not s[: KEPT[0]].any() and not s[KEPT[1] :].any()
        assert np.all(np.abs(s[KEPT[0] : KEPT[1]]).sum(axis=(1, 2)) > 0)
    assert saliency[0][HOT] == 0  # above the window: clipped, flat


@pytest.mark.parametrize("kind", ["mean", "tokens"])
def test_gradient_matches_finite_differences_in_float64(pipelines, kind):
    pipe, X = pipelines[kind]
    pipe = copy.deepcopy(pipe)
    rows = X.iloc[:2]
    explained = VolumeScore(pipe, pipe[0], rows, "ct", None)  # reads X through the float32 Pipeline
    # Then a float64 copy of the networks: the voxels, embeddings and score follow their dtype.
    pipe[0].backbone_.double()
    pipe[-1].net_.module_.double()
    eps = 1e-2  # HU; central differences in float64: truncation ~eps**2, round-off ~1e-16 / eps
    for i in range(len(rows)):
        volume, kept = explained.read(i)
        assert volume.dtype == torch.float64
        _, grad = explained.path_gradients(i, [1.0], 0.0)
        for voxel in [(1, 3, 4), (3, 7, 2), (2, 9, 9), (0, 5, 5)]:
            moved = []
            for sign in (1, -1):
                shifted = volume.clone()
                shifted[voxel] += sign * eps
                moved.append(explained.score(i, explained.tokens(shifted, kept)[None]).item())
            np.testing.assert_allclose(float(grad[voxel]), (moved[0] - moved[1]) / (2 * eps), rtol=1e-6, atol=1e-12)


def with_volumes(X, volumes):
    return X.assign(ct=pd.Series(volumes, index=X.index, dtype=object))


def test_integrated_gradients_are_complete_over_the_voxels(pipelines):
    pipe, X = pipelines["mean"]
    rows = X.iloc[:3]
    # The midpoint rule's error falls as 1 / n_steps**2: here 5e-4 of the change at 64 steps, 1e-4 at 128.
    attributions = integrated_gradients(pipe, rows, "ct", n_steps=128)
    black = with_volumes(rows, [np.full_like(v, WINDOW[0]) for v in rows["ct"]])  # the default baseline
    expected = pipe.predict(rows) - pipe.predict(black)
    np.testing.assert_allclose([a.sum() for a in attributions], expected, rtol=1e-3)
    assert not attributions[0][0].any() and attributions[0][HOT] != 0  # crosses the window on the path
    water = integrated_gradients(pipe, rows.iloc[:1], "ct", baseline=0.0, n_steps=128)
    water_volumes = with_volumes(rows.iloc[:1], [np.zeros_like(rows["ct"].iloc[0])])
    expected = pipe.predict(rows.iloc[:1]) - pipe.predict(water_volumes)
    np.testing.assert_allclose(water[0].sum(), expected, rtol=1e-3)


def test_integrated_gradients_of_a_class_logit_over_slice_tokens(pipelines):
    pipe, X = pipelines["tokens"]
    rows = X.iloc[:3]
    black = with_volumes(rows, [np.full_like(v, WINDOW[0]) for v in rows["ct"]])
    for target in (0, 1):
        attributions = integrated_gradients(pipe, rows, "ct", target=target, n_steps=64)
        expected = network_outputs(pipe, rows)[:, target] - network_outputs(pipe, black)[:, target]
        np.testing.assert_allclose([a.sum() for a in attributions], expected, rtol=1e-3, atol=1e-6)


def test_another_modality_is_explained_at_the_models_input(pipelines):
    pipe, X = pipelines["mean"]
    rows = X.iloc[:3]
    Xt = pipe[:-1].transform(rows)
    expected = gradient_saliency(pipe[-1], Xt, "ehr")
    np.testing.assert_array_equal(gradient_saliency(pipe, rows, "ehr"), expected)
    np.testing.assert_array_equal(gradient_saliency(Pipeline([("fuse", pipe[-1])]), Xt, "ehr"), expected)


def test_a_polars_frame_is_read_as_pandas(pipelines):
    pytest.importorskip("polars")
    pipe, X = pipelines["mean"]
    rows = X.iloc[:2]
    for got, expected in zip(gradient_saliency(pipe, to_polars_frame(rows), "ct"), gradient_saliency(pipe, rows, "ct")):
        np.testing.assert_array_equal(got, expected)


def test_bad_input(data, pipelines):
    X, y, _ = data
    pipe, X_ct = pipelines["mean"]
    longer, _ = pipelines["longer"]
    rows = X_ct.iloc[:2]
    with pytest.raises(ValueError, match=r"modality='mri' is neither the volume column of a CTVolumeEmbedder step "
                       r"\(\['ct'\]\) nor a modality of the Pipeline's model \(\['ehr', 'ct'\]\)"):
        gradient_saliency(pipe, rows, "mri")
    with pytest.raises(ValueError, match=r"step 'pet' \(CTVolumeEmbedder\) describes the slices of column 'pet' with "
                       r"the training-free descriptor \(backbone=None\), which has no gradient"):
        integrated_gradients(longer, X.iloc[:2], "pet")
    foreign = Pipeline([("scale", FunctionTransformer()), ("fuse", pipe[-1])])
    with pytest.raises(ValueError, match=r"step 'scale' \(FunctionTransformer\) is not a skfusion encoder: .* "
                       r"pass pipe\[-1\] and pipe\[:-1\].transform\(X\)"):
        gradient_saliency(foreign, rows, "ct")
    with pytest.raises(ValueError, match=r"the last step 'cox' of the Pipeline \(LogisticRegression\) is not a "
                       "skfusion fusion estimator"):
        gradient_saliency(Pipeline([("ct", pipe[0]), ("cox", LogisticRegression())]), rows, "ct")
    with pytest.raises(ValueError, match=r"the last step 'fuse' of the Pipeline \(ConcatSurvival\) is not fitted"):
        gradient_saliency(Pipeline([("ct", pipe[0]), ("fuse", ConcatSurvival())]), rows, "ct")
    with pytest.raises(ValueError, match=r"step 'ct' \(CTVolumeEmbedder\) is not fitted"):
        gradient_saliency(Pipeline([("ct", embedder("mean")), ("fuse", pipe[-1])]), rows, "ct")
    ehr_only = UnimodalSurvival(modality="ehr", **TRAINING).fit(pipe[:-1].transform(X_ct), y)
    with pytest.raises(ValueError, match=r"the model does not read modality 'ct', the output of step 'ct'; its "
                       r"modalities are \['ehr'\]"):
        gradient_saliency(Pipeline([("ct", pipe[0]), ("fuse", ehr_only)]), rows, "ct")
    missing = with_volumes(rows, [rows["ct"].iloc[0], None])
    with pytest.raises(ValueError, match=r"modality 'ct' is missing in rows \[1\]"):
        gradient_saliency(pipe, missing, "ct")
    with pytest.raises(ValueError, match="baseline must be a finite number"):
        integrated_gradients(pipe, rows, "ct", baseline=np.inf)


def whole_volume_pipeline(data, window):
    """A CTVolumeEmbedder whose backbone windows and resamples each volume itself, as TimeToEventPretraining's."""
    from skfusion.modules.volume_input import VolumeGeometry

    X, y, _ = data
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        VolumeGeometry(window, (4, 8, 8)), torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.Tanh(),
        torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
    )  # fmt: skip
    whole = CTVolumeEmbedder(backbone=network, slices=KEPT, batch_size=2, device="cpu")
    X = X.drop(columns="pet")
    return Pipeline([("ct", whole), ("fuse", ConcatSurvival(**TRAINING))]).fit(X, y), X


@pytest.mark.parametrize("window", [WINDOW, "minmax"])
def test_a_whole_volume_backbone_is_explained_voxel_by_voxel(data, window):
    pipe, X = whole_volume_pipeline(data, window)
    rows = X.iloc[:3]
    explained = VolumeScore(pipe, pipe[0], rows, "ct", None)
    scores = [explained.score(i, explained._embed_whole(v[k])[None]).item() for i, (v, k) in
              enumerate(explained.read(i) for i in range(len(rows)))]  # fmt: skip
    np.testing.assert_allclose(scores, network_outputs(pipe, rows)[:, 0], rtol=1e-4)
    saliency = gradient_saliency(pipe, rows, "ct")
    assert [s.shape for s in saliency] == [v.shape for v in rows["ct"]]
    for s in saliency:
        assert not s[: KEPT[0]].any() and not s[KEPT[1] :].any() and np.abs(s[KEPT[0] : KEPT[1]]).sum() > 0
    # The gradient against central differences, in float64.
    pipe = copy.deepcopy(pipe)
    explained = VolumeScore(pipe, pipe[0], rows.iloc[:1], "ct", None)
    pipe[0].backbone_.double()
    pipe[-1].net_.module_.double()
    volume, kept = explained.read(0)
    _, grad = explained.path_gradients(0, [1.0], 0.0)
    eps = 1e-2
    for voxel in [(1, 3, 4), (3, 7, 2), (2, 9, 9)]:
        moved = []
        for sign in (1, -1):
            shifted = volume.clone()
            shifted[voxel] += sign * eps
            moved.append(explained.score(0, explained._embed_whole(shifted[kept])[None]).item())
        np.testing.assert_allclose(float(grad[voxel]), (moved[0] - moved[1]) / (2 * eps), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("window", [WINDOW, "minmax"])
def test_integrated_gradients_through_a_whole_volume_backbone_are_complete(data, window):
    pipe, X = whole_volume_pipeline(data, window)
    rows = X.iloc[:3]
    attributions = integrated_gradients(pipe, rows, "ct", n_steps=128)
    # The default baseline: the window's low end, or under min-max any constant volume (read as zeros).
    constant = WINDOW[0] if window != "minmax" else 0.0
    baseline = with_volumes(rows, [np.full_like(v, constant) for v in rows["ct"]])
    expected = pipe.predict(rows) - pipe.predict(baseline)
    np.testing.assert_allclose([a.sum() for a in attributions], expected, rtol=1e-3)
    if window == "minmax":
        with pytest.raises(ValueError, match=r"baseline=0.0 cannot be used with the backbone's window='minmax'"):
            integrated_gradients(pipe, rows, "ct", baseline=0.0)
