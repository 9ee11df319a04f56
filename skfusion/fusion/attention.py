"""Cross-attention and co-attention fusion (Zhang et al., 2026, section 2.2, Fig. 1c-d) over token sequences."""

import re
import warnings
from numbers import Integral

import torch
from sklearn.utils.validation import check_is_fitted

from .._base import BaseFusion
from .._classifier import ClassifierHeadMixin
from .._compat import Interval, StrOptions
from .._data import ModalityDataset, require_present
from .._docstrings import CLASSIFIER_WEIGHT_DECAY, TRAINING, fill_doc, parameters
from .._survival import SurvivalMixin
from ..modules._blocks import default_hidden_dims
from ..modules.attention import CoAttentionFusion, CrossAttentionFusion


def require_modalities(layout, X, family, exactly=None):
    """Return ``layout`` if it has two modalities or more (``exactly`` of them, if given)."""
    names = [spec.name for spec in layout]
    if exactly is not None and len(names) > exactly:
        raise ValueError(
            f"{family} needs exactly {exactly} modalities; X has {names}: choose {exactly} with modalities=[...]."
        )
    if len(names) < 2:
        wanted = f"exactly {exactly}" if exactly is not None else "at least two"
        raise ValueError(f"{family} needs {wanted} modalities; X has only {names} ({X.shape[1]} feature(s)).")
    return layout


class _Attention(BaseFusion):
    """What the attention families share: tokens, heads, missing rows and the weights."""

    _parameter_constraints = {
        **BaseFusion._parameter_constraints,
        "missing": [StrOptions({"raise", "learn"})],
        "n_tokens": [Interval(Integral, 1, None, closed="left")],
        "attention_dim": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
    }

    def _check_blocks(self, blocks):
        if self.missing == "raise":
            require_present(blocks, list(blocks), "pass missing='learn' to substitute a learnable token.")

    def _module_settings(self, n_fused):
        """Keyword arguments shared by the attention modules, after checking the head count."""
        if self.attention_dim % self.n_heads:
            raise ValueError(
                f"attention_dim={self.attention_dim} must be a multiple of n_heads={self.n_heads} "
                "(each head has attention_dim / n_heads dimensions)."
            )
        width = n_fused * self.attention_dim
        return {
            "n_tokens": self.n_tokens,
            "width": self.attention_dim,
            "n_heads": self.n_heads,
            "hidden_dims": self.hidden_dims if self.hidden_dims is not None else default_hidden_dims(width),
            "dropout": self.dropout,
            "learn_missing": self.missing == "learn",
        }

    def attention_weights(self, X):
        """Attention weights of every row of ``X``, one array per attention direction.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        weights : dict of str to ndarray of shape (n_samples, n_heads, T_query, T_key)
            Keyed ``"query<-key"`` by modality names. Entry ``[i, h, s, t]`` is the weight
            token ``s`` of row ``i``'s query modality gives token ``t`` of its key modality
            in head ``h``. Each real query token's weights sum to one over the real key tokens
            (over all key modalities together for co-attention with more than two
            modalities); padded tokens, on either side, have exactly zero weight. ``T`` is the
            longest sequence in ``X`` (the number of chunks for a vector modality). All rows
            are computed in one pass.
        """
        check_is_fitted(self)
        blocks, n_samples = self._blocks(X, reset=False)
        dataset = ModalityDataset(blocks, device=self.net_.device)
        batch, _ = dataset.batch(torch.arange(n_samples, device=dataset.device))
        module = self.network_.eval()
        with torch.inference_mode():
            _, weights = module.fuse(batch, need_weights=True)
        return {name: w.double().cpu().numpy() for name, w in weights.items()}


class _CrossAttention(_Attention):
    def _infer_layout(self, X):
        return require_modalities(super()._infer_layout(X), X, type(self).__name__, exactly=2)

    def _build_module(self, n_outputs):
        return CrossAttentionFusion(self.layout_, n_outputs=n_outputs, **self._module_settings(4))


# Names the encoders and data sets give an image modality (ImageEmbedder's "img",
# CTVolumeEmbedder's "ct") and the usual names of imaging modalities.
_IMAGE_NAMES = frozenset({"img", "image", "ct", "cxr", "xray", "mri", "pet"})


def _is_image_name(name):
    """Whether a modality name reads as an image: it, or one of its ``_``-separated parts, is in ``_IMAGE_NAMES``."""
    return any(part in _IMAGE_NAMES for part in re.split(r"[\W_]+", name.lower()))


