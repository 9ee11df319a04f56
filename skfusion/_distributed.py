"""Data-parallel training in a ``torch.distributed`` job (``torchrun``), with losses over the global batch.

Each process of the job calls ``fit`` on the whole training set. :class:`DataParallelNet`
then makes the run the single-process run spread over the processes: every process draws
the same batches (rank 0's seed), trains on every ``world_size``-th row of each, its module
is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, and the loss of a batch is
the task's loss on the outputs and targets gathered from every process. For a Cox model
this is the partial likelihood over the batch's global risk set, not the average of
per-process partial likelihoods, whose risk sets would each hold a fraction of the batch.

Why no loss is scaled by the world size: :func:`gather_rows` is differentiable, and the
gradient it sends back to a process's own rows is the sum over the processes of the
gradient each computed for those rows. Every process computes the same loss ``L`` of the
same gathered batch, so the sum is ``world_size * dL/d(own rows)``, and DDP, which averages
the parameter gradients over the processes, divides that factor back out: the parameter
gradient is exactly that of one process computing ``L`` on the whole batch.
"""

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torchsurv.loss.cox import neg_partial_log_likelihood

from ._engine import FusionNet
from .modules.encoders import ImageEncoder


def _require_process_group():
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "gathering the rows of every process needs a torch.distributed job: call "
            "torch.distributed.init_process_group first, in every process that torchrun starts."
        )


def _row_counts(n_rows, device):
    """The number of rows each process holds, in rank order."""
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([n_rows], dtype=torch.int64, device=device))
    return [int(count) for count in counts]


class _GatherRows(torch.autograd.Function):
    """Concatenate every process's rows in rank order; the backward pass sums the gradients of a process's rows."""

    @staticmethod
    def forward(ctx, tensor, counts):
        # all_gather needs equal shapes: pad every process's rows to the largest count, then trim.
        padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        pieces = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(pieces, padded.contiguous())
        rank = dist.get_rank()
        ctx.rows = slice(sum(counts[:rank]), sum(counts[: rank + 1]))
        return torch.cat([piece[:count] for piece, count in zip(pieces, counts)])

    @staticmethod
    def backward(ctx, grad):
        # Each process's loss may read any process's rows: the gradient of a row is the sum
        # of the gradients every process computed for it.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows], None


def gather_rows(*tensors):
    """Every process's rows of each tensor (same number of rows per tensor), concatenated in rank order.

    Differentiable (see the module docstring for the gradient it returns); the processes may
    hold different numbers of rows.
    """
    _require_process_group()
    counts = _row_counts(len(tensors[0]), tensors[0].device)
    return tuple(_GatherRows.apply(tensor, counts) for tensor in tensors)


_TIES_METHODS = ("efron", "breslow")
_REDUCTIONS = ("mean", "sum")


