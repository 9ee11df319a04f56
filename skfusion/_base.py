"""The shared base of every fusion estimator.

A public estimator is ``(task mixin, fusion family)``: the family builds the
``torch.nn.Module`` (``_build_module``) and says which missing modalities it can use
(``_check_blocks``); the task mixin (survival or classification) encodes ``y``, provides the
loss and turns network outputs into predictions. :class:`BaseFusion` owns the public ``fit``
and its validation (the template method), and trains through :class:`FusionNet`, a skorch
``NeuralNet`` that iterates over tensors already on the device, by index.
"""

import os
import warnings
from contextlib import contextmanager
from math import ceil
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping

from ._compat import Interval, SequenceOf, StrOptions, _fit_context
from ._data import (
    ModalityDataset,
    _rows,
    check_X,
    fit_standardization,
    image_memory_format,
    infer_layout,
    require_kinds,
    require_present,
    sized_images,
    standardize_blocks,
    to_blocks,
    warn_wholly_missing,
)
from ._images import read_batches

# The widest hidden layer accepted: wider ones exhaust memory before they help.
MAX_WIDTH = 1 << 16


def _int_in(low, high):
    """Predicate: an int (not a bool) in ``[low, high]``, for :class:`~skfusion._compat.SequenceOf`."""
    return lambda v: isinstance(v, Integral) and not isinstance(v, bool) and low <= v <= high


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


@contextmanager
def seeded(seed, device):
    """Torch's global generators seeded with ``seed`` inside the block and restored after it."""
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
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
        self.generator = torch.Generator().manual_seed(seed)

    def _stratified(self):
        return self.strata is not None and self.dataset.targets is not None

    def _groups(self):
        n = len(self.dataset)
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
        groups = [positions.to(device) for positions in groups]
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


class ValidationSplit:
    """Hold out ``fraction`` of the rows, stratified by ``strata`` when given (skorch train_split).

    Every stratum with at least two rows is represented on both sides (at least one row held
    out, at least one kept), so a survival validation split always holds events.
    """

    def __init__(self, fraction, seed, strata=None):
        self.fraction = fraction
        self.seed = seed
        self.strata = strata

    def __call__(self, dataset, y=None, **fit_params):
        rng = np.random.RandomState(self.seed)
        n = len(dataset)
        labels = np.zeros(n, dtype=int) if self.strata is None else np.asarray(self.strata)
        valid = []
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            n_valid = min(max(int(round(self.fraction * len(rows))), 1), len(rows) - 1)
            valid.append(rows[:n_valid])
        valid = np.sort(np.concatenate(valid))
        if len(valid) == 0 or len(valid) == n:
            raise ValueError(
                f"validation_fraction={self.fraction} leaves an empty training or validation set for {n} samples."
            )
        train = np.setdiff1d(np.arange(n), valid)
        return dataset.subset(train), dataset.subset(valid)


