"""Per-modality encoders: turn one modality block into one vector per row.

Every fusion family can take a time-series modality through :func:`make_encoder`, which
picks the encoder from the modality's :class:`~skfusion._data.ModalitySpec`:

- ``kind="sequence"`` (a ``(T_i, d)`` array per row, zero-padded with a mask): the MedFuse
  EHR encoder, a stack of LSTM layers whose output is the last *valid* hidden state of the
  last layer (Hayat et al. 2022, section 3.1: two layers, ``m = 256``, a dropout layer).
  Sequences are packed, so padding never enters the recurrence.
- ``kind="vector"`` (a numeric block, e.g. a pre-computed 512-d ResNet-34 embedding): the
  identity; the family's own layers (projection, MLP head) follow it.
- ``kind="image"`` (an ``(H, W, C)`` array per row, read by the network as ``(C, H, W)``): a CNN, torchvision's ResNet-34 by
  default (the image encoder of MedFuse and MedMod, :func:`resnet`) or the user's own
  module, trained with the rest of the network (1-channel images replicated to 3 for a
  module that reads 3).

Every encoder maps a block ``{"x", "present"[, "mask"]}`` to ``(n, out_dim)`` and returns
zeros for rows where the modality is absent, so a family can substitute a learnable vector
(:class:`~skfusion.modules._blocks.MissingVector`) or drop the row from a sequence.

:class:`EncoderHead` (an encoder plus a linear head) is the temporary network used to
pre-train one encoder alone on the task; :func:`load_encoders` copies pre-trained weights
into a family's encoders and optionally freezes them (MedFuse's two-stage training,
MedMod's early fusion).
"""

import copy

import torch
from torch import nn

from ._blocks import pooled


def sequence_inputs(block):
    """``(x, mask, lengths)`` of a block read as a sequence; a vector block is a length-1 sequence.

    ``x`` is (n, T, d) zero-padded, ``mask`` (n, T) true on real steps, ``lengths`` (n,)
    int64; an absent row has length 0.
    """
    if "mask" in block:
        mask = block["mask"]
        return block["x"], mask, mask.sum(dim=1)
    present = block["present"]
    return block["x"].unsqueeze(1), present.unsqueeze(1), present.long()


def run_lstm(layer, x, lengths):
    """Run one ``batch_first`` LSTM over the zero-padded rows of ``x`` (n, T, d).

    Returns the output states (n, T, h), zero after each row's length, and the last valid
    hidden state of every row (n, h). The padding is at the end and a unidirectional
    LSTM's state at a step depends only on the steps before it, so the padded run is the
    packed one on every valid step, without packing's per-step regrouping of the batch
    (5x the time of a 2 x 18-unit encoder's step on a CPU). Rows of length 0 are read at
    their first (zero) step; the caller masks them.
    """
    states, _ = layer(x)
    lengths = lengths.to(states.device)
    last = states[torch.arange(len(states), device=states.device), lengths.clamp_min(1) - 1]
    valid = torch.arange(states.shape[1], device=states.device) < lengths[:, None]
    return torch.where(valid.unsqueeze(-1), states, torch.zeros_like(states)), last


def zero_absent(h, present):
    """Zero the rows of ``h`` whose modality is absent."""
    return h * present.unsqueeze(-1).to(h.dtype)


class LSTMEncoder(nn.Module):
    """Stacked LSTM over a padded sequence; output = last valid hidden state of the last layer.

    The layers are separate ``nn.LSTM`` modules so fusion modules (DAFT, MMTM) can act on
    the states between them (:meth:`run_layers`). Dropout acts on the output vector, as in
    the MedFuse EHR encoder.

    Parameters
    ----------
    in_dim : int
        Features per time step.
    hidden_dim : int, default=256
    n_layers : int, default=2
    dropout : float, default=0.0
    """

    def __init__(self, in_dim, hidden_dim=256, n_layers=2, dropout=0.0):
        super().__init__()
        widths = [in_dim] + [hidden_dim] * n_layers
        self.layers = nn.ModuleList(
            nn.LSTM(widths[i], hidden_dim, batch_first=True) for i in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden_dim

    def run_layers(self, x, lengths, layers):
        """Run the layers numbered ``layers`` in turn on zero-padded ``x`` (n, T, d) (:func:`run_lstm`).

        Returns the padded states of the last one run (n, T, h), zero after each row's
        length, and its last valid states (n, h).
        """
        last = None
        for index in layers:
            x, last = run_lstm(self.layers[index], x, lengths)
        return x, last

    def output(self, last, present):
        """The encoder output from the last layer's final states: dropout, zeros where absent."""
        return zero_absent(self.dropout(last), present)

    def forward(self, block):
        x, _, lengths = sequence_inputs(block)
        _, last = self.run_layers(x, lengths, range(len(self.layers)))
        return self.output(last, block["present"])


class IdentityEncoder(nn.Module):
    """A vector block as it is (a sequence block: its masked token mean).

    Zeros where absent, as the block's ``x`` is there (the data contract).
    """

    def __init__(self, dim):
        super().__init__()
        self.out_dim = dim

    def forward(self, block):
        return pooled(block)


def _conv(in_channels, out_channels, kernel_size, stride=1):
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)


