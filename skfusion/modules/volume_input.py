"""The encoder of a CT volume column in the fusion estimators: resampling, windowing, then a network.

:func:`volume_encoder` builds it from the estimator's ``image_encoder``, ``volume_size`` and
``window``: :class:`VolumeGeometry` turns ``(n, Z, H, W)`` volumes in Hounsfield units (a
column of arrays as it is, a column of files as :class:`~skfusion._images.VolumeFiles` reads
it) into ``(n, 1, D, H, W)`` volumes in [0, 1], read by a 3-D network of
:data:`~skfusion.modules.volumes.VOLUME_NETWORKS`, by the slice network of time-to-event
pretraining (``"slices"``), or by the user's module; rows without a volume never enter it
(:class:`~skfusion.modules.volumes.VolumeEncoder3d`).
"""

import contextlib
import copy

import torch
from torch import nn

from .._images import IMAGENET_MEAN, IMAGENET_STD, MINMAX, resize_volume, resolve_volume_window
from .._volumes import apply_window
from .encoders import RESNETS, image_encoder
from .tte import SliceGeometry, VolumeEncoder, default_slice_backbone
from .volumes import VOLUME_NETWORKS, VolumeEncoder3d, check_volume_input, volume_network

#: The names ``image_encoder`` takes for a volume column.
VOLUME_ENCODERS = (*VOLUME_NETWORKS, "slices")

#: What ``image_encoder="auto"`` is on a volume column (the first encoder of Huo et al.).
DEFAULT_VOLUME_ENCODER = "densenet121-3d"

# Hidden width of the slice network's attention pooling (TimeToEventPretraining's default).
_SLICE_ATTENTION_DIM = 32


class VolumeGeometry(nn.Module):
    """``(n, Z, H, W)`` HU volumes to ``(n, 1, D, H, W)`` volumes in [0, 1], resampled to ``volume_size``.

    Resampling is trilinear (``align_corners=False``), skipped when the volumes already have
    ``volume_size`` (a column of files is read at that size). ``window`` is a HU window
    (``"pe"``, ``"mace"`` or ``(low, high)``: clipped and scaled to [0, 1]) or ``"minmax"``,
    each volume scaled from its own minimum and maximum to [0, 1] as MONAI's ``ScaleIntensity``
    does in Huo et al.'s training script (a constant volume gives zeros). On CUDA the output
    is laid out channels-last-3d, cuDNN's fastest layout for 3-D convolutions.

    Parameters
    ----------
    window : {"minmax", "pe", "mace"} or tuple of (float, float)
    volume_size : tuple of 3 int
    """

    # Set by hold_minmax_scaling: None scales each batch by its own volumes; _RECORD scales the next batch
    # so and keeps its (low, span) tuple, used for the batches after it. A class attribute: a geometry
    # pickled before it existed reads None.
    _held_scaling = None

    def __init__(self, window, volume_size):
        super().__init__()
        self.window = resolve_volume_window(window)
        self.volume_size = tuple(int(v) for v in volume_size)

    def forward(self, x):
        x = resize_volume(x, self.volume_size)
        if self.window == MINMAX:
            low, span = self._scaling(x)
            x = (x - low) / span
        else:
            x = apply_window(x, *self.window)
        x = x.unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last_3d) if x.is_cuda else x

    def minmax_scaling(self, x):
        """``(low, span)``, each ``(n, 1, 1, 1)``, by which ``window="minmax"`` scales the HU volumes ``x``.

        ``low`` is each volume's minimum once resampled to ``volume_size``, ``span`` its
        maximum less ``low`` (1 for a constant volume, which is then scaled to zeros).
        """
        x = resize_volume(x, self.volume_size)
        low = x.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
        span = x.flatten(1).amax(dim=1).view(-1, 1, 1, 1) - low
        return low, torch.where(span > 0, span, torch.ones_like(span))

    def _scaling(self, x):
        if isinstance(self._held_scaling, tuple):
            return self._held_scaling
        scaling = self.minmax_scaling(x)
        if self._held_scaling is _RECORD:
            self._held_scaling = tuple(v.detach() for v in scaling)
        return scaling


_RECORD = object()


