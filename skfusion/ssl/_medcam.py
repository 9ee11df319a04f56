"""MedCAM (under review): adapt an image embedding to the EHR, then classify from the image alone."""

import copy
from numbers import Integral, Real

from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._compat import Interval, _fit_context
from .._data import is_grouped_frame, require_present
from .._engine import draw_seed
from .._docstrings import TRAINING, fill_doc, parameters
from ..modules.ssl import AdaptedImageClassifier, MedCAMLoss
from ._base import BasePairedPretraining, read_blocks

# The shared descriptions from callbacks on (MedCAMClassifier's defaults before them are its own).
_fill_doc = fill_doc(training_tail=parameters(TRAINING, only=("callbacks", "device", "random_state", "verbose")))


@_fill_doc
class MedCAMAdapter(BasePairedPretraining):
    """MedCAM's adaptation of an image embedding to the EHR: global + local (top-k) alignment.

    The image embedding :math:`z_{{CXR}}` and the EHR series (MedFuse's two-layer LSTM, then
    an MLP projection) meet in a shared space of width ``projection_dim``. The adaptation
    loss of MedCAM [1]_ is :math:`\\mathcal{{L}} = \\mathcal{{L}}_{{global}} +
    \\mathcal{{L}}_{{local}}` (eq. 8):

    - global (eqs. 3-5): the symmetric InfoNCE between the image and the whole EHR series
      (the last valid LSTM state), :math:`\\frac{{1}}{{2}}(\\mathcal{{L}}_{{CXR \\to EHR}} +
      \\mathcal{{L}}_{{EHR \\to CXR}})`, cosine similarity over :math:`\\tau`;
    - local (eqs. 6-7): each image attends over the time steps of its own EHR series
      (query: the image embedding; keys: the per-step embeddings; weights
      :math:`\\mathrm{{softmax}}_t(\\cos / \\tau)`), its ``top_k`` steps of highest attention
      are selected, and each selected step must be closer to the image than the stay's other
      steps are (eq. 6a) and must pick its own image among the batch (eq. 6b). The sums are
      averaged over the selected pairs (:math:`B k` when every stay has ``top_k`` steps; a
      shorter stay contributes all its steps).

    **What is adapted.** Without ``backbone``, the image is a pre-computed, frozen embedding
    (a ``name__i`` block, e.g. from :class:`~skfusion.encoders.ImageEmbedder` or a
    foundation model) and the adapter is an MLP on it (``Linear -> ReLU -> Linear`` to
    ``projection_dim``). With ``backbone`` (a torch module) and a raw image column, the
    backbone is fine-tuned together with that MLP, as the paper fine-tunes its image
    encoder.

    ``fit`` uses no labels and only the rows with both an image and an EHR series (the
    others are left out; ``n_paired_`` counts those used). ``transform`` reads the image
    columns only, so it serves cohorts without EHR (the paper's NIH, VinDr and CheXpert):
    it returns the adapted embedding as the block ``"{{image}}__0" ... "{{image}}__{{p-1}}"``
    (NaN rows for rows without an image), ready for a downstream image-only model. Fine-tune
    it with a linear head on labels with :class:`MedCAMClassifier`.

    Parameters
    ----------
    {paired_modalities}
    top_k : int, default=10
        Number :math:`k` of EHR time steps aligned with each image (the paper's 10).
    temperature : float, default=0.1
        :math:`\\tau` of every similarity (fixed; the paper does not give its value, this is
        ConVIRT's).
    {paired_network}
    {paired_training}
    {paired_early_stopping}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    MedCAMClassifier : the adapted encoder with a linear head, fine-tuned with BCE (eq. 9).
    ConVIRT : the global bidirectional loss alone (with ConVIRT's weighting).

    References
    ----------
    .. [1] Anonymous authors (under review). Modular multimodal alignment using time-series
           EHR data for enhancing medical image classification (MedCAM). Paper under
           double-blind review, section 3.3.

    Examples
    --------
    >>> from skfusion.ssl import MedCAMAdapter
    >>> from skfusion.datasets import make_paired_image_ehr
    >>> X, Y = make_paired_image_ehr(n_samples=120, random_state=0)
    >>> adapter = MedCAMAdapter(projection_dim=8, hidden_dim=16, lstm_dim=16, max_epochs=3, random_state=0)
    >>> Z = adapter.fit(X).transform(X.drop(columns="ehr"))
    >>> Z.shape, Z.columns[0]
    ((120, 8), 'img__0')
    """

    _parameter_constraints = {
        **BasePairedPretraining._parameter_constraints,
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        image=None,
        ehr=None,
        backbone=None,
        image_size=224,
        augment=True,
        num_workers=0,
        top_k=10,
        temperature=0.1,
        projection_dim=128,
        hidden_dim=256,
        lstm_dim=256,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=100,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=10,
    ):
        self.image = image
        self.ehr = ehr
        self.backbone = backbone
        self.image_size = image_size
        self.augment = augment
        self.num_workers = num_workers
        self.top_k = top_k
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.lstm_dim = lstm_dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.modality_dims = modality_dims
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change

    def _criterion(self):
        return MedCAMLoss(self.top_k)

    def _output_modalities(self):
        return ("image",)


