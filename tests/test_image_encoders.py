"""Raw (H, W, C) image columns: the data layer, the ResNet encoders, and the estimators that train them."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skfusion import (
    ConcatClassifier,
    ConcatSurvival,
    ContrastiveClassifier,
    CrossAttentionClassifier,
    DAFTClassifier,
    LateFusionClassifier,
    MedFuseClassifier,
    MMTMClassifier,
    UnimodalClassifier,
)
from skfusion._data import infer_layout, to_blocks
from skfusion._volumes import read_image
from skfusion.encoders import ImageEmbedder
from skfusion.modules.encoders import ImageEncoder, image_encoder

# torchvision's resnet34 / resnet18 without their 1000-class fc layer (1-channel images are replicated to 3).
RESNET34_FEATURES = 21_284_672
RESNET18_FEATURES = 11_176_512


def _frame(n=40, size=8, seed=0, missing=()):
    """A (size, size, 1) image column in [0, 1], an EHR series column and labels depending on both."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    logits = rng.normal(scale=0.5, size=(n, size, size, 1))
    logits[:, : size // 2] += signal[:, None, None, None]  # the top half's brightness
    images = (1 / (1 + np.exp(-logits))).astype(np.float32)
    series = [(rng.normal(size=(t, 3)) + signal[i]).astype(np.float32) for i, t in enumerate(rng.integers(2, 6, n))]
    cells = [None if i in missing else image for i, image in enumerate(images)]
    X = pd.DataFrame({"ehr": pd.Series(series, dtype=object), "cxr": pd.Series(cells, dtype=object)})
    return X, (signal > 0).astype(int)


def _tiny_cnn(channels=1):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )


def test_data_layer_reads_image_columns():
    X, _ = _frame(n=5, missing=(2,))
    ehr, cxr = infer_layout(X)
    assert (ehr.kind, cxr.kind, cxr.shape, cxr.dim) == ("sequence", "image", (1, 8, 8), 1)
    block = to_blocks(X, (cxr,))["cxr"]
    assert block["x"].shape == (5, 1, 8, 8) and "mask" not in block
    assert block["present"].tolist() == [True, True, False, True, True]
    assert torch.all(block["x"][2] == 0)
    np.testing.assert_array_equal(block["x"][3].numpy(), np.moveaxis(X["cxr"][3], -1, 0))


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        (np.zeros((8, 7, 1)), r"column 'cxr', row 3: expected a \(8, 8, 1\) image .* got shape \(8, 7, 1\)"),
        (np.full((8, 8, 1), np.nan), r"column 'cxr', row 3: an image array must hold finite values in \[0, 1\]"),
        (np.full((8, 8, 1), 1.5), r"column 'cxr', row 3: an image array must hold finite values in \[0, 1\]"),
        (np.zeros((1, 8, 8)), r"column 'cxr', row 3: .* channels-first .* np.moveaxis\(image, 0, -1\)"),
    ],
)
def test_bad_image_cells_are_named(cell, match):
    X, _ = _frame(n=5)
    X.at[3, "cxr"] = cell
    with pytest.raises(ValueError, match=match):
        to_blocks(X, infer_layout(X))


