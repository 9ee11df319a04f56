"""Late fusion: one MLP per modality, outputs averaged over the modalities a row has.

A missing modality simply drops out of the average (MedMod's late fusion; paper 000's
"late" baseline), so partially paired rows are used as they are.
"""

import torch
from torch import nn

from ._blocks import mlp, pooled


class LateFusion(nn.Module):
    """``sum_m present_m * f_m(h_m) / sum_m present_m``.

    Parameters
    ----------
    dims : dict of str to int
    hidden_dims : dict of str to sequence of int
        Hidden widths of each modality's MLP.
    n_outputs : int
    dropout : float
    """

    def __init__(self, dims, hidden_dims, n_outputs, dropout):
        super().__init__()
        self.heads = nn.ModuleDict({n: mlp(d, hidden_dims[n], n_outputs, dropout) for n, d in dims.items()})

    def forward(self, **blocks):
        outputs = torch.stack([head(pooled(blocks[n])) for n, head in self.heads.items()], dim=1)
        present = torch.stack([blocks[n]["present"] for n in self.heads], dim=1).to(outputs.dtype)
        return (outputs * present.unsqueeze(-1)).sum(dim=1) / present.sum(dim=1, keepdim=True).clamp_min(1.0)
