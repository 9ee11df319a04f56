"""The 3-D CT encoders released with time-to-event pretraining, from their local checkpoint files.

Huo et al.'s training script (``src/training/1_pretrain_TTE.py`` of som-shahlab/tte-pretraining)
saves ``model.state_dict()`` of the whole pretraining model with ``torch.save``: the encoder,
its pretraining head, and a ``module.`` prefix on every key when the model was wrapped in
``DistributedDataParallel``. :func:`load_tte_encoder` keeps the encoder's entries, renamed as
in the MONAI network of :func:`~skfusion.modules.volumes.volume_network`.
"""

from pathlib import Path

from ..modules.volumes import volume_network
from ._backbone import _load_exactly, load_state_dict

#: architecture: (the network of volume_network, the encoder's attribute in the pretraining
#: model as a key prefix, the modules of that model that are not part of the encoder).
_LAYOUTS = {
    # DenseNet121_TTE: MONAI's DenseNet with its linear layer moved to "classification" (frozen,
    # unused by the TTE loss), then MOTOR's head "final_layer", "ln", "task_layer".
    "densenet121": ("densenet121-3d", "", ("classification", "final_layer", "ln", "task_layer")),
    # resnet152_TTE (class ResNet_TTE): MONAI's 3-D ResNet without "fc", then the head.
    "resnet152": ("resnet152-3d", "", ("final_layer", "task_layer")),
    # SwinUNETRForClassification_TTE: MONAI's SwinUNETR as "swin_unetr", then the head.
    "swinunetr": ("swinunetr", "swin_unetr.", ("final_layer", "task_layer")),
}

_DDP_PREFIX = "module."


def load_tte_encoder(path, architecture="densenet121"):
    """The image encoder of a time-to-event pretraining checkpoint (Huo et al., ICLR 2025), in evaluation mode.

    Reads a local checkpoint file written by Huo et al.'s code (the weights they release, see
    their repository's README), drops the pretraining head and returns the encoder as the
    MONAI network of :func:`~skfusion.modules.volumes.volume_network`, mapping ``(B, 1, D,
    H, W)`` volumes to ``(B, d)`` features: the features their linear probes read. Nothing
    is downloaded.

    Their networks read NIfTI volumes in the files' own axis order (not reoriented), scaled
    to [0, 1] by each volume's minimum and maximum (MONAI's ``ScaleIntensity``, no
    Hounsfield window) and resized to 224^3, one channel: give the encoder volumes prepared
    the same way.

    Parameters
    ----------
    path : str or os.PathLike
        A ``torch.save`` file (read with ``weights_only=True``) or a safetensors file, holding
        the flat state dict of the pretraining model, with or without the ``module.`` prefix
        of ``DistributedDataParallel``.
    architecture : {"densenet121", "resnet152", "swinunetr"}, default="densenet121"
        The pretrained network (their ``densenet_tte``, ``resnet_tte`` and ``unet_tte``):

        - ``"densenet121"``: ``DenseNet121_TTE``, ``d = 1024``
          (``volume_network("densenet121-3d")``); dropped: ``classification.*``,
          ``final_layer.*``, ``ln.*``, ``task_layer.*``.
        - ``"resnet152"``: ``resnet152_TTE``, ``d = 2048``
          (``volume_network("resnet152-3d")``); dropped: ``final_layer.*``, ``task_layer.*``.
        - ``"swinunetr"``: ``SwinUNETRForClassification_TTE``, ``d = 384``
          (``volume_network("swinunetr")``, the keys without their ``swin_unetr.`` prefix);
          dropped: ``final_layer.*``, ``task_layer.*``.

    Returns
    -------
    encoder : torch.nn.Module
        In evaluation mode, its parameters trainable (fine-tuning starts from a copy).

    Raises
    ------
    ValueError
        For an unknown ``architecture``, a path that is no file, a file that does not hold
        a state dict of tensors, or one whose encoder keys or shapes differ from the
        network's (the first missing, unexpected and misshaped keys are named: a checkpoint
        of another architecture, typically).

    See Also
    --------
    skfusion.modules.volumes.volume_network : The same networks, randomly initialised.
    load_backbone : Weights of a 2-D backbone.

    References
    ----------
    Z. Huo, J. A. Fries, A. Lozano, J. M. J. Valanarasu, E. Steinberg, L. Blankemeier,
    A. S. Chaudhari, C. Langlotz and N. H. Shah, "Time-to-event pretraining for 3D medical
    imaging", ICLR 2025.

    Examples
    --------
    A checkpoint in the layout of their training script, written here with random weights
    and a small head:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from skfusion.encoders import load_tte_encoder
    >>> from skfusion.modules.volumes import volume_network
    >>> state = {f"module.{k}": v for k, v in volume_network("densenet121-3d").state_dict().items()}
    >>> state |= {"module.final_layer.weight": torch.zeros(16, 1024), "module.task_layer.weight": torch.zeros(3, 2)}
    >>> path = Path(tempfile.mkdtemp()) / "densenet_tte.pth"
    >>> torch.save(state, path)
    >>> encoder = load_tte_encoder(path, "densenet121")
    >>> encoder(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 1024])
    """
    if architecture not in _LAYOUTS:
        raise ValueError(f"architecture={architecture!r} is not one of {tuple(_LAYOUTS)}.")
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no file"
        raise ValueError(f"checkpoint {str(path)!r} is {what}: give the path of a checkpoint file.")
    name, prefix, head = _LAYOUTS[architecture]
    state = _encoder_state(load_state_dict(path), prefix, head)
    encoder = volume_network(name)
    try:
        _load_exactly(encoder, state, path)
    except ValueError as exc:
        raise ValueError(f"{exc} Was it written for another architecture than {architecture!r}?") from exc
    return encoder.eval()


def _encoder_state(state, prefix, head):
    """The encoder's entries of a pretraining model's state dict, named as in the MONAI network."""
    if state and all(key.startswith(_DDP_PREFIX) for key in state):
        state = {key.removeprefix(_DDP_PREFIX): value for key, value in state.items()}
    return {key.removeprefix(prefix): value for key, value in state.items() if key.split(".")[0] not in head}
