"""The 3-D CT encoders (skfusion.modules.volumes) and the loader of Huo et al.'s TTE checkpoints.

The checkpoints are built here in the layout of som-shahlab/tte-pretraining's training script
(``torch.save(model.state_dict())`` of ``DenseNet121_TTE``, ``resnet152_TTE`` and
``SwinUNETRForClassification_TTE`` of ``src/training/networks.py``, wrapped in
DistributedDataParallel), from the key names read there.
"""

import copy
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from skfusion.encoders import _tte_weights, load_tte_encoder
from skfusion.modules.volumes import VOLUME_NETWORKS, VolumeEncoder3d, check_volume_input, volume_network

nets = pytest.importorskip("monai.networks.nets")

# Small variants of the Swin networks (4^3 windows, one block a stage: MONAI's 7^3 windows take
# seconds a volume on a CPU).
SMALL_SWIN = {"feature_size": 12, "window_size": 4, "depths": (1, 1, 1, 1)}
SMALL = {"swinunetr": SMALL_SWIN, "swinvit": SMALL_SWIN}
# d of each network (of the small Swin variants: swinvit's is 16 * feature_size).
FEATURES = {
    "densenet121-3d": 1024, "densenet169-3d": 1664, "densenet201-3d": 1920, "densenet264-3d": 2688,
    "resnet10-3d": 512, "resnet18-3d": 512, "resnet34-3d": 512, "resnet50-3d": 2048,
    "resnet101-3d": 2048, "resnet152-3d": 2048, "resnet200-3d": 2048, "swinunetr": 384, "swinvit": 192,
}  # fmt: skip
# The smallest volumes each family takes: the DenseNets halve every side five times, the ResNets
# pad, SwinUNETR's bottleneck instance norm needs more than one voxel.
SIDE = {"densenet": 32, "resnet": 16, "swin": 64}


def small_network(name):
    return volume_network(name, **SMALL.get(name, {}))


def test_the_names_are_the_table():
    assert set(VOLUME_NETWORKS) == set(FEATURES)


@pytest.mark.float32_batch
@pytest.mark.parametrize("name", VOLUME_NETWORKS)
def test_every_network_maps_volumes_to_features(name):
    torch.manual_seed(0)
    side = next(side for family, side in SIDE.items() if name.startswith(family))
    network = small_network(name).eval()
    x = torch.randn(2, 1, side, side, side)
    with torch.no_grad():
        out = network(x)
        channels_last = network(x.to(memory_format=torch.channels_last_3d))
    assert out.shape == (2, FEATURES[name])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(channels_last, out, rtol=1e-5, atol=1e-5)
    assert check_volume_input(network, (side, side, side)) == FEATURES[name]


@pytest.mark.float32_batch
def test_pooled_swinunetr_is_the_mean_of_the_output_map():
    # Huo et al.'s SwinUNETRForClassification_TTE: AdaptiveAvgPool3d(1) of SwinUNETR's whole output.
    torch.manual_seed(0)
    full = nets.SwinUNETR(in_channels=1, out_channels=384, **SMALL["swinunetr"]).eval()
    pooled = small_network("swinunetr").eval()
    pooled.load_state_dict(full.state_dict())
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        expected = F.adaptive_avg_pool3d(full(x), 1).flatten(1)
        torch.testing.assert_close(pooled(x), expected, rtol=1e-4, atol=1e-5)


def test_swinvit_is_the_relu_of_the_last_stage_averaged():
    torch.manual_seed(0)
    full = nets.SwinUNETR(in_channels=1, out_channels=384, **SMALL["swinvit"]).eval()
    encoder = small_network("swinvit").eval()
    encoder.load_state_dict({k: v for k, v in full.state_dict().items() if k.startswith("swinViT.")})
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        expected = F.adaptive_avg_pool3d(F.relu(full.swinViT(x, True)[-1]), 1).flatten(1)
        torch.testing.assert_close(encoder(x), expected)


def test_unknown_name_and_download_are_refused():
    with pytest.raises(ValueError, match="'densenet121' is not one of"):
        volume_network("densenet121")
    with pytest.raises(ValueError, match="never downloads"):
        volume_network("resnet10-3d", pretrained=True)


def test_a_volume_too_small_is_named():
    network = volume_network("densenet121-3d")
    network.train()
    with pytest.raises(ValueError, match=r"image_encoder \(DenseNet121\).*volume_size=\(16, 16, 16\)"):
        check_volume_input(network, (16, 16, 16))
    assert network.training


def test_swinunetr_sides_must_be_multiples_of_32():
    network = small_network("swinunetr")
    with pytest.raises(ValueError, match=r"ct_encoder is a SwinUNETR.*multiple of 32.*volume_size=\(64, 48, 64\)"):
        check_volume_input(network, (64, 48, 64), param="ct_encoder")
    with pytest.raises(ValueError, match=r"volume_size=\(32, 32, 32\)"):
        check_volume_input(network, (32, 32, 32))


