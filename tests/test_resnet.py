"""One ResNet: torchvision's architecture and names, for ``image_encoder=`` and ``backbone=`` alike."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback

from skfusion import ConcatClassifier
from skfusion._data import infer_layout, to_blocks
from skfusion.encoders import ImageEmbedder, load_backbone
from skfusion.modules.encoders import ImageEncoder, make_encoder, resnet
from skfusion.modules.tte import default_slice_backbone

# torchvision's parameter counts with their 1000-class fc (torchvision's model documentation).
TORCHVISION_PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


def torchvision_state_shapes(name, n_classes=1000):
    """``{key: shape}`` of ``torchvision.models.<name>().state_dict()``, in its order.

    Transcribed from ``torchvision/models/resnet.py``: ``ResNet.__init__`` (conv1, bn1,
    layer1..4, fc), ``_make_layer`` (a ``downsample`` Sequential of a 1x1 convolution and a
    batch norm on a stage's first block when the stride or the width changes),
    ``BasicBlock`` (conv1, bn1, conv2, bn2) and ``Bottleneck`` (conv1, bn1, conv2, bn2,
    conv3, bn3; expansion 4).
    """
    bottleneck, layers = {
        "resnet18": (False, (2, 2, 2, 2)),
        "resnet34": (False, (3, 4, 6, 3)),
        "resnet50": (True, (3, 4, 6, 3)),
    }[name]
    expansion = 4 if bottleneck else 1
    shapes = {}

    def conv(key, out_planes, in_planes, k):
        shapes[f"{key}.weight"] = (out_planes, in_planes, k, k)

    def bn(key, planes):
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{key}.{field}"] = (planes,)
        shapes[f"{key}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        stride = 1 if stage == 1 else 2
        for index in range(blocks):
            key = f"layer{stage}.{index}"
            if bottleneck:
                conv(f"{key}.conv1", planes, inplanes, 1)
                bn(f"{key}.bn1", planes)
                conv(f"{key}.conv2", planes, planes, 3)
                bn(f"{key}.bn2", planes)
                conv(f"{key}.conv3", planes * 4, planes, 1)
                bn(f"{key}.bn3", planes * 4)
            else:
                conv(f"{key}.conv1", planes, inplanes, 3)
                bn(f"{key}.bn1", planes)
                conv(f"{key}.conv2", planes, planes, 3)
                bn(f"{key}.bn2", planes)
            if index == 0 and (stride != 1 or inplanes != planes * expansion):
                conv(f"{key}.downsample.0", planes * expansion, inplanes, 1)
                bn(f"{key}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"] = (n_classes, 512 * expansion)
    shapes["fc.bias"] = (n_classes,)
    return shapes


def torchvision_checkpoint(path, name="resnet18", seed=0, n_classes=1000, change=None):
    """Write random weights in torchvision's layout (fc included) to ``path``; return the state."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_state_shapes(name, n_classes).items():
        noise = torch.randn(shape, generator=generator)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = noise.abs() + 0.5
        elif len(shape) == 4:  # a convolution: He et al.'s scale, so the image reaches the output
            state[key] = noise * math.sqrt(2 / math.prod(shape[1:]))
        elif key.endswith(".weight") and not key.startswith("fc."):  # a batch-norm scale
            state[key] = 1 + 0.1 * noise
        else:
            state[key] = 0.1 * noise
    if change is not None:
        change(state)
    torch.save(state, path)
    return state


def _n_parameters(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_state_dict_is_torchvisions(name):
    reference = torchvision_state_shapes(name)
    assert len(reference) == {"resnet18": 122, "resnet50": 320}[name]
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    parameters = sum(math.prod(s) for k, s in reference.items() if not k.endswith(buffers))
    assert parameters == TORCHVISION_PARAMETERS[name]  # the transcription is torchvision's
    without_fc = {k: s for k, s in reference.items() if not k.startswith("fc.")}
    ours = {k: tuple(v.shape) for k, v in resnet(name).state_dict().items()}
    assert list(ours.items()) == list(without_fc.items())


@pytest.mark.parametrize(
    ("name", "fc", "out_dim"), [("resnet18", 513_000, 512), ("resnet34", 513_000, 512), ("resnet50", 2_049_000, 2048)]
)
def test_parameter_counts_are_torchvisions_without_fc(name, fc, out_dim):
    network = resnet(name)
    assert _n_parameters(network) == TORCHVISION_PARAMETERS[name] - fc
    assert network.out_dim == out_dim and isinstance(network.fc, torch.nn.Identity)
    assert network.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, out_dim)


def test_initialisation_is_torchvisions():
    torch.manual_seed(0)
    network = resnet("resnet18")
    conv = network.layer2[0].conv1.weight  # 64 to 128 channels: fan_out = 128 * 3 * 3, twice fan_in
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.02)
    assert conv.mean().abs().item() < 1e-3
    for bn in (network.bn1, network.layer1[0].bn2, network.layer2[0].downsample[1]):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)  # zero_init_residual=False


def test_grey_images_are_replicated_to_three_channels():
    network = resnet("resnet18").eval()
    grey = torch.randn(2, 1, 40, 36)
    torch.testing.assert_close(network(grey), network(grey.repeat(1, 3, 1, 1)))
    assert network.conv1.in_channels == 3


