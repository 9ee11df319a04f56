"""3-D CT encoders: MONAI's volume networks without their classification layer.

:func:`volume_network` builds a randomly initialised network mapping ``(B, 1, D, H, W)``
volumes to ``(B, d)`` features, by name (:data:`VOLUME_NETWORKS`): MONAI's 3-D DenseNets and
ResNets, and the SwinUNETR of time-to-event pretraining (Z. Huo, J. A. Fries, A. Lozano,
J. M. J. Valanarasu, E. Steinberg, L. Blankemeier, A. S. Chaudhari, C. Langlotz and N. H. Shah,
"Time-to-event pretraining for 3D medical imaging", ICLR 2025), whose three encoders were
DenseNet-121, ResNet-152 and SwinUNETR. Their weights:
:func:`skfusion.encoders.load_tte_encoder`.

:func:`check_volume_input` reads ``d`` from one forward pass and turns a volume too small for
the network into a ValueError naming ``volume_size``; :class:`VolumeEncoder3d` runs a network
on a modality block, with zeros for rows that have no volume.

MONAI is imported when a network is built, never on import of this module.
"""

import importlib
import sys

from torch import nn

from .encoders import ImageEncoder, _probe

_DENSENETS = {f"densenet{depth}-3d": f"DenseNet{depth}" for depth in (121, 169, 201, 264)}
_RESNETS = {f"resnet{depth}-3d": f"resnet{depth}" for depth in (10, 18, 34, 50, 101, 152, 200)}

#: The names :func:`volume_network` accepts.
VOLUME_NETWORKS = (*_DENSENETS, *_RESNETS, "swinunetr", "swinvit")


def _require(module):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the 3-D volume networks need {module.split('.')[0]}, which cannot be imported ({exc}): "
            "pip install 'skfusion[imaging]'."
        ) from exc


def volume_network(name, **options):
    """A randomly initialised 3-D network mapping ``(B, 1, D, H, W)`` float volumes to ``(B, d)`` features.

    Parameters
    ----------
    name : str
        One of :data:`VOLUME_NETWORKS`:

        - ``"densenet121-3d"`` (``d = 1024``), ``"densenet169-3d"`` (1664),
          ``"densenet201-3d"`` (1920), ``"densenet264-3d"`` (2688): MONAI's ``DenseNet121``
          ... ``DenseNet264`` (``spatial_dims=3, in_channels=1``) with the linear layer of
          ``class_layers`` replaced by the identity, so the features are the ReLU'd, globally
          averaged last feature map, as in Huo et al.'s ``DenseNet121_TTE``. Volumes need at
          least 32 voxels a side.
        - ``"resnet10-3d"`` ... ``"resnet200-3d"`` (``d = 512`` up to ResNet-34, 2048 from
          ResNet-50): MONAI's ``resnet10`` ... ``resnet200`` (``spatial_dims=3,
          n_input_channels=1, feed_forward=False``), whose layout Huo et al.'s ``ResNet_TTE``
          shares (a 7x7x7 stem of stride 1, projection shortcuts with a bias); the features
          are the globally averaged last feature map.
        - ``"swinunetr"`` (``d = 384``): MONAI's ``SwinUNETR(in_channels=1, out_channels=384,
          feature_size=48)``, the whole U-shaped network, its output map averaged over space:
          what Huo et al.'s ``SwinUNETRForClassification_TTE`` feeds its pretraining head
          (``src/training/networks.py`` of som-shahlab/tte-pretraining). The output block, a
          1x1x1 convolution, is applied to the spatially averaged last decoder map instead of
          every voxel (an affine map commutes with the mean; the ``(B, 384, D, H, W)`` map
          would take 17 GB in float32 for one 224^3 volume). Every side must be a multiple of
          32, and the volume larger than 32^3 (the instance norm of its bottleneck needs more
          than one voxel).
        - ``"swinvit"`` (``d = 16 * feature_size``, 768): the Swin transformer encoder of that
          SwinUNETR alone (its ``swinViT``, decoder left out), whose last stage is passed
          through a ReLU and averaged over space, as the ``SwinClassifier`` of the same file
          does: a cheaper alternative, not the network of the released weights.
    **options
        Keyword arguments of the MONAI constructor, replacing the defaults above (e.g.
        ``feature_size=12`` for a small SwinUNETR, ``dropout_prob=0.3`` for a DenseNet, the
        value Huo et al. trained with).

    Returns
    -------
    network : torch.nn.Module

    Raises
    ------
    ValueError
        For an unknown name, or ``pretrained`` among ``options`` (skfusion never downloads
        weights).
    ImportError
        When MONAI (or, for the Swin networks, einops) cannot be imported.

    Examples
    --------
    >>> import torch
    >>> from skfusion.modules.volumes import volume_network
    >>> network = volume_network("resnet10-3d").eval()
    >>> network(torch.zeros(2, 1, 32, 32, 32)).shape
    torch.Size([2, 512])
    """
    if name not in VOLUME_NETWORKS:
        raise ValueError(f"volume network {name!r} is not one of {VOLUME_NETWORKS}.")
    if "pretrained" in options:
        raise ValueError(
            "volume_network never downloads weights: load a local checkpoint with "
            "skfusion.encoders.load_tte_encoder or load_backbone."
        )
    nets = _require("monai.networks.nets")
    if name in _DENSENETS:
        defaults = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1}
        network = getattr(nets, _DENSENETS[name])(**{**defaults, **options})
        network.class_layers.out = nn.Identity()
        return network
    if name in _RESNETS:
        defaults = {"spatial_dims": 3, "n_input_channels": 1, "feed_forward": False}
        return getattr(nets, _RESNETS[name])(**{**defaults, **options})
    _require("einops")  # SwinUNETR imports it only when it runs
    network = nets.SwinUNETR(**{"in_channels": 1, "out_channels": 384, "feature_size": 48, **options})
    if name == "swinvit":
        return SwinViTEncoder(network.swinViT, network.normalize)
    network.out = _PooledOutput(network.out)
    return network