class _CoAttention(_Attention):
    _parameter_constraints = {**_Attention._parameter_constraints, "guide": [str]}

    def _infer_layout(self, X):
        layout = require_modalities(super()._infer_layout(X), X, type(self).__name__)
        names = [spec.name for spec in layout]
        if self.guide == "auto":
            self.guide_ = self._auto_guide(layout)
        elif self.guide in names:
            self.guide_ = self.guide
        else:
            raise ValueError(f"guide={self.guide!r} is not a modality of X; the modalities are {names}.")
        return layout

    def _auto_guide(self, layout):
        """The image modality, else the widest one; a tie is broken by column order, with a warning."""
        images = [spec for spec in layout if _is_image_name(spec.name)]
        candidates = images or list(layout)
        widest = max(spec.dim for spec in candidates)
        tied = [spec.name for spec in candidates if spec.dim == widest]
        if len(tied) > 1:
            # Which modality guides changes the model (Table 1 of Zhang et al. has one row per
            # guide): a choice left to column order must not pass unnoticed.
            kind = "image modalities" if images else "modalities, none of them named as an image,"
            warnings.warn(
                f"{type(self).__name__}: guide='auto' found {len(tied)} {kind} of the same width ({widest}): "
                f"{tied}; the first in column order, {tied[0]!r}, guides (gives the queries). Pass "
                f"guide={tied[0]!r} (or another modality) to choose explicitly and silence this warning.",
                UserWarning,
                stacklevel=7,  # the caller of fit, past _layout, _blocks, fit and scikit-learn's _fit_context
            )
        return tied[0]

    def _build_module(self, n_outputs):
        return CoAttentionFusion(self.layout_, self.guide_, n_outputs=n_outputs, **self._module_settings(2))


