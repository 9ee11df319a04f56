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