@_fill_doc
class MedCAMClassifier(ClassifierHeadMixin, BaseFusion):
    """MedCAM: the EHR-adapted image encoder with a linear head, predicting from the image alone.

    ``fit`` runs the two steps of MedCAM [1]_:

    1. the ``adapter`` (a :class:`MedCAMAdapter` by default) is fitted without labels on the
       rows of ``X`` that have both an image and an EHR series;
    2. a linear head on the adapted image embedding is trained with the labels, the adapter
       fine-tuned with it (eq. 9: binary cross-entropy for multi-label findings; the
       cross-entropy for binary and multi-class labels), or kept fixed with
       ``freeze_adapter=True`` (linear probing). Every row of this step needs its image.

    ``predict`` and ``predict_proba`` read the image columns only: a frame without the EHR
    column (an EHR-free cohort) is what they expect.

    Any of :class:`ConVIRT`, :class:`ALIGN`, :class:`VICReg` can be the ``adapter``: that is
    their fine-tuning (of the image branch) on a downstream task.

    To fine-tune on a cohort without EHR (the paper's out-of-distribution datasets), align
    on the paired cohort first and pass the fitted adapter wrapped in
    :class:`sklearn.frozen.FrozenEstimator`: step 1 is then skipped, ``X`` needs no EHR
    column, and a copy of the adapter is fine-tuned (the fitted one is left as it is).

    Parameters
    ----------
    adapter : MedCAMAdapter, ConVIRT, ALIGN, VICReg, FrozenEstimator or None, default=None
        The (unfitted) alignment step; cloned and fitted at fit. ``None`` is
        ``MedCAMAdapter()``. Its ``random_state``, when None, is drawn from this
        estimator's. Its ``image``, ``ehr`` and ``modality_dims`` say where the modalities
        are. A ``FrozenEstimator`` around a fitted one is used as it is.
    freeze_adapter : bool, default=False
        Train only the linear head (linear probing) instead of fine-tuning the adapter.
    lr : float, default=1e-3
        Adam learning rate of step 2.
    weight_decay : float, default=1e-4
        L2 penalty on the trainable parameters of step 2 (Adam's weight decay).
    batch_size : int or "auto", default=256
        Mini-batch size of step 2; ``"auto"`` is a sixteenth of the training rows within
        [32, 256], as in the fusion estimators.
    max_epochs : int or "auto", default=100
        Most passes over the training data in step 2; ``"auto"`` allows 4,000 optimizer
        steps within [100, 1000] epochs, as in the fusion estimators.
    early_stopping : bool or "auto", default=False
        ``False``: train ``max_epochs`` epochs (MedCAM's fine-tuning). ``True``: hold out
        ``validation_fraction`` of the rows (stratified by class), stop when their loss has
        not improved for ``n_iter_no_change`` epochs and restore the best epoch. ``"auto"``:
        the fusion estimators' choice between a validation split and internal folds.
    validation_fraction : float, default=0.1
        Share of the rows held out when ``early_stopping`` holds rows out.
    n_iter_no_change : int or "auto", default=10
        Epochs without a better held-out loss before training stops; ``"auto"`` is at least
        500 optimizer steps (and 10 epochs).
    {training_tail}
    {class_weight}

    Attributes
    ----------
    adapter_ : MedCAMAdapter or other pretraining transformer
        The fitted alignment step (before fine-tuning: ``net_`` holds the fine-tuned copy).
    {classifier_attributes}
    {attributes}

    See Also
    --------
    MedCAMAdapter : the alignment step alone, as a transformer.
    UnimodalClassifier : an image-only classifier without the adaptation.

    References
    ----------
    .. [1] Anonymous authors (under review). Modular multimodal alignment using time-series
           EHR data for enhancing medical image classification (MedCAM). Paper under
           double-blind review, eqs. 3-9.

    Examples
    --------
    >>> from skfusion.ssl import MedCAMAdapter, MedCAMClassifier
    >>> from skfusion.datasets import make_paired_image_ehr
    >>> X, Y = make_paired_image_ehr(n_samples=200, random_state=0)
    >>> adapter = MedCAMAdapter(projection_dim=8, hidden_dim=16, lstm_dim=16, max_epochs=5)
    >>> # The fusion estimators' training budget: in optimizer steps, the epoch chosen on held-out rows.
    >>> settings = dict(batch_size="auto", max_epochs="auto", early_stopping="auto", random_state=0)
    >>> clf = MedCAMClassifier(adapter, **settings).fit(X, Y)
    >>> clf.predict_proba(X.drop(columns="ehr")).shape
    (200, 14)

    Aligned on one cohort, fine-tuned on another that has no EHR:

    >>> from sklearn.frozen import FrozenEstimator
    >>> aligned = adapter.set_params(random_state=0).fit(X)
    >>> X_new, Y_new = make_paired_image_ehr(n_samples=100, random_state=1)
    >>> clf = MedCAMClassifier(FrozenEstimator(aligned), **settings)
    >>> clf.fit(X_new.drop(columns="ehr"), Y_new).predict(X_new.drop(columns="ehr")).shape
    (100, 14)
    """

    # The adapter was fitted on the embedding as it is: the classifier must read it unscaled.
    standardize = False

    _parameter_constraints = {
        **BaseFusion._parameter_constraints,
        "adapter": [BasePairedPretraining, FrozenEstimator, None],
        "freeze_adapter": ["boolean"],
    }

    def __init__(
        self,
        adapter=None,
        *,
        freeze_adapter=False,
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
        class_weight=None,
    ):
        self.adapter = adapter
        self.freeze_adapter = freeze_adapter
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
        self.class_weight = class_weight

    def _make_adapter(self):
        if isinstance(self.adapter, FrozenEstimator):
            return self.adapter
        adapter = MedCAMAdapter() if self.adapter is None else clone(self.adapter)
        if adapter.random_state is None:
            adapter.set_params(random_state=draw_seed(self.random_state))
        return adapter

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Adapt the image encoder to the EHR (no labels), then fine-tune it with a linear head.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            The image embedding block and the EHR column (rows without an EHR series take
            part in step 2 only); an array is split by the adapter's ``modality_dims``.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Labels, or a label-indicator matrix for multi-label findings.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows in step 2, whose loss is a weighted mean; the
            adaptation (step 1) has no labels and weighs its rows equally. ``None``: equal
            weights.

        Returns
        -------
        self : object
        """
        self.adapter_ = self._make_adapter().fit(X, None)
        return super().fit(X, y, sample_weight=sample_weight)

    def _blocks(self, X, reset):
        spec, ehr = self.adapter_.image_spec_, self.adapter_.ehr_spec_
        # A frame needs only its image here; an array is checked whole.
        blocks = read_blocks(self, X, [spec], reset, also=[] if is_grouped_frame(X) else [ehr])
        if reset:
            self.layout_ = (spec,)
        require_present(blocks, [spec.name], "MedCAMClassifier predicts from the image: every row needs it.")
        return blocks, len(blocks[spec.name]["present"])

    def _build_module(self, n_outputs):
        adapter = copy.deepcopy(self.adapter_.net_.module_.image_branch)
        return AdaptedImageClassifier(
            self.adapter_.image_spec_.name, adapter, self.adapter_.projection_dim, n_outputs, self.freeze_adapter
        )
