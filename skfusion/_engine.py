"""The training engine: the skorch network every estimator trains through, and what it iterates over.

:class:`FusionNet` is a skorch ``NeuralNet`` that iterates over a
:class:`~skfusion._data.ModalityDataset` whose tensors already sit on the device
(:class:`BatchIterator` gathers batches by index); :class:`ValidationSplit` holds rows out,
stratified; :func:`make_net` builds every training run's network; the helpers choose the
device, the batch size and the seeds, and average a batch's losses with its rows' weights.
The estimators (:mod:`skfusion._base`, the pretraining
transformers) sit above this module, the data-parallel network (:mod:`skfusion._distributed`)
beside it, and the data contract (:mod:`skfusion._data`) below it.
"""

import os
from contextlib import contextmanager, nullcontext
from math import ceil

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch import NeuralNet

from ._compat import check_sample_weight
from ._images import read_batches


def resolve_batch_size(batch_size, n_samples):
    """``batch_size``, with ``"auto"`` as a sixteenth of the rows within [32, 256].

    Small data then gets at least 16 optimizer steps per epoch (a few hundred rows in
    batches of 256 would be one step an epoch), large data batches of 256.
    """
    if batch_size == "auto":
        return int(np.clip(n_samples // 16, 32, 256))
    return batch_size


def divergence_error(what, lr):
    """The error for a training run that diverged: ``what`` went wrong, and what to change."""
    return ValueError(
        f"training diverged: {what}. Lower the learning rate (lr={lr}), and check the inputs' scale "
        "(standardize=True rescales vector blocks)."
    )


def check_weights(sample_weight, n_samples):
    """``sample_weight`` validated (:func:`~skfusion._compat.check_sample_weight`), refused when all zero.

    Returns
    -------
    weight : ndarray of shape (n_samples,)
        float64, ones for ``None``.
    """
    weight = check_sample_weight(sample_weight, n_samples)
    if not weight.any():
        raise ValueError("sample_weight is zero for every sample: there is nothing to fit; give some rows a weight.")
    return weight


def unit_mean(weight):
    """``weight`` scaled to mean 1.

    Every loss is a weighted mean, so only the weights' ratios matter: the scale keeps
    float32 losses away from weights such as 1e-40 or 1e40, and keeps a weighted sum (the
    Weibull marginal fit's) at the size of the unweighted one.
    """
    weight = weight / weight.max()
    return weight / weight.mean()


def weighted_mean(values, weight):
    """``sum(weight * values) / sum(weight)``; 0 for a batch whose weights are all zero.

    scikit-learn's ``MLPClassifier`` averages a batch's losses with its sample weights the same way.
    """
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(torch.finfo(values.dtype).tiny)


def data_parallel():
    """Whether this process is one of a ``torch.distributed`` job (torchrun): then ``fit`` trains data-parallel."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _process_device(device):
    """In a data-parallel job, plain ``"cuda"`` is this process's GPU: torchrun's ``LOCAL_RANK``."""
    if device == "cuda" and data_parallel():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', torch.cuda.current_device()))}"
    return device


def resolve_device(device):
    """``"auto"`` means CUDA when available, else the CPU; anything else must be a torch device."""
    if device == "auto":
        return _process_device("cuda") if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or another torch device such as 'cuda:1'; "
            f"got {device!r}."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"The 'device' parameter is {device!r} but CUDA is not available here; use device='auto'.")
    return _process_device(device)


def draw_seed(random_state):
    """An int seed drawn from ``random_state`` (None, an int or a ``RandomState``, which advances).

    Every estimator and transformer turns its ``random_state`` into torch's seed this way.
    """
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextmanager
def seeded(seed, device):
    """Torch's global generators seeded with ``seed`` inside the block and restored after it."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if device.type == "cpu":
            # torch.manual_seed would also queue a seed for every accelerator torch knows of
            # (0.7 ms a call, once per internal fold and epoch).
            torch.random.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        yield


class BatchIterator:
    """Mini-batches of a :class:`~skfusion._data.ModalityDataset`, gathered by index.

    With ``strata`` (a function of the targets returning a boolean tensor, e.g. the event
    indicator), positives are dealt round-robin over the batches, so every batch has at least
    one; the number of batches is reduced if there are fewer positives than batches.
    Without targets (prediction), rows keep their order.

    The images of a column of file paths are read per batch by a DataLoader with
    ``num_workers`` worker processes (pinned memory for a CUDA device), augmented when
    ``augment`` (training), centre-cropped otherwise (:mod:`skfusion._images`).
    """

    def __init__(self, dataset, batch_size, shuffle=False, seed=0, strata=None, augment=False, num_workers=0):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.strata = strata
        self.augment = augment
        self.num_workers = num_workers
        # A generator given instead of a seed is shared: it goes on advancing from one
        # iterator to the next (the internal folds train an epoch per skorch call).
        self.generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)

    def _stratified(self):
        return self.strata is not None and self.dataset.targets is not None

    def _groups(self):
        n = len(self.dataset)
        if not (self.shuffle or self._stratified()):
            # Consecutive rows as slices: gathered as views, without an index (prediction).
            return [slice(lo, min(lo + self.batch_size, n)) for lo in range(0, n, self.batch_size)]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if not self._stratified():
            return order.split(self.batch_size)
        positive = self.strata(self.dataset.target_values())[order]
        pos, neg = order[positive], order[~positive]
        n_batches = self._n_batches(positive)
        return [torch.cat([pos[b::n_batches], neg[b::n_batches]]) for b in range(n_batches)]

    def _n_batches(self, positive=None):
        """Batches of ``batch_size``, fewer when there are fewer ``positive`` rows than batches."""
        n_batches = ceil(len(self.dataset) / self.batch_size)
        return n_batches if positive is None else max(1, min(n_batches, int(positive.sum())))

    def __iter__(self):
        return self.load(self._groups())

    def load(self, groups):
        """Yield the batch of each group of row positions, with the images of the file columns read."""
        device = self.dataset.device
        groups = [positions if isinstance(positions, slice) else positions.to(device) for positions in groups]
        if not self.dataset.files:
            for positions in groups:
                yield self.dataset.batch(positions)
            return
        seeds = torch.randint(1 << 62, (len(groups),), generator=self.generator).tolist()
        batches = [(self.dataset.rows(positions).cpu(), seed) for positions, seed in zip(groups, seeds)]
        images = read_batches(self.dataset.files, batches, self.augment, self.num_workers, device.type == "cuda")
        for positions, batch_images in zip(groups, images):
            yield self.dataset.batch(positions, batch_images)

    def __len__(self):
        return self._n_batches(self.strata(self.dataset.target_values()) if self._stratified() else None)


class BalancedBatches(BatchIterator):
    """Shuffled mini-batches of near-equal sizes (at most ``batch_size``), never a short trailing one.

    Adam's step is as long for a batch of 2 rows as for one of 32: a trailing batch of
    ``n % batch_size`` rows moves the weights as far as a full batch, along a far noisier
    gradient (CLMBR's next-code loss on pbcseq's 290 patients in batches of 32, 9 full and
    one of 2: 3.25 after 20 epochs instead of 3.00). ``tensor_split`` deals the rows evenly,
    as NumPy's ``array_split`` does; a contrastive loss also needs the negatives and a
    VICReg variance that a batch of one would lack.
    """

    def _groups(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return order.tensor_split(-(-n // self.batch_size))


class ValidationSplit:
    """Hold out ``fraction`` of the rows, stratified by ``strata`` when given (skorch train_split).

    Every stratum with at least two rows is represented on both sides (at least one row held
    out, at least one kept), so a survival validation split always holds events.

    Raises
    ------
    ValueError
        When ``fraction`` of a stratum rounds to all of its rows (nothing of it would be
        trained on), or when either side would hold fewer than 2 rows.
    """

    def __init__(self, fraction, seed, strata=None):
        self.fraction = fraction
        self.seed = seed
        self.strata = strata

    def __call__(self, dataset, y=None, **fit_params):
        train, valid = self.positions(len(dataset))
        return dataset.subset(train), dataset.subset(valid)

    def positions(self, n):
        """The ``(train, valid)`` positions, sorted, of a split of ``n`` rows."""
        rng = np.random.RandomState(self.seed)
        labels = np.zeros(n, dtype=int) if self.strata is None else np.asarray(self.strata)
        valid = []
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            requested = int(round(self.fraction * len(rows)))
            if requested >= len(rows) > 1:
                raise ValueError(
                    f"validation_fraction={self.fraction} holds out all {len(rows)} rows of a stratum of "
                    f"{n} samples, leaving none of it to train on; lower validation_fraction."
                )
            valid.append(rows[: min(max(requested, 1), len(rows) - 1)])
        valid = np.sort(np.concatenate(valid))
        if min(len(valid), n - len(valid)) < 2:
            raise ValueError(
                f"validation_fraction={self.fraction} splits {n} samples into {n - len(valid)} to train on and "
                f"{len(valid)} to validate on; each side needs at least 2 (pass early_stopping=False on so few rows)."
            )
        return np.setdiff1d(np.arange(n), valid), valid


class TaskLoss(torch.nn.Module):
    """skorch criterion delegating to the estimator's task loss."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, y_pred, y_true):
        return self.loss(y_pred, y_true)


def _has_cnn(layout):
    return any(spec.kind == "image" for spec in layout)


def weight_format(device, module):
    """The memory format of ``module``'s weights: channels-last on CUDA for a CNN (cuDNN's fastest).

    Read from its convolutions: channels-last for 2-D ones, channels-last-3d for 3-D ones (a
    volume network), the weights as they are for a network with both (one format cannot
    serve 4-D and 5-D weights), without convolutions or off CUDA.
    """
    if torch.device(device).type != "cuda":
        return torch.preserve_format
    ranks = {m.weight.dim() for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))}
    return {frozenset({4}): torch.channels_last, frozenset({5}): torch.channels_last_3d}.get(
        frozenset(ranks), torch.preserve_format
    )


def training_precision(device, layout):
    """The autocast dtype for training: bfloat16 for a network with a CNN on a CUDA device that supports it.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed; everything else
    trains in float32.
    """
    if torch.device(device).type == "cuda" and _has_cnn(layout) and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def transformer_precision(device):
    """The autocast dtype for training a transformer over tokens: bfloat16 on a CUDA device that supports it.

    A network with no modality layout (CLMBR's, fed token sequences) has none for
    :func:`training_precision` to read. A transformer trains in mixed precision on CUDA,
    where bfloat16 runs its matrix products and attention on the tensor cores (with
    float32's exponent range: no loss scaling), and in float32 elsewhere.

    Parameters
    ----------
    device : str or torch.device
        The device the network trains on.
    """
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class FusionNet(NeuralNet):
    """The skorch network behind every skfusion estimator.

    Data arrive as a :class:`~skfusion._data.ModalityDataset` whose tensors already sit on
    the device; :class:`BatchIterator` gathers batches by index, so there is no per-row
    collation and no host-to-device copy per batch. With ``amp_dtype`` (see
    :func:`training_precision`) the forward passes run under autocast and the outputs are
    cast back to float32 before the loss.
    """

    def __init__(self, *args, amp_dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp_dtype = amp_dtype

    def autocast(self):
        """The autocast context of the forward passes (a no-op without ``amp_dtype``)."""
        if self.amp_dtype is None:
            return nullcontext()  # a disabled torch.autocast still costs its checks, every step
        return torch.autocast(torch.device(self.device).type, dtype=self.amp_dtype)

    def __getstate__(self):
        # skorch pickles module_ and criterion_ so that a net trained on CUDA loads on a machine
        # without it (mapped to the CPU, with a DeviceWarning), but pickles the rest with the
        # plain state, whose CUDA tensors then fail to load there: module and criterion (the
        # instances that became module_ and criterion_) and the callbacks (EarlyStopping keeps
        # the best weights). These prefixes put them with module_ (skorch issues 426, 1096).
        prefixes = ["module", "criterion", "callbacks", *self.cuda_dependent_attributes_]
        self.cuda_dependent_attributes_ = list(dict.fromkeys(prefixes))
        return super().__getstate__()

    def get_default_callbacks(self):
        # PrintLog tabulates the history every epoch, printed or not (0.5 ms an epoch): it is
        # left out when nothing is printed.
        return [(name, cb) for name, cb in super().get_default_callbacks() if self.verbose or name != "print_log"]

    def infer(self, x, **fit_params):
        # The batches are dicts of tensors already on the device: skorch's to_tensor walk over
        # them (60 us a batch) is skipped.
        with self.autocast():
            y = self.module_(**x, **fit_params)
        return y.float() if isinstance(y, torch.Tensor) else y

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        # skorch's epoch, with a batch's size read from its first block: skorch's get_len
        # walks the nested batch and fails on a None in it (CLMBR's batches). Not for speed:
        # the walk costs under 1% of a step (benchmarks/results/fit.md).
        if iterator is None:
            return
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            self.history.record_batch(prefix + "_loss", step["loss"].item())
            first_block = next(iter(batch[0].values()))
            self.history.record_batch(prefix + "_batch_size", len(first_block["present"]))
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        split = "training" if training else "validation"
        if not torch.isfinite(y_pred).all():
            raise divergence_error(f"the network's outputs are not finite at epoch {len(self.history)} ({split})", self.lr)
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not torch.isfinite(loss):
            raise divergence_error(f"the {split} loss is {loss.item()} at epoch {len(self.history)}", self.lr)
        return loss

    def dataset_loss(self, dataset):
        """The task loss over all rows of ``dataset`` at once, in evaluation mode (a float).

        Every process of a data-parallel job computes it over all the rows (hence
        ``FusionNet.get_loss``, not a subclass's, which would gather the rows of all processes).
        """
        self.module_.eval()
        workers = self.get_params_for("iterator_valid").get("num_workers", 0)
        batches = BatchIterator(dataset, self.batch_size, num_workers=workers)
        with torch.inference_mode(), self.autocast():
            outputs = torch.cat([self.infer(X) for X, _ in batches])
            return FusionNet.get_loss(self, outputs, dataset.target_values().to(outputs.device)).item()

    def predict_outputs(self, dataset):
        """Network outputs for every row of ``dataset``, in order, as a float64 array.

        Batches are consecutive rows (never the event-stratified training batches), so the
        outputs line up with the rows and their targets.
        """
        self.module_.eval()
        workers = self.get_params_for("iterator_valid").get("num_workers", 0)
        batches = BatchIterator(dataset, self.batch_size, num_workers=workers)
        with torch.inference_mode(), self.autocast():
            outputs = [self.module_(**X).float() for X, _ in batches]
        return torch.cat(outputs).double().cpu().numpy()



def make_net(
    module,
    criterion,
    *,
    device,
    batch_size,
    seed=0,
    lr=1e-3,
    weight_decay=0.0,
    param_groups=(),
    max_epochs=1,
    iterator=BatchIterator,
    strata=None,
    augment=False,
    num_workers=0,
    callbacks=None,
    verbose=0,
    amp_dtype=None,
    net_class=FusionNet,
):
    """The skorch network of a training run: every estimator and pretraining transformer builds it here.

    Adam with ``weight_decay`` (``param_groups``: skorch's per-parameter overrides, such as
    a logit scale without decay); training batches drawn by ``iterator`` (a
    :class:`BatchIterator`) in an order seeded by ``seed`` (an int, or a ``torch.Generator``
    shared between runs), stratified by ``strata``, augmented when ``augment``, read by
    ``num_workers`` processes; no skorch validation split (the estimators hold rows out
    themselves: :class:`ValidationSplit`, :class:`~skfusion._training.EpochSelection`).
    """
    return net_class(
        module=module,
        criterion=criterion,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=weight_decay,
        optimizer__param_groups=list(param_groups),
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        iterator_train=iterator,
        iterator_train__shuffle=True,
        iterator_train__seed=seed,
        iterator_train__strata=strata,
        iterator_train__augment=augment,
        iterator_train__num_workers=num_workers,
        iterator_valid=BatchIterator,
        iterator_valid__num_workers=num_workers,
        train_split=None,
        callbacks=callbacks,
        device=device,
        verbose=verbose,
        amp_dtype=amp_dtype,
    )

class AlignmentNet(FusionNet):
    """A self-supervised network: its loss reads the outputs only (the pairing of the modalities is the target).

    The alignment step of the two-step contrastive models and the image-EHR pretraining
    transformers of :mod:`skfusion.ssl`.
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred)