def test_image_cells_are_read_as_image_embedder_reads_them():
    # One convention: (H, W, C) arrays, integers divided by their dtype's maximum, then (C, H, W) for the network.
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(4, 6, 5, 1), dtype=np.uint8)
    rgb = rng.random((4, 6, 5, 3))
    for images, channels in ((grey, 1), (rgb, 3)):
        X = pd.DataFrame({"cxr": pd.Series(list(images), dtype=object)})
        (spec,) = infer_layout(X)
        assert (spec.kind, spec.shape, spec.dim) == ("image", (channels, 6, 5), channels)
        block = to_blocks(X, (spec,))["cxr"]["x"].numpy()
        expected = np.stack([read_image(image, "cell") for image in images])
        np.testing.assert_array_equal(block, expected)
        np.testing.assert_allclose(np.moveaxis(block, 1, -1), images / (255.0 if channels == 1 else 1.0), rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_estimator_and_image_embedder_read_the_same_cells(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 16, 16, channels), dtype=np.uint8)
    X = pd.DataFrame({"cxr": pd.Series(list(images), dtype=object), "clin__0": rng.normal(size=12)})
    scaled = X.assign(cxr=pd.Series([image / 255.0 for image in images], dtype=object))
    params = {"image_encoder": _tiny_cnn(channels), "max_epochs": 1, "batch_size": 12, "random_state": 0}
    model = ConcatClassifier(**params).fit(X, np.arange(12) % 2)
    np.testing.assert_allclose(model.predict_proba(scaled), model.predict_proba(X), rtol=1e-5)
    embedder = ImageEmbedder(image="cxr", resize=None, image_size=None)
    embedded = embedder.fit_transform(X[["cxr"]])
    np.testing.assert_allclose(embedder.transform(scaled[["cxr"]]), embedded, rtol=1e-5)
    if channels == 1:  # ImageEmbedder also reads the (H, W) the channel axis was added to
        plain = X[["cxr"]].assign(cxr=pd.Series([image[..., 0] for image in images], dtype=object))
        np.testing.assert_array_equal(embedder.transform(plain), embedded)


