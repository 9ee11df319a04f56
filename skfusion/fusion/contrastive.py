"""Contrastive alignment fusion (Zhang et al., 2026, section 2.2, Fig. 1b): CLIP-style pre-alignment, then the task."""

import copy
from numbers import Integral, Real

import numpy as np

from .._base import BaseFusion
from .._engine import AlignmentNet, draw_seed, make_net, resolve_batch_size, resolve_device, seeded
from .._classifier import ClassifierHeadMixin
from .._compat import Interval, StrOptions, _fit_context
from .._data import ModalityDataset, require_present
from .._docstrings import fill_doc
from .._survival import SurvivalMixin
from ..modules._blocks import default_hidden_dims
from ..modules.contrastive import AlignmentLoss, ContrastiveFusion, ContrastiveProjections
from .attention import require_modalities


class _Contrastive(BaseFusion):
    """The two-step family: ``fit`` runs the alignment net, then BaseFusion's supervised fit."""

    _parameter_constraints = {
        **BaseFusion._parameter_constraints,
        "missing": [StrOptions({"raise", "learn"})],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "learn_temperature": ["boolean"],
        "alignment_epochs": [Interval(Integral, 0, None, closed="left")],
        "freeze_projections": ["boolean"],
    }

    def _infer_layout(self, X):
        return require_modalities(super()._infer_layout(X), X, type(self).__name__)

    def _check_blocks(self, blocks):
        if self.missing == "raise":
            require_present(blocks, list(blocks), "pass missing='learn' to substitute a learnable vector.")

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Align the modality projections (step 1), then fit the model on the task (step 2).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Modalities as ``name__i`` column blocks (or token columns); an array is split
            by ``modality_dims``.
        y : array-like
            Survival: structured array from :func:`sksurv.util.Surv.from_arrays`.
            Classification: labels, or a label-indicator matrix for multi-label targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows in step 2, whose losses are weighted means.
            Step 1 learns how the modalities pair up from every complete row, unweighted
            (the weights are of the task's rows). ``None``: equal weights.

        Returns
        -------
        self : object
        """
        return super().fit(X, y, sample_weight=sample_weight)

    def _before_training(self, X, y, sample_weight, blocks, targets):
        self.alignment_net_ = self._align(blocks)
        return None

    def _align(self, blocks):
        """Step 1: the projections trained with the contrastive loss on the complete rows."""
        complete = np.flatnonzero(np.all([b["present"].numpy() for b in blocks.values()], axis=0))
        if len(complete) < 2:
            raise ValueError(
                f"the contrastive step needs at least 2 rows with every modality {list(blocks)} "
                f"(positive pairs); X has {len(complete)}."
            )
        device = resolve_device(self.device)
        dataset = ModalityDataset(blocks, device=device).subset(complete)
        seed = draw_seed(self.random_state)
        with seeded(seed, device):
            net = make_net(
                ContrastiveProjections(
                    {spec.name: spec.dim for spec in self.layout_},
                    self.projection_dim,
                    self.temperature,
                    self.learn_temperature,
                ),
                AlignmentLoss(),
                device=device,
                batch_size=resolve_batch_size(self.batch_size, len(complete)),
                seed=seed,
                lr=self.lr,
                weight_decay=self.weight_decay,
                # CLIP leaves its logit scale out of the weight decay.
                param_groups=[("log_scale", {"weight_decay": 0.0})],
                max_epochs=self.alignment_epochs,
                verbose=self.verbose,
                net_class=AlignmentNet,
            )
            net.fit(dataset, None)
        return net

    def _build_module(self, n_outputs):
        projections = copy.deepcopy(self.alignment_net_.module_)
        width = len(self.layout_) * self.projection_dim
        hidden = self.hidden_dims if self.hidden_dims is not None else default_hidden_dims(width)
        return ContrastiveFusion(
            projections,
            hidden,
            n_outputs,
            self.dropout,
            learn_missing=self.missing == "learn",
            freeze=self.freeze_projections,
        )


_CONTRASTIVE_DOCS = {
    "contrastive_notes": """Two steps, as in Zhang et al. (2026), inspired by CLIP. Each modality embedding :math:`h_m`
    (a token sequence is first averaged over its real tokens) gets a linear projection
    :math:`g_m` to ``projection_dim``.

    1. *Alignment*: the projections alone are trained for ``alignment_epochs`` with the
       symmetric InfoNCE loss
       :math:`\\mathcal{L} = -\\frac{1}{N} \\sum_i [\\log \\frac{e^{S_{ii}}}{\\sum_j e^{S_{ij}}}
       + \\log \\frac{e^{S_{ii}}}{\\sum_j e^{S_{ji}}}]` with
       :math:`S_{ij} = \\cos(g_1(h_{1,i}), g_2(h_{2,j})) / \\tau`: the two modalities
       of one row are the positive pair, every other pairing in the batch is a negative
       (so ``batch_size`` sets the number of negatives). With more than two modalities the
       loss is averaged over every pair. Only the rows that have every modality take part.
       It uses ``lr``, ``weight_decay``, ``batch_size`` and ``device``; ``callbacks`` and
       early stopping apply to step 2 only.
    2. *Task*: a prediction MLP reads the concatenated projections
       :math:`[g_1(h_1), \\dots, g_M(h_M)]`; the projections start from step 1 and are
       fine-tuned with it, or kept fixed with ``freeze_projections=True``.""",
    "contrastive_parameters": """missing : {"raise", "learn"}, default="raise"
        What to do with a row that lacks a modality: raise a ValueError naming the modality
        and rows, or (step 2) substitute a learnable vector for its projection. Such rows
        never take part in step 1.
    projection_dim : int, default=64
        Width of each modality's projection (the shared latent space).
    temperature : float, default=0.07
        The temperature :math:`\\tau` of the similarities (CLIP's initial value).
    learn_temperature : bool, default=False
        Learn :math:`\\log(1/\\tau)` in step 1, starting from ``temperature`` (CLIP's
        learnable logit scale, clipped at 100 and exempt from weight decay). With
        ``False``, :math:`\\tau` stays fixed, as in the formula of Zhang et al. (2026).
    alignment_epochs : int, default=50
        Epochs of step 1; 0 skips it (the projections start at random).
    freeze_projections : bool, default=False
        Keep the aligned projections fixed in step 2 (train only the head) instead of
        fine-tuning them with the task loss.""",
    "contrastive_attributes": """alignment_net_ : skorch.NeuralNet
        The step-1 network (the projections before step 2); ``alignment_net_.history``
        holds the contrastive loss of each epoch.""",
    "contrastive_references": """.. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.2 and Table 1.
    .. [2] Radford et al. Learning transferable visual models from natural language
           supervision (CLIP). ICML 2021.""",
}


@fill_doc(**_CONTRASTIVE_DOCS)
class ContrastiveSurvival(SurvivalMixin, _Contrastive):
    """Contrastive alignment fusion for survival (time-to-event): CLIP-style pre-alignment, then the survival head.

    {contrastive_notes}

    Parameters
    ----------
    {modalities}
    {contrastive_parameters}
    {survival_task}
    {training}
    {modality_dims}

    Attributes
    ----------
    {contrastive_attributes}
    {survival_attributes}
    {attributes}

    See Also
    --------
    ContrastiveClassifier : the classification twin.
    ConcatSurvival : concatenation without alignment.
    CrossAttentionSurvival : bidirectional cross-attention.

    References
    ----------
    {contrastive_references}

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.fusion.contrastive import ContrastiveSurvival
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> model = ContrastiveSurvival(random_state=0).fit(X, y)
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
        projection_dim=64,
        temperature=0.07,
        learn_temperature=False,
        alignment_epochs=50,
        freeze_projections=False,
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
        self.projection_dim = projection_dim
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.alignment_epochs = alignment_epochs
        self.freeze_projections = freeze_projections
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


@fill_doc(**_CONTRASTIVE_DOCS)
class ContrastiveClassifier(ClassifierHeadMixin, _Contrastive):
    """Contrastive alignment fusion for classification: CLIP-style pre-alignment, then the classification head.

    {contrastive_notes}

    Parameters
    ----------
    {modalities}
    {contrastive_parameters}
    {classifier_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {contrastive_attributes}
    {classifier_attributes}
    {attributes}

    See Also
    --------
    ContrastiveSurvival : the survival twin.
    ConcatClassifier : concatenation without alignment.
    CrossAttentionClassifier : bidirectional cross-attention.

    References
    ----------
    {contrastive_references}

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> from skfusion.fusion.contrastive import ContrastiveClassifier
    >>> X, y = make_multimodal_classification(n_samples=300, random_state=0)
    >>> model = ContrastiveClassifier(random_state=0).fit(X, y)
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
        projection_dim=64,
        temperature=0.07,
        learn_temperature=False,
        alignment_epochs=50,
        freeze_projections=False,
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
        self.projection_dim = projection_dim
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.alignment_epochs = alignment_epochs
        self.freeze_projections = freeze_projections
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
