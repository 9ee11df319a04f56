"""MedFuse (Hayat, Geras & Shamout 2022), and what the EHR + image families share.

Shared with :mod:`skfusion.fusion.daft` and :mod:`skfusion.fusion.mmtm`:

- the modality roles ``ehr=`` (a time series, the base modality every row has) and
  ``image=`` (an image embedding, possibly absent), with the MedFuse EHR encoder (a
  two-layer LSTM) on the first;
- encoder pre-training, ``pretrain_encoders=`` / ``freeze_encoders=``
  (:class:`~skfusion.fusion._pretraining._EncoderPretraining`, shared with concatenation
  and late fusion).
"""

from numbers import Integral, Real

import numpy as np

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._compat import Interval, StrOptions
from .._data import infer_layout, require_present
from .._docstrings import CLASSIFIER_WEIGHT_DECAY, DOCS, TRAINING, fill_doc, parameters
from .._survival import SurvivalMixin
from .._training import FUSION_LSTM_WIDTH, LSTM_WIDTH
from ..modules.encoders import LSTMEncoder, make_encoder
from ..modules.medfuse import MedFuseNet
from ._pretraining import (
    _BASE_CONSTRAINTS,
    IMAGE_ENCODER_CONSTRAINTS,
    PRETRAINING_CONSTRAINTS,
    ImageFileInputs,
    _EncoderPretraining,
)

_EHR_LAYERS = 2


class _EhrImageFusion(ImageFileInputs, _EncoderPretraining, BaseFusion):
    """A family fusing an EHR time series (``ehr=``) with an image embedding (``image=``).

    ``layout_`` is ``(ehr, image)``. The EHR modality gets the MedFuse LSTM encoder; a
    vector block in that role (e.g. an array's first half) is read as a length-1 sequence.
    """

    _family = "this model"

    _parameter_constraints = {
        **_BASE_CONSTRAINTS,
        "linear_path": ["boolean"],
        "ehr": [str, None],
        "image": [str, None],
        "lstm_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        **IMAGE_ENCODER_CONSTRAINTS,
        **PRETRAINING_CONSTRAINTS,
    }

    _modality_kinds = ("vector", "sequence", "image")

    def _infer_layout(self, X):
        layout = infer_layout(X, None, self.modality_dims)
        names = [spec.name for spec in layout]
        sequences = [spec.name for spec in layout if spec.kind == "sequence"]
        ehr = self.ehr or (sequences + names)[0]
        others = [name for name in names if name != ehr]
        vectors = [spec.name for spec in layout if spec.kind in ("vector", "image") and spec.name != ehr]
        image = self.image or next(iter(vectors + others), None)
        if image is None:
            raise ValueError(
                f"{self._family} needs two modalities, an EHR time series and an image embedding; X has only "
                f"{names} ({X.shape[1]} feature(s))."
            )
        if image == ehr:
            raise ValueError(f"ehr and image must be different modalities; both are {ehr!r}.")
        return infer_layout(X, [ehr, image], self.modality_dims)

    def _check_blocks(self, blocks):
        require_present(
            blocks, [self.layout_[0].name], f"{self._family} needs its EHR modality (ehr=) in every row."
        )

    def _ehr_width(self):
        """The EHR LSTM's width (``lstm_dim``, resolved)."""
        return self._auto_width(self.lstm_dim, LSTM_WIDTH, self.layout_[0].dim)

    def _make_encoder(self, spec):
        width = self._auto_width(self.lstm_dim, LSTM_WIDTH, spec.dim)
        if spec.volume:
            return self._volume_encoder(spec)
        if spec.name == self.layout_[0].name:
            return LSTMEncoder(spec.dim, width, _EHR_LAYERS, self.dropout)
        return make_encoder(spec, width, _EHR_LAYERS, self.dropout, image=self.image_encoder)


class _PairedEhrImage(_EhrImageFusion):
    """An EHR + image family that needs the image in every row unless ``missing="learn"``.

    Its image role is the (pooled) vector itself, or the CNN of an image modality.
    """

    _parameter_constraints = {**_EhrImageFusion._parameter_constraints, "missing": [StrOptions({"raise", "learn"})]}

    def _check_blocks(self, blocks):
        super()._check_blocks(blocks)
        if self.missing == "raise":
            require_present(
                blocks, [self.layout_[1].name], "pass missing='learn' to substitute a learnable vector."
            )

    def _make_encoder(self, spec):
        if spec.name == self.layout_[1].name and not spec.volume:
            return make_encoder(spec, sequence=False, image=self.image_encoder)
        return super()._make_encoder(spec)

    def _role_encoders(self):
        """The (EHR, image) encoders, pre-trained (and frozen) when asked."""
        encoders = self._encoders(self.layout_)
        return tuple(encoders[spec.name] for spec in self.layout_)


