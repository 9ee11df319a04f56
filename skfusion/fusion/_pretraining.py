"""Encoder pre-training: ``pretrain_encoders=`` / ``freeze_encoders=`` for any fusion family.

``pretrain_encoders=True`` first trains each encoder that has parameters (an LSTM on a
sequence modality, a CNN on an image modality) alone on the task, with its own temporary linear head (an ordinary
skorch fit of the same task and training settings, on the rows that have that modality),
then trains the whole network from those weights; ``freeze_encoders=True`` keeps them fixed
in the second stage (MedFuse's two-stage procedure, MedMod's early and late fusion). Used
by the concatenation, late-fusion, MedFuse, DAFT and MMTM families.

``pretrain_targets=`` pre-trains a modality's encoder on labels of its own instead of the
task's (MedFuse pre-trains its chest X-ray encoder on the 14 radiology findings). The labels
are columns of ``X`` named by the parameter, not arrays held by it: they then follow the
rows of ``X`` through cross-validation splits and pipelines, and ``clone`` copies a name.
"""

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from torch import nn

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._compat import StrOptions, _fit_context, check_sample_weight
from .._data import infer_layout, take_block_rows, take_rows
from .._engine import draw_seed
from .._images import IMAGE_FILE_CONSTRAINTS, VOLUME_FILE_CONSTRAINTS
from .._survival import SurvivalMixin
from ..modules.encoders import RESNETS, EncoderHead, has_parameters, load_encoders
from ..modules.volume_input import VOLUME_ENCODERS, volume_encoder

# Settings a pre-training fit shares with the estimator that starts it.
_SHARED_SETTINGS = (
    "standardize",
    "lr",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
    "device",
    "verbose",
    "modality_dims",
    "image_size",
    "volume_size",
    "window",
    "augment",
    "num_workers",
)

_BASE_CONSTRAINTS = {
    k: v for k, v in BaseFusion._parameter_constraints.items() if k not in ("modalities", "linear_path")
}

PRETRAINING_CONSTRAINTS = {
    "pretrain_encoders": ["boolean"],
    "freeze_encoders": ["boolean"],
    "pretrain_targets": [dict, None],
}

IMAGE_ENCODER_CONSTRAINTS = {
    "image_encoder": [StrOptions({"auto", *RESNETS, *VOLUME_ENCODERS}), nn.Module],
    **IMAGE_FILE_CONSTRAINTS,
    **VOLUME_FILE_CONSTRAINTS,
}


class ImageFileInputs:
    """``image_size=`` / ``volume_size=`` / ``window=`` / ``augment=`` / ``num_workers=``: how image and volume
    columns are read (left of BaseFusion)."""

    def _image_files(self):
        names = ("image_size", "volume_size", "window", "augment", "num_workers")
        return {name: getattr(self, name) for name in names}

    def _volume_encoder(self, spec):
        """The encoder of the volume modality ``spec`` (:func:`~skfusion.modules.volume_input.volume_encoder`)."""
        return volume_encoder(spec, self.image_encoder, self.volume_size, self.window)


class _EncoderPretrainer(ImageFileInputs, BaseFusion):
    """One modality's encoder and a linear head, fitted alone on the task: the first stage."""

    _parameter_constraints = {
        **{k: v for k, v in _BASE_CONSTRAINTS.items() if k not in ("hidden_dims", "dropout")},
        "modality": [str],
        "encoder": [callable],
        **SurvivalMixin._task_parameter_constraints,
        **IMAGE_FILE_CONSTRAINTS,
        **VOLUME_FILE_CONSTRAINTS,
    }

    _modality_kinds = ("vector", "sequence", "image")

    def __init__(
        self,
        *,
        modality,
        encoder,
        loss="cox",
        n_durations="auto",
        standardize=True,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change="auto",
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
    ):
        self.modality = modality
        self.encoder = encoder
        self.loss = loss
        self.n_durations = n_durations
        self.standardize = standardize
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.modality_dims = modality_dims
        self.image_size = image_size
        self.volume_size = volume_size
        self.window = window
        self.augment = augment
        self.num_workers = num_workers

    def _infer_layout(self, X):
        return infer_layout(X, [self.modality], self.modality_dims)

    def _build_module(self, n_outputs):
        return EncoderHead(self.modality, self.encoder(self.layout_[0]), n_outputs)


