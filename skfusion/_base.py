"""The shared base of every fusion estimator.

A public estimator is ``(task mixin, fusion family)``: the family builds the
``torch.nn.Module`` (``_build_module``) and says which missing modalities it can use
(``_check_blocks``); the task mixin (survival or classification) encodes ``y``, provides the
loss and turns network outputs into predictions. :class:`BaseFusion` owns the public ``fit``
and its validation (the template method), and trains through the engine's
:class:`~skfusion._engine.FusionNet`, a skorch ``NeuralNet`` that iterates over tensors
already on the device, by index.
"""

import warnings
from contextlib import nullcontext
from math import ceil
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._compat import Interval, SequenceOf, StrOptions, _fit_context
from ._data import (
    ModalityDataset,
    _rows,
    check_X,
    fit_standardization,
    infer_layout,
    require_kinds,
    require_present,
    sized_images,
    standardize_blocks,
    take_block_rows,
    take_rows,
    to_blocks,
    warn_wholly_missing,
)
from ._images import volume_cache
from ._distributed import DataParallelNet, shared_seed
from ._engine import (
    FusionNet,
    TaskLoss,
    ValidationSplit,
    data_parallel,
    draw_seed,
    make_net,
    resolve_batch_size,
    resolve_device,
    seeded,
    training_precision,
    weight_format,
)
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


