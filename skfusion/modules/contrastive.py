"""Contrastive alignment fusion (Zhang et al., 2026, section 2.2, Fig. 1b): CLIP-style, in two steps.

Each modality embedding :math:`h_m` (a sequence is first averaged over its real tokens) gets
a linear projection :math:`g_m(h_m)` to a shared width. Step 1 trains the projections alone
with the symmetric InfoNCE objective of CLIP, in the notation of Zhang et al. (2026), for a batch of
:math:`N` rows with both modalities:

.. math::

    S_{ij} = \\frac{\\cos(g_{img}(h^{img}_i), g_{ehr}(h^{ehr}_j))}{\\tau}, \\qquad
    \\mathcal{L} = -\\frac{1}{N} \\sum_{i=1}^N \\Bigl[
    \\log \\frac{e^{S_{ii}}}{\\sum_j e^{S_{ij}}} + \\log \\frac{e^{S_{ii}}}{\\sum_j e^{S_{ji}}} \\Bigr]

(the two modalities of one row are the positive pair; every other pairing in the batch is a
negative). With more than two modalities the loss is the mean of this over every pair of
modalities. Step 2 trains a prediction MLP on the concatenated projections
:math:`[g_1(h_1), \\dots, g_M(h_M)]`.
"""

from itertools import combinations
from math import log

import torch
from torch import nn
from torch.nn import functional as F

from ._blocks import MissingVector, mlp, pooled

# CLIP clips its learnable logit scale 1 / tau at 100 to keep training stable.
_MAX_SCALE = 100.0


def info_nce(z_a, z_b, scale):
    """Symmetric InfoNCE of paired rows ``z_a``, ``z_b`` (n, p) with ``S = scale * cos``."""
    logits = scale * F.normalize(z_a, dim=1) @ F.normalize(z_b, dim=1).T
    positives = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, positives) + F.cross_entropy(logits.T, positives)


class ContrastiveProjections(nn.Module):
    """One linear projection per modality and the logit scale :math:`1 / \\tau`.

    Parameters
    ----------
    dims : dict of str to int
        Width of each modality, in concatenation order.
    projection_dim : int
    temperature : float
        :math:`\\tau`; the logit scale starts at :math:`1 / \\tau`.
    learn_temperature : bool
        Train :math:`\\log(1 / \\tau)` (CLIP), clipped so that :math:`1 / \\tau \\le 100`.
    """

    def __init__(self, dims, projection_dim, temperature, learn_temperature):
        super().__init__()
        self.names = list(dims)
        self.linear = nn.ModuleDict({name: nn.Linear(dim, projection_dim) for name, dim in dims.items()})
        self.log_scale = nn.Parameter(torch.tensor(log(1.0 / temperature)), requires_grad=learn_temperature)

    def scale(self):
        """The logit scale :math:`1 / \\tau`."""
        return self.log_scale.exp().clamp(max=_MAX_SCALE)

    def embed(self, blocks):
        """The projected embedding ``(n, projection_dim)`` of every modality, in order."""
        return [self.linear[name](pooled(blocks[name])) for name in self.names]

    def forward(self, **blocks):
        return torch.stack(self.embed(blocks), dim=1), self.scale()


class AlignmentLoss(nn.Module):
    """Step 1's criterion: :func:`info_nce` averaged over every pair of modalities.

    Reads the ``(projections (n, M, p), scale)`` output of :class:`ContrastiveProjections`:
    the rows' pairing is the target.
    """

    def forward(self, y_pred):
        z, scale = y_pred
        pairs = combinations(range(z.shape[1]), 2)
        return torch.stack([info_nce(z[:, a], z[:, b], scale) for a, b in pairs]).mean()


class ContrastiveFusion(nn.Module):
    """Step 2: ``MLP([g_1(h_1), ..., g_M(h_M)])`` on (aligned) projections.

    Parameters
    ----------
    projections : ContrastiveProjections
        The projections (trained by step 1).
    hidden_dims : sequence of int
    n_outputs : int
    dropout : float
    learn_missing : bool
        Replace the projection of an absent modality by a learnable vector.
    freeze : bool
        Keep the projections fixed (``requires_grad=False``).
    """

    def __init__(self, projections, hidden_dims, n_outputs, dropout, learn_missing=False, freeze=False):
        super().__init__()
        self.projections = projections
        if freeze:
            projections.linear.requires_grad_(False)
        width = next(iter(projections.linear.values())).out_features
        names = projections.names
        self.missing = nn.ModuleDict({n: MissingVector(width) for n in names}) if learn_missing else None
        self.head = mlp(len(names) * width, hidden_dims, n_outputs, dropout)

    def forward(self, **blocks):
        parts = self.projections.embed(blocks)
        if self.missing is not None:
            names = self.projections.names
            parts = [self.missing[n](h, blocks[n]["present"]) for n, h in zip(names, parts)]
        return self.head(torch.cat(parts, dim=1))