def global_neg_partial_log_likelihood(log_hz, event, time, ties_method="efron", reduction="mean"):
    """Negative Cox partial log-likelihood over the global risk set of a data-parallel batch.

    Each process passes the rows of its share of the batch; the log-hazards, events and
    times of every process are gathered (with gradients) and torchsurv's
    :func:`~torchsurv.loss.cox.neg_partial_log_likelihood` is computed on their
    concatenation, so the loss, on every process, is that of one process holding the whole
    batch. The risk set of an event is every row of the batch, whichever process holds it:
    averaging per-process partial likelihoods instead would compare each event with a
    fraction of its risk set. The processes may hold different numbers of rows.

    Times are gathered as given, so a process's times are compared with the other
    processes' raw times, never with ranks computed on its own rows; pass float64 times
    (float32 cannot tell large times apart). The concatenation's times are then turned into
    dense ranks, on which the partial likelihood depends.

    Use it as the loss of a model wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, unscaled: the gradient reaching a
    process's ``log_hz`` is ``world_size`` times the single-process one (the backward pass
    sums over the processes the gradients each computed for those rows), which DDP's
    averaging of the parameter gradients divides back out.

    Parameters
    ----------
    log_hz : torch.Tensor of shape (n_rows,)
        Log relative hazards of this process's rows (another array-like is made a float
        tensor, without gradient).
    event : torch.Tensor or array-like of shape (n_rows,)
        Event indicators of this process's rows: booleans, or numbers that are all 0 or 1.
    time : torch.Tensor or array-like of shape (n_rows,)
        Event or censoring times of this process's rows, finite (an array-like is made a
        float64 tensor).
    ties_method : {"efron", "breslow"}, default="efron"
        Passed to torchsurv.
    reduction : {"mean", "sum"}, default="mean"
        Passed to torchsurv.

    Returns
    -------
    loss : torch.Tensor
        A scalar, the same on every process.

    Raises
    ------
    ValueError
        If a parameter is unknown or an input is not one value per row (checked before
        gathering), or, after gathering and so on every process alike, if a time is NaN or
        infinite or an event indicator is not 0 or 1; the rows are those of the gathered
        batch (the processes' rows in rank order).

    See Also
    --------
    ConcatSurvival : any survival estimator fitted in a torchrun job uses the global risk set.

    References
    ----------
    .. [1] D. R. Cox (1972). Regression models and life-tables. Journal of the Royal
           Statistical Society, Series B, 34(2), 187-220.
    .. [2] B. Efron (1977). The efficiency of Cox's likelihood function for censored data.
           Journal of the American Statistical Association, 72(359), 557-565 (ties).

    Examples
    --------
    One process is a job too (a two-process job is launched with ``torchrun``):

    >>> import torch
    >>> import torch.distributed as dist
    >>> from torchsurv.loss.cox import neg_partial_log_likelihood
    >>> from skfusion.losses import global_neg_partial_log_likelihood
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> log_hz = torch.tensor([0.5, -0.2, 0.1])
    >>> event = torch.tensor([True, False, True])
    >>> time = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)
    >>> loss = global_neg_partial_log_likelihood(log_hz, event, time)
    >>> bool(torch.isclose(loss, neg_partial_log_likelihood(log_hz, event, time.float())))
    True
    >>> dist.destroy_process_group()
    """
    for name, value, allowed in (("ties_method", ties_method, _TIES_METHODS), ("reduction", reduction, _REDUCTIONS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
    log_hz, event, time = _as_tensors(log_hz, event, time)
    for name, value in (("log_hz", log_hz), ("event", event), ("time", time)):
        if value.ndim != 1 or len(value) != len(log_hz):
            raise ValueError(
                f"{name} must be a 1-d tensor of one value per row, as long as log_hz ({len(log_hz)} rows); "
                f"got shape {tuple(value.shape)}."
            )
    log_hz, event, time = gather_rows(log_hz, event, time)
    # Checked on the gathered rows, which every process holds: every process raises alike,
    # where a process raising alone would leave the others waiting in the next collective.
    _check_gathered_targets(event, time)
    rank = torch.unique(time, return_inverse=True)[1].to(log_hz.dtype)
    return neg_partial_log_likelihood(log_hz, event.bool(), rank, ties_method=ties_method, reduction=reduction)


def _as_tensors(log_hz, event, time):
    """The inputs as tensors on ``log_hz``'s device: array-likes converted, times to float64."""
    if not isinstance(log_hz, torch.Tensor):
        log_hz = torch.as_tensor(np.asarray(log_hz, dtype=np.float32))
    if not isinstance(event, torch.Tensor):
        event = torch.as_tensor(np.asarray(event))
    if not isinstance(time, torch.Tensor):
        time = torch.as_tensor(np.asarray(time, dtype=np.float64))
    return log_hz, event.to(log_hz.device), time.to(log_hz.device)


def _check_gathered_targets(event, time):
    """Raise a ValueError naming the rows of a non-finite time or of an event indicator other than 0 or 1."""
    bad_time = ~torch.isfinite(time)
    if bad_time.any():
        raise ValueError(
            f"time must be finite; it is NaN or infinite in rows {_first_rows(bad_time)} of the gathered batch."
        )
    if event.dtype != torch.bool:
        bad_event = (event != 0) & (event != 1)
        if bad_event.any():
            raise ValueError(
                f"event must hold indicators (True/False or 0/1); rows {_first_rows(bad_event)} of the gathered "
                f"batch hold {event[bad_event][:3].tolist()}."
            )


def _first_rows(mask):
    return torch.nonzero(mask).flatten()[:10].tolist()


def shared_seed(seed, device):
    """Rank 0's ``seed``: every process must draw the same batches and validation split."""
    value = torch.tensor([seed], dtype=torch.int64, device=device)
    dist.broadcast(value, src=0)
    return int(value)


def process_shares(groups):
    """This process's rows of each batch of row positions: every ``world_size``-th row.

    A batch with fewer rows than processes (the last one, at most) joins the batch before
    it, so that no process trains on an empty batch.
    """
    world_size, rank = dist.get_world_size(), dist.get_rank()
    merged = []
    for group in groups:
        if isinstance(group, slice):  # consecutive rows (unshuffled batches)
            group = torch.arange(group.start, group.stop)
        if merged and len(group) < world_size:
            merged[-1] = torch.cat([merged[-1], group])
        else:
            merged.append(group)
    if not merged or len(merged[0]) < world_size:
        raise ValueError(
            f"{sum(len(group) for group in groups)} rows cannot be shared among the {world_size} processes "
            "of the data-parallel run: give every process at least one row."
        )
    return [group[rank::world_size] for group in merged]


class ProcessShare:
    """This process's share of each batch of a :class:`~skfusion._engine.BatchIterator`.

    The batches are the single-process ones (the event-stratified batches of a survival
    model: the ``world_size``-th rows of a batch whose events come first hold events
    whenever the batch has as many events as there are processes).
    """

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return self.batches.load(process_shares(self.batches._groups()))

    def __len__(self):
        return len(process_shares(self.batches._groups()))


class DataParallelNet(FusionNet):
    """:class:`~skfusion._engine.FusionNet` for one process of a data-parallel job (see the module docstring).

    ``batch_size`` is the size of the batch shared among the processes, so that the same
    parameters train the same model whatever the number of processes.
    """

    def initialize(self):
        if self.batch_size < dist.get_world_size():
            raise ValueError(
                f"batch_size={self.batch_size} is smaller than the {dist.get_world_size()} processes of the "
                "data-parallel run, among which each batch is shared."
            )
        if dist.get_rank() != 0:
            self.verbose = 0  # one progress log for the job
        return super().initialize()

    def initialize_module(self):
        super().initialize_module()
        device = torch.device(self.device)
        # An image encoder skips its network for a share without images, which DDP must be
        # told of (it costs a graph traversal per batch, so only then).
        may_skip = any(isinstance(module, ImageEncoder) for module in self.module_.modules())
        # DDP broadcasts rank 0's weights, so every process starts from the same network.
        self.module_ = DistributedDataParallel(
            self.module_.to(device),
            device_ids=None if device.type == "cpu" else [device],
            find_unused_parameters=may_skip,
        )
        return self

    def get_all_learnable_params(self):
        # The wrapped module's names, as in one process: the optimizer's parameter groups
        # (the linear start's weight decay) match them.
        for name, param in super().get_all_learnable_params():
            yield name.removeprefix("module."), param

    def get_iterator(self, dataset, training=False):
        return ProcessShare(super().get_iterator(dataset, training=training))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_pred, y_true = gather_rows(y_pred, y_true)
        self.batch_rows_ = len(y_true)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        # skorch weighs a batch's loss in the epoch's mean by the rows of this process's
        # share; the loss is the whole batch's, and every process must log the same mean
        # (early stopping reads it).
        self.history.record_batch(("train" if training else "valid") + "_batch_size", self.batch_rows_)

    def fit(self, X, y=None, **fit_params):
        super().fit(X, y, **fit_params)
        # The fitted network is the same on every process and predicts in one.
        self.module_ = self.module_.module
        return self

