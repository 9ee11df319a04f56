"""Late fusion: one encoder and MLP per modality, outputs averaged over the modalities a row has.

A missing modality simply drops out of the average (MedMod's late fusion; the "late"
baseline of Zhang et al., 2026), so partially paired rows are used as they are.
"""

import torch
from torch import nn

from ._blocks import mlp


class LateFusion(nn.Module):
    """``sum_m present_m * g_m(f_m(x_m)) / sum_m present_m``.

    Parameters
    ----------
    encoders : dict of str to nn.Module
        Each modality's encoder (with an ``out_dim`` attribute).
    hidden_dims : dict of str to sequence of int
        Hidden widths of each modality's MLP.
    n_outputs : int
    dropout : float
    """

    def __init__(self, encoders, hidden_dims, n_outputs, dropout):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(
            {n: mlp(e.out_dim, hidden_dims[n], n_outputs, dropout) for n, e in self.encoders.items()}
        )

    def forward(self, **blocks):
        outputs = torch.stack([self.heads[n](e(blocks[n])) for n, e in self.encoders.items()], dim=1)
        present = torch.stack([blocks[n]["present"] for n in self.heads], dim=1).to(outputs.dtype)
        return (outputs * present.unsqueeze(-1)).sum(dim=1) / present.sum(dim=1, keepdim=True).clamp_min(1.0)
