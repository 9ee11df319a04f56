"""Image-EHR alignment without labels: the MedCAM objective and the MedMod SSL baselines.

One network, :class:`PairedEncoders`, embeds both modalities in a shared space of width
``p``: the image embedding (a pre-computed, frozen foundation-model vector) through an MLP
adapter, the EHR time series through the MedFuse LSTM (:class:`LSTMEncoder`) followed by an
MLP projection, applied to the last valid state (the global EHR embedding) and to every
time step (the local embeddings). The methods differ only in the loss read from its output:

- MedCAM (under review, eqs. 3-8): :func:`global_alignment_loss` + :func:`local_alignment_loss`;
- ConVIRT (Zhang et al., "Contrastive learning of medical visual representations from paired
  images and text", MLHC 2022): :func:`weighted_info_nce` with weights :math:`\\lambda,
  1 - \\lambda`;
- ALIGN (Jia et al., "Scaling up visual and vision-language representation learning with noisy
  text supervision", ICML 2021): :func:`weighted_info_nce` with unit weights (the symmetric
  InfoNCE), optionally on "noisy pairs" (:func:`swap_pairs`) as MedMod (Elsharief et al.,
  "MedMod: multimodal benchmark for medical prediction tasks with electronic health records and
  chest X-ray scans") ran it;
- VICReg (Bardes, Ponce and LeCun, ICLR 2022): :func:`vicreg_loss`.

Every similarity is the cosine, divided by the temperature :math:`\\tau` (multiplied by the
logit scale ``scale`` :math:`= 1 / \\tau`).
"""

from math import log
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ._blocks import mlp
from .contrastive import _MAX_SCALE, info_nce
from .encoders import LSTMEncoder, sequence_inputs

# VICReg's variance target gamma and the epsilon under its square root (Bardes et al., eq. 1).
VICREG_GAMMA = 1.0
VICREG_EPS = 1e-4


def directional_info_nce(z_query, z_key, scale, negatives_only=False):
    """One direction of InfoNCE: ``-mean_i log softmax_j(scale * cos(q_i, k_j))[i]``.

    Row ``i`` of ``z_query`` must pick its own partner, row ``i`` of ``z_key``, among the
    batch (MedCAM paper, eq. 3 with query = CXR, key = EHR; eq. 4 the other way round). With
    ``negatives_only`` the denominator sums over the other rows ``j != i`` only, leaving the
    positive out, as MedMod's code does: ``-mean_i [s_ii - log sum_{j != i} exp(s_ij)]``.
    """
    logits = scale * F.normalize(z_query, dim=1) @ F.normalize(z_key, dim=1).T
    if not negatives_only:
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))
    own = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    return (logits.masked_fill(own, float("-inf")).logsumexp(dim=1) - logits.diagonal()).mean()


def weighted_info_nce(z_image, z_ehr, scale, image_weight, ehr_weight, negatives_only=False):
    """Both directions of InfoNCE, weighted: :math:`w_v \\ell^{v \\to u} + w_u \\ell^{u \\to v}`.

    ``image_weight`` :math:`w_v` weighs the image-to-EHR direction and ``ehr_weight``
    :math:`w_u` the EHR-to-image one (:func:`directional_info_nce`). ConVIRT's loss is
    :math:`w_v = \\lambda = 0.75`, :math:`w_u = 1 - \\lambda`; ALIGN's and MedMod's code are the
    unweighted sum, :math:`w_v = w_u = 1` (MedMod's with ``negatives_only``).
    """
    return image_weight * directional_info_nce(z_image, z_ehr, scale, negatives_only) + ehr_weight * (
        directional_info_nce(z_ehr, z_image, scale, negatives_only)
    )


def global_alignment_loss(z_image, z_ehr, scale):
    """MedCAM's global loss (MedCAM paper, eq. 5): the mean of eqs. 3 and 4."""
    return 0.5 * info_nce(z_image, z_ehr, scale)


