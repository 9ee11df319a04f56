"""DAFT, the Dynamic Affine Feature Map Transform (Pölsterl, Wolf & Wachinger 2021), for EHR + image.

A bottleneck MLP without biases reads the squeezed features :math:`\\bar h` of the
transformed modality next to the conditioning vector :math:`c` and emits a per-channel
scale and shift,

.. math::

    (\\alpha, \\beta) = W_2 \\, \\mathrm{ReLU}(W_1 [\\bar h, c]), \\qquad
    \\tilde h = \\alpha \\odot h + \\beta,

broadcast over time steps when :math:`h` is a sequence of states.

Two directions are offered. ``conditioning="image"`` (the MedFuse/MedMod benchmark setting,
Hayat et al. 2022, section 4.3): the image vector conditions the EHR LSTM's states between
its two layers, the second layer reads the transformed states and a head reads the EHR
vector. ``conditioning="ehr"`` (DAFT's original direction, as MedMod's section 3.3.1 words
it): the EHR vector conditions the image features, which the head reads. With a
pre-computed pooled image embedding, conditioning on it is exactly DAFT on the last ResNet
block's globally pooled feature map.
"""

import torch
from torch import nn

from ._blocks import MissingVector, masked_mean, mlp
from .encoders import sequence_inputs


class DAFTBlock(nn.Module):
    """``alpha * h + beta`` with ``(alpha, beta) = W2 ReLU(W1 [squeezed, condition])``.

    Parameters
    ----------
    feature_dim : int
        Channels of the transformed features ``h``.
    condition_dim : int
        Width of the conditioning vector.
    bottleneck_dim : int
        Hidden width of the MLP.
    """

    def __init__(self, feature_dim, condition_dim, bottleneck_dim):
        super().__init__()
        self.aux = nn.Sequential(
            nn.Linear(feature_dim + condition_dim, bottleneck_dim, bias=False),
            nn.ReLU(),
            nn.Linear(bottleneck_dim, 2 * feature_dim, bias=False),
        )

    def forward(self, features, squeezed, condition):
        scale, shift = self.aux(torch.cat([squeezed, condition], dim=1)).chunk(2, dim=1)
        if features.dim() == 3:
            scale, shift = scale.unsqueeze(1), shift.unsqueeze(1)
        return scale * features + shift


class DAFTNet(nn.Module):
    """EHR LSTM and image vector joined by one DAFT block, then a head.

    Parameters
    ----------
    ehr, image : str
        Names of the two modalities.
    ehr_encoder : LSTMEncoder
        Two or more layers; with ``conditioning="image"`` the block acts after the first.
    image_encoder : nn.Module
        Turns the image block into one vector per row (``out_dim`` wide): the identity of an
        embedding (a sequence image is mean-pooled over its tokens) or a CNN.
    conditioning : {"image", "ehr"}
        The modality that conditions the other's features.
    bottleneck_factor : float
        The MLP's hidden width is its input width divided by this (at least 1).
    hidden_dims : sequence of int
        Hidden widths of the head (empty: one linear layer).
    n_outputs : int
    dropout : float
    learn_missing : bool
        Replace an absent image by a learnable vector.
    """

    def __init__(
        self, ehr, image, ehr_encoder, image_encoder, conditioning, bottleneck_factor, hidden_dims, n_outputs,
        dropout, learn_missing=False,
    ):
        super().__init__()
        self.ehr, self.image, self.conditioning = ehr, image, conditioning
        self.ehr_encoder, self.image_encoder = ehr_encoder, image_encoder
        image_dim = image_encoder.out_dim
        self.missing = MissingVector(image_dim) if learn_missing else None
        feature_dim = ehr_encoder.out_dim if conditioning == "image" else image_dim
        condition_dim = image_dim if conditioning == "image" else ehr_encoder.out_dim
        bottleneck = max(1, int((feature_dim + condition_dim) / bottleneck_factor))
        self.daft = DAFTBlock(feature_dim, condition_dim, bottleneck)
        self.head = mlp(feature_dim, hidden_dims, n_outputs, dropout)

    def image_vector(self, block):
        v = self.image_encoder(block)
        return v if self.missing is None else self.missing(v, block["present"])

    def forward(self, **blocks):
        v_img = self.image_vector(blocks[self.image])
        ehr = blocks[self.ehr]
        if self.conditioning == "ehr":
            return self.head(self.daft(v_img, v_img, self.ehr_encoder(ehr)))
        x, mask, lengths = sequence_inputs(ehr)
        states, _ = self.ehr_encoder.run_layers(x, lengths, range(1))
        states = self.daft(states, masked_mean(states, mask), v_img)
        _, last = self.ehr_encoder.run_layers(states, lengths, range(1, len(self.ehr_encoder.layers)))
        return self.head(self.ehr_encoder.output(last, ehr["present"]))