_ATTENTION_DOCS = {
    "tokens": """Attention runs over tokens: softmax over a single key is identically 1 and would make
    it a linear layer. A token modality (an object column of ``(T_i, d)`` arrays, e.g.
    per-slice CT embeddings) keeps its tokens, each projected by a linear layer to
    ``attention_dim`` (no position embedding: lengths vary, order is not used). A vector
    block of width ``d`` is cut into ``k = min(n_tokens, d)`` contiguous chunks, as
    :func:`numpy.array_split` cuts it (widths differ by at most one, so ``d`` need not be
    a multiple of ``n_tokens``), and each chunk gets its own linear projection to
    ``attention_dim``, whose bias doubles as a learned position embedding. (A projection
    shared by the chunks, as for image patches, would make the mean of the tokens keep only
    the sum of the chunks; per-chunk weights keep all of the vector.) Padded tokens are masked: their scores are set
    to :math:`-\\infty` before the softmax, so they get exactly zero weight. Each query
    token attends; the attended outputs of the real query tokens are averaged (masked mean)
    into one vector per row, and a modality's embedding :math:`h` in the fused vector is the
    masked mean of its projected tokens.

    Attention is scaled dot-product,
    :math:`\\mathrm{softmax}(Q K^\\top / \\sqrt{d_k}) V` with :math:`Q = W_Q Z_q`,
    :math:`K = W_K Z_k`, :math:`V = W_V Z_k`, in ``n_heads`` heads of
    :math:`d_k` = ``attention_dim / n_heads`` dimensions whose outputs are concatenated.
    ``weight_decay`` is the :math:`\\lambda \\lVert\\theta\\rVert_2^2` penalty of the
    loss of Zhang et al. (2026) on every trainable parameter (projections, attention, head).
    :meth:`attention_weights` returns the weights.""",
    "attention_parameters": """missing : {"raise", "learn"}, default="raise"
        What to do with a row that lacks a modality: raise a ValueError naming the modality
        and rows, or give that modality a single learnable token in that row.
    n_tokens : int, default=8
        Number of tokens a vector modality is cut into (at most its width). Token
        modalities keep their own tokens.
    attention_dim : int, default=32
        Width of the projected tokens and of each attention output; :math:`d_k` when
        ``n_heads=1``.
    n_heads : int, default=1
        Number of attention heads (Zhang et al., 2026, use one); must divide ``attention_dim``.""",
    "attention_references": """.. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.2 and Table 1.
    .. [2] Vaswani et al. Attention is all you need. NeurIPS 2017 (scaled dot-product and
           multi-head attention).""",
    "cross_notes": """Bidirectional cross-attention of Zhang et al. (2026, Fig. 1d): for the two modalities
    ``a`` and ``b`` (in the order of ``modalities``, or of ``X``),
    :math:`h_{fused} = [h_a, A_{a \\leftarrow b}, h_b, A_{b \\leftarrow a}]`, where
    :math:`A_{a \\leftarrow b}` takes its queries from ``a`` and its keys and values from
    ``b``, and each direction has its own :math:`W_Q, W_K, W_V`; an MLP head reads
    :math:`h_{fused}` (width ``4 * attention_dim``). Exactly two modalities are fused: with
    more in ``X``, name two with ``modalities=``.""",
    "co_notes": """Co-attention of Zhang et al. (2026, Fig. 1c): the guiding modality gives the queries, the
    other gives the keys and values, and
    :math:`h_{fused} = [h_{guide}, \\mathrm{softmax}(Q_{guide} K_{other}^\\top / \\sqrt{d_k}) V_{other}]`
    (width ``2 * attention_dim``) feeds an MLP head. ``guide="img"`` is Table 1's "image
    guide" row (:math:`h_{fused} = [h_{img}, A_{coattn}]`), ``guide="ehr"`` its "EHR guide"
    row. (The paper's worked equations take the query from :math:`h_{ehr}` and still
    concatenate :math:`h_{img}`; here the guide both gives the queries and keeps its own
    embedding in the fused vector, so both modalities reach the head.) With more than two
    modalities, the guide attends over the tokens of all the others together (their tokens
    side by side as one key sequence).""",
    "guide": """guide : str, default="auto"
        The guiding modality (gives the queries): one of the fused modalities, or
        ``"auto"``, which picks it from the data, not from column order:

        - the image modality (Table 1's "image guide" rows: as good as or better than the
          EHR guide in 5 of its 8 columns, by up to 0.055 C on internal PE with one-hot
          EHR, behind it in 3 by at most 0.013, and the best model of external MACE). A
          modality is an image when its name, or a ``_``-separated part of it, is ``img``,
          ``image``, ``ct``, ``cxr``, ``xray``, ``mri`` or ``pet`` (any case), as the
          blocks :class:`~skfusion.encoders.ImageEmbedder` and
          :class:`~skfusion.encoders.CTVolumeEmbedder` write are named;
        - without an image modality, the widest modality (features per row; per token for
          a token modality), and among several image modalities the widest of them: the
          guide keeps its whole embedding in the fused vector while the others reach the
          head through attention pooling, and in the paper the image (1024 features) is
          the widest too.

        Only a tie for the widest, e.g. the even split of a plain array, is left to column
        order (the first of the tied modalities), and ``fit`` then warns (``UserWarning``).
        ``guide_`` records the modality used.""",
    "guide_attribute": """guide_ : str
        The modality that guided the fit: ``guide``, or the one ``guide="auto"`` chose.""",
    # The attention classifiers keep batches of 256: with the more frequent steps of
    # batch_size="auto" they grow over-confident on small data (benchmarks/results/classifiers.md).
    "classifier_training": parameters(
        TRAINING,
        weight_decay=CLASSIFIER_WEIGHT_DECAY,
        batch_size=TRAINING["batch_size"].replace('default="auto"', "default=256"),
    ),
}


