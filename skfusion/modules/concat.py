"""Concatenation fusion (Zhang et al., 2026, Fig. 1a): the modality embeddings side by side, then an MLP.

Each modality first goes through its own encoder (:mod:`skfusion.modules.encoders`: the
identity for a vector block, an LSTM or the token mean for a sequence). With one modality
this is the unimodal baseline (an MLP on that embedding).
"""

import torch
from torch import nn

from ._blocks import MissingVector, mlp


class ConcatFusion(nn.Module):
    """``MLP(concat(f_1(x_1), ..., f_M(x_M)))``.

    Parameters
    ----------
    encoders : dict of str to nn.Module
        Each modality's encoder (with an ``out_dim`` attribute), in concatenation order.
    hidden_dims : sequence of int
    n_outputs : int
    dropout : float
    learn_missing : bool
        Replace the encoding of an absent modality (zeros) by a learnable vector.
    """

    def __init__(self, encoders, hidden_dims, n_outputs, dropout, learn_missing=False):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        dims = {name: encoder.out_dim for name, encoder in self.encoders.items()}
        self.missing = nn.ModuleDict({n: MissingVector(d) for n, d in dims.items()}) if learn_missing else None
        self.head = mlp(sum(dims.values()), hidden_dims, n_outputs, dropout)

    def forward(self, **blocks):
        parts = []
        for name, encoder in self.encoders.items():
            h = encoder(blocks[name])
            if self.missing is not None:
                h = self.missing[name](h, blocks[name]["present"])
            parts.append(h)
        return self.head(torch.cat(parts, dim=1))
