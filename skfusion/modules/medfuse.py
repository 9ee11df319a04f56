"""MedFuse (Hayat, Geras & Shamout 2022, section 3.2): an LSTM over the sequence of modality vectors.

The EHR vector :math:`v_{ehr} = f_{ehr}(x_{ehr})` and the projected image vector
:math:`v^*_{cxr} = \\phi(f_{cxr}(x_{cxr}))` (eq. 3) form the sequence
:math:`[v_{ehr}, v^*_{cxr}]` (eq. 4); a one-layer LSTM :math:`f_{fusion}` reads it and a
classifier :math:`g_{fusion}` reads its last hidden state. A row without an image is the
one-element sequence :math:`[v_{ehr}]`: sequences of length 1 and 2 are packed together, so
a row's output never depends on the other rows of its batch.
"""

import torch
from torch import nn

from ._blocks import mlp
from .encoders import run_lstm


class MedFuseNet(nn.Module):
    """``g(LSTM([proj(f_ehr(x_ehr)), proj(f_img(x_img))]))`` with the image step only where present.

    Parameters
    ----------
    ehr : str
        Name of the base modality (always present; first in the sequence).
    image : str
        Name of the auxiliary modality (may be absent; second in the sequence).
    encoders : dict of str to nn.Module
        The encoder of each of the two modalities (with an ``out_dim`` attribute).
    token_dim : int
        Width of the fusion LSTM's input; an encoder output of another width gets a linear
        projection (always the image's :math:`\\phi` with the paper's sizes).
    fusion_dim : int
        Hidden width of the fusion LSTM.
    hidden_dims : sequence of int
        Hidden widths of the classifier :math:`g_{fusion}`; empty for the paper's single
        linear layer.
    n_outputs : int
    dropout : float
    """

    def __init__(self, ehr, image, encoders, token_dim, fusion_dim, hidden_dims, n_outputs, dropout):
        super().__init__()
        self.ehr, self.image = ehr, image
        self.encoders = nn.ModuleDict(encoders)
        self.projections = nn.ModuleDict(
            {
                name: nn.Identity() if enc.out_dim == token_dim else nn.Linear(enc.out_dim, token_dim)
                for name, enc in self.encoders.items()
            }
        )
        self.fusion = nn.LSTM(token_dim, fusion_dim, batch_first=True)
        self.head = mlp(fusion_dim, hidden_dims, n_outputs, dropout)

    def tokens(self, **blocks):
        """The modality sequence (n, 2, token_dim) and each row's length (1 or 2)."""
        steps = [self.projections[n](self.encoders[n](blocks[n])) for n in (self.ehr, self.image)]
        lengths = 1 + blocks[self.image]["present"].long()
        return torch.stack(steps, dim=1), lengths

    def forward(self, **blocks):
        sequence, lengths = self.tokens(**blocks)
        _, last = run_lstm(self.fusion, sequence, lengths)
        return self.head(last)