class _PooledOutput(nn.Module):
    """SwinUNETR's output block on the spatial mean of its input: ``(B, C, D, H, W)`` to ``(B, out_channels)``.

    Equal to the spatial mean of the block's output map (the block is one 1x1x1 convolution),
    without that map. The convolution keeps its place, so the state-dict keys stay MONAI's
    (``out.conv.conv.weight``).
    """

    def __init__(self, block):
        super().__init__()
        self.conv = block.conv

    def forward(self, x):
        return self.conv(x.mean(dim=(2, 3, 4), keepdim=True)).flatten(1)


class SwinViTEncoder(nn.Module):
    """A Swin transformer encoder's last stage, ReLU, averaged over space: ``(B, 1, D, H, W)`` to ``(B, d)``.

    Parameters
    ----------
    swin_vit : torch.nn.Module
        MONAI's ``SwinTransformer`` (the ``swinViT`` of a ``SwinUNETR``), kept under the same
        name so that its state-dict keys are the SwinUNETR's (``swinViT.patch_embed...``).
    normalize : bool, default=True
        Layer-normalise each stage's output, as SwinUNETR does.
    """

    def __init__(self, swin_vit, normalize=True):
        super().__init__()
        self.swinViT = swin_vit
        self.normalize = normalize

    def forward(self, x):
        return self.swinViT(x, self.normalize)[-1].relu().mean(dim=(2, 3, 4))


def _is_swinunetr(network):
    # A SwinUNETR instance implies MONAI is imported: nothing is imported to ask.
    nets = sys.modules.get("monai.networks.nets")
    return nets is not None and isinstance(network, nets.SwinUNETR)


def check_volume_input(network, volume_size, param="image_encoder"):
    """The feature dimension ``d`` of ``network`` on volumes of ``volume_size``, from one zero volume.

    The network runs once in evaluation mode without gradients on a ``(1, 1, *volume_size)``
    zero tensor (its training mode is restored).

    Parameters
    ----------
    network : torch.nn.Module
        Maps ``(B, 1, D, H, W)`` volumes to ``(B, d)`` features.
    volume_size : tuple of 3 int
        ``(D, H, W)``.
    param : str, default="image_encoder"
        The estimator parameter holding ``network``, named in error messages.

    Returns
    -------
    d : int

    Raises
    ------
    ValueError
        When a side of ``volume_size`` is not a multiple of 32 for a SwinUNETR (of
        ``patch_size ** 5`` for another patch size than MONAI's 2), when the
        network fails on the volume (typically a volume smaller than its downsampling: a
        3-D DenseNet needs 32 voxels a side), or when its output is not ``(1, d)``.

    Examples
    --------
    >>> from skfusion.modules.volumes import check_volume_input, volume_network
    >>> check_volume_input(volume_network("resnet10-3d"), (32, 32, 32))
    512
    """
    volume_size = tuple(volume_size)
    kind = type(network).__name__
    # SwinUNETR's patch embedding and four patch mergings divide every side by patch_size five times.
    multiple = network.patch_size**5 if _is_swinunetr(network) else 1
    if any(side % multiple for side in volume_size):
        raise ValueError(
            f"{param} is a SwinUNETR, which needs every side of the volume to be a multiple of "
            f"{multiple}; got volume_size={volume_size}."
        )
    try:
        out = _probe(network, (1, *volume_size))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{param} ({kind}) fails on volumes of volume_size={volume_size} (D, H, W), too small for "
            f"its downsampling or the wrong shape ({exc})."
        ) from exc
    if out.ndim != 2 or out.shape[0] != 1:
        raise ValueError(
            f"{param} ({kind}) must map volumes (n, 1, D, H, W) to features (n, d); on one volume of "
            f"volume_size={volume_size} it returned shape {tuple(out.shape)}."
        )
    return int(out.shape[1])


class VolumeEncoder3d(ImageEncoder):
    """A 3-D network on a volume block ``(n, 1, D, H, W)``: features ``(n, out_dim)``, zeros where absent.

    :class:`~skfusion.modules.encoders.ImageEncoder`'s forward pass, which does not depend on
    the number of spatial dimensions: ``block = {"x": (n, 1, D, H, W), "present": (n,) bool}``;
    only the rows with a volume go through the network, so absent rows never enter its
    batch-norm statistics.

    Parameters
    ----------
    network : torch.nn.Module
        Maps ``(m, 1, D, H, W)`` to ``(m, out_dim)`` (:func:`volume_network`, or any module).
    out_dim : int
        Its feature dimension (:func:`check_volume_input`).

    Examples
    --------
    >>> import torch
    >>> from skfusion.modules.volumes import VolumeEncoder3d, volume_network
    >>> encoder = VolumeEncoder3d(volume_network("resnet10-3d"), 512).eval()
    >>> block = {"x": torch.zeros(3, 1, 32, 32, 32), "present": torch.tensor([True, False, True])}
    >>> encoder(block).shape
    torch.Size([3, 512])
    """

    def __init__(self, network, out_dim):
        super().__init__(network, out_dim)
