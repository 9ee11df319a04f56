"""Concatenation fusion (paper 000, Fig. 1a): the modality embeddings side by side, then an MLP.

With one modality this is the unimodal baseline (an MLP on that embedding).
"""

import torch
from torch import nn

from ._blocks import MissingVector, mlp, pooled


class ConcatFusion(nn.Module):
    """``MLP(concat(h_1, ..., h_M))``.

    Parameters
    ----------
    dims : dict of str to int
        Width of each modality, in concatenation order.
    hidden_dims : sequence of int
    n_outputs : int
    dropout : float
    learn_missing : bool
        Replace an absent modality by a learnable vector instead of its zero placeholder.
    """

    def __init__(self, dims, hidden_dims, n_outputs, dropout, learn_missing=False):
        super().__init__()
        self.names = list(dims)
        self.missing = nn.ModuleDict({n: MissingVector(d) for n, d in dims.items()}) if learn_missing else None
        self.head = mlp(sum(dims.values()), hidden_dims, n_outputs, dropout)

    def forward(self, **blocks):
        parts = []
        for name in self.names:
            h = pooled(blocks[name])
            if self.missing is not None:
                h = self.missing[name](h, blocks[name]["present"])
            parts.append(h)
        return self.head(torch.cat(parts, dim=1))