class TaskLoss(torch.nn.Module):
    """skorch criterion delegating to the estimator's task loss."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, y_pred, y_true):
        return self.loss(y_pred, y_true)


def _has_cnn(layout):
    return any(spec.kind == "image" for spec in layout)


def weight_format(device, layout):
    """The memory format of a network's weights: its images' (channels-last on CUDA) when it has a CNN."""
    return image_memory_format(device) if _has_cnn(layout) else torch.preserve_format


def training_precision(device, layout):
    """The autocast dtype for training: bfloat16 for a network with a CNN on a CUDA device that supports it.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed; everything else
    trains in float32.
    """
    if torch.device(device).type == "cuda" and _has_cnn(layout) and torch.cuda.is_bf16_supported():
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
        return torch.autocast(torch.device(self.device).type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

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
        # skorch's epoch, with a batch's size read from its first block rather than by
        # skorch's get_len walk over the nested batch (80 us a batch).
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

    def _set_training(self, training=True):
        # skorch calls train(training) on every module before every batch: a walk that sets
        # each submodule's flag (37 us a step for the concatenation MLP, 0.3 ms for a ResNet-34).
        # Reading the flags costs a quarter of that; the modes are set only when one differs.
        modules = [getattr(self, name + "_") for name in self._modules + self._criteria]
        trees = [m.modules() for m in modules if isinstance(m, torch.nn.Module)]
        if not all(sub.training == training for tree in trees for sub in tree):
            super()._set_training(training)

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


class BaseFusion(BaseEstimator):
    """Template for the fusion estimators: validation, training and prediction plumbing.

    Subclasses mix in a task (:class:`~skfusion._survival.SurvivalMixin` or
    :class:`~skfusion._classifier.ClassifierHeadMixin`) and implement
    ``_build_module(n_outputs)``; they may override ``_check_blocks(blocks)`` (default: every
    modality must be present in every row) and ``_infer_layout(X)`` (default: the modalities
    named by the ``modalities`` parameter).
    """

    _parameter_constraints = {
        "modalities": [SequenceOf(lambda v: isinstance(v, str), "modality names (str)"), None],
        "modality_dims": [
            SequenceOf(_int_in(1, np.inf), "positive ints"),
            dict,
            None,
        ],
        "hidden_dims": [
            SequenceOf(_int_in(1, MAX_WIDTH), f"layer widths (ints in [1, {MAX_WIDTH}])"),
            None,
        ],
        "standardize": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "callbacks": [list, None],
        "device": [StrOptions({"auto", "cpu", "cuda"}), str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A task mixin (left of the family in the bases) adds its own parameters.
        task = getattr(cls, "_task_parameter_constraints", {})
        cls._parameter_constraints = {**cls._parameter_constraints, **task}

    _missing_hint = "use a model that handles missing modalities (LateFusion*, missing='learn') or impute."

    # The modality kinds the family reads (see skfusion._data); families with per-modality
    # encoders add "image".
    _modality_kinds = ("vector", "sequence")

    def _infer_layout(self, X):
        return infer_layout(X, self.modalities, self.modality_dims)

    def _image_files(self):
        """``(image_size, augment, num_workers)``: how image columns of file paths are read.

        None for a family that reads no images; the families that train an image encoder
        take them from their parameters.
        """
        return None

    def _layout(self, X):
        """``_infer_layout`` of validated ``X``, refusing the modality kinds the family cannot read."""
        layout = self._infer_layout(X)
        require_kinds(layout, self._modality_kinds, self)
        files = self._image_files()
        if files is not None:
            layout = sized_images(layout, files[0])
        if not isinstance(X, pd.DataFrame) and self.modality_dims is None and len(layout) > 1:
            # A transformer with array output in front of the model loses the modality names.
            warnings.warn(
                f"X is an array: its {X.shape[1]} columns are split into halves, modalities "
                f"{' and '.join(f'{s.name!r} ({s.dim} columns)' for s in layout)}. To keep your modalities, give "
                "a DataFrame with '<modality>__<feature>' columns (set_output(transform='pandas') on the "
                "transformers in front of the model) or pass modality_dims.",
                UserWarning,
                stacklevel=4,
            )
        return layout

    def _check_blocks(self, blocks):
        require_present(blocks, list(blocks), self._missing_hint)

    def _callbacks(self, early_stopping):
        callbacks = list(self.callbacks or [])
        if early_stopping:
            callbacks.append(
                ("early_stopping", EarlyStopping(monitor="valid_loss", patience=self.n_iter_no_change, load_best=True))
            )
        return callbacks

    def _blocks(self, X, reset):
        X = check_X(self, X, reset=reset)
        if reset and len(X) < 2:
            raise ValueError(f"n_samples={len(X)}: fitting needs at least 2 samples.")
        if reset:
            self.layout_ = self._layout(X)
        blocks = to_blocks(X, self.layout_)
        self._check_blocks(blocks)
        if reset:
            warn_wholly_missing(blocks)
            self.standardization_ = fit_standardization(blocks) if self.standardize else {}
        standardize_blocks(blocks, self.standardization_)
        return blocks, len(X)

    def _early_stopping(self, targets):
        """Whether to hold out a validation split: ``early_stopping``, with ``"auto"`` resolved by the task."""
        if self.early_stopping == "auto":
            return self._auto_early_stopping(targets)
        return self.early_stopping

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the fusion model.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Modalities as ``name__i`` column blocks (or token columns); an array is split
            by ``modality_dims``.
        y : array-like
            Survival: structured array from :func:`sksurv.util.Surv.from_arrays`.
            Classification: labels, or a label-indicator matrix for multi-label targets.

        Returns
        -------
        self : object
        """
        device = resolve_device(self.device)
        blocks, n_samples = self._blocks(X, reset=True)
        targets = self._encode_target(y, n_samples)
        dataset = ModalityDataset(blocks, targets, device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        net_class = FusionNet
        if data_parallel():
            from ._distributed import DataParallelNet, shared_seed  # _distributed builds on FusionNet

            net_class, seed = DataParallelNet, shared_seed(seed, device)
        early_stopping = self._early_stopping(targets)
        split = None
        if early_stopping:
            split = ValidationSplit(self.validation_fraction, seed, self._split_strata(targets))
        with seeded(seed, device):
            self.net_ = net_class(
                module=self._build_module(self._n_outputs()).to(memory_format=weight_format(device, self.layout_)),
                criterion=TaskLoss(self._loss_function()),
                optimizer=torch.optim.Adam,
                optimizer__weight_decay=self.weight_decay,
                lr=self.lr,
                max_epochs=self.max_epochs,
                batch_size=resolve_batch_size(self.batch_size, n_samples),
                iterator_train=BatchIterator,
                iterator_train__shuffle=True,
                iterator_train__seed=seed,
                iterator_train__strata=self._batch_strata,
                iterator_valid=BatchIterator,
                iterator_valid__strata=self._batch_strata,
                train_split=split,
                callbacks=self._callbacks(early_stopping),
                device=device,
                verbose=self.verbose,
                amp_dtype=training_precision(device, self.layout_),
                **self._loader_settings(),
            )
            self.net_.fit(dataset, None)
        self.net_.module_.eval()  # the fitted network is used for inference only
        self._finish_fit(dataset, targets)
        return self

    def _loader_settings(self):
        """The iterators' settings for the image-file loader (none for a family that reads no images)."""
        if self._image_files() is None:
            return {}
        _, augment, workers = self._image_files()
        return {
            "iterator_train__augment": augment,
            "iterator_train__num_workers": workers,
            "iterator_valid__num_workers": workers,
        }

    def _predict_outputs(self, X):
        check_is_fitted(self)
        blocks, _ = self._blocks(X, reset=False)
        outputs = self.net_.predict_outputs(ModalityDataset(blocks, device=self.net_.device))
        bad = ~np.isfinite(outputs).all(axis=1)
        if bad.any():
            raise ValueError(
                f"the network's outputs are not finite for rows {_rows(bad)}: their inputs are "
                "far outside the range seen in fit (or the model diverged while training)."
            )
        return outputs