class _MedFuse(_EhrImageFusion):
    _family = "MedFuse"

    _parameter_constraints = {
        **_EhrImageFusion._parameter_constraints,
        "fusion_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "projection_dim": [Interval(Integral, 1, None, closed="left"), None],
        "uni_modal_fraction": [Interval(Real, 0, 1, closed="both")],
    }

    def _selects_rows(self):
        return self.uni_modal_fraction < 1

    def _fine_tuning_rows(self, blocks, rng):
        if not self._selects_rows():
            return None
        present = blocks[self.layout_[1].name]["present"].numpy()
        unimodal = rng.permutation(np.flatnonzero(~present))
        kept = unimodal[: int(round(self.uni_modal_fraction * len(unimodal)))]
        rows = np.sort(np.concatenate([np.flatnonzero(present), kept]))
        if len(rows) == 0:
            raise ValueError(
                f"uni_modal_fraction={self.uni_modal_fraction} leaves no rows to fine-tune on: "
                f"no row has modality {self.layout_[1].name!r}."
            )
        return rows

    def _build_module(self, n_outputs):
        ehr, image = (spec.name for spec in self.layout_)
        token_dim = self.projection_dim if self.projection_dim is not None else self._ehr_width()
        return MedFuseNet(
            ehr,
            image,
            self._encoders(self.layout_),
            token_dim,
            self._auto_width(self.fusion_dim, FUSION_LSTM_WIDTH, token_dim),
            self.hidden_dims or (),
            n_outputs,
            self.dropout,
        )


_HEAD = {
    "hidden_dims": """hidden_dims : list of int, default=None
        Hidden widths of the prediction head; ``None`` is the papers' single linear layer.""",
    "dropout": """dropout : float, default=0.1
        Dropout on the EHR encoder's output vector and after each hidden layer of the head.""",
}

FAMILY_DOCS = {
    "ehr_image": """ehr : str, default=None
        The time-series modality (a token column of ``(T_i, d)`` arrays), the base modality
        every row must have. ``None`` takes the first sequence modality of ``X`` (for an
        array or a frame without one: the first modality, read as a length-1 sequence).
    image : str, default=None
        The image modality: a pre-computed embedding block (e.g. 512-d ResNet-34 features
        ``img__0 ... img__511``), or a raw column of ``(H, W, C)`` images or image file
        paths read by ``image_encoder``. ``None`` takes the first vector or image modality other than
        ``ehr`` (else the next modality). A token column in this role is read by its own
        LSTM in MedFuse and through its mean over tokens in DAFT and MMTM.""",
    "head_training": parameters(TRAINING, **_HEAD),
    "classifier_head_training": parameters(TRAINING, **_HEAD, weight_decay=CLASSIFIER_WEIGHT_DECAY),
}


def family_encoders(pretrain_default):
    """The encoder parameters of the EHR + image families, ``pretrain_encoders`` defaulting to ``pretrain_default``."""
    return (
        """lstm_dim : int or "auto", default="auto"
        Hidden width of the two-layer LSTM encoding ``ehr``. ``"auto"`` scales MedFuse's
        :math:`m = 256` to the training rows, :math:`256 \\sqrt{n / 42{,}628}` (the weights
        per row of MedFuse on its phenotyping stays) within [the series' features, 256]
        (``docs/design.md``).
    """
        + DOCS["image_encoder"]
        + f"""
    pretrain_encoders : bool, default={pretrain_default}
        Train each encoder with parameters (the EHR LSTM; in MedFuse also the LSTM of a
        token-column image) alone on the task first, with its own temporary linear head and
        the same training settings, on the rows that have its modality; then train the whole
        network from those weights.
    freeze_encoders : bool, default=False
        Keep the pre-trained encoders fixed in the second stage (needs
        ``pretrain_encoders=True``).
    """
        + DOCS["pretrain_targets"]
    )


_MEDFUSE_PARAMETERS = """fusion_dim : int or "auto", default="auto"
        Hidden width of the fusion LSTM :math:`f_{fusion}`; ``"auto"`` scales the paper's
        512 to the training rows as ``lstm_dim`` scales 256, within [the token width, 512].
    projection_dim : int, default=None
        Width of the fusion LSTM's input tokens; ``None`` uses ``lstm_dim``. The image
        vector gets the linear projection :math:`\\phi` to it (eq. 3), and so does the EHR
        vector when the widths differ.
    uni_modal_fraction : float, default=1.0
        Share of the rows without an image kept for the second (fine-tuning) stage, drawn
        at random; the paper's optimum was 0.1 for in-hospital mortality and 0.2 for
        phenotyping (appendix A.3). Pre-training always uses every row."""

