"""Losses for training loops of one's own.

:func:`global_neg_partial_log_likelihood` is the Cox partial likelihood over the global batch
of a ``torch.distributed`` job: the loss skfusion's estimators train with when ``fit`` runs in
every process of a ``torchrun`` job, for a user's own data-parallel loop.
"""

from ._distributed import global_neg_partial_log_likelihood

__all__ = ["global_neg_partial_log_likelihood"]