def swap_pairs(z, fraction):
    """``z`` with the rows of two disjoint random sets of ``count`` rows exchanged.

    MedMod's "noisy pairs" for ALIGN: ``count = floor(fraction * B)`` for a float fraction,
    or drawn uniformly from ``floor(low * B) .. floor(high * B)`` for a pair ``(low, high)``
    (MedMod's code: ``(0.16, 0.2)``), so ``2 count`` rows of the batch of ``B`` get another
    row's partner. MedMod swaps two contiguous blocks of its shuffled batch; two random sets
    of a batch are the same draw. Swapping the EHR embeddings equals swapping the EHR inputs,
    since the EHR encoder embeds each row on its own. Uses torch's global generator.
    """
    n = len(z)
    low, high = fraction if isinstance(fraction, tuple) else (fraction, fraction)
    count = int(torch.randint(int(low * n), int(high * n) + 1, ()))
    rows = torch.randperm(n)[: 2 * count]
    index = torch.arange(n)
    # rows[:count] and rows[count:] take each other's partner.
    index[rows] = rows.roll(count)
    return z[index.to(z.device)]


def _variance_term(z):
    std = torch.sqrt(z.var(dim=0) + VICREG_EPS)
    return F.relu(VICREG_GAMMA - std).mean()


def _covariance_term(z):
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


def vicreg_loss(z_a, z_b, invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0):
    """VICReg as its official code computes it, the variance terms averaged.

    :math:`\\lambda s(Z, Z') + \\frac{\\mu}{2} [v(Z) + v(Z')] + \\nu [c(Z) + c(Z')]`, where
    :math:`s` is the mean squared difference of the paired rows (averaged over rows and
    dimensions, as in the paper's Algorithm 1, ``F.mse_loss``), :math:`v(Z) = \\frac{1}{d}
    \\sum_j \\max(0, \\gamma - \\sqrt{\\mathrm{Var}(z^j) + \\epsilon})` with :math:`\\gamma = 1`,
    :math:`\\epsilon = 10^{-4}`, and :math:`c(Z) = \\frac{1}{d} \\sum_{i \\ne j} C(Z)_{ij}^2`
    with :math:`C(Z)` the unbiased covariance matrix. The variance terms are averaged, not
    summed, as in the official implementation (and MedMod's copy of it): the paper's loss
    written literally is ``variance_weight`` doubled. Needs at least 2 rows.
    """
    invariance = F.mse_loss(z_a, z_b)
    variance = (_variance_term(z_a) + _variance_term(z_b)) / 2
    covariance = _covariance_term(z_a) + _covariance_term(z_b)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


def _cosine_logits(z_image, z_steps, scale):
    """``scale * cos(z_image[b], z_steps[b, t])`` of shape (B, T)."""
    return scale * torch.einsum("bp,btp->bt", F.normalize(z_image, dim=-1), F.normalize(z_steps, dim=-1))


def timestep_attention(z_image, z_steps, mask, scale):
    """Attention :math:`A \\in \\mathbb{R}^{B \\times t}` of each image over its EHR time steps.

    The image embedding is the query and the step embeddings are the keys:
    :math:`A_{b,t} = \\mathrm{softmax}_t(\\cos(z_{CXR,b}, z_{EHR,b,t}) / \\tau)` over the real
    steps of row ``b`` (padding gets weight 0).
    """
    logits = _cosine_logits(z_image, z_steps, scale).masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=1)


def top_k_timesteps(attention, mask, top_k):
    """The ``top_k`` steps of highest attention per row: ``(index (B, k'), valid (B, k'))``.

    ``k' = min(top_k, T)``; a row with fewer than ``top_k`` real steps keeps all of them,
    and ``valid`` is false on the padded picks that fill its remaining slots.
    """
    k = min(top_k, attention.shape[1])
    index = attention.masked_fill(~mask, -1.0).topk(k, dim=1).indices
    return index, mask.gather(1, index)


