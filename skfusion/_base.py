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

from ._compat import Interval, SequenceOf, StrOptions, _fit_context, check_sample_weight
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
from ._training import (
    EpochSelection,
    auto_max_epochs,
    auto_patience,
    auto_width,
    fit_linear_start,
    folds,
    linear_modalities,
    mean_curve_best,
    pooled_inputs,
    subsample,
    warn_if_cut_short,
    wide_and_deep,
)
from .modules._blocks import WideAndDeep

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
        # A generator given instead of a seed is shared: it goes on advancing from one
        # iterator to the next (the internal folds train an epoch per skorch call).
        self.generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)

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
        rng = np.random.RandomState(self.seed)
        n = len(dataset)
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


class BaseFusion(BaseEstimator):
    """Template for the fusion estimators: validation, training and prediction plumbing.

    Subclasses mix in a task (:class:`~skfusion._survival.SurvivalMixin` or
    :class:`~skfusion._classifier.ClassifierHeadMixin`) and implement
    ``_build_module(n_outputs)``; they may override ``_check_blocks(blocks)`` (default: every
    modality must be present in every row) and ``_infer_layout(X)`` (default: the modalities
    named by the ``modalities`` parameter).

    The task's ``_encode_target(y, n_samples, sample_weight)`` returns the targets as one
    float64 tensor whose last column is each row's weight (:func:`check_weights`, scaled by
    :func:`unit_mean`): the weights then travel with their rows through batches, validation
    splits, internal folds and the processes of a data-parallel job, and every loss reads
    them from its targets.
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
        "linear_path": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
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

    def _blocks(self, X, reset):
        X = check_X(self, X, reset=reset)
        if reset and len(X) < 2:
            raise ValueError(f"n_samples={len(X)}: fitting needs at least 2 samples.")
        if reset:
            self.layout_ = self._layout(X)
            if not getattr(self, "_pretrained", None):
                # The rows that "auto" widths scale to; a second stage keeps its pre-trained encoders'.
                self._width_rows = len(X)
        blocks = to_blocks(X, self.layout_)
        self._check_blocks(blocks)
        if reset:
            warn_wholly_missing(blocks)
            self.standardization_ = fit_standardization(blocks) if self.standardize else {}
        standardize_blocks(blocks, self.standardization_)
        return blocks, len(X)

    def _selection(self, targets):
        """How the number of epochs is chosen: ``"split"``, ``"folds"`` or None (all ``max_epochs``).

        ``early_stopping=True`` holds out ``validation_fraction`` of the rows; ``"auto"`` does
        so when that split would hold enough events (rows of the rarest class) to rank the
        epochs (the task's ``_auto_early_stopping``), and otherwise uses ``N_FOLDS``
        internal folds, when every stratum has a row for each.
        """
        if self.early_stopping == "auto":
            if self._auto_early_stopping(targets):
                return "split"
            return "folds" if folds(len(targets), self._fold_strata(targets), 0) is not None else None
        return "split" if self.early_stopping else None

    def _auto_width(self, value, reference, floor):
        """A width parameter's ``value``; for ``"auto"``, :func:`~skfusion._training.auto_width` of this fit's rows."""
        return auto_width(reference, self._width_rows, floor) if value == "auto" else value

    def _uses_linear_path(self):
        """Whether the network gets a linear start (a family without the ``linear_path`` parameter: never)."""
        return getattr(self, "linear_path", False)

    def _linear_start(self, dataset, targets, seed):
        """``(names, indicators, z rows, z, layer, alpha)`` of the linear start, or None.

        ``z`` holds :func:`~skfusion._training.pooled_inputs` of at most ``MAX_LINEAR_ROWS``
        rows (positions ``z rows``); ``layer`` is the penalized linear model fitted on them
        with ``alpha`` chosen by internal folds (``weight_decay`` when there are too few rows
        to fold).
        """
        if not self._uses_linear_path():
            return None
        names, indicators, width = linear_modalities(self.layout_, dataset.blocks)
        if not width:
            return None
        rows = subsample(len(dataset), seed)
        z = pooled_inputs(dataset.subset(rows), names, indicators)
        z_targets = targets[rows].to(z.device)
        strata = self._fold_strata(targets)
        splits = folds(len(rows), None if strata is None else strata[rows], seed)
        layer, alpha = fit_linear_start(z, z_targets, self._loss_function(), self._n_outputs(), splits, self.weight_decay)
        return {"names": names, "indicators": indicators, "rows": rows, "z": z, "layer": layer, "alpha": alpha}

    def _network(self, linear, layer=None):
        """The family's network, beside the linear start ``layer`` when there is one."""
        deep = self._build_module(self._n_outputs())
        if linear is None:
            return deep
        layer = linear["layer"] if layer is None else layer
        module = WideAndDeep(deep, linear["names"], linear["indicators"], layer.in_features, self._n_outputs())
        module.linear.load_state_dict(layer.state_dict())
        return module

    def _make_net(self, net_class, module, device, seed, batch_size, max_epochs, callbacks, linear, verbose):
        """The skorch network of one training run (the folds' and the final one)."""
        groups = []
        if linear is not None:
            # The linear start minimises the loss plus alpha / 2 ||W||^2: with the same decay on
            # its weights (Adam's coupled weight decay), it is where training starts from rest.
            groups = [
                ("linear.weight", {"weight_decay": linear["alpha"]}),
                ("linear.bias", {"weight_decay": 0.0}),
            ]
        return net_class(
            module=module.to(memory_format=weight_format(device, self.layout_)),
            criterion=TaskLoss(self._loss_function()),
            optimizer=torch.optim.Adam,
            optimizer__weight_decay=self.weight_decay,
            optimizer__param_groups=groups,
            lr=self.lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            iterator_train__seed=seed,
            iterator_train__strata=self._batch_strata,
            iterator_valid=BatchIterator,
            train_split=None,
            callbacks=callbacks,
            device=device,
            verbose=verbose,
            amp_dtype=training_precision(device, self.layout_),
            **self._loader_settings(),
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the fusion model.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Modalities as ``name__i`` column blocks (or token columns); an array is split
            by ``modality_dims``.
        y : array-like
            Survival: structured array from :func:`sksurv.util.Surv.from_arrays`.
            Classification: labels, or a label-indicator matrix for multi-label targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows: every loss (and the linear start, the held-out
            loss, the Breslow baseline) is a weighted mean, so only their ratios matter, and
            an integer weight is that many copies of the row (but for a Cox event's copies,
            which Efron's ties would treat as tied deaths: ``docs/design.md``). ``None``:
            equal weights.

        Returns
        -------
        self : object
        """
        device = resolve_device(self.device)
        blocks, n_samples = self._blocks(X, reset=True)
        targets = self._encode_target(y, n_samples, sample_weight)
        dataset = ModalityDataset(blocks, targets, device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        net_class = FusionNet
        if data_parallel():
            from ._distributed import DataParallelNet, shared_seed  # _distributed builds on FusionNet

            net_class, seed = DataParallelNet, shared_seed(seed, device)
        batch_size = resolve_batch_size(self.batch_size, n_samples)
        steps = ceil(n_samples / batch_size)
        max_epochs = auto_max_epochs(steps) if self.max_epochs == "auto" else self.max_epochs
        patience = auto_patience(steps) if self.n_iter_no_change == "auto" else self.n_iter_no_change
        selection = self._selection(targets)
        with seeded(seed, device):
            linear = self._linear_start(dataset, targets, seed)
        settings = (net_class, device, seed, batch_size)
        runs = []
        if selection == "folds":
            runs = self._fold_runs(dataset, targets, linear, settings, max_epochs, patience)
            best = mean_curve_best([run.losses_ for run in runs])
            self.net_ = self._final_run(dataset, linear, settings, best, list(self.callbacks or []))
            self.n_iter_ = self.best_epoch_ = best
        else:
            callbacks = list(self.callbacks or [])
            train = dataset
            if selection == "split":
                train, valid = ValidationSplit(self.validation_fraction, seed, self._split_strata(targets))(dataset)
                runs = [EpochSelection(valid, patience)]
                callbacks.append(("epoch_selection", runs[0]))
            self.net_ = self._final_run(train, linear, settings, max_epochs, callbacks)
            self.n_iter_ = len(self.net_.history)
            self.best_epoch_ = runs[0].best_epoch_ if runs else self.n_iter_
        self.linear_alpha_ = None if linear is None else linear["alpha"]
        self.net_.module_.eval()  # the fitted network is used for inference only
        self._finish_fit(dataset, targets)
        train_losses = self.net_.history[:, "train_loss"] if self.net_.history else []  # empty: epoch 0 kept
        warn_if_cut_short(self, train_losses, runs, max_epochs, patience)
        return self

    def _final_run(self, dataset, linear, settings, epochs, callbacks):
        """The network trained for ``epochs`` on ``dataset`` (initialised only when ``epochs`` is 0)."""
        net_class, device, seed, batch_size = settings
        with seeded(seed, device):
            net = self._make_net(
                net_class, self._network(linear), device, seed, batch_size, max(epochs, 1), callbacks, linear,
                self.verbose,
            )
            if epochs:
                net.fit(dataset, None)
            else:
                net.initialize()
                if linear is not None:
                    wide_and_deep(net.module_).use_deep = False  # epoch 0: the linear start alone
        return net

    def _fold_runs(self, dataset, targets, linear, settings, max_epochs, patience):
        """The :class:`~skfusion._training.EpochSelection` records of the internal folds, trained in step.

        Each fold's network trains one epoch at a time, all folds together, until the mean of
        their validation losses has not improved for ``patience`` epochs (or
        ``max_epochs``): the folds stop on the curve that chooses the epoch, not each on its own.
        """
        net_class, device, seed, batch_size = settings
        runs, nets = [], []
        for train, valid in folds(len(targets), self._fold_strata(targets), seed):
            layer = None
            if linear is not None:
                # The fold's own linear start, on its training rows only (alpha kept).
                kept = np.isin(linear["rows"], train)
                layer = fit_linear_start(
                    linear["z"][kept], targets[linear["rows"][kept]].to(linear["z"].device), self._loss_function(),
                    self._n_outputs(), None, linear["alpha"],
                )[0]
            run = EpochSelection(dataset.subset(valid), patience=np.inf, restore=False)
            with seeded(seed, device):
                net = self._make_net(
                    net_class, self._network(linear, layer), device, torch.Generator().manual_seed(seed), batch_size,
                    max_epochs, [("epoch_selection", run)], linear, 0,
                )
                net.initialize()
            runs.append(run)
            nets.append((net, dataset.subset(train)))
        for epoch in range(1, max_epochs + 1):
            for net, train in nets:
                with seeded(seed + epoch, device):
                    net.partial_fit(train, None, epochs=1)
            if epoch - mean_curve_best([run.losses_[1:] for run in runs]) - 1 >= patience:
                for run in runs:
                    run.stopped_ = True
                break
        return runs

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

    @property
    def network_(self):
        """The trained fusion network: ``net_``'s module without the linear start beside it."""
        module = self.net_.module_
        return module.deep if isinstance(module, WideAndDeep) else module

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