class BaseFusion(BaseEstimator):
    """Template for the fusion estimators: validation, training and prediction plumbing.

    Subclasses mix in a task (:class:`~skfusion._survival.SurvivalMixin` or
    :class:`~skfusion._classifier.ClassifierHeadMixin`) and implement
    ``_build_module(n_outputs)`` (the family's ``torch.nn.Module``). They may override
    ``_infer_layout(X)`` (default: the modalities named by ``modalities``),
    ``_modality_kinds`` (the kinds of modality read), ``_check_blocks(blocks)`` (default:
    every modality present in every row), ``_image_files()`` (how image file columns are
    read; None: none), ``_uses_linear_path()``, ``_before_training(...)`` (a first stage
    between reading the inputs and training) and ``_fold_encoders(valid)`` (the context an
    internal fold's network is built in). ``docs/extending.md`` gives the order of the calls.

    The task's ``_encode_target(y, n_samples, sample_weight)`` returns the targets as one
    float64 tensor whose last column is each row's weight
    (:func:`~skfusion._engine.check_weights`, scaled by :func:`~skfusion._engine.unit_mean`):
    the weights then travel with their rows through batches, validation splits, internal
    folds and the processes of a data-parallel job, and every loss reads them from its
    targets.
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
        """``{"image_size", "volume_size", "window", "augment", "num_workers"}``: how image and volume columns of
        file paths are read.

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
            layout = sized_images(layout, files["image_size"], files["volume_size"], files["window"])
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
            self._width_rows = len(X)  # the rows that "auto" widths scale to
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

    def _linear_intercept(self):
        """Whether the linear start fits its bias (the task's loss depends on a constant added to the outputs)."""
        return True

    def _uses_linear_path(self):
        """Whether the network gets a linear start (a family without the ``linear_path`` parameter: never)."""
        return getattr(self, "linear_path", False)

    def _linear_start(self, dataset, targets, seed, split=None):
        """The linear start, a dict of ``names``, ``indicators``, ``rows``, ``z``, ``layer`` and ``alpha``, or None.

        ``z`` holds :func:`~skfusion._training.pooled_inputs` of at most ``MAX_LINEAR_ROWS``
        rows (positions ``z rows``). Without ``split``, ``layer`` is the penalized linear
        model fitted on them with ``alpha`` chosen by internal folds (``weight_decay`` when
        there are too few rows to fold). With the ``(train, valid)`` positions of the
        validation split, ``alpha`` is chosen on that split and ``layer`` is fitted on the
        training rows only: the held-out rows that choose the epoch, epoch 0 included, are
        held out from the start too.
        """
        if not self._uses_linear_path():
            return None
        names, indicators, width = linear_modalities(self.layout_, dataset.blocks)
        if not width:
            return None
        rows = subsample(len(dataset), seed)
        z = pooled_inputs(dataset.subset(rows), names, indicators)
        z_targets = targets[rows].to(z.device)
        fit_rows = None
        if split is None:
            strata = self._fold_strata(targets)
            splits = folds(len(rows), None if strata is None else strata[rows], seed)
        else:
            held_out = np.isin(rows, split[1])
            fit_rows = np.flatnonzero(~held_out)
            splits = [(fit_rows, np.flatnonzero(held_out))]
        layer, alpha = fit_linear_start(
            z, z_targets, self._loss_function(), self._n_outputs(), splits, self.weight_decay, fit_rows,
            self._linear_intercept(),
        )
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
        augment, workers = self._loader_settings()
        return make_net(
            module.to(memory_format=weight_format(device, module)),
            TaskLoss(self._loss_function()),
            device=device,
            batch_size=batch_size,
            seed=seed,
            lr=self.lr,
            weight_decay=self.weight_decay,
            param_groups=groups,
            max_epochs=max_epochs,
            strata=self._batch_strata,
            augment=augment,
            num_workers=workers,
            callbacks=callbacks,
            verbose=verbose,
            amp_dtype=training_precision(device, self.layout_),
            net_class=net_class,
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
        blocks, _ = self._blocks(X, reset=True)
        with volume_cache(blocks):
            return self._fit_blocks(X, y, sample_weight, blocks)

    def _fit_read(self, reader, layout, blocks, y, sample_weight):
        """``fit`` on ``blocks``, which the fitted estimator ``reader`` read from its ``X`` for ``layout``.

        ``X`` is not read again: the model takes ``reader``'s record of the input features
        (``n_features_in_``, ``feature_names_in_``), standardizes over the rows of
        ``blocks`` and scales its ``"auto"`` widths to them, as ``fit`` on those rows of
        ``X`` would.
        """
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(reader, name):
                setattr(self, name, getattr(reader, name))
        self.layout_ = tuple(layout)
        self._width_rows = len(next(iter(blocks.values()))["present"])
        self.standardization_ = fit_standardization(blocks) if self.standardize else {}
        standardize_blocks(blocks, self.standardization_)
        return self._fit_blocks(None, y, sample_weight, blocks)

    def _fit_blocks(self, X, y, sample_weight, blocks):
        """``fit`` from the ``blocks`` that ``X`` became (``layout_`` and ``standardization_`` set)."""
        device = resolve_device(self.device)
        n_samples = len(next(iter(blocks.values()))["present"])
        targets = self._encode_target(y, n_samples, sample_weight)
        rows = self._before_training(X, y, sample_weight, blocks, targets)
        if rows is not None:
            blocks, n_samples = take_block_rows(blocks, rows), len(rows)
            weight = None if sample_weight is None else take_rows(sample_weight, rows)
            targets = self._encode_target(take_rows(y, rows), n_samples, weight)
        dataset = ModalityDataset(blocks, targets, device)
        seed = draw_seed(self.random_state)
        net_class = FusionNet
        if data_parallel():
            net_class, seed = DataParallelNet, shared_seed(seed, device)
        batch_size = resolve_batch_size(self.batch_size, n_samples)
        steps = ceil(n_samples / batch_size)
        max_epochs = auto_max_epochs(steps) if self.max_epochs == "auto" else self.max_epochs
        patience = auto_patience(steps) if self.n_iter_no_change == "auto" else self.n_iter_no_change
        selection = self._selection(targets)
        split = None
        if selection == "split":
            split = ValidationSplit(self.validation_fraction, seed, self._split_strata(targets)).positions(n_samples)
        with seeded(seed, device):
            linear = self._linear_start(dataset, targets, seed, split)
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
                train, valid = dataset.subset(split[0]), dataset.subset(split[1])
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

    def _before_training(self, X, y, sample_weight, blocks, targets):
        """What a family does between the validation of the fit's inputs and the training: the rows to train on.

        Called once per ``fit`` with its arguments (``X`` is None where a fusion estimator
        fits a pre-training model on blocks it read) and what they became (``blocks`` of
        :func:`~skfusion._data.to_blocks`, standardized; ``targets`` of ``_encode_target``),
        so that no stage converts ``X`` again. Returns the positions of the rows to train on
        (``None``: all of them), whose targets ``_encode_target`` then encodes anew. Nothing
        by default; encoder pre-training and contrastive alignment train their first stage
        here.
        """
        return None

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
                    self._n_outputs(), None, linear["alpha"], intercept=self._linear_intercept(),
                )[0]
            run = EpochSelection(dataset.subset(valid), patience=np.inf, restore=False)
            with self._fold_encoders(valid), seeded(seed, device):
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

    def _fold_encoders(self, valid):
        """A context to build an internal fold's network in, one that has not seen the fold's held-out rows ``valid``.

        Nothing to do for a network trained from scratch; encoder pre-training overrides it
        (:class:`~skfusion.fusion._pretraining._EncoderPretraining`).
        """
        return nullcontext()

    def _loader_settings(self):
        """``(augment, num_workers)`` of the image-file loader (no augmentation, no workers without image files)."""
        files = self._image_files()
        return (False, 0) if files is None else (files["augment"], files["num_workers"])

    @property
    def network_(self):
        """The trained fusion network: ``net_``'s module without the linear start beside it."""
        module = self.net_.module_
        return module.deep if isinstance(module, WideAndDeep) else module

    def _predict_outputs(self, X):
        check_is_fitted(self)
        blocks, _ = self._blocks(X, reset=False)
        return self._outputs(blocks)

    def _outputs(self, blocks):
        """The network's outputs on ``blocks`` (standardized), refusing non-finite ones."""
        outputs = self.net_.predict_outputs(ModalityDataset(blocks, device=self.net_.device))
        bad = ~np.isfinite(outputs).all(axis=1)
        if bad.any():
            raise ValueError(
                f"the network's outputs are not finite for rows {_rows(bad)}: their inputs are "
                "far outside the range seen in fit (or the model diverged while training)."
            )
        return outputs
