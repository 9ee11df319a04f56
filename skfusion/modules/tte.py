"""Time-to-event pretraining of a CT encoder: the volume encoder and MOTOR's piecewise-exponential head.

- :class:`SliceGeometry` turns ``(n, Z, H, W)`` volumes in Hounsfield units into windowed,
  resized slices, exactly as :class:`~skfusion.encoders.CTVolumeEmbedder` prepares a slice
  for its backbone (same window, same resizing);
- :class:`VolumeEncoder` encodes every slice with a 2-D backbone (the backbone of
  ``CTVolumeEmbedder``: ``(B, 3, H, W)`` ImageNet-normalised slices to ``(B, d)``) and pools
  the slices with gated attention over ``z`` (Ilse, Tomczak and Welling, "Attention-based
  deep multiple instance learning", ICML 2018);
- :class:`WholeVolumeEncoder` reads the whole volume with a 3-D network instead (one of
  :data:`~skfusion.modules.volumes.VOLUME_NETWORKS` or the user's, told apart from a 2-D
  backbone by :func:`reads_volumes`);
- :class:`PiecewiseExponentialHead` is MOTOR's read-out (Steinberg et al., "MOTOR: a
  time-to-event foundation model for structured medical records", ICLR 2024): the embedding
  is projected to one low-rank vector per time piece, shared by all tasks, and a per-task
  linear map of that vector gives the log-hazard of each task in each piece;
- :func:`piecewise_exponential_nll` is the negative log-likelihood of those piecewise-constant
  hazards for right-censored times.
"""

import torch
from torch import nn

from .._images import resize, to_backbone_input
from .._volumes import apply_window
from .encoders import BasicBlock, ResNet

#: The default slice network: a ResNet with one basic block per stage, 8 to 64 channels.
DEFAULT_SLICE_LAYERS, DEFAULT_SLICE_WIDTH = (1, 1, 1, 1), 8


def default_slice_backbone():
    """A small randomly initialised ResNet on ``(B, 3, H, W)`` slices, ``(B, 64)`` features.

    Small enough to train on the CPU: ResNet-18's structure (:class:`~.encoders.ResNet`, with
    torchvision's names and initialisation) with one basic block per stage and an eighth of
    its width.
    """
    return ResNet(BasicBlock, DEFAULT_SLICE_LAYERS, DEFAULT_SLICE_WIDTH)


class SliceGeometry(nn.Module):
    """``(n, Z, H, W)`` HU volumes to windowed slices in [0, 1], resized to ``size``.

    Parameters
    ----------
    window : tuple of (float, float)
        HU window (clipped and scaled to [0, 1]).
    size : None, int or tuple of (int, int)
        Slice size after resizing (see :func:`skfusion._images.resize`).
    """

    def __init__(self, window, size=None):
        super().__init__()
        self.window = tuple(float(v) for v in window)
        self.size = size

    def forward(self, x):
        n, z = x.shape[:2]
        slices = apply_window(x, *self.window).reshape(n * z, 1, *x.shape[2:])
        slices = resize(slices, self.size)
        return slices.reshape(n, z, *slices.shape[-2:])


class GatedAttentionPool(nn.Module):
    """Gated attention over tokens: ``a = softmax_z(w^T (tanh(V h) * sigmoid(U h)))``, ``sum_z a h``.

    Padded tokens (``mask`` false) get exactly zero weight.
    """

    def __init__(self, dim, hidden):
        super().__init__()
        self.value = nn.Linear(dim, hidden)
        self.gate = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1)

    def weights(self, tokens, mask):
        """Attention weights ``(n, Z)`` over the real tokens of each row."""
        scores = self.score(torch.tanh(self.value(tokens)) * torch.sigmoid(self.gate(tokens))).squeeze(-1)
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)

    def forward(self, tokens, mask):
        return (self.weights(tokens, mask).unsqueeze(-1) * tokens).sum(dim=1)