def test_the_slice_network_keeps_resnet18_structure_at_an_eighth_of_the_width():
    network = default_slice_backbone()
    assert network.layer4[0].conv1.weight.shape == (64, 32, 3, 3)
    assert "layer2.0.downsample.0.weight" in network.state_dict()
    assert _n_parameters(network) == 78_312
    assert network.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 64)


def _grey_images(seed=0, n=3, size=48):
    """``(H, W, 1)`` images in [0, 1]: what the estimators and the embedders both read."""
    rng = np.random.default_rng(seed)
    return [rng.random((size, size, 1)).astype(np.float32) for _ in range(n)]


def test_a_torchvision_checkpoint_gives_the_same_features_to_both_encoders(tmp_path):
    path = tmp_path / "resnet18.pth"
    checkpoint = torchvision_checkpoint(path)
    images = _grey_images()
    # The estimators' image encoder, built as they build it, on the same grey images.
    X = pd.DataFrame({"img": pd.Series(images, dtype=object)})
    spec = infer_layout(X)[0]
    encoder = make_encoder(spec, image=load_backbone("resnet18", path)).eval()
    with torch.no_grad():
        features = encoder(to_blocks(X, (spec,))["img"]).numpy()
    embedder = ImageEmbedder(
        backbone="resnet18", weights=path, resize=None, image_size=None, mean=None, std=None, device="cpu"
    )
    embedded = embedder.fit_transform(X)
    np.testing.assert_allclose(embedded.to_numpy(), features, rtol=1e-4, atol=1e-5)
    assert np.abs(features[0] - features[1]).max() > 1e-2  # the image matters
    loaded = embedder.backbone_.state_dict()
    for key, value in checkpoint.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_an_estimator_starts_training_from_the_checkpoint(tmp_path):
    path = tmp_path / "resnet18.pth"
    checkpoint = torchvision_checkpoint(path, seed=1)

    class InitialEncoder(Callback):
        def on_train_begin(self, net, **kwargs):
            (encoder,) = [m for m in net.module_.modules() if isinstance(m, ImageEncoder)]
            self.state = copy.deepcopy(encoder.network.state_dict())

    X = pd.DataFrame({"cxr": pd.Series(_grey_images(n=20, size=32), dtype=object), "a__0": np.linspace(-1, 1, 20)})
    y = np.arange(20) % 2
    snapshot = InitialEncoder()
    model = ConcatClassifier(
        image_encoder=load_backbone("resnet18", path),
        max_epochs=1,
        early_stopping=False,
        linear_path=False,  # the linear start's cross-validation would triple the time
        batch_size=10,
        callbacks=[snapshot],
        random_state=0,
    ).fit(X, y)
    expected = {k: v for k, v in checkpoint.items() if not k.startswith("fc.")}
    assert snapshot.state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(snapshot.state[key], value), key
    assert model.predict_proba(X).shape == (20, 2)


def test_a_checkpoint_without_batch_norm_counters_loads(tmp_path):
    # Checkpoints converted from other frameworks often lack them; torch fills them in.
    def drop_counters(state):
        for key in [k for k in state if k.endswith("num_batches_tracked")]:
            del state[key]

    torchvision_checkpoint(tmp_path / "w.pt", change=drop_counters)
    assert load_backbone("resnet18", tmp_path / "w.pt").bn1.num_batches_tracked == 0


def test_any_number_of_classes_in_fc_loads(tmp_path):
    torchvision_checkpoint(tmp_path / "w.pt", n_classes=14)
    assert load_backbone("resnet18", tmp_path / "w.pt")(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def _drop(key):
    return lambda state: state.pop(key)


def _add(key):
    return lambda state: state.update({key: torch.zeros(3)})


def _reshape(key):
    return lambda state: state.update({key: torch.zeros(64, 1, 7, 7)})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_drop("layer3.0.downsample.0.weight"), r"missing keys \['layer3.0.downsample.0.weight'\], unexpected keys \[\]"),
        (_add("layer5.0.conv1.weight"), r"missing keys \[\], unexpected keys \['layer5.0.conv1.weight'\]"),
        (
            _reshape("conv1.weight"),
            r"unexpected keys \[\], misshaped keys \['conv1.weight: \(64, 1, 7, 7\) in the file, \(64, 3, 7, 7\) in the backbone'\]",
        ),
    ],
    ids=["missing", "extra", "misshaped"],
)
def test_a_mismatching_checkpoint_is_refused_naming_the_key(tmp_path, change, match):
    torchvision_checkpoint(tmp_path / "bad.pt", change=change)
    with pytest.raises(ValueError, match=r"bad.pt' do not match the backbone: .*" + match):
        load_backbone("resnet18", tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=match):
        ImageEmbedder(backbone="resnet18", weights=tmp_path / "bad.pt").fit(pd.DataFrame({"img": _grey_images(n=1)}))


def test_resnet_names_need_no_torchvision(monkeypatch):
    from skfusion.encoders import _backbone

    def no_torchvision(name):
        raise AssertionError(f"torchvision asked for {name}")

    monkeypatch.setattr(_backbone, "_torchvision_model", no_torchvision)
    assert load_backbone("resnet18").layer2[1].conv1.weight.shape == (128, 128, 3, 3)
    assert load_backbone("resnet101").layer3[22].conv3.weight.shape == (1024, 256, 1, 1)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_outputs_match_torchvision(tmp_path, name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)
    for module in reference.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    assert list(reference.state_dict()) == list(torchvision_state_shapes(name))
    ours = load_backbone(name, tmp_path / "tv.pth")
    reference.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.eval()(x))
