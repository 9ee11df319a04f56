"""DAFT estimators: one modality scales and shifts the other's features (Pölsterl et al. 2021)."""

from numbers import Real

from .._classifier import ClassifierHeadMixin
from .._compat import Interval, StrOptions
from .._survival import SurvivalMixin
from ..modules.daft import DAFTNet
from .._docstrings import fill_doc
from .medfuse import FAMILY_DOCS, _PairedEhrImage, family_encoders


class _DAFT(_PairedEhrImage):
    _family = "DAFT"

    _parameter_constraints = {
        **_PairedEhrImage._parameter_constraints,
        "conditioning": [StrOptions({"image", "ehr"})],
        "bottleneck_factor": [Interval(Real, 0, None, closed="neither")],
    }

    def _build_module(self, n_outputs):
        ehr, image = self.layout_
        ehr_encoder, image_encoder = self._role_encoders()
        return DAFTNet(
            ehr.name,
            image.name,
            ehr_encoder,
            image_encoder,
            self.conditioning,
            self.bottleneck_factor,
            self.hidden_dims or (),
            n_outputs,
            self.dropout,
            learn_missing=self.missing == "learn",
        )


_DAFT_DOC = {
    **FAMILY_DOCS,
    "encoders": family_encoders(False),
    "daft_notes": """A bottleneck MLP (no biases) reads the squeezed features of the transformed modality
    next to the conditioning vector and emits a per-channel scale :math:`\\alpha` and shift
    :math:`\\beta`; the features become :math:`\\alpha \\odot h + \\beta`. With
    ``conditioning="image"`` (MedFuse's DAFT baseline, section 4.3, whose code MedMod
    benchmarks) the image embedding rescales and shifts the states of the EHR LSTM between
    its two layers and the head reads the EHR vector; with ``conditioning="ehr"`` (DAFT's
    original direction, as MedMod's section 3.3.1 words it) the EHR vector rescales and
    shifts the image embedding, which the head reads. Conditioning on a pooled image
    embedding is DAFT on the last ResNet block's globally pooled map.

    Every row needs both modalities unless ``missing="learn"``; the EHR is always needed.""",
    "daft_parameters": """missing : {"raise", "learn"}, default="raise"
        A row without an image: raise a ValueError naming the modality and rows, or
        substitute a learnable vector for the image embedding.
    conditioning : {"image", "ehr"}, default="image"
        The modality that produces the scale and shift of the other's features.
    bottleneck_factor : float, default=7.0
        The MLP's hidden width is its input width divided by this (DAFT's default 7).""",
}


@fill_doc(**_DAFT_DOC)
class DAFTSurvival(SurvivalMixin, _DAFT):
    """DAFT for survival (time-to-event): an affine transform of one modality's features conditioned on the other.

    {daft_notes}

    Parameters
    ----------
    {ehr_image}
    {daft_parameters}
    {encoders}
    {survival_task}
    {head_training}
    {modality_dims}

    Attributes
    ----------
    {survival_attributes}
    {attributes}

    See Also
    --------
    DAFTClassifier : the classification twin.
    MMTMSurvival : multimodal channel gates instead of an affine transform.
    MedFuseSurvival : handles rows without an image natively.

    References
    ----------
    .. [1] Pölsterl, Wolf, Wachinger. Combining 3D image and tabular data via the Dynamic
           Affine Feature Map Transform. MICCAI 2021.
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 4.3.
    .. [3] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.1.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.fusion.daft import DAFTSurvival
    >>> X, y = make_multimodal_survival(n_samples=200, n_features=(16, 24), random_state=0)
    >>> ehr = X.filter(like="ehr__")
    >>> X = X.drop(columns=ehr.columns).assign(ts=list(ehr.to_numpy().reshape(-1, 3, 8)))
    >>> model = DAFTSurvival(lstm_dim=16, random_state=0).fit(X, y)
    >>> model.predict(X.iloc[:3]).shape
    (3,)
    """


    def __init__(
        self,
        *,
        ehr=None,
        image=None,
        missing="raise",
        conditioning="image",
        bottleneck_factor=7.0,
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
        self.ehr = ehr
        self.image = image
        self.missing = missing
        self.conditioning = conditioning
        self.bottleneck_factor = bottleneck_factor
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


@fill_doc(**_DAFT_DOC)
class DAFTClassifier(ClassifierHeadMixin, _DAFT):
    """DAFT for classification: an affine transform of one modality's features conditioned on the other.

    {daft_notes}

    Parameters
    ----------
    {ehr_image}
    {daft_parameters}
    {encoders}
    {classifier_head_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {classifier_attributes}
    {attributes}

    See Also
    --------
    DAFTSurvival : the survival twin.
    MMTMClassifier : multimodal channel gates instead of an affine transform.
    MedFuseClassifier : handles rows without an image natively.

    References
    ----------
    .. [1] Pölsterl, Wolf, Wachinger. Combining 3D image and tabular data via the Dynamic
           Affine Feature Map Transform. MICCAI 2021.
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 4.3.
    .. [3] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.1.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> from skfusion.fusion.daft import DAFTClassifier
    >>> X, y = make_multimodal_classification(n_samples=200, n_features=(16, 24), random_state=0)
    >>> ehr = X.filter(like="ehr__")
    >>> X = X.drop(columns=ehr.columns).assign(ts=list(ehr.to_numpy().reshape(-1, 3, 8)))
    >>> model = DAFTClassifier(lstm_dim=16, random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        *,
        ehr=None,
        image=None,
        missing="raise",
        conditioning="image",
        bottleneck_factor=7.0,
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
        self.ehr = ehr
        self.image = image
        self.missing = missing
        self.conditioning = conditioning
        self.bottleneck_factor = bottleneck_factor
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