def test_channels_first_cells_are_refused_naming_column_and_row():
    cells = [None, np.zeros((3, 16, 16), np.float32), np.zeros((3, 16, 16), np.float32)]
    X = pd.DataFrame({"cxr": pd.Series(cells, dtype=object), "clin__0": [0.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match=r"column 'cxr', row 1: the image array of shape \(3, 16, 16\) is channels-first"):
        infer_layout(X)


def test_volume_cells_are_read_in_hounsfield_units():
    # (Z, H, W) with neither end axis 1 or 3: a CT volume, its slices the channels, unscaled.
    volumes = [np.full((4, 6, 6), -1000.0), np.full((4, 6, 6), 40.0)]
    X = pd.DataFrame({"ct": pd.Series(volumes, dtype=object)})
    (spec,) = infer_layout(X)
    assert (spec.kind, spec.shape, spec.volume) == ("image", (4, 6, 6), True)
    np.testing.assert_array_equal(to_blocks(X, (spec,))["ct"]["x"].numpy(), np.stack(volumes))


def test_four_dimensional_cells_are_refused():
    X = pd.DataFrame({"vol": pd.Series([np.zeros((1, 2, 2, 2))] * 3, dtype=object), "a__0": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"column 'vol' holds raw inputs \(4-D arrays\)"):
        infer_layout(X)


@pytest.mark.parametrize(("name", "expected"), [("resnet34", RESNET34_FEATURES), ("resnet18", RESNET18_FEATURES)])
def test_resnet_matches_torchvision_sizes(name, expected):
    spec = infer_layout(pd.DataFrame({"img": pd.Series([np.zeros((32, 32, 3))] * 2, dtype=object)}))[0]
    encoder = image_encoder(spec, name)
    assert sum(p.numel() for p in encoder.parameters()) == expected
    assert encoder.out_dim == 512
    block = {"x": torch.randn(3, 3, 32, 32), "present": torch.tensor([True, False, True])}
    out = encoder.eval()(block)
    assert out.shape == (3, 512) and torch.all(out[1] == 0) and torch.any(out[0] != 0)


def test_image_encoder_skips_absent_rows_in_batch_norm():
    network = _tiny_cnn()
    encoder = ImageEncoder(copy.deepcopy(network), 4).train()
    x = torch.randn(6, 1, 5, 5)
    present = torch.tensor([True, True, False, True, False, True])
    out = encoder({"x": x, "present": present})
    reference = copy.deepcopy(network).train()
    expected = reference(x[present])
    torch.testing.assert_close(out[present], expected)
    assert torch.all(out[~present] == 0)
    torch.testing.assert_close(encoder.network[1].running_mean, reference[1].running_mean)


@pytest.mark.parametrize(
    "estimator",
    [
        ConcatClassifier(missing="learn"),
        LateFusionClassifier(),
        UnimodalClassifier(modality="cxr"),
        MedFuseClassifier(pretrain_encoders=False),
        DAFTClassifier(missing="learn"),
        MMTMClassifier(missing="learn"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_estimators_train_a_cnn_on_the_image_column(estimator):
    # The unimodal model needs its modality in every row.
    X, y = _frame(missing=() if isinstance(estimator, UnimodalClassifier) else (1, 7))
    backbone = _tiny_cnn()
    before = copy.deepcopy(backbone.state_dict())
    # A fixed number of epochs: the epoch chosen on held-out rows may be 0 (the linear start).
    params = {"image_encoder": backbone, "max_epochs": 3, "batch_size": 16, "early_stopping": False, "random_state": 0}
    if "lstm_dim" in estimator.get_params():
        params["lstm_dim"] = 8
    else:
        params["lstm_dim"] = 8
    model = estimator.set_params(**params).fit(X, y)
    encoders = [m for m in model.net_.module_.modules() if isinstance(m, ImageEncoder)]
    assert len(encoders) == 1 and encoders[0].out_dim == 4
    assert not torch.equal(encoders[0].network[0].weight, before["0.weight"])  # trained
    for key, value in backbone.state_dict().items():  # the user's module is untouched
        torch.testing.assert_close(value, before[key])
    assert model.predict_proba(X).shape == (len(X), 2)


def test_concat_pretrains_and_freezes_the_cnn():
    X, y = _frame(missing=(3,))
    params = {"image_encoder": _tiny_cnn(), "lstm_dim": 8, "max_epochs": 3, "batch_size": 16, "random_state": 0}
    model = ConcatClassifier(missing="learn", pretrain_encoders=True, freeze_encoders=True, **params).fit(X, y)
    cnn = model.network_.encoders["cxr"]
    assert isinstance(cnn, ImageEncoder) and not any(p.requires_grad for p in cnn.parameters())


def test_default_resnet34_on_a_survival_target():
    from sksurv.util import Surv

    rng = np.random.default_rng(0)
    images = [rng.random((32, 32, 3)).astype(np.float32) for _ in range(12)]
    X = pd.DataFrame({"cxr": pd.Series(images, dtype=object), "clin__0": rng.normal(size=12)})
    y = Surv.from_arrays(np.arange(12) % 2 == 0, rng.uniform(1, 5, 12))
    model = ConcatSurvival(max_epochs=1, batch_size=12, random_state=0).fit(X, y)
    cnn = model.network_.encoders["cxr"]
    assert sum(p.numel() for p in cnn.parameters()) == RESNET34_FEATURES
    assert model.predict_survival_function(X, return_array=True).shape == (12, len(model.unique_times_))


@pytest.mark.parametrize("estimator", [CrossAttentionClassifier(), ContrastiveClassifier()], ids=lambda e: type(e).__name__)
def test_families_without_image_encoders_refuse_images(estimator):
    X, y = _frame(n=10)
    with pytest.raises(ValueError, match=r"reads embedding blocks and token columns; column 'cxr' holds \(H, W, C\) images"):
        estimator.set_params(max_epochs=1).fit(X, y)


def test_image_encoder_parameter_is_validated():
    X, y = _frame(n=10)
    with pytest.raises(InvalidParameterError, match="image_encoder"):
        ConcatClassifier(image_encoder="vgg16").fit(X, y)
    with pytest.raises(ValueError, match=r"must map images \(n, C, H, W\) to features \(n, d\)"):
        ConcatClassifier(image_encoder=torch.nn.Conv2d(1, 2, 3), max_epochs=1).fit(X, y)
