"""The template of the image-EHR pretraining transformers (MedCAM, ConVIRT, VICReg, ALIGN).

:class:`BasePairedPretraining` owns ``fit`` (find the two modalities, keep the rows that have
both, train :class:`~skfusion.modules.ssl.PairedEncoders` with skorch) and ``transform``
(embed the modalities that ``_output_modalities`` names, needing only their columns). A
subclass names its criterion in ``_criterion()``: the loss is the only difference. The
epoch is chosen on held-out paired rows as ``CLMBREmbedder`` chooses it
(:func:`~skfusion._training.held_out_split`), their loss computed in training-sized batches
(:class:`PairedNet`).
"""

from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._compat import Interval, StrOptions, _fit_context
from .._data import (
    SEPARATOR,
    ModalityDataset,
    check_unique_columns,
    infer_layout,
    is_grouped_frame,
    sized_images,
    to_blocks,
)
from .._engine import (
    AlignmentNet,
    BalancedBatches,
    BatchIterator,
    draw_seed,
    make_net,
    resolve_device,
    seeded,
    training_precision,
    weight_format,
)
from .._images import IMAGE_FILE_CONSTRAINTS
from .._training import HELD_OUT_PARAMETERS, MIN_VALIDATION_ROWS, held_out_split, record_epochs
from ..modules.encoders import image_encoder
from ..modules.ssl import PairedEncoders

_MIN_PAIRED_ROWS = 2


def find_pair(X, image, ehr, modality_dims, raw_image=False):
    """The ``(image, ehr)`` :class:`~skfusion._data.ModalitySpec` pair of ``X``.

    ``ehr=None`` takes the first sequence modality other than ``image`` (else the first
    modality); ``image=None`` the first vector modality other than ``ehr``, the rule of the
    MedFuse family. A plain array is split by ``modality_dims`` (halves by default: EHR first,
    then the image). With ``raw_image`` (a backbone reads the images) the image is a raw
    column of ``(H, W, C)`` arrays or image files.
    """
    layout = infer_layout(X, None, modality_dims)
    names = [spec.name for spec in layout]
    ehr = ehr or ([s.name for s in layout if s.kind == "sequence" and s.name != image] + names)[0]
    kind = "image" if raw_image else "vector"
    image = image or next((s.name for s in layout if s.kind == kind and s.name != ehr), None)
    if image is None or len(names) < 2:
        raise ValueError(
            f"image-EHR pretraining needs two modalities, an image embedding and an EHR time series; X has "
            f"only {names} ({X.shape[1]} feature(s))."
        )
    if image == ehr:
        raise ValueError(f"image and ehr must be different modalities; both are {image!r}.")
    image_spec, ehr_spec = infer_layout(X, [image, ehr], modality_dims)
    if raw_image and image_spec.kind != "image":
        raise ValueError(
            f"with a backbone, the image modality {image!r} must be a raw column holding one (H, W, C) image "
            f"array (C in (1, 3)) or image file per row; it is of kind {image_spec.kind!r} (a 2-D cell is a token "
            "array: give a grayscale image its channel axis, image[..., None]; or drop backbone= to adapt an "
            "embedding)."
        )
    if not raw_image and image_spec.kind != "vector":
        raise ValueError(
            f"the image modality {image!r} must be an embedding block '{image}__0', '{image}__1', ...; it is a "
            f"of kind {image_spec.kind!r}: pass a backbone= to train on raw (H, W, C) images, or embed them with "
            "skfusion.encoders.ImageEmbedder first."
        )
    return image_spec, ehr_spec


def read_blocks(estimator, X, specs, reset, also=()):
    """The blocks of ``specs`` and ``also`` (of ``also`` at fit only, for a frame), with scikit-learn's input checks.

    As in scikit-learn, ``n_features_in_`` and ``feature_names_in_`` describe the whole ``X``
    seen at fit. A later call on a grouped frame reads the columns of ``specs`` by name, so a
    frame holding just those columns will do (the image-only ``transform`` and ``predict``); a
    missing one is a ValueError naming it. An array is read by position, checked whole: as
    the array seen at fit, or as the frame seen at fit (scikit-learn's warning that it has no
    feature names), so it has all of that frame's columns.
    """
    check_unique_columns(X)
    if not isinstance(specs[0].columns[0], str):  # the layout of an array: columns by position
        X = validate_data(estimator, X, reset=reset, dtype=np.float32, ensure_all_finite=False)
        return to_blocks(X, (*specs, *also))
    if not is_grouped_frame(X):
        X = validate_data(estimator, X, reset=False, skip_check_array=True)
        X = pd.DataFrame(X, columns=estimator.feature_names_in_)
    columns = [c for spec in specs for c in spec.columns]
    absent = [c for c in columns if c not in X.columns]
    if absent:
        spec = next(s for s in specs if absent[0] in s.columns)
        raise ValueError(
            f"{type(estimator).__name__}: X lacks column {absent[0]!r} of the {spec.name!r} modality seen in fit "
            f"({len(absent)} column(s) missing)."
        )
    if reset:
        validate_data(estimator, X, reset=True, skip_check_array=True)
    return to_blocks(X, (*specs, *also) if reset else tuple(specs))


