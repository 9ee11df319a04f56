"""MMTM estimators: the EHR and image streams recalibrate each other's channels (Vaezi Joze et al. 2020)."""

from numbers import Real

from .._classifier import ClassifierHeadMixin
from .._compat import Interval
from .._survival import SurvivalMixin
from ..modules.mmtm import MMTMNet
from .._docstrings import fill_doc
from .medfuse import FAMILY_DOCS, _PairedEhrImage, family_encoders


class _MMTM(_PairedEhrImage):
    _family = "MMTM"

    _parameter_constraints = {
        **_PairedEhrImage._parameter_constraints,
        "reduction": [Interval(Real, 0, None, closed="neither")],
    }

    def _build_module(self, n_outputs):
        ehr, image = self.layout_
        ehr_encoder, image_encoder = self._role_encoders()
        return MMTMNet(
            ehr.name,
            image.name,
            ehr_encoder,
            image_encoder,
            self.reduction,
            self.hidden_dims or (),
            n_outputs,
            self.dropout,
            learn_missing=self.missing == "learn",
        )


_MMTM_DOC = {
    **FAMILY_DOCS,
    "encoders": family_encoders(False),
    "mmtm_notes": """Each stream's features are squeezed (the EHR LSTM's first-layer states averaged over
    valid time steps; the image embedding is its own squeeze), joined by one linear layer
    and a ReLU into :math:`Z` of width (``lstm_dim`` + image width) / ``reduction``, and
    each stream is multiplied channel-wise by its excitation gate
    :math:`2\\sigma(W_m Z + b_m) \\in (0, 2)`. The module sits between the EHR LSTM's two layers
    and on the image embedding (MedMod; MedFuse's MMTM baseline); the head reads the EHR
    vector next to the recalibrated image vector. On a pooled image embedding this is
    exactly MMTM after the last ResNet block, MedFuse's best placement (appendix A.2).

    Every row needs both modalities unless ``missing="learn"``; the EHR is always needed.""",
    "mmtm_parameters": """missing : {"raise", "learn"}, default="raise"
        A row without an image: raise a ValueError naming the modality and rows, or
        substitute a learnable vector for the image embedding.
    reduction : float, default=4.0
        Ratio of the summed channel widths to the width of the joint representation
        :math:`Z` (Vaezi Joze et al. use 4).""",
}


@fill_doc(**_MMTM_DOC)
class MMTMSurvival(SurvivalMixin, _MMTM):
    """MMTM for survival (time-to-event): the EHR and image streams recalibrate each other's channels.

    {mmtm_notes}

    Parameters
    ----------
    {ehr_image}
    {mmtm_parameters}
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
    MMTMClassifier : the classification twin.
    DAFTSurvival : an affine transform instead of channel gates.
    MedFuseSurvival : handles rows without an image natively.

    References
    ----------
    .. [1] Vaezi Joze, Shaban, Iuzzolino, Koishida. MMTM: multimodal transfer module for
           CNN fusion. CVPR 2020, section 3.
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 4.3 and appendix A.2.
    .. [3] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.1.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.fusion.mmtm import MMTMSurvival
    >>> X, y = make_multimodal_survival(n_samples=200, n_features=(16, 24), random_state=0)
    >>> ehr = X.filter(like="ehr__")
    >>> X = X.drop(columns=ehr.columns).assign(ts=list(ehr.to_numpy().reshape(-1, 3, 8)))
    >>> model = MMTMSurvival(lstm_dim=16, random_state=0).fit(X, y)
    >>> model.predict(X.iloc[:3]).shape
    (3,)
    """


    def __init__(
        self,
        *,
        ehr=None,
        image=None,
        missing="raise",
        reduction=4.0,
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
        self.reduction = reduction
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


@fill_doc(**_MMTM_DOC)
class MMTMClassifier(ClassifierHeadMixin, _MMTM):
    """MMTM for classification: the EHR and image streams recalibrate each other's channels.

    {mmtm_notes}

    Parameters
    ----------
    {ehr_image}
    {mmtm_parameters}
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
    MMTMSurvival : the survival twin.
    DAFTClassifier : an affine transform instead of channel gates.
    MedFuseClassifier : handles rows without an image natively.

    References
    ----------
    .. [1] Vaezi Joze, Shaban, Iuzzolino, Koishida. MMTM: multimodal transfer module for
           CNN fusion. CVPR 2020, section 3.
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 4.3 and appendix A.2.
    .. [3] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.1.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> from skfusion.fusion.mmtm import MMTMClassifier
    >>> X, y = make_multimodal_classification(n_samples=200, n_features=(16, 24), random_state=0)
    >>> ehr = X.filter(like="ehr__")
    >>> X = X.drop(columns=ehr.columns).assign(ts=list(ehr.to_numpy().reshape(-1, 3, 8)))
    >>> model = MMTMClassifier(lstm_dim=16, random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        *,
        ehr=None,
        image=None,
        missing="raise",
        reduction=4.0,
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
        self.reduction = reduction
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
