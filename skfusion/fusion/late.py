"""Late fusion: one encoder and MLP per modality, outputs averaged over the modalities a row has.

Two ways to train it (``mode``): the branches jointly, on the loss of their averaged output,
or each branch alone as a unimodal model, whose predictions are then averaged (MedMod's late
fusion). Both are one :class:`~skfusion.modules.late.LateFusion` network at prediction time,
so ``predict``, ``predict_proba`` and the survival functions are the same code.
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._base import BaseFusion
from .._engine import TaskLoss, draw_seed, make_net, resolve_batch_size, resolve_device
from .._classifier import ClassifierHeadMixin
from .._compat import StrOptions, _fit_context
from .._data import ModalityDataset, require_any_present, take_block_rows, take_rows
from .._docstrings import fill_doc
from .._images import volume_cache
from .._survival import SurvivalMixin
from .._training import LSTM_WIDTH
from ..modules._blocks import default_hidden_dims
from ..modules.late import LateFusion
from ._pretraining import PRETRAINING_CONSTRAINTS, _EncoderPretraining
from .concat import _ModalityEncoders

_MODE_DOC = """mode : {"joint", "average"}, default="joint"
        How the per-modality branches (encoder + MLP head) are trained. ``"joint"``: together,
        on the loss of their averaged output, on every row. ``"average"``: each branch alone,
        as a unimodal model (this estimator with ``modalities=[m]``) on the rows that have
        modality ``m`` (with ``pretrain_encoders`` applied inside each), kept in
        ``estimators_``; the fitted model averages their predictions over the modalities
        each row has, and nothing is trained on the average.
        """

_SURVIVAL_AVERAGE = """Survival: the log relative hazards (``loss="cox"`` only), each model's
        centred on its own training rows (a Cox log-hazard is defined up to a constant, and a
        row lacking a modality must not inherit the other model's offset); the Breslow
        baseline is then fitted on the averaged log-hazards of the training rows."""

_CLASSIFIER_AVERAGE = """Classification: the predicted probabilities, MedMod's
        :math:`\\hat y = \\frac{1}{M} \\sum_m \\hat y_m` (softmax probabilities of binary and
        multi-class targets, per-label sigmoids of multi-label ones); ``predict_proba`` returns
        that mean."""


class _Late(_ModalityEncoders, _EncoderPretraining, BaseFusion):
    _parameter_constraints = {
        **BaseFusion._parameter_constraints,
        **_ModalityEncoders._encoder_constraints,
        **PRETRAINING_CONSTRAINTS,
        "mode": [StrOptions({"joint", "average"})],
    }

    def _check_blocks(self, blocks):
        require_any_present(blocks)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A block all NaN in a row is a missing modality: the row is predicted from the others.
        tags.input_tags.allow_nan = True
        return tags

    def _average(self):
        """What ``mode="average"`` averages: the probabilities of a classifier, else the outputs."""
        if self.mode == "joint" or not isinstance(self, ClassifierHeadMixin):
            return "outputs"
        return "sigmoid" if self.multilabel_ else "softmax"

    def _build_module(self, n_outputs):
        encoders = self._encoders(self.layout_)
        hidden = {
            name: self.hidden_dims if self.hidden_dims is not None else default_hidden_dims(encoder.out_dim)
            for name, encoder in encoders.items()
        }
        return LateFusion(encoders, hidden, n_outputs, self.dropout, self._average())

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model: the branches jointly, or each alone (``mode="average"``).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Modalities as ``name__i`` column blocks and token columns; an array is split
            by ``modality_dims``.
        y : array-like
            Survival: structured array from :func:`sksurv.util.Surv.from_arrays`.
            Classification: labels, or a label-indicator matrix for multi-label targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows (every loss is a weighted mean); with
            ``mode="average"`` each unimodal model is given its rows' weights (times the
            class weights). ``None``: equal weights.

        Returns
        -------
        self : object
        """
        if self.mode == "joint":
            return super().fit(X, y, sample_weight=sample_weight)
        if isinstance(self, SurvivalMixin) and self.loss != "cox":
            raise ValueError(
                f"mode='average' averages log relative hazards and needs loss='cox'; got loss={self.loss!r}, whose "
                "outputs are in units that depend on each model's training rows (Weibull: the median time; "
                "discrete: the time bins). Use mode='joint' with it."
            )
        blocks, n_samples = self._blocks(X, reset=True)
        targets = self._encode_target(y, n_samples, sample_weight)
        with volume_cache(blocks):
            self.estimators_, offsets = self._fit_unimodal(y, targets[:, -1].numpy(), blocks)
            self.net_ = self._averaging_net(offsets, n_samples)
            self._finish_fit(ModalityDataset(blocks, targets, self.net_.device), targets)
        return self

    def _fit_unimodal(self, y, weight, blocks):
        """The unimodal models ``{modality: model}``, each fitted on the rows that have it, with their ``weight``.

        ``weight`` already holds the class weights: the unimodal models get none of their
        own (``"balanced"`` on a model's rows would balance another set of rows). Also
        returns each model's mean output over its training rows (the offset that
        ``_averaging_net`` removes from a survival model).
        """
        no_class_weight = {"class_weight": None} if isinstance(self, ClassifierHeadMixin) else {}
        rng = check_random_state(self.random_state)
        models, offsets = {}, {}
        for spec in self.layout_:
            present = blocks[spec.name]["present"].numpy()
            rows = None if present.all() else np.flatnonzero(present)
            seed = draw_seed(rng)
            own = {m: label for m, label in (self.pretrain_targets or {}).items() if m == spec.name}
            # The averaging network is the unimodal networks side by side: it has no linear start.
            model = clone(self).set_params(
                modalities=[spec.name],
                mode="joint",
                random_state=seed,
                pretrain_targets=own or None,
                linear_path=False,
                # Its encoder's width is this model's (the averaging network loads its weights).
                lstm_dim=self._auto_width(self.lstm_dim, LSTM_WIDTH, spec.dim),
                **no_class_weight,
            )
            row_weight = take_rows(weight, rows)
            own_blocks = take_block_rows({spec.name: blocks[spec.name]}, rows)
            models[spec.name] = model._fit_read(self, (spec,), own_blocks, take_rows(y, rows), row_weight)
            self._check_same_classes(model, spec.name)
            offsets[spec.name] = np.average(model._outputs(own_blocks), axis=0, weights=row_weight)
        return models, offsets

    def _check_same_classes(self, model, name):
        if isinstance(self, ClassifierHeadMixin) and not self.multilabel_ and len(model.classes_) < len(self.classes_):
            absent = sorted(set(self.classes_.tolist()) - set(model.classes_.tolist()))
            raise ValueError(
                f"mode='average': no row with modality {name!r} has class(es) {absent}, so its unimodal model "
                "cannot predict them; use mode='joint', or rows that cover every class."
            )

    def _averaging_net(self, offsets, n_samples):
        """The network averaging the unimodal models' branches (their weights, unchanged)."""
        self._pretrained = {}
        try:
            module = self._build_module(self._n_outputs())
        finally:
            del self._pretrained
        states = {}
        for model in self.estimators_.values():
            states.update(model.net_.module_.state_dict())
        module.load_state_dict(states)
        if isinstance(self, SurvivalMixin):
            # A Cox log-hazard is defined up to a constant: centre each model's on its own
            # training rows, or a row lacking a modality would shift by that model's offset.
            for name, offset in offsets.items():
                module.heads[name][-1].bias.data -= module.heads[name][-1].bias.new_tensor(offset)
        device = resolve_device(self.device)
        batch_size = resolve_batch_size(self.batch_size, n_samples)
        net = make_net(module, TaskLoss(self._loss_function()), device=device, batch_size=batch_size).initialize()
        net.module_.eval()
        return net


@fill_doc(mode=_MODE_DOC + _SURVIVAL_AVERAGE)
class LateFusionSurvival(SurvivalMixin, _Late):
    """Late fusion for survival (time-to-event): one MLP per modality, outputs averaged over the modalities present.

    The per-modality heads' outputs (log-hazards or logits; ``mode="joint"``) or predictions
    (``mode="average"``) are averaged over the modalities each row has, so a missing
    modality is handled natively.

    Parameters
    ----------
    {modalities}
    {sequence_encoder}
    {pretraining}
    {mode}
    {survival_task}
    {training}
    {modality_dims}

    Attributes
    ----------
    {survival_attributes}
    estimators_ : dict of str to estimator
        ``mode="average"`` only: the fitted unimodal model of each modality (this class
        with ``modalities=[m]``).
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
    >>> model = LateFusionSurvival(random_state=0).fit(X, y)
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
        mode="joint",
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
        self.mode = mode
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


@fill_doc(mode=_MODE_DOC + _CLASSIFIER_AVERAGE)
class LateFusionClassifier(ClassifierHeadMixin, _Late):
    """Late fusion for classification: one MLP per modality, outputs averaged over the modalities present.

    The per-modality heads' outputs (log-hazards or logits; ``mode="joint"``) or predictions
    (``mode="average"``) are averaged over the modalities each row has, so a missing
    modality is handled natively.

    Parameters
    ----------
    {modalities}
    {sequence_encoder}
    {pretraining}
    {mode}
    {classifier_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {classifier_attributes}
    estimators_ : dict of str to estimator
        ``mode="average"`` only: the fitted unimodal model of each modality (this class
        with ``modalities=[m]``).
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
    >>> model = LateFusionClassifier(random_state=0).fit(X, y)
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
        mode="joint",
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
        self.mode = mode
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