def test_an_output_that_is_not_one_row_of_features_is_refused():
    network = torch.nn.Conv3d(1, 2, 3)
    with pytest.raises(ValueError, match=r"returned shape \(1, 2, 6, 6, 6\)"):
        check_volume_input(network, (8, 8, 8))


def test_missing_monai_names_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name == "monai" or name.startswith("monai.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'skfusion\[imaging\]'"):
        volume_network("densenet121-3d")


class Spy(torch.nn.Module):
    """Records the batches it is given; features = the mean voxel, repeated."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x.mean(dim=(1, 2, 3, 4))[:, None].expand(-1, 4)


def test_wrapper_zeroes_absent_rows_and_never_runs_them():
    spy = Spy()
    encoder = VolumeEncoder3d(spy, 4)
    x = torch.arange(4, dtype=torch.float32)[:, None, None, None, None].expand(4, 1, 2, 3, 3)
    present = torch.tensor([True, False, True, False])
    out = encoder({"x": x, "present": present})
    assert encoder.out_dim == 4
    assert [batch.shape for batch in spy.seen] == [(2, 1, 2, 3, 3)]
    torch.testing.assert_close(spy.seen[0], x[present])
    torch.testing.assert_close(out, torch.tensor([[0.0] * 4, [0.0] * 4, [2.0] * 4, [0.0] * 4]))

    assert not encoder({"x": x, "present": torch.zeros(4, dtype=torch.bool)}).any()
    assert len(spy.seen) == 1


def test_wrapper_keeps_batch_norm_statistics_free_of_absent_rows():
    torch.manual_seed(0)
    network = volume_network("resnet10-3d")
    alone = copy.deepcopy(network).train()
    x = torch.randn(3, 1, 32, 32, 32)
    x[1] = 1e3  # an absent row's content, which must not move the running statistics
    VolumeEncoder3d(network, 512).train()({"x": x, "present": torch.tensor([True, False, True])})
    alone(x[[0, 2]])
    for name, buffer in alone.named_buffers():
        torch.testing.assert_close(network.get_buffer(name), buffer)


# The TTE checkpoints. Head sizes are small here (8 time bins x final_layer_size 4, 3 tasks);
# the released files have 8,192 tasks.
HEADS = {
    "densenet121": {"classification.out.weight": (2, 1024), "classification.out.bias": (2,),
                    "final_layer.weight": (32, 1024), "final_layer.bias": (32,), "ln.weight": (4,), "ln.bias": (4,),
                    "task_layer.weight": (3, 4), "task_layer.bias": (3,)},
    "resnet152": {"final_layer.weight": (32, 512), "final_layer.bias": (32,),
                  "task_layer.weight": (3, 4), "task_layer.bias": (3,)},
    "swinunetr": {"final_layer.weight": (32, 384), "final_layer.bias": (32,),
                  "task_layer.weight": (3, 4), "task_layer.bias": (3,)},
}  # fmt: skip
# Keys read in networks.py (MONAI's modules as Huo et al. copied or imported them).
SAMPLE_KEYS = {
    "densenet121": ["module.features.conv0.weight", "module.features.denseblock1.denselayer1.layers.conv1.weight",
                    "module.features.transition3.norm.running_var", "module.features.norm5.bias"],
    "resnet152": ["module.conv1.weight", "module.layer1.0.conv3.weight", "module.layer2.0.downsample.0.bias",
                  "module.layer4.2.bn3.num_batches_tracked"],
    "swinunetr": ["module.swin_unetr.swinViT.patch_embed.proj.weight",
                  "module.swin_unetr.swinViT.layers4.0.blocks.1.attn.relative_position_bias_table",
                  "module.swin_unetr.decoder1.conv_block.conv1.conv.weight", "module.swin_unetr.out.conv.conv.weight"],
}  # fmt: skip
# The pretrained encoders, made small where it keeps their layout (the 152 layers at 1/8 width).
SMALL_TTE = {"resnet152-3d": {"widen_factor": 0.125}, "swinunetr": {"feature_size": 12, "window_size": 4}}
ENCODER_PREFIX = {"densenet121": "", "resnet152": "", "swinunetr": "swin_unetr."}


@pytest.fixture
def small_tte_networks(monkeypatch):
    monkeypatch.setattr(_tte_weights, "volume_network", lambda name: volume_network(name, **SMALL_TTE.get(name, {})))


def reference_network(architecture):
    """The MONAI network of a TTE encoder, with its classifier, built by hand."""
    if architecture == "densenet121":
        return nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    if architecture == "resnet152":
        return nets.resnet152(spatial_dims=3, n_input_channels=1, feed_forward=False, widen_factor=0.125)
    return nets.SwinUNETR(in_channels=1, out_channels=384, **SMALL_TTE["swinunetr"])


def reference_features(architecture, network, x):
    """The features of the TTE models' forward passes (``return_features``), transcribed."""
    if architecture == "densenet121":  # class_layers: relu, pool, flatten
        return F.adaptive_avg_pool3d(F.relu(network.features(x)), 1).flatten(1)
    if architecture == "resnet152":  # avgpool, view
        return network(x)
    return F.adaptive_avg_pool3d(network(x), 1).flatten(1)  # global_pool, flatten