_PAIRED_PARAMETERS = {
    "image": [str, None],
    "backbone": [torch.nn.Module, None],
    "ehr": [str, None],
    "projection_dim": [Interval(Integral, 1, None, closed="left")],
    "hidden_dim": [Interval(Integral, 1, None, closed="left")],
    "lstm_dim": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 2, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "device": [StrOptions({"auto", "cpu", "cuda"}), str],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "modality_dims": [list, tuple, dict, None],
    **HELD_OUT_PARAMETERS,
    **IMAGE_FILE_CONSTRAINTS,
}


class PairedNet(AlignmentNet):
    """The network of a pretraining transformer: its held-out loss is the mean of training-sized batches.

    A contrastive loss over all ``N`` held-out rows at once would build an ``N x N``
    similarity matrix, and would measure another task than the one trained: each row
    told from ``N - 1`` others instead of ``batch_size - 1`` (VICReg's variance and
    covariance are batch statistics too). The held-out rows are cut, in their order, into
    the even batches of at most ``batch_size`` that training deals
    (:class:`~skfusion._engine.BalancedBatches` unshuffled): the same batches every epoch,
    so the losses of two epochs compare, and memory bounded by a training step's. The
    criterion is in evaluation mode (ALIGN's noisy pairs are for training only); the
    batches' losses are averaged weighted by their rows.
    """

    def dataset_loss(self, dataset):
        self.module_.eval()
        self.criterion_.eval()
        workers = self.get_params_for("iterator_valid").get("num_workers", 0)
        total = 0.0
        with torch.inference_mode(), self.autocast():
            for batch, _ in BalancedBatches(dataset, self.batch_size, num_workers=workers):
                rows = len(next(iter(batch.values()))["present"])
                total += self.get_loss(self.infer(batch), None).item() * rows
        return total / len(dataset)