def local_alignment_loss(z_image, z_steps, mask, scale, top_k):
    """MedCAM's local loss (MedCAM paper, eqs. 6a, 6b and 7).

    For each image ``b`` the ``top_k`` EHR steps of highest attention (:func:`timestep_attention`,
    selected without gradient) are its positives. Eq. 6a: each selected step ``j`` against
    every real step of the same stay (softmax over steps); eq. 6b: the image ``b`` against
    every image of the batch, seen from the selected step ``j`` (softmax over images). Both
    are averaged over the selected pairs (``B k`` of them when every stay has at least
    ``top_k`` steps), and eq. 7 is their mean.

    Parameters
    ----------
    z_image : Tensor (B, p)
    z_steps : Tensor (B, T, p)
        Per-step EHR embeddings, zero-padded.
    mask : Tensor (B, T) of bool
        True on real steps; every row needs one.
    scale : float or Tensor
        :math:`1 / \\tau`.
    top_k : int
    """
    with torch.no_grad():
        index, valid = top_k_timesteps(timestep_attention(z_image, z_steps, mask, scale), mask, top_k)
    n_selected = valid.sum()
    # Eq. 6a: softmax over the steps t' of the same stay.
    step_logits = _cosine_logits(z_image, z_steps, scale).masked_fill(~mask, float("-inf"))
    log_p_steps = torch.log_softmax(step_logits, dim=1).gather(1, index)
    # A padded pick has log-probability -inf: select, not multiply (-inf * 0 is NaN).
    image_to_ehr = -torch.where(valid, log_p_steps, 0.0).sum() / n_selected
    # Eq. 6b: softmax over the images b' of the batch, for each selected step.
    selected = z_steps.gather(1, index.unsqueeze(-1).expand(-1, -1, z_steps.shape[-1]))
    image_logits = scale * F.normalize(selected, dim=-1) @ F.normalize(z_image, dim=-1).T
    rows = torch.arange(len(z_image), device=z_image.device)
    log_p_images = torch.log_softmax(image_logits, dim=-1)[rows, :, rows]
    ehr_to_image = -torch.where(valid, log_p_images, 0.0).sum() / n_selected
    return 0.5 * (image_to_ehr + ehr_to_image)


class PairedOutput(NamedTuple):
    """What :class:`PairedEncoders` returns for a batch of paired rows."""

    image: torch.Tensor  # (B, p) adapted image embeddings
    ehr: torch.Tensor  # (B, p) global EHR embeddings (last valid LSTM state, projected)
    steps: torch.Tensor  # (B, T, p) per-step EHR embeddings
    mask: torch.Tensor  # (B, T) true on real steps
    scale: torch.Tensor  # logit scale 1 / tau


class ImageBranch(nn.Module):
    """The image side: the MLP adapter on a frozen embedding, or on the features of a CNN.

    Parameters
    ----------
    adapter : nn.Module
    encoder : ImageEncoder, default=None
        Trained with the adapter on an image block ``(n, C, H, W)``
        (:class:`~skfusion.modules.encoders.ImageEncoder`); ``None`` reads an embedding block.
    """

    def __init__(self, adapter, encoder=None):
        super().__init__()
        self.encoder = encoder
        self.adapter = adapter

    def forward(self, block):
        return self.adapter(block["x"] if self.encoder is None else self.encoder(block))


