"""Layers shared by every fusion family: the MLP head and per-modality input encoders."""

import torch
from torch import nn


def default_hidden_dims(in_dim):
    """Hidden widths scaled to the input width (Zhang et al., 2026, section 2.2): one layer of
    ``in_dim // 2`` units, kept within [16, 512]."""
    return (int(min(512, max(16, in_dim // 2))),)


def mlp(in_dim, hidden_dims, out_dim, dropout):
    """``Linear -> ReLU -> Dropout`` for each hidden width, then a final ``Linear``."""
    layers, width = [], in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def masked_mean(x, mask):
    """Mean of the real tokens of ``x`` (n, T, d) where ``mask`` (n, T) is true; zeros if none."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def pooled(block):
    """One vector per row: the block itself, or the masked token mean of a sequence block."""
    if "mask" in block:
        return masked_mean(block["x"], block["mask"])
    return block["x"]


class MissingVector(nn.Module):
    """Replace an absent modality by a learnable vector (MedFuse, appendix A.5)."""

    def __init__(self, dim):
        super().__init__()
        self.vector = nn.Parameter(torch.zeros(dim))

    def forward(self, x, present):
        return torch.where(present.unsqueeze(-1), x, self.vector.expand_as(x))


def linear_inputs(blocks, names, indicators):
    """The inputs of a linear model on a batch: each modality of ``names`` pooled, then presence flags.

    A vector block is used as it is, a sequence by its masked token mean (zeros where the
    row lacks the modality: the training mean, after standardization); each modality of
    ``indicators`` adds one column, 1 where the row has it.
    """
    parts = [pooled(blocks[name]) for name in names]
    parts += [blocks[name]["present"].to(parts[0].dtype if parts else torch.float32).unsqueeze(1) for name in indicators]
    return torch.cat(parts, dim=1)


class WideAndDeep(nn.Module):
    """A linear model on the pooled inputs beside a fusion network: ``linear(z) + deep(blocks)``.

    ``z`` is :func:`linear_inputs` of the batch (a "wide and deep" model: Cheng et al., "Wide &
    deep learning for recommender systems", DLRS 2016). With ``use_deep=False`` the network
    is left out and the model is its linear part alone.

    Parameters
    ----------
    deep : nn.Module
        The fusion network, called with the batch's blocks.
    names : list of str
        The modalities the linear model reads (vector and sequence blocks).
    indicators : list of str
        The modalities whose presence is a column of the linear model.
    n_inputs : int
        Width of :func:`linear_inputs`.
    n_outputs : int
    """

    def __init__(self, deep, names, indicators, n_inputs, n_outputs):
        super().__init__()
        self.deep = deep
        self.names = list(names)
        self.indicators = list(indicators)
        self.linear = nn.Linear(n_inputs, n_outputs)
        self.use_deep = True

    def forward(self, **blocks):
        wide = self.linear(linear_inputs(blocks, self.names, self.indicators))
        return wide + self.deep(**blocks) if self.use_deep else wide