class VolumeEncoder(nn.Module):
    """Windowed slices ``(n, Z, H, W)`` (with a ``(n, Z)`` mask of real slices) to ``(n, out_dim)``.

    Each real slice is replicated to 3 channels and normalised (``mean``/``std``), encoded by
    ``backbone``, and the slice embeddings are pooled by gated attention over ``z``. Padded
    slices never reach the backbone (so they never enter its batch-norm statistics).

    Parameters
    ----------
    backbone : nn.Module
        Maps ``(B, 3, H, W)`` to ``(B, out_dim)``.
    out_dim : int
    mean, std : tuple of float or None
        Per-channel normalisation of the backbone input, as in ``CTVolumeEmbedder``.
    attention_dim : int
        Hidden width of the attention pooling.
    """

    def __init__(self, backbone, out_dim, mean, std, attention_dim):
        super().__init__()
        self.backbone = backbone
        self.pool = GatedAttentionPool(out_dim, attention_dim)
        self.out_dim = out_dim
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std)

    def slice_embeddings(self, x, mask=None):
        """Per-slice embeddings ``(n, Z, out_dim)`` (zeros on padded slices) and the mask used."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        features = self.backbone(to_backbone_input(x[mask].unsqueeze(1), self.mean, self.std))
        tokens = features.new_zeros(*x.shape[:2], features.shape[1])
        tokens[mask] = features
        return tokens, mask

    def forward(self, x, mask=None):
        return self.pool(*self.slice_embeddings(x, mask))


def reads_volumes(network):
    """Whether ``network`` is a 3-D encoder: its first convolution (in module order) is a ``Conv3d``.

    The rule :class:`~skfusion.ssl.TimeToEventPretraining` applies to a ``backbone`` module: a
    network without a convolution, or whose first one is 2-D, is a slice backbone.
    """
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            return isinstance(module, nn.Conv3d)
    return False


class WholeVolumeEncoder(nn.Module):
    """Windowed, resampled volumes ``(n, D, H, W)`` to ``(n, out_dim)`` through a 3-D network.

    The signature of :class:`VolumeEncoder` (a ``mask`` of real slices is accepted and unused:
    every volume has the same size), so that :class:`TimeToEventNetwork` trains either.

    Parameters
    ----------
    network : nn.Module
        Maps ``(n, 1, D, H, W)`` volumes in [0, 1] to ``(n, out_dim)``.
    out_dim : int
    """

    def __init__(self, network, out_dim):
        super().__init__()
        self.network = network
        self.out_dim = out_dim

    def forward(self, x, mask=None):
        return self.network(x.unsqueeze(1))


class PiecewiseExponentialHead(nn.Module):
    """MOTOR's read-out: log-hazards ``(n, n_pieces, n_tasks)`` from embeddings ``(n, in_dim)``.

    ``r_p = (W z + b)_p`` is a ``rank``-dimensional representation of time piece ``p``
    shared by every task (one linear map to ``n_pieces * rank``), and
    ``log h_{p, k} = beta_k^T r_p + c_k`` is task ``k``'s log-hazard in piece ``p``.

    Parameters
    ----------
    in_dim, n_pieces, n_tasks, rank : int
    log_rates : torch.Tensor of shape (n_tasks,), default=None
        Initial task biases ``c_k``: the log of each task's constant-hazard rate, so that
        training starts from the marginal model (MOTOR's initialisation).
    """

    def __init__(self, in_dim, n_pieces, n_tasks, rank, log_rates=None):
        super().__init__()
        self.n_pieces, self.rank = n_pieces, rank
        self.pieces = nn.Linear(in_dim, n_pieces * rank)
        self.tasks = nn.Linear(rank, n_tasks)
        if log_rates is not None:
            with torch.no_grad():
                self.tasks.bias.copy_(torch.as_tensor(log_rates, dtype=self.tasks.bias.dtype))

    def forward(self, z):
        return self.tasks(self.pieces(z).reshape(len(z), self.n_pieces, self.rank))


def piece_exposure(time, event, boundaries):
    """Time spent in each piece and whether the event falls in it, both ``(n, n_pieces, n_tasks)``.

    Piece ``p`` is ``[boundaries[p], boundaries[p + 1])``; ``time`` and ``event`` are
    ``(n, n_tasks)`` (an event time, or the censoring time where ``event`` is false).
    """
    start, stop = boundaries[:-1].view(1, -1, 1), boundaries[1:].view(1, -1, 1)
    t = time.unsqueeze(1)
    exposure = torch.minimum((t - start).clamp_min(0), stop - start)
    in_piece = event.unsqueeze(1) & (t >= start) & (t < stop)
    return exposure, in_piece


def piecewise_exponential_nll(log_hazard, time, event, boundaries):
    """Negative log-likelihood of piecewise-constant hazards, averaged over rows and tasks.

    For row ``i`` and task ``k`` with time ``t`` (event or censoring),
    ``-log L = sum_p [ h_p * e_p(t) - d_p(t) * log h_p ]``, where ``e_p(t)`` is the time
    spent in piece ``p`` before ``t`` and ``d_p(t)`` is 1 when the event happened in piece
    ``p`` (MOTOR, section 3.2: the exponential likelihood of each piece).

    Parameters
    ----------
    log_hazard : torch.Tensor of shape (n, n_pieces, n_tasks)
    time : torch.Tensor of shape (n, n_tasks)
    event : torch.Tensor of bool, shape (n, n_tasks)
    boundaries : torch.Tensor of shape (n_pieces + 1,)
        Increasing; the first is 0 and the last may be ``inf``.

    Returns
    -------
    loss : torch.Tensor (scalar)
    """
    exposure, in_piece = piece_exposure(time, event, boundaries)
    terms = torch.exp(log_hazard) * exposure - torch.where(in_piece, log_hazard, 0.0)
    return terms.sum(dim=1).mean()


class PiecewiseExponentialLoss(nn.Module):
    """skorch criterion: :func:`piecewise_exponential_nll` on targets ``(n, 2, n_tasks)`` (time, event)."""

    def __init__(self, boundaries):
        super().__init__()
        self.register_buffer("boundaries", torch.as_tensor(boundaries, dtype=torch.float32))

    def forward(self, log_hazard, target):
        time, event = target[:, 0], target[:, 1] > 0.5
        return piecewise_exponential_nll(log_hazard, time, event, self.boundaries.to(log_hazard.dtype))


class TimeToEventNetwork(nn.Module):
    """An encoder and a :class:`PiecewiseExponentialHead`, fed modality blocks.

    The encoder is a :class:`VolumeEncoder` (slices) or a :class:`WholeVolumeEncoder` (3-D).
    """

    def __init__(self, name, encoder, head):
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.head = head

    def forward(self, **blocks):
        block = blocks[self.name]
        return self.head(self.encoder(block["x"], block["mask"]))