@contextlib.contextmanager
def hold_minmax_scaling(module, run, volumes):
    """Inside the block, every min-max :class:`VolumeGeometry` of ``module`` scales its volumes by the ``(low,
    span)`` of those it scales in ``run()``, held constant (no gradient through them); yields ``low`` of
    ``volumes``, each volume's minimum: the start of its path.

    Integrated gradients (:mod:`skfusion.inspection`) pass ``run``, a pass of ``module``
    (without gradient) on the end of the path, the rows' own volumes, and those volumes in
    HU, ``(n, D, H, W)``. Min-max scaling is the same at every point of a straight path from
    a constant volume (the path's volumes differ by an offset and a factor), so the score
    would not move along it; with the end's scaling held, the network's input is linear
    along the path. The batches of the block must hold the same rows as ``run``'s.
    """
    geometries = [m for m in module.modules() if isinstance(m, VolumeGeometry) and m.window == MINMAX]
    for geometry in geometries:
        geometry._held_scaling = _RECORD
    try:
        with torch.no_grad():
            run()
        yield geometries[0].minmax_scaling(volumes)[0]
    finally:
        for geometry in geometries:
            del geometry._held_scaling


class SliceNetwork(nn.Module):
    """The slice network on ``(B, 1, D, H, W)`` volumes in [0, 1]: every axial slice through ``encoder``.

    ``encoder`` is a :class:`~skfusion.modules.tte.VolumeEncoder` (a 2-D backbone per slice,
    gated attention over ``z``), the network of ``TimeToEventPretraining``.
    """

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.out_dim

    def forward(self, x):
        return self.encoder(x[:, 0])


def _windows_itself(network):
    """Whether ``network`` reads HU volumes and windows them itself (``TimeToEventPretraining.image_encoder_``)."""
    return isinstance(network, nn.Sequential) and len(network) > 0 and isinstance(network[0], (SliceGeometry, VolumeGeometry))


def volume_encoder(spec, network, volume_size, window, param="image_encoder"):
    """The encoder of the volume modality ``spec``: ``(n, Z, H, W)`` HU blocks to ``(n, d)`` features.

    Parameters
    ----------
    spec : ModalitySpec
        A volume column (``spec.volume``): ``(Z, H, W)`` arrays or files read at ``volume_size``.
    network : str or torch.nn.Module
        ``"auto"`` (:data:`DEFAULT_VOLUME_ENCODER`), a name of :data:`VOLUME_ENCODERS`, or a
        module mapping ``(B, 1, D, H, W)`` volumes in [0, 1] to ``(B, d)`` (deep-copied). A
        module whose first layer windows HU volumes itself (``TimeToEventPretraining``'s
        ``image_encoder_``, a ``Sequential`` starting with a ``SliceGeometry``) reads the
        ``(n, Z, H, W)`` HU block as it is.
    volume_size : tuple of 3 int
    window : {"minmax", "pe", "mace"} or tuple of (float, float)
        See :class:`VolumeGeometry`.
    param : str, default="image_encoder"
        The estimator parameter holding ``network``, named in error messages.

    Returns
    -------
    encoder : VolumeEncoder3d or ImageEncoder

    Raises
    ------
    ValueError
        For a 2-D network's name, naming the column and the 3-D names; for a network that
        fails on volumes of ``volume_size`` (too small for its downsampling), naming
        ``volume_size``.
    """
    if isinstance(network, nn.Module) and _windows_itself(network):
        return image_encoder(spec, network, param)
    if isinstance(network, str) and network in RESNETS:
        raise ValueError(
            f"column {spec.name!r} holds 3-D CT volumes, but {param}={network!r} is a 2-D network: use one of "
            f"{VOLUME_ENCODERS} (or 'auto'), or a module mapping (n, 1, D, H, W) volumes to (n, d)."
        )
    network = DEFAULT_VOLUME_ENCODER if network == "auto" else network
    if network == "slices":
        backbone = default_slice_backbone()
        network = SliceNetwork(
            VolumeEncoder(backbone, backbone.out_dim, IMAGENET_MEAN, IMAGENET_STD, _SLICE_ATTENTION_DIM)
        )
    elif isinstance(network, str):
        network = volume_network(network)
    else:
        network = copy.deepcopy(network)
    out_dim = check_volume_input(network, volume_size, param)
    return VolumeEncoder3d(nn.Sequential(VolumeGeometry(window, volume_size), network), out_dim)
