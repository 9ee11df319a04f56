"""MMTM, the Multimodal Transfer Module (Vaezi Joze et al. 2020), between an EHR LSTM and an image vector.

Each modality's features :math:`A_m` are squeezed to a vector :math:`S_m` (the mean over
time steps or spatial positions), the squeezes are joined into

.. math::

    Z = \\mathrm{ReLU}(W [S_{ehr}, S_{img}] + b),

and each modality is recalibrated by its own excitation gate,
:math:`\\tilde A_m = 2\\,\\sigma(W_m Z + b_m) \\odot A_m` (gates in (0, 2), broadcast over
time steps). As in MedMod (and MedFuse's MMTM baseline, Hayat et al. 2022, section 4.3), the
module sits between the EHR LSTM's two layers and on the image features; the head reads the
concatenation of the EHR vector and the recalibrated image vector. With a pre-computed
pooled image embedding this is exactly MMTM after the last ResNet block (the best placement
in MedFuse's appendix A.2): a channel gate commutes with global average pooling, and the
pooled map is its own squeeze.
"""

import torch
from torch import nn

from ._blocks import MissingVector, masked_mean, mlp
from .encoders import sequence_inputs


class MMTMBlock(nn.Module):
    """Joint squeeze to ``sum(dims) // reduction`` units, then a ``2 * sigmoid`` gate per modality.

    Parameters
    ----------
    dims : sequence of int
        Channels of each modality's features.
    reduction : float
        Ratio of the summed channels to the joint width (Vaezi Joze et al. use 4).
    """

    def __init__(self, dims, reduction):
        super().__init__()
        joint = max(1, int(sum(dims) / reduction))
        self.squeeze = nn.Linear(sum(dims), joint)
        self.excite = nn.ModuleList(nn.Linear(joint, d) for d in dims)

    def forward(self, features, squeezed):
        z = torch.relu(self.squeeze(torch.cat(squeezed, dim=1)))
        out = []
        for h, excite in zip(features, self.excite):
            gate = 2.0 * torch.sigmoid(excite(z))
            out.append(h * (gate.unsqueeze(1) if h.dim() == 3 else gate))
        return out


class MMTMNet(nn.Module):
    """EHR LSTM and image vector exchanging channel gates after the LSTM's first layer.

    Parameters
    ----------
    ehr, image : str
        Names of the two modalities.
    ehr_encoder : LSTMEncoder
        Two or more layers; the module acts after the first.
    image_encoder : nn.Module
        Turns the image block into one vector per row (``out_dim`` wide): the identity of an
        embedding (a sequence image is mean-pooled over its tokens) or a CNN.
    reduction : float
    hidden_dims : sequence of int
        Hidden widths of the head (empty: one linear layer).
    n_outputs : int
    dropout : float
    learn_missing : bool
        Replace an absent image by a learnable vector.
    """

    def __init__(
        self, ehr, image, ehr_encoder, image_encoder, reduction, hidden_dims, n_outputs, dropout, learn_missing=False
    ):
        super().__init__()
        self.ehr, self.image = ehr, image
        self.ehr_encoder, self.image_encoder = ehr_encoder, image_encoder
        image_dim = image_encoder.out_dim
        self.missing = MissingVector(image_dim) if learn_missing else None
        self.mmtm = MMTMBlock((ehr_encoder.out_dim, image_dim), reduction)
        self.head = mlp(ehr_encoder.out_dim + image_dim, hidden_dims, n_outputs, dropout)

    def forward(self, **blocks):
        image, ehr = blocks[self.image], blocks[self.ehr]
        v_img = self.image_encoder(image)
        if self.missing is not None:
            v_img = self.missing(v_img, image["present"])
        x, mask, lengths = sequence_inputs(ehr)
        states, _ = self.ehr_encoder.run_layers(x, lengths, range(1))
        states, v_img = self.mmtm([states, v_img], [masked_mean(states, mask), v_img])
        _, last = self.ehr_encoder.run_layers(states, lengths, range(1, len(self.ehr_encoder.layers)))
        v_ehr = self.ehr_encoder.output(last, ehr["present"])
        return self.head(torch.cat([v_ehr, v_img], dim=1))