_MEDFUSE_NOTES = """The EHR vector :math:`v_{ehr}` (last hidden state of a two-layer LSTM, hidden
    ``lstm_dim``) and the image vector projected to the same width,
    :math:`v^*_{img} = \\phi(v_{img})`, form the sequence :math:`[v_{ehr}, v^*_{img}]`
    read by a one-layer LSTM (hidden ``fusion_dim``); a head reads its last hidden state.
    A row without an image is the one-element sequence :math:`[v_{ehr}]`, at training and
    at prediction, and its output does not depend on the other rows of its batch. Every
    row needs the EHR modality.

    With ``pretrain_encoders=True`` (the paper's MedFuse (PT)) the EHR LSTM is first
    trained alone on the task; ``uni_modal_fraction < 1`` keeps only part of the rows
    without an image for the second stage (MedFuse (OPTIMAL)). The paper trained with Adam,
    batch size 16, up to 50 epochs and learning rates near 1e-4; the defaults here follow
    the rest of skfusion."""

_MEDFUSE_DOC = {
    **FAMILY_DOCS,
    "encoders": family_encoders(True),
    "medfuse_notes": _MEDFUSE_NOTES,
    "medfuse_parameters": _MEDFUSE_PARAMETERS,
}


@fill_doc(**_MEDFUSE_DOC)
class MedFuseSurvival(SurvivalMixin, _MedFuse):
    """MedFuse for survival (time-to-event): an LSTM over the sequence of modality vectors.

    {medfuse_notes}

    Parameters
    ----------
    {ehr_image}
    {encoders}
    {medfuse_parameters}
    {survival_task}
    {head_training}
    {modality_dims}

    Attributes
    ----------
    {survival_attributes}
    {attributes}

    See Also
    --------
    MedFuseClassifier : the classification twin.
    ConcatSurvival : concatenation fusion (``missing="learn"`` for absent images).

    References
    ----------
    .. [1] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 3.2, eq. 3-5, section 4.2 and appendix A.3.

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.fusion.medfuse import MedFuseSurvival
    >>> X, y = make_multimodal_survival(n_samples=200, n_features=(16, 24), missing_rate={{"img": 0.5}},
    ...                                 random_state=0)
    >>> ehr = X.filter(like="ehr__")
    >>> X = X.drop(columns=ehr.columns).assign(ts=list(ehr.to_numpy().reshape(-1, 3, 8)))
    >>> model = MedFuseSurvival(lstm_dim=16, fusion_dim=16, random_state=0).fit(X, y)
    >>> [spec.name for spec in model.layout_]
    ['ts', 'img']
    >>> model.predict_survival_function(X.iloc[:2], return_array=True).shape == (2, len(model.unique_times_))
    True
    """


    def __init__(
        self,
        *,
        ehr=None,
        image=None,
        lstm_dim="auto",
        image_encoder="auto",
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
        pretrain_encoders=True,
        freeze_encoders=False,
        pretrain_targets=None,
        fusion_dim="auto",
        projection_dim=None,
        uni_modal_fraction=1.0,
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
        self.ehr = ehr
        self.image = image
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
        self.fusion_dim = fusion_dim
        self.projection_dim = projection_dim
        self.uni_modal_fraction = uni_modal_fraction
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


@fill_doc(**_MEDFUSE_DOC)
class MedFuseClassifier(ClassifierHeadMixin, _MedFuse):
    """MedFuse for classification: an LSTM over the sequence of modality vectors.

    {medfuse_notes}

    Parameters
    ----------
    {ehr_image}
    {encoders}
    {medfuse_parameters}
    {classifier_head_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {classifier_attributes}
    {attributes}

    See Also
    --------
    MedFuseSurvival : the survival twin.
    ConcatClassifier : concatenation fusion (``missing="learn"`` for absent images).

    References
    ----------
    .. [1] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 3.2, eq. 3-5, section 4.2 and appendix A.3.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> from skfusion.fusion.medfuse import MedFuseClassifier
    >>> X, y = make_multimodal_classification(n_samples=200, n_features=(16, 24), missing_rate={{"img": 0.5}},
    ...                                       random_state=0)
    >>> ehr = X.filter(like="ehr__")
    >>> X = X.drop(columns=ehr.columns).assign(ts=list(ehr.to_numpy().reshape(-1, 3, 8)))
    >>> model = MedFuseClassifier(lstm_dim=16, fusion_dim=16, random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        *,
        ehr=None,
        image=None,
        lstm_dim="auto",
        image_encoder="auto",
        image_size=224,
        volume_size=(128, 128, 128),
        window="minmax",
        augment=True,
        num_workers=0,
        pretrain_encoders=True,
        freeze_encoders=False,
        pretrain_targets=None,
        fusion_dim="auto",
        projection_dim=None,
        uni_modal_fraction=1.0,
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
        self.ehr = ehr
        self.image = image
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
        self.fusion_dim = fusion_dim
        self.projection_dim = projection_dim
        self.uni_modal_fraction = uni_modal_fraction
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