class _SurvivalPretrainer(SurvivalMixin, _EncoderPretrainer):
    pass


class _ClassifierPretrainer(ClassifierHeadMixin, _EncoderPretrainer):
    pass


class _EncoderPretraining:
    """``pretrain_encoders=`` / ``freeze_encoders=`` for a fusion family (left of BaseFusion).

    The family implements ``_make_encoder(spec)`` (a fresh encoder for one modality of
    ``layout_``) and builds its encoders with ``self._encoders(specs)`` in
    ``_build_module``. It may override ``_fine_tuning_rows(blocks, rng)`` (rows kept for the
    second stage; ``None`` keeps all) together with ``_selects_rows()``.
    """

    def _selects_rows(self):
        return False

    def _label_columns(self, X, required):
        """``{modality: columns}`` of ``pretrain_targets`` in the frame ``X``."""
        found = {}
        for modality, label in (self.pretrain_targets or {}).items():
            columns = [c for c in X.columns if str(c) == label or str(c).startswith(f"{label}__")]
            if required and not columns:
                raise ValueError(
                    f"pretrain_targets[{modality!r}] = {label!r} names no column of X: give a column {label!r} or a "
                    f"block '{label}__0', '{label}__1', ..."
                )
            found[modality] = columns
        return found

    def _without_labels(self, X):
        """``X`` without the ``pretrain_targets`` columns (targets, not modalities)."""
        if not self.pretrain_targets:
            return X
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                f"pretrain_targets names label columns of X, so X must be a pandas DataFrame; got {type(X).__name__}."
            )
        return X.drop(columns=[c for cols in self._label_columns(X, required=False).values() for c in cols])

    def _blocks(self, X, reset):
        return super()._blocks(self._without_labels(X), reset)

    def _pretrain_labels(self, X):
        """``{modality: (labels, labelled)}`` read from ``X``: 1-d classes or a 2-d indicator matrix."""
        names = [spec.name for spec in self.layout_]
        labels = {}
        for modality, columns in self._label_columns(X, required=True).items():
            if modality not in names or not has_parameters(self._make_encoder(self.layout_[names.index(modality)])):
                raise ValueError(
                    f"pretrain_targets names {modality!r}, which is not a fused modality with an encoder to "
                    f"pre-train; the modalities are {names}."
                )
            frame = X[columns]
            labelled = frame.notna().all(axis=1).to_numpy()
            values = frame.to_numpy()
            labels[modality] = (values[:, 0] if len(columns) == 1 else values, labelled)
        return labels

    def _fine_tuning_rows(self, blocks, rng):
        return None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model, after pre-training its encoders when ``pretrain_encoders=True``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Modalities as ``name__i`` column blocks and token columns; an array is split
            by ``modality_dims``.
        y : array-like
            Survival: structured array from :func:`sksurv.util.Surv.from_arrays`.
            Classification: labels, or a label-indicator matrix for multi-label targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows (every loss is a weighted mean), in both
            stages: an encoder pre-trained on the task gets its rows' weights times the
            class weights, one pre-trained on ``pretrain_targets`` its rows' weights.
            ``None``: equal weights.

        Returns
        -------
        self : object
        """
        if self.freeze_encoders and not self.pretrain_encoders:
            raise ValueError("freeze_encoders=True needs pretrain_encoders=True: there is nothing to freeze.")
        if self.pretrain_targets and not self.pretrain_encoders:
            raise ValueError("pretrain_targets needs pretrain_encoders=True: there is no pre-training to target.")
        return super().fit(X, y, sample_weight=sample_weight)

    def _fit_blocks(self, X, y, sample_weight, blocks):
        self._pretrained, self._pretraining = {}, None
        try:
            return super()._fit_blocks(X, y, sample_weight, blocks)
        finally:
            del self._pretrained, self._pretraining

    def _before_training(self, X, y, sample_weight, blocks, targets):
        """Pre-train the encoders (``pretrain_encoders=True``); the rows kept for fine-tuning (``None``: all)."""
        if not (self.pretrain_encoders or self._selects_rows()):
            return None
        weight = check_sample_weight(sample_weight, len(targets))
        rng = check_random_state(self.random_state)
        if self.pretrain_encoders:
            seeds = {
                spec.name: draw_seed(rng)
                for spec in self.layout_
                if has_parameters(self._make_encoder(spec))
            }
            inputs = (X, y, blocks, targets[:, -1].numpy(), weight, seeds)
            fitted = self._pretrain(inputs)
            self._pretrained = {name: model.network_.encoder.state_dict() for name, model in fitted.items()}
            epochs = {name: model.best_epoch_ for name, model in fitted.items()}
        rows = self._fine_tuning_rows(blocks, rng)
        if self.pretrain_encoders:
            self._pretraining = (inputs, epochs, rows)
        return rows

    def _pretrain(self, inputs, epochs=None, kept=None):
        """``{name: fitted pre-training model}`` of every encoder with parameters, trained alone on its present rows.

        ``inputs`` is ``(X, y, blocks, task_weight, sample_weight, seeds)``: each encoder
        trains on the task's ``y`` with ``task_weight`` (the rows' weights times the class
        weights), or on its modality's ``pretrain_targets`` labels (as a classifier) on the
        rows that have them with ``sample_weight``, from its seed. With ``epochs`` (``{name:
        epochs}``), each trains that many epochs without validation, on the rows of the mask
        ``kept`` only; an encoder given 0 epochs is left out (it starts untrained).
        """
        X, y, blocks, task_weight, sample_weight, seeds = inputs
        targets = self._pretrain_labels(X)
        survival = isinstance(self, SurvivalMixin)
        settings = {key: getattr(self, key) for key in _SHARED_SETTINGS}
        task_settings = {"loss": self.loss, "n_durations": self.n_durations} if survival else {}
        fitted = {}
        for spec in self.layout_:
            if spec.name not in seeds or (epochs is not None and not epochs[spec.name]):
                continue
            present = blocks[spec.name]["present"].numpy()
            if kept is not None:
                present = present & kept
            if spec.name in targets:
                target, labelled = targets[spec.name]
                pretrainer, kwargs, weight = _ClassifierPretrainer, settings, sample_weight
                present = present & labelled
            else:
                target, weight = y, task_weight
                pretrainer = _SurvivalPretrainer if survival else _ClassifierPretrainer
                kwargs = {**settings, **task_settings}
            if epochs is not None:
                kwargs = {**kwargs, "max_epochs": epochs[spec.name], "early_stopping": False}
            rows = None if present.all() else np.flatnonzero(present)
            model = pretrainer(modality=spec.name, encoder=self._make_encoder, random_state=seeds[spec.name], **kwargs)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model._fit_read(
                    self, (spec,), take_block_rows({spec.name: blocks[spec.name]}, rows), take_rows(target, rows),
                    take_rows(weight, rows),
                )
            if epochs is None:
                # A repeat for given epochs warns of nothing the first fit has not said.
                for warning in caught:
                    # The user knows the estimator, not its private first stage: name them both.
                    stage = f"{type(self).__name__}'s pre-training of {spec.name!r}"
                    message = str(warning.message).replace(type(model).__name__, stage)
                    warnings.warn_explicit(message, warning.category, warning.filename, warning.lineno)
            fitted[spec.name] = model
        return fitted

    @contextmanager
    def _fold_encoders(self, valid):
        """Inside the block, the encoders are pre-trained without the internal fold's held-out rows ``valid``.

        An encoder pre-trained on all rows has seen the rows that choose the number of
        epochs, and a fold's validation curve would reward fitting them: each fold pre-trains
        its own, on the other rows, for the epochs the pre-training on all rows chose (the
        folds' linear start does the same, :meth:`~skfusion._base.BaseFusion._fold_runs`).
        """
        if not self._pretrained:
            yield
            return
        inputs, epochs, rows = self._pretraining
        kept = np.ones(len(inputs[3]), dtype=bool)
        kept[valid if rows is None else rows[valid]] = False
        all_rows = self._pretrained
        fitted = self._pretrain(inputs, epochs, kept)
        self._pretrained = {name: model.network_.encoder.state_dict() for name, model in fitted.items()}
        try:
            yield
        finally:
            self._pretrained = all_rows

    def _encoders(self, specs):
        """Fresh encoders for ``specs``, loaded with the pre-trained weights (and frozen) if any."""
        encoders = nn.ModuleDict({spec.name: self._make_encoder(spec) for spec in specs})
        return load_encoders(encoders, self._pretrained, self.freeze_encoders)
