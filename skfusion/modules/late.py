"""Late fusion: one encoder and MLP per modality, outputs averaged over the modalities a row has.

A missing modality simply drops out of the average, so partially paired rows are used as
they are. The average is of the raw outputs (log-hazards, logits) or of the probabilities
(MedMod's late fusion averages the unimodal models' predicted probabilities; late fusion is
also a baseline of Zhang et al., 2026).
"""

import torch
from torch import nn
from torch.nn import functional as F

from ._blocks import mlp


def log_mean_exp(log_p, present):
    """``log mean_m exp(log_p[:, m])`` over the modalities ``present`` (n, M) of each row."""
    log_p = log_p.masked_fill(~present.unsqueeze(-1), float("-inf"))
    return log_p.logsumexp(dim=1) - present.sum(dim=1, keepdim=True).clamp_min(1).to(log_p.dtype).log()


def average_probabilities(outputs, present, link):
    """Logits whose ``link`` (softmax or sigmoid) is the mean of the per-modality probabilities.

    ``softmax(log p_mean) = p_mean`` since ``p_mean`` sums to one, and ``sigmoid(log p_mean -
    log(1 - p_mean)) = p_mean``; both are computed in log space, so no probability is rounded
    to 0 or 1 on the way.
    """
    if link == "softmax":
        return log_mean_exp(F.log_softmax(outputs, dim=-1), present)
    return log_mean_exp(F.logsigmoid(outputs), present) - log_mean_exp(F.logsigmoid(-outputs), present)


class LateFusion(nn.Module):
    """``sum_m present_m * g_m(f_m(x_m)) / sum_m present_m``, of the outputs or the probabilities.

    Parameters
    ----------
    encoders : dict of str to nn.Module
        Each modality's encoder (with an ``out_dim`` attribute).
    hidden_dims : dict of str to sequence of int
        Hidden widths of each modality's MLP.
    n_outputs : int
    dropout : float
    average : {"outputs", "softmax", "sigmoid"}, default="outputs"
        Average the heads' outputs, or the probabilities their softmax (sigmoid) gives,
        returned as logits of the averaged probabilities (:func:`average_probabilities`).
    """

    def __init__(self, encoders, hidden_dims, n_outputs, dropout, average="outputs"):
        super().__init__()
        self.average = average
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(
            {n: mlp(e.out_dim, hidden_dims[n], n_outputs, dropout) for n, e in self.encoders.items()}
        )

    def forward(self, **blocks):
        outputs = torch.stack([self.heads[n](e(blocks[n])) for n, e in self.encoders.items()], dim=1)
        present = torch.stack([blocks[n]["present"] for n in self.heads], dim=1)
        if self.average != "outputs":
            return average_probabilities(outputs, present, self.average)
        weights = present.to(outputs.dtype).unsqueeze(-1)
        return (outputs * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
