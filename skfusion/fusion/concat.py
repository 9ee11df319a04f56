"""Concatenation fusion and the unimodal baselines (Zhang et al., 2026, Fig. 1a and Table 1)."""

from numbers import Integral

from torch import nn

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._compat import Interval, StrOptions
from .._data import infer_layout, require_present
from .._docstrings import fill_doc
from .._survival import SurvivalMixin
from .._training import LSTM_WIDTH
from ..modules._blocks import default_hidden_dims
from ..modules.concat import ConcatFusion
from ..modules.encoders import make_encoder
from ._pretraining import IMAGE_ENCODER_CONSTRAINTS, PRETRAINING_CONSTRAINTS, ImageFileInputs, _EncoderPretraining


class _ModalityEncoders(ImageFileInputs):
    """``sequence_encoder=`` / ``lstm_dim=``: one encoder per modality (left of BaseFusion).

    The identity for a vector block; for a sequence modality the MedFuse EHR encoder (a
    two-layer LSTM, dropout ``dropout`` on its output) or the masked token mean; a CNN
    (``image_encoder``) for an image modality.
    """

    _encoder_constraints = {
        "sequence_encoder": [StrOptions({"lstm", "mean"})],
        "lstm_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        **IMAGE_ENCODER_CONSTRAINTS,
    }

    _modality_kinds = ("vector", "sequence", "image")

    def _make_encoder(self, spec):
        if spec.volume:
            return self._volume_encoder(spec)
        sequence = None if self.sequence_encoder == "lstm" else False
        width = self._auto_width(self.lstm_dim, LSTM_WIDTH, spec.dim)
        return make_encoder(spec, width, dropout=self.dropout, sequence=sequence, image=self.image_encoder)