@fill_doc(**_ATTENTION_DOCS)
class CrossAttentionSurvival(SurvivalMixin, _CrossAttention):
    """Bidirectional cross-attention fusion for survival (time-to-event).

    {cross_notes}

    {tokens}

    Parameters
    ----------
    {modalities}
    {attention_parameters}
    {survival_task}
    {training}
    {modality_dims}

    Attributes
    ----------
    {survival_attributes}
    {attributes}

    See Also
    --------
    CrossAttentionClassifier : the classification twin.
    CoAttentionSurvival : one direction, guided by one modality.
    ConcatSurvival : concatenation fusion.

    References
    ----------
    {attention_references}

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.fusion.attention import CrossAttentionSurvival
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> model = CrossAttentionSurvival(attention_dim=16, random_state=0).fit(X, y)
    >>> bool(model.score(X, y) > 0.6)
    True
    >>> weights = model.attention_weights(X.iloc[:2])
    >>> sorted(weights), weights["img<-ehr"].shape
    (['ehr<-img', 'img<-ehr'], (2, 1, 8, 8))
    """

    def __init__(
        self,
        *,
        modalities=None,
        missing="raise",
        n_tokens=8,
        attention_dim=32,
        n_heads=1,
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
        self.n_tokens = n_tokens
        self.attention_dim = attention_dim
        self.n_heads = n_heads
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


@fill_doc(**_ATTENTION_DOCS)
class CrossAttentionClassifier(ClassifierHeadMixin, _CrossAttention):
    """Bidirectional cross-attention fusion for classification.

    {cross_notes}

    {tokens}

    Parameters
    ----------
    {modalities}
    {attention_parameters}
    {classifier_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {classifier_attributes}
    {attributes}

    See Also
    --------
    CrossAttentionSurvival : the survival twin.
    CoAttentionClassifier : one direction, guided by one modality.
    ConcatClassifier : concatenation fusion.

    References
    ----------
    {attention_references}

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> from skfusion.fusion.attention import CrossAttentionClassifier
    >>> X, y = make_multimodal_classification(n_samples=300, random_state=0)
    >>> model = CrossAttentionClassifier(attention_dim=16, random_state=0).fit(X, y)
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
        n_tokens=8,
        attention_dim=32,
        n_heads=1,
        hidden_dims=None,
        standardize=True,
        linear_path=True,
        dropout=0.1,
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
        class_weight=None,
    ):
        self.modalities = modalities
        self.missing = missing
        self.n_tokens = n_tokens
        self.attention_dim = attention_dim
        self.n_heads = n_heads
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


@fill_doc(**_ATTENTION_DOCS)
class CoAttentionSurvival(SurvivalMixin, _CoAttention):
    """Co-attention fusion for survival (time-to-event): one modality guides attention over the other.

    {co_notes}

    {tokens}

    Parameters
    ----------
    {modalities}
    {guide}
    {attention_parameters}
    {survival_task}
    {training}
    {modality_dims}

    Attributes
    ----------
    {guide_attribute}
    {survival_attributes}
    {attributes}

    See Also
    --------
    CoAttentionClassifier : the classification twin.
    CrossAttentionSurvival : both directions.
    ConcatSurvival : concatenation fusion.

    References
    ----------
    {attention_references}

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion.datasets import make_multimodal_survival
    >>> from skfusion.fusion.attention import CoAttentionSurvival
    >>> X, y = make_multimodal_survival(n_samples=300, random_state=0)
    >>> model = CoAttentionSurvival(attention_dim=16, random_state=0).fit(X, y)
    >>> model.guide_  # guide="auto": the image modality gives the queries
    'img'
    >>> bool(model.score(X, y) > 0.6)
    True
    >>> weights = model.attention_weights(X.iloc[:2])["img<-ehr"]
    >>> weights.shape, bool(np.allclose(weights.sum(axis=-1), 1.0))
    ((2, 1, 8, 8), True)
    """

    def __init__(
        self,
        *,
        modalities=None,
        guide="auto",
        missing="raise",
        n_tokens=8,
        attention_dim=32,
        n_heads=1,
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
        self.guide = guide
        self.missing = missing
        self.n_tokens = n_tokens
        self.attention_dim = attention_dim
        self.n_heads = n_heads
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


@fill_doc(**_ATTENTION_DOCS)
class CoAttentionClassifier(ClassifierHeadMixin, _CoAttention):
    """Co-attention fusion for classification: one modality guides attention over the other.

    {co_notes}

    {tokens}

    Parameters
    ----------
    {modalities}
    {guide}
    {attention_parameters}
    {classifier_training}
    {modality_dims}
    {class_weight}

    Attributes
    ----------
    {guide_attribute}
    {classifier_attributes}
    {attributes}

    See Also
    --------
    CoAttentionSurvival : the survival twin.
    CrossAttentionClassifier : both directions.
    ConcatClassifier : concatenation fusion.

    References
    ----------
    {attention_references}

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> from skfusion.fusion.attention import CoAttentionClassifier
    >>> X, y = make_multimodal_classification(n_samples=300, random_state=0)
    >>> model = CoAttentionClassifier(guide="ehr", attention_dim=16, random_state=0).fit(X, y)
    >>> model.predict_proba(X.iloc[:2]).shape
    (2, 2)
    >>> bool(model.score(X, y) > 0.7)
    True
    """

    def __init__(
        self,
        *,
        modalities=None,
        guide="auto",
        missing="raise",
        n_tokens=8,
        attention_dim=32,
        n_heads=1,
        hidden_dims=None,
        standardize=True,
        linear_path=True,
        dropout=0.1,
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
        class_weight=None,
    ):
        self.modalities = modalities
        self.guide = guide
        self.missing = missing
        self.n_tokens = n_tokens
        self.attention_dim = attention_dim
        self.n_heads = n_heads
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