def tte_checkpoint(architecture, seed=0):
    """A random-weight state dict in the released layout, and the reference network holding those weights."""
    torch.manual_seed(seed)
    network = reference_network(architecture)
    for tensor in network.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(torch.randn_like(tensor) * 0.05 + (1.0 if tensor.ndim == 1 else 0.0))
    encoder = {k: v for k, v in network.state_dict().items() if not k.startswith("class_layers.out.")}
    state = {f"module.{ENCODER_PREFIX[architecture]}{k}": v for k, v in encoder.items()}
    state |= {f"module.{k}": torch.randn(shape) for k, shape in HEADS[architecture].items()}
    assert set(SAMPLE_KEYS[architecture]) <= set(state)
    return state, network.eval()


@pytest.mark.float32_batch
@pytest.mark.parametrize("architecture", ["densenet121", "resnet152", "swinunetr"])
@pytest.mark.parametrize("writer", ["torch", "safetensors"])
def test_tte_checkpoint_round_trip(architecture, writer, tmp_path, small_tte_networks):
    state, reference = tte_checkpoint(architecture)
    path = tmp_path / f"{architecture}.ckpt"
    if writer == "torch":
        torch.save(state, path)
    else:
        save_file(state, str(path))

    encoder = load_tte_encoder(path, architecture)

    assert not encoder.training
    prefix = f"module.{ENCODER_PREFIX[architecture]}"
    loaded = encoder.state_dict()
    assert {prefix + k for k in loaded} == set(state) - {f"module.{k}" for k in HEADS[architecture]}
    for key, value in loaded.items():
        assert torch.equal(value, state[prefix + key]), key
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        expected = reference_features(architecture, reference, x)
        assert torch.isfinite(expected).all() and expected.std() > 0
        torch.testing.assert_close(encoder(x), expected, rtol=1e-4, atol=1e-5)


def test_tte_checkpoint_without_the_ddp_prefix(tmp_path):
    state, reference = tte_checkpoint("densenet121")
    torch.save({k.removeprefix("module."): v for k, v in state.items()}, tmp_path / "plain.pth")
    encoder = load_tte_encoder(tmp_path / "plain.pth")
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), reference_features("densenet121", reference, x))


def test_a_checkpoint_of_another_architecture_names_the_keys(tmp_path, small_tte_networks):
    state, _ = tte_checkpoint("densenet121")
    path = tmp_path / "densenet_tte.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_tte_encoder(path, "resnet152")
    message = str(info.value)
    assert str(path) in message
    assert "missing keys ['conv1.weight'" in message
    assert "unexpected keys ['features.conv0.weight'" in message
    assert "another architecture than 'resnet152'" in message


def test_a_misshaped_checkpoint_names_the_keys(tmp_path):
    state, _ = tte_checkpoint("densenet121")
    state["module.features.conv0.weight"] = torch.zeros(64, 3, 7, 7, 7)  # an RGB stem
    torch.save(state, tmp_path / "rgb.pth")
    with pytest.raises(ValueError, match=r"misshaped keys \['features.conv0.weight: \(64, 3, 7, 7, 7\) in the file"):
        load_tte_encoder(tmp_path / "rgb.pth")


def test_unreadable_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth.*cannot be read"):
        load_tte_encoder(garbage)

    state, _ = tte_checkpoint("densenet121")
    for name, write in [("cut.pth", torch.save), ("cut.safetensors", lambda s, p: save_file(s, str(p)))]:
        path = tmp_path / name
        write(state, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(ValueError, match=f"{name}.*cannot be read"):
            load_tte_encoder(path)


def test_bad_paths_and_architectures(tmp_path):
    with pytest.raises(ValueError, match="'missing.pth' is no file"):
        load_tte_encoder("missing.pth")
    with pytest.raises(ValueError, match="is a directory"):
        load_tte_encoder(tmp_path)
    known = r"\('densenet121', 'resnet152', 'swinunetr'\)"
    with pytest.raises(ValueError, match=rf"architecture='vit' is not one of {known}"):
        load_tte_encoder(tmp_path / "any.pth", "vit")