class _Concat(_ModalityEncoders, _EncoderPretraining, BaseFusion):
    _parameter_constraints = {
        **BaseFusion._parameter_constraints,
        **_ModalityEncoders._encoder_constraints,
        **PRETRAINING_CONSTRAINTS,
        "missing": [StrOptions({"raise", "learn"})],
    }

    def _check_blocks(self, blocks):
        if self.missing == "raise":
            require_present(blocks, list(blocks), "pass missing='learn' to substitute a learnable vector.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A block all NaN in a row is a missing modality, which missing="learn" substitutes.
        tags.input_tags.allow_nan = self.missing == "learn"
        return tags

    def _build_module(self, n_outputs):
        encoders = self._encoders(self.layout_)
        width = sum(encoder.out_dim for encoder in encoders.values())
        hidden = self.hidden_dims if self.hidden_dims is not None else default_hidden_dims(width)
        return ConcatFusion(encoders, hidden, n_outputs, self.dropout, learn_missing=self.missing == "learn")


class _Unimodal(_ModalityEncoders, BaseFusion):
    _parameter_constraints = {
        **{k: v for k, v in BaseFusion._parameter_constraints.items() if k != "modalities"},
        **_ModalityEncoders._encoder_constraints,
        "modality": [str, None],
    }

    def _infer_layout(self, X):
        # Without a name, the first modality of X is the one modelled.
        names = None if self.modality is None else [self.modality]
        return infer_layout(X, names, self.modality_dims)[:1]

    def _build_module(self, n_outputs):
        spec = self.layout_[0]
        encoder = self._make_encoder(spec)
        hidden = self.hidden_dims if self.hidden_dims is not None else default_hidden_dims(encoder.out_dim)
        return ConcatFusion(nn.ModuleDict({spec.name: encoder}), hidden, n_outputs, self.dropout)


@fill_doc
class UnimodalSurvival(SurvivalMixin, _Unimodal):
    """MLP survival (time-to-event) model on one modality: the image-only and EHR-only baselines of Zhang et al. (2026).

    Parameters
    ----------
    modality : str, default=None
        The modality to model; ``None`` takes the first modality of ``X``.
    {sequence_encoder}
    {survival_task}
    {training}
    {modality_dims}

    Attributes
    ----------
    {survival_attributes}
    {attributes}

    See Also
    --------
    ConcatSurvival : all modalities concatenated.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.2 and Table 1.

    Examples
    --------
    >>> from skfusion import UnimodalSurvival
    >>> from skfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> model = UnimodalSurvival(modality='img', random_state=0).fit(X, y)
    >>> model.predict_survival_function(X.iloc[:2], return_array=True).shape == (2, len(model.unique_times_))
    True
    >>> bool(model.score(X, y) > 0.6)
    True
    """

    def __init__(
        self,
        *,
        modality=None,
        sequence_encoder="lstm",
        lstm_dim="auto",
        image_encoder="auto",
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
        loss="cox",
        n_durations="auto",
        hidden_dims=None,
        standardize=True,
        linear_path=True,
        dropout=0.1,
        lr=1e-3,
        weight_decay=1e-2,
        batch_size="auto",
        max_epochs="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change="auto",
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.modality = modality
        self.sequence_encoder = sequence_encoder
        self.lstm_dim = lstm_dim
        self.image_encoder = image_encoder
        self.image_size = image_size
        self.volume_size = volume_size
        self.window = window
        self.augment = augment
        self.num_workers = num_workers
        self.loss = loss
        self.n_durations = n_durations
        self.hidden_dims = hidden_dims
        self.standardize = standardize
        self.linear_path = linear_path
        self.dropout = dropout
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


@fill_doc
class UnimodalClassifier(ClassifierHeadMixin, _Unimodal):
    """MLP classification model on one modality: the image-only and EHR-only baselines of Zhang et al. (2026).

    Parameters
    ----------
    modality : str, default=None
        The modality to model; ``None`` takes the first modality of ``X``.
    {sequence_encoder}
    {classifier_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {classifier_attributes}
    {attributes}

    See Also
    --------
    ConcatClassifier : all modalities concatenated.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.2 and Table 1.

    Examples
    --------
    >>> from skfusion import UnimodalClassifier
    >>> from skfusion.datasets import make_multimodal_classification
    >>> X, y = make_multimodal_classification(n_samples=300, random_state=0)
    >>> model = UnimodalClassifier(modality='img', random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    >>> bool(model.score(X, y) > 0.7)
    True
    """

    def __init__(
        self,
        *,
        modality=None,
        sequence_encoder="lstm",
        lstm_dim="auto",
        image_encoder="auto",
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
        hidden_dims=None,
        standardize=True,
        linear_path=True,
        dropout=0.1,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size="auto",
        max_epochs="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change="auto",
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
        class_weight=None,
    ):
        self.modality = modality
        self.sequence_encoder = sequence_encoder
        self.lstm_dim = lstm_dim
        self.image_encoder = image_encoder
        self.image_size = image_size
        self.volume_size = volume_size
        self.window = window
        self.augment = augment
        self.num_workers = num_workers
        self.hidden_dims = hidden_dims
        self.standardize = standardize
        self.linear_path = linear_path
        self.dropout = dropout
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
        self.class_weight = class_weight


@fill_doc
class ConcatSurvival(SurvivalMixin, _Concat):
    """Concatenation fusion for survival (time-to-event): the modality embeddings side by side, then an MLP.

    The cross-modal reference of Zhang et al. (2026, Fig. 1a). Every row must have every modality
    unless ``missing='learn'``.

    Parameters
    ----------
    {modalities}
    missing : {{"raise", "learn"}}, default="raise"
        What to do with a row that lacks a modality: raise a ValueError naming the modality
        and rows, or substitute a learnable vector (MedFuse's "learnable missing-image
        vector"; the MedMod early/joint fusion setting).
    {sequence_encoder}
    {pretraining}
    {survival_task}
    {training}
    {modality_dims}

    Attributes
    ----------
    {survival_attributes}
    {attributes}

    See Also
    --------
    UnimodalSurvival : one modality.
    LateFusionSurvival : one head per modality, averaged.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.2 and Table 1.
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, appendix A.5 (learnable missing-image vector).

    Examples
    --------
    >>> from skfusion import ConcatSurvival
    >>> from skfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> model = ConcatSurvival(random_state=0).fit(X, y)
    >>> model.predict_survival_function(X.iloc[:2], return_array=True).shape == (2, len(model.unique_times_))
    True
    >>> bool(model.score(X, y) > 0.6)
    True
    """

    def __init__(
        self,
        *,
        modalities=None,
        missing="raise",
        sequence_encoder="lstm",
        lstm_dim="auto",
        image_encoder="auto",
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
        pretrain_encoders=False,
        freeze_encoders=False,
        pretrain_targets=None,
        loss="cox",
        n_durations="auto",
        hidden_dims=None,
        standardize=True,
        linear_path=True,
        dropout=0.1,
        lr=1e-3,
        weight_decay=1e-2,
        batch_size="auto",
        max_epochs="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change="auto",
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.modalities = modalities
        self.missing = missing
        self.sequence_encoder = sequence_encoder
        self.lstm_dim = lstm_dim
        self.image_encoder = image_encoder
        self.image_size = image_size
        self.volume_size = volume_size
        self.window = window
        self.augment = augment
        self.num_workers = num_workers
        self.pretrain_encoders = pretrain_encoders
        self.freeze_encoders = freeze_encoders
        self.pretrain_targets = pretrain_targets
        self.loss = loss
        self.n_durations = n_durations
        self.hidden_dims = hidden_dims
        self.standardize = standardize
        self.linear_path = linear_path
        self.dropout = dropout
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


@fill_doc
class ConcatClassifier(ClassifierHeadMixin, _Concat):
    """Concatenation fusion for classification: the modality embeddings side by side, then an MLP.

    The cross-modal reference of Zhang et al. (2026, Fig. 1a). Every row must have every modality
    unless ``missing='learn'``.

    Parameters
    ----------
    {modalities}
    missing : {{"raise", "learn"}}, default="raise"
        What to do with a row that lacks a modality: raise a ValueError naming the modality
        and rows, or substitute a learnable vector (MedFuse's "learnable missing-image
        vector"; the MedMod early/joint fusion setting).
    {sequence_encoder}
    {pretraining}
    {classifier_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {classifier_attributes}
    {attributes}

    See Also
    --------
    UnimodalClassifier : one modality.
    LateFusionClassifier : one head per modality, averaged.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.2 and Table 1.
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, appendix A.5 (learnable missing-image vector).

    Examples
    --------
    >>> from skfusion import ConcatClassifier
    >>> from skfusion.datasets import make_multimodal_classification
    >>> X, y = make_multimodal_classification(n_samples=300, random_state=0)
    >>> model = ConcatClassifier(random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    >>> bool(model.score(X, y) > 0.7)
    True
    """

    def __init__(
        self,
        *,
        modalities=None,
        missing="raise",
        sequence_encoder="lstm",
        lstm_dim="auto",
        image_encoder="auto",
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
        pretrain_encoders=False,
        freeze_encoders=False,
        pretrain_targets=None,
        hidden_dims=None,
        standardize=True,
        linear_path=True,
        dropout=0.1,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size="auto",
        max_epochs="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change="auto",
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
        class_weight=None,
    ):
        self.modalities = modalities
        self.missing = missing
        self.sequence_encoder = sequence_encoder
        self.lstm_dim = lstm_dim
        self.image_encoder = image_encoder
        self.image_size = image_size
        self.volume_size = volume_size
        self.window = window
        self.augment = augment
        self.num_workers = num_workers
        self.pretrain_encoders = pretrain_encoders
        self.freeze_encoders = freeze_encoders
        self.pretrain_targets = pretrain_targets
        self.hidden_dims = hidden_dims
        self.standardize = standardize
        self.linear_path = linear_path
        self.dropout = dropout
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
        self.class_weight = class_weight