def _downsample(in_channels, out_channels, stride):
    """torchvision's projection shortcut (1x1 convolution, batch norm), None where the shape is kept."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv(in_channels, out_channels, 1, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3x3 convolutions with batch norm, plus the (projected) input."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = _conv(in_channels, channels, 3, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(channels, channels, 3)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = _downsample(in_channels, channels, stride)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (ResNet v1.5: the stride on the 3x3 convolution), 4x expansion."""

    expansion = 4

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = _conv(in_channels, channels, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv(channels, channels, 3, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv(channels, channels * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, channels * self.expansion, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet (He et al. 2016) with ``fc = nn.Identity()``: ``(n, 3, H, W)`` to ``(n, out_dim)``.

    The modules, parameter and buffer names, shapes and initialisation are torchvision's
    (``torchvision.models.ResNet(block, layers)``, ``zero_init_residual=False``), so its
    checkpoints load (without their ``fc.*`` keys) and torchvision is not needed. The stem
    reads 3 channels; a 1-channel image is replicated to 3, as ImageNet-pretrained weights
    expect.

    Parameters
    ----------
    block : {BasicBlock, Bottleneck}
    layers : sequence of 4 int
        Blocks per stage.
    width : int, default=64
        Channels of the stem; stage ``i`` has ``width * 2**i`` (times the block's expansion
        at its output). torchvision's networks have 64.
    """

    def __init__(self, block, layers, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = width
        for index, n_blocks in enumerate(layers):
            channels = width * 2**index
            blocks = [block(in_channels, channels, 1 if index == 0 else 2)]
            in_channels = channels * block.expansion
            blocks += [block(in_channels, channels) for _ in range(n_blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()
        self.out_dim = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


#: torchvision's ResNets: name to ``(block, blocks per stage)``.
RESNETS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


def resnet(name="resnet34"):
    """torchvision's ResNet ``name`` (a key of :data:`RESNETS`) without its classifier, randomly initialised.

    ``"resnet34"`` is the image encoder of MedFuse and MedMod: 512 pooled features (2,048
    from ``"resnet50"`` on). Weights from a local torchvision checkpoint:
    :func:`skfusion.encoders.load_backbone`.
    """
    return ResNet(*RESNETS[name])


class ImageEncoder(nn.Module):
    """A CNN on an image block ``(n, C, H, W)``: features ``(n, out_dim)``, zeros where absent.

    Only the rows that have an image go through the network, so absent rows never enter its
    batch-norm statistics.

    Parameters
    ----------
    network : nn.Module
        Maps ``(m, C, H, W)`` to ``(m, out_dim)``.
    out_dim : int
    in_channels : int, default=None
        Channels to replicate a 1-channel image to before the network (grey to RGB for a
        network that reads 3); None passes images as they are.
    """

    def __init__(self, network, out_dim, in_channels=None):
        super().__init__()
        self.network = network
        self.out_dim = out_dim
        self.in_channels = in_channels

    def forward(self, block):
        x, present = block["x"], block["present"]
        out = x.new_zeros(len(x), self.out_dim)
        if bool(present.any()):
            images = x[present]
            if self.in_channels is not None:
                images = images.expand(-1, self.in_channels, -1, -1)
            out[present] = self.network(images).to(out.dtype)
        return out


def first_convolution(network):
    """``(name, in_channels)`` of the first 2-D convolution ``network`` defines, None without one.

    In the usual backbones (torchvision's, MONAI's, a ``Sequential``) the first one defined is
    the stem, which reads the image: its ``in_channels`` is the channels the network expects.
    """
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels > 0:
            return name, module.in_channels
    return None


def _probe(network, shape):
    """The output of ``network`` (in evaluation mode, without gradients) on one zero image of ``shape``."""
    device = next(network.parameters(), torch.zeros(0)).device
    was_training = network.training
    try:
        with torch.no_grad():
            return network.eval()(torch.zeros(1, *shape, device=device))
    finally:
        network.train(was_training)


def image_encoder(spec, network="resnet34", param="image_encoder"):
    """The :class:`ImageEncoder` of an image modality.

    ``network`` is the name of one of torchvision's ResNets (a key of :data:`RESNETS`,
    randomly initialised, :func:`resnet`; ``"auto"`` is ``"resnet34"``), or a torch module mapping ``(m, C, H, W)`` to
    ``(m, d)``, which is deep-copied (the caller's module is never trained). Either way
    ``d`` is read from one forward pass on a zero image.
    A module that fails on 1-channel images and whose first convolution reads 3 channels
    gets the images replicated to 3 (grey to RGB, the convention of ImageNet backbones, and
    what image files and the image embedders get); any other failure, a 3-channel image
    for a 1-channel network among them, is a ValueError naming the column and ``param``
    (the estimator's parameter that holds ``network``).
    """
    if isinstance(network, str):
        network = resnet("resnet34" if network == "auto" else network)
    else:
        network = copy.deepcopy(network)
    channels, in_channels = spec.shape[0], None
    try:
        out = _probe(network, spec.shape)
    except RuntimeError as exc:
        conv = first_convolution(network)
        if conv is None or conv[1] == channels:
            raise ValueError(
                f"{param} fails on the images of column {spec.name!r}, read as {spec.shape} (C, H, W) "
                f"tensors ({exc})."
            ) from exc
        if (channels, conv[1]) != (1, 3):
            read = " (image files are read as RGB, grey replicated)" if spec.files else ""
            raise ValueError(
                f"column {spec.name!r} holds {channels}-channel images{read}, but the first convolution "
                f"({conv[0]!r}) of {param} reads {conv[1]} channel(s): give {param} a network that reads "
                f"{channels} channel(s)."
            ) from exc
        in_channels = conv[1]
        out = _probe(network, (in_channels, *spec.shape[1:]))
    if out.ndim != 2:
        raise ValueError(
            f"the image encoder must map images (n, C, H, W) to features (n, d); on a {spec.shape} image it "
            f"returned shape {tuple(out.shape)}."
        )
    return ImageEncoder(network, int(out.shape[1]), in_channels)


def make_encoder(spec, hidden_dim=256, n_layers=2, dropout=0.0, sequence=None, image="resnet34"):
    """The encoder of one modality, chosen from its :class:`~skfusion._data.ModalitySpec`.

    Parameters
    ----------
    spec : ModalitySpec
    hidden_dim, n_layers, dropout
        Settings of the :class:`LSTMEncoder`.
    sequence : bool, default=None
        Force the LSTM (``True``: a vector block becomes a length-1 sequence) or the
        identity (``False``); ``None`` follows ``spec.kind``.
    image : str or nn.Module, default="resnet34"
        The network of an image modality, see :func:`image_encoder`.

    Returns
    -------
    encoder : nn.Module
        With an ``out_dim`` attribute; maps a block to (n, out_dim).
    """
    if spec.kind == "image":
        return image_encoder(spec, image)
    if sequence is None:
        sequence = spec.kind == "sequence"
    if sequence:
        return LSTMEncoder(spec.dim, hidden_dim, n_layers, dropout)
    return IdentityEncoder(spec.dim)


def has_parameters(module):
    """Whether ``module`` has anything to train (the identity encoder has not)."""
    return any(True for _ in module.parameters())


class EncoderHead(nn.Module):
    """One modality's encoder with its own linear head: the network that pre-trains it.

    Parameters
    ----------
    name : str
        The modality read from the blocks.
    encoder : nn.Module
    n_outputs : int
    """

    def __init__(self, name, encoder, n_outputs):
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_outputs)

    def forward(self, **blocks):
        return self.head(self.encoder(blocks[self.name]))


def load_encoders(encoders, states, freeze):
    """Copy pre-trained ``states`` ({name: state_dict}) into ``encoders`` (a ModuleDict).

    With ``freeze``, the loaded encoders stop training (``requires_grad=False``; Adam skips
    parameters without gradients, weight decay included).
    """
    for name, state in states.items():
        encoders[name].load_state_dict(state)
        if freeze:
            encoders[name].requires_grad_(False)
    return encoders
