"""Late fusion: one encoder and MLP per modality, outputs averaged over the modalities a row has."""

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._data import require_any_present
from .._docstrings import fill_doc
from .._survival import SurvivalMixin
from ..modules._blocks import default_hidden_dims
from ..modules.late import LateFusion
from ._pretraining import PRETRAINING_CONSTRAINTS, _EncoderPretraining
from .concat import _ModalityEncoders


class _Late(_ModalityEncoders, _EncoderPretraining, BaseFusion):
    _parameter_constraints = {
        **BaseFusion._parameter_constraints,
        **_ModalityEncoders._encoder_constraints,
        **PRETRAINING_CONSTRAINTS,
    }

    def _check_blocks(self, blocks):
        require_any_present(blocks)

    def _build_module(self, n_outputs):
        encoders = self._encoders(self.layout_)
        hidden = {
            name: self.hidden_dims if self.hidden_dims is not None else default_hidden_dims(encoder.out_dim)
            for name, encoder in encoders.items()
        }
        return LateFusion(encoders, hidden, n_outputs, self.dropout)


@fill_doc
class LateFusionSurvival(SurvivalMixin, _Late):
    """Late fusion for survival (time-to-event): one MLP per modality, outputs averaged over the modalities present.

    The outputs (log-hazards or logits) of the per-modality heads are averaged over the
    modalities each row has, so a missing modality is handled natively.

    Parameters
    ----------
    {modalities}
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
    ConcatSurvival : concatenation before a single head.

    References
    ----------
    .. [1] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.1 (late fusion).

    Examples
    --------
    >>> from skfusion import LateFusionSurvival
    >>> from skfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> model = LateFusionSurvival(max_epochs=30, random_state=0).fit(X, y)
    >>> model.predict_survival_function(X.iloc[:2], return_array=True).shape == (2, len(model.unique_times_))
    True
    >>> bool(model.score(X, y) > 0.6)
    True
    """

    def __init__(
        self,
        *,
        modalities=None,
        sequence_encoder="lstm",
        lstm_hidden=256,
        image_encoder="resnet34",
        pretrain_encoders=False,
        freeze_encoders=False,
        loss="cox",
        n_durations=20,
        hidden_dims=None,
        dropout=0.1,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=100,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.modalities = modalities
        self.sequence_encoder = sequence_encoder
        self.lstm_hidden = lstm_hidden
        self.image_encoder = image_encoder
        self.pretrain_encoders = pretrain_encoders
        self.freeze_encoders = freeze_encoders
        self.loss = loss
        self.n_durations = n_durations
        self.hidden_dims = hidden_dims
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
class LateFusionClassifier(ClassifierHeadMixin, _Late):
    """Late fusion for classification: one MLP per modality, outputs averaged over the modalities present.

    The outputs (log-hazards or logits) of the per-modality heads are averaged over the
    modalities each row has, so a missing modality is handled natively.

    Parameters
    ----------
    {modalities}
    {sequence_encoder}
    {pretraining}
    {training}
    {modality_dims}

    Attributes
    ----------
    {classifier_attributes}
    {attributes}

    See Also
    --------
    ConcatClassifier : concatenation before a single head.

    References
    ----------
    .. [1] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.1 (late fusion).

    Examples
    --------
    >>> from skfusion import LateFusionClassifier
    >>> from skfusion.datasets import make_multimodal_classification
    >>> X, y = make_multimodal_classification(n_samples=300, random_state=0)
    >>> model = LateFusionClassifier(max_epochs=30, random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    >>> bool(model.score(X, y) > 0.7)
    True
    """

    def __init__(
        self,
        *,
        modalities=None,
        sequence_encoder="lstm",
        lstm_hidden=256,
        image_encoder="resnet34",
        pretrain_encoders=False,
        freeze_encoders=False,
        hidden_dims=None,
        dropout=0.1,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=100,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.modalities = modalities
        self.sequence_encoder = sequence_encoder
        self.lstm_hidden = lstm_hidden
        self.image_encoder = image_encoder
        self.pretrain_encoders = pretrain_encoders
        self.freeze_encoders = freeze_encoders
        self.hidden_dims = hidden_dims
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