class PairedEncoders(nn.Module):
    """The image adapter and the EHR encoder, both ending in the shared space of width ``p``.

    Parameters
    ----------
    image, ehr : str
        Names of the blocks read.
    image_dim, ehr_dim : int
        Width of the image embedding and number of EHR features per step.
    projection_dim : int
        ``p``.
    hidden_dim : int
        Hidden width of the two MLPs (``Linear -> ReLU -> Linear``): the image adapter and the
        EHR projection.
    lstm_dim : int
        Hidden width of the two-layer EHR LSTM.
    temperature : float
        :math:`\\tau`; the logit scale starts at :math:`1 / \\tau`.
    learn_temperature : bool
        Train :math:`\\log(1 / \\tau)` (ALIGN), clipped so that :math:`1 / \\tau \\le 100`.
    image_encoder : ImageEncoder, default=None
        A CNN trained with the adapter on raw images (see :class:`ImageBranch`);
        ``image_dim`` is then the width of its output.
    """

    def __init__(
        self,
        image,
        ehr,
        image_dim,
        ehr_dim,
        projection_dim,
        hidden_dim,
        lstm_dim,
        temperature,
        learn_temperature,
        image_encoder=None,
    ):
        super().__init__()
        self.names = (image, ehr)
        self.image_branch = ImageBranch(mlp(image_dim, (hidden_dim,), projection_dim, 0.0), image_encoder)
        self.ehr_encoder = LSTMEncoder(ehr_dim, lstm_dim, n_layers=2)
        self.ehr_projection = mlp(lstm_dim, (hidden_dim,), projection_dim, 0.0)
        self.log_scale = nn.Parameter(torch.tensor(log(1.0 / temperature)), requires_grad=learn_temperature)

    def scale(self):
        """The logit scale :math:`1 / \\tau`."""
        return self.log_scale.exp().clamp(max=_MAX_SCALE)

    def embed_image(self, block):
        """Adapted image embeddings (n, p)."""
        return self.image_branch(block)

    def embed_ehr(self, block):
        """``(global (n, p), per-step (n, T, p), mask (n, T))`` of a sequence (or vector) block."""
        x, mask, lengths = sequence_inputs(block)
        states, last = self.ehr_encoder.run_layers(x, lengths, range(len(self.ehr_encoder.layers)))
        return self.ehr_projection(last), self.ehr_projection(states), mask

    def forward(self, **blocks):
        image, ehr = self.names
        z_ehr, z_steps, mask = self.embed_ehr(blocks[ehr])
        return PairedOutput(self.embed_image(blocks[image]), z_ehr, z_steps, mask, self.scale())


class MedCAMLoss(nn.Module):
    """MedCAM paper, eq. 8: global (eq. 5) + local (eq. 7) alignment."""

    def __init__(self, top_k):
        super().__init__()
        self.top_k = top_k

    def forward(self, out):
        return global_alignment_loss(out.image, out.ehr, out.scale) + local_alignment_loss(
            out.image, out.steps, out.mask, out.scale, self.top_k
        )


class ConVIRTLoss(nn.Module):
    """:func:`weighted_info_nce` of the global embeddings."""

    def __init__(self, image_weight, ehr_weight, negatives_only):
        super().__init__()
        self.weights = (image_weight, ehr_weight)
        self.negatives_only = negatives_only

    def forward(self, out):
        return weighted_info_nce(out.image, out.ehr, out.scale, *self.weights, self.negatives_only)


class ALIGNLoss(ConVIRTLoss):
    """ALIGN's symmetric InfoNCE (unit weights), on noisy pairs while training.

    ``swap_fraction`` (see :func:`swap_pairs`) exchanges the EHR of that share of each
    training batch before the loss, as MedMod's code does; ``0`` trains on the pairs given.
    """

    def __init__(self, swap_fraction=0.0, negatives_only=False):
        super().__init__(1.0, 1.0, negatives_only)
        self.swap_fraction = swap_fraction

    def forward(self, out):
        if self.training and self.swap_fraction:
            out = out._replace(ehr=swap_pairs(out.ehr, self.swap_fraction))
        return super().forward(out)


class VICRegLoss(nn.Module):
    """:func:`vicreg_loss` of the global embeddings."""

    def __init__(self, invariance_weight, variance_weight, covariance_weight):
        super().__init__()
        self.weights = (invariance_weight, variance_weight, covariance_weight)

    def forward(self, out):
        return vicreg_loss(out.image, out.ehr, *self.weights)


class AdaptedImageClassifier(nn.Module):
    """An adapted image encoder with a linear head (MedCAM paper, eq. 9): image-only logits.

    Parameters
    ----------
    image : str
        The block read.
    adapter : ImageBranch
        The image branch (trained by the alignment), fine-tuned unless ``freeze``.
    projection_dim, n_outputs : int
    freeze : bool
        Keep the adapter fixed (linear probing).
    """

    def __init__(self, image, adapter, projection_dim, n_outputs, freeze):
        super().__init__()
        self.image = image
        self.adapter = adapter.requires_grad_(not freeze)
        self.head = nn.Linear(projection_dim, n_outputs)

    def forward(self, **blocks):
        return self.head(self.adapter(blocks[self.image]))