class BasePairedPretraining(TransformerMixin, BaseEstimator):
    """Fit on paired image + EHR rows without labels; transform needs only the output modalities.

    Subclasses implement ``_criterion()`` (the loss module) and may override
    ``_learn_temperature()`` and ``_output_modalities()`` (default: from ``output``).
    """

    _parameter_constraints = _PAIRED_PARAMETERS

    def _criterion(self):
        raise NotImplementedError

    def _learn_temperature(self):
        return False

    def _temperature(self):
        return getattr(self, "temperature", 1.0)

    def _output_modalities(self):
        """The roles ``transform`` returns, in order: a subset of ("image", "ehr")."""
        return {"image": ("image",), "ehr": ("ehr",), "both": ("image", "ehr")}[self.output]

    def _output_specs(self):
        roles = {"image": self.image_spec_, "ehr": self.ehr_spec_}
        return [roles[role] for role in self._output_modalities()]

    def _read(self, X, reset):
        """Validate ``X`` and return its blocks: both modalities at fit, the output ones after."""
        if reset:
            if not is_grouped_frame(X):
                # Check a plain array before splitting it into modalities.
                X = validate_data(self, X, reset=True, dtype=np.float32, ensure_all_finite=False)
            image_spec, self.ehr_spec_ = find_pair(
                X, self.image, self.ehr, self.modality_dims, raw_image=self.backbone is not None
            )
            (self.image_spec_,) = sized_images((image_spec,), self.image_size)
        outputs = self._output_specs()
        others = [s for s in (self.image_spec_, self.ehr_spec_) if s not in outputs]
        return read_blocks(self, X, outputs, reset, also=others)

    def _paired_rows(self, blocks):
        image, ehr = blocks[self.image_spec_.name], blocks[self.ehr_spec_.name]
        n = len(image["present"])
        paired = np.flatnonzero((image["present"] & ehr["present"]).numpy())
        if len(paired) < _MIN_PAIRED_ROWS:
            raise ValueError(
                f"{type(self).__name__} needs at least {_MIN_PAIRED_ROWS} rows with both the image "
                f"{self.image_spec_.name!r} and the EHR {self.ehr_spec_.name!r} (positive pairs); got {len(paired)} "
                f"paired row(s) out of {n} sample(s)."
            )
        return paired

    def _seed(self):
        return draw_seed(self.random_state)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the encoders on the rows that have both an image and an EHR series.

        Rows lacking either modality (an all-NaN block, a ``None`` cell) are left out of the
        fit; ``n_paired_`` counts the rows used.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            The image embedding block and the EHR time-series column; an array is split by
            ``modality_dims``.
        y : None
            Ignored: the pretraining uses no labels.

        Returns
        -------
        self : object
        """
        blocks = self._read(X, reset=True)
        paired = self._paired_rows(blocks)
        self.n_paired_ = len(paired)
        device = resolve_device(self.device)
        dataset = ModalityDataset(blocks, device=device).subset(paired)
        seed = self._seed()
        # A contrastive loss depends on its batch's size: a held-out batch is a full training one.
        train, selection = held_out_split(self, dataset, seed, max(MIN_VALIDATION_ROWS, self.batch_size))
        with seeded(seed, device):
            # The estimator's backbone is left untouched: a copy is fine-tuned.
            encoder = None if self.backbone is None else image_encoder(self.image_spec_, self.backbone)
            image_dim = self.image_spec_.dim if encoder is None else encoder.out_dim
            module = PairedEncoders(
                self.image_spec_.name,
                self.ehr_spec_.name,
                image_dim,
                self.ehr_spec_.dim,
                self.projection_dim,
                self.hidden_dim,
                self.lstm_dim,
                self._temperature(),
                self._learn_temperature(),
                encoder,
            )
            module = module.to(memory_format=weight_format(device, module))
            self.net_ = make_net(
                module,
                self._criterion(),
                device=device,
                batch_size=self.batch_size,
                seed=seed,
                lr=self.lr,
                weight_decay=self.weight_decay,
                # CLIP and ALIGN leave the logit scale out of the weight decay.
                param_groups=[("log_scale", {"weight_decay": 0.0})],
                max_epochs=self.max_epochs,
                callbacks=[] if selection is None else [("epoch_selection", selection)],
                iterator=BalancedBatches,
                augment=self.augment,
                num_workers=self.num_workers,
                verbose=self.verbose,
                amp_dtype=training_precision(device, [self.image_spec_]),
                net_class=PairedNet,
            )
            self.net_.fit(train, None)
        self.net_.module_.eval()
        record_epochs(self, self.net_, selection)
        return self

    def _embed(self, blocks, role):
        """Embeddings (n, p) of one role, in batches, NaN where the row lacks the modality."""
        spec = self.image_spec_ if role == "image" else self.ehr_spec_
        module = self.net_.module_.eval()
        dataset = ModalityDataset({spec.name: blocks[spec.name]}, device=self.net_.device)
        parts = []
        with torch.inference_mode(), self.net_.autocast():
            for batch, _ in BatchIterator(dataset, self.batch_size, num_workers=self.num_workers):
                block = batch[spec.name]
                z = module.embed_image(block) if role == "image" else module.embed_ehr(block)[0]
                parts.append(z.float().cpu())
        z = torch.cat(parts).numpy()
        z[~blocks[spec.name]["present"].numpy()] = np.nan
        return z

    def transform(self, X):
        """Embed the output modalities; only their columns are read.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            A frame needs the columns of the output modalities only (for the image: the
            ``image`` block); an array must have the width seen in ``fit``.

        Returns
        -------
        Xt : pandas.DataFrame or ndarray of shape (n_samples, n_outputs)
            The embeddings, concatenated in the order image, EHR: a frame with columns
            ``"{modality}__{i}"`` (same index) for a frame, an array for an array. A row
            without a modality gets NaN in that modality's columns.
        """
        check_is_fitted(self)
        blocks = self._read(X, reset=False)
        z = np.hstack([self._embed(blocks, role) for role in self._output_modalities()])
        if isinstance(X, pd.DataFrame) and is_grouped_frame(X):
            return pd.DataFrame(z, index=X.index, columns=self.get_feature_names_out())
        return z

    def get_feature_names_out(self, input_features=None):
        """Output column names: ``"{modality}__{i}"`` for each output modality, image first.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Unused: the names follow the modalities seen in ``fit`` (scikit-learn's signature).

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self)
        return np.asarray(
            [f"{spec.name}{SEPARATOR}{i}" for spec in self._output_specs() for i in range(self.projection_dim)],
            dtype=object,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
