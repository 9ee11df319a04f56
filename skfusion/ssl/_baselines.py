"""The self-supervised image-EHR baselines of MedMod (Elsharief et al. 2025, section 3.3.2): ConVIRT, VICReg, ALIGN."""

from numbers import Real

from .._compat import Interval, StrOptions
from .._docstrings import fill_doc
from ..modules.ssl import ALIGNLoss, ConVIRTLoss, VICRegLoss
from ._base import BasePairedPretraining

_SSL_DOCS = {
    "ssl_notes": """Both modalities are embedded in a shared space of width ``projection_dim``: the
    pre-computed image embedding through an MLP (the image encoder stays frozen upstream;
    this MLP is what learns) and the EHR time series through MedFuse's two-layer LSTM and
    an MLP projection of its last valid state. ``fit`` uses no labels and only the rows that
    have both modalities; ``transform`` returns the embeddings for a downstream model, so
    linear probing is a pipeline::

        Pipeline([("ssl", {name}()), ("probe", LogisticRegression())])

    (``OneVsRestClassifier(LogisticRegression())`` for multi-label findings, sksurv's
    ``CoxPHSurvivalAnalysis`` for survival). Fine-tuning the image branch with a linear head
    on labels is :class:`MedCAMClassifier` with ``adapter={name}(...)``.""",
    "ssl_see_also": """MedCAMAdapter : global + local (top-k time step) alignment of the image to the EHR.
    MedCAMClassifier : fine-tunes the image branch of any of these with a linear head.""",
}


def _ssl_docs(name):
    """The fields of :data:`_SSL_DOCS` written for the method ``name``."""
    return {field: text.format(name=name) for field, text in _SSL_DOCS.items()}


class _SSLTransformer(BasePairedPretraining):
    _parameter_constraints = {
        **BasePairedPretraining._parameter_constraints,
        "output": [StrOptions({"image", "ehr", "both"})],
    }


def _swap_range(fraction):
    """``swap_fraction`` as a float or a ``(low, high)`` tuple, checked."""
    if not isinstance(fraction, (tuple, list)):
        return float(fraction)
    numbers = len(fraction) == 2 and all(isinstance(f, Real) for f in fraction)
    if not numbers or not 0 <= fraction[0] <= fraction[1] <= 0.5:
        raise ValueError(
            f"swap_fraction must be a float in [0, 0.5] or a pair (low, high) with 0 <= low <= high <= 0.5; got "
            f"{fraction!r}."
        )
    return (float(fraction[0]), float(fraction[1]))


_TEMPERATURE = {"temperature": [Interval(Real, 0, None, closed="neither")]}


@fill_doc(**_ssl_docs("ConVIRT"))
class ConVIRT(_SSLTransformer):
    """ConVIRT: bidirectional contrastive pretraining of an image and EHR embedding.

    The loss of ConVIRT [1]_ as MedMod [2]_ adapts it to chest X-rays and EHR: the image and
    the EHR of one stay are a positive pair, every other pairing in the batch a negative,

    .. math::

        \\mathcal{{L}} = \\lambda \\, \\ell^{{img \\to ehr}} + (1 - \\lambda) \\, \\ell^{{ehr \\to img}},
        \\qquad \\ell^{{a \\to b}} = -\\frac{{1}}{{N}} \\sum_i \\log
        \\frac{{e^{{\\cos(a_i, b_i) / \\tau}}}}{{\\sum_j e^{{\\cos(a_i, b_j) / \\tau}}}}

    with ConVIRT's :math:`\\lambda = 0.75` and :math:`\\tau = 0.1` by default. MedMod's code
    sums the two directions unweighted and leaves the positive out of each denominator
    (:math:`\\sum_{{j \\ne i}}`), at a fixed :math:`\\tau = 0.01` (its pretraining script):
    ``ConVIRT(image_weight=1, ehr_weight=1, negatives_only=True, temperature=0.01)``
    reproduces that loss exactly.

    {ssl_notes}

    Parameters
    ----------
    {paired_modalities}
    output : {{"image", "ehr", "both"}}, default="both"
        What ``transform`` returns: the image embedding, the EHR embedding, or both
        concatenated (image first). ``transform`` reads only the columns of what it returns.
    temperature : float, default=0.1
        :math:`\\tau`.
    image_weight : float, default=0.75
        :math:`\\lambda`, the weight of the image-to-EHR direction, in [0, 1].
    ehr_weight : float, default=None
        The weight of the EHR-to-image direction; ``None`` is ConVIRT's :math:`1 - \\lambda`,
        ``1`` with ``image_weight=1`` MedMod's unweighted sum.
    negatives_only : bool, default=False
        Sum each denominator over the other rows of the batch only, leaving the positive out
        (MedMod's code); ``False`` is the InfoNCE of ConVIRT's paper.
    {paired_network}
    {paired_training}
    {paired_early_stopping}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    ALIGN : the unweighted symmetric InfoNCE, with a learned temperature and noisy pairs.
    VICReg : a non-contrastive objective.
    {ssl_see_also}

    References
    ----------
    .. [1] Y. Zhang, H. Jiang, Y. Miura, C. D. Manning and C. P. Langlotz (2022). Contrastive
           learning of medical visual representations from paired images and text. MLHC.
    .. [2] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.2.

    Examples
    --------
    >>> from skfusion.ssl import ConVIRT
    >>> from skfusion.datasets import make_paired_image_ehr
    >>> X, Y = make_paired_image_ehr(n_samples=120, random_state=0)
    >>> ssl = ConVIRT(projection_dim=8, hidden_dim=16, lstm_dim=16, max_epochs=3, random_state=0)
    >>> ssl.fit_transform(X).shape
    (120, 16)
    >>> ssl.get_feature_names_out()[[0, -1]].tolist()
    ['img__0', 'ehr__7']
    """

    _parameter_constraints = {
        **_SSLTransformer._parameter_constraints,
        **_TEMPERATURE,
        "image_weight": [Interval(Real, 0, 1, closed="both")],
        "ehr_weight": [Interval(Real, 0, None, closed="left"), None],
        "negatives_only": ["boolean"],
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
        output="both",
        temperature=0.1,
        image_weight=0.75,
        ehr_weight=None,
        negatives_only=False,
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
        self.output = output
        self.temperature = temperature
        self.image_weight = image_weight
        self.ehr_weight = ehr_weight
        self.negatives_only = negatives_only
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
        ehr_weight = 1 - self.image_weight if self.ehr_weight is None else self.ehr_weight
        return ConVIRTLoss(self.image_weight, ehr_weight, self.negatives_only)


@fill_doc(**_ssl_docs("ALIGN"))
class ALIGN(_SSLTransformer):
    """ALIGN: symmetric contrastive pretraining with a learned temperature, on noisy pairs.

    ALIGN's [1]_ normalized-softmax loss, the InfoNCE of both directions summed, with
    MedMod's [2]_ EHR in place of the text: each image must find its own EHR among the batch,
    and each EHR its own image,

    .. math::

        \\mathcal{{L}} = \\ell^{{img \\to ehr}} + \\ell^{{ehr \\to img}}, \\qquad
        \\ell^{{a \\to b}} = -\\frac{{1}}{{N}} \\sum_i \\log
        \\frac{{e^{{\\cos(a_i, b_i) / \\tau}}}}{{\\sum_j e^{{\\cos(a_i, b_j) / \\tau}}}}.

    As in ALIGN, the temperature is learned, starting at ``temperature`` (the logit scale
    :math:`1/\\tau` is learned in log space and clipped at 100). ALIGN's pairs are noisy by
    nature (web alt-texts); MedMod makes EHR-CXR pairs noisy by exchanging the EHR of part of
    each training batch: ``swap_fraction`` does the same (the default ``0`` trains on the pairs
    given). MedMod's code is ``ALIGN(swap_fraction=(0.16, 0.2), negatives_only=True,
    temperature=0.07)``: in each batch of :math:`B` it draws a count between
    :math:`\\lfloor 0.16 B \\rfloor` and :math:`\\lfloor 0.2 B \\rfloor` and exchanges the EHR of
    two disjoint groups of that many rows (so 32 to 40 % of the rows are mispaired), and its
    denominators leave the positive out. It learns :math:`\\tau` itself where skfusion learns
    :math:`\\log(1/\\tau)`: the same loss, a different parametrisation of its gradient.

    {ssl_notes}

    Parameters
    ----------
    {paired_modalities}
    output : {{"image", "ehr", "both"}}, default="both"
        What ``transform`` returns: the image embedding, the EHR embedding, or both
        concatenated (image first). ``transform`` reads only the columns of what it returns.
    temperature : float, default=0.1
        Initial :math:`\\tau` (learned).
    swap_fraction : float or tuple of (float, float), default=0.0
        Share of each training batch whose EHR is exchanged with that of as many other rows
        (so twice that share is mispaired), in [0, 0.5]; a pair ``(low, high)`` draws the share
        uniformly per batch, as MedMod's ``(0.16, 0.2)``. ``transform`` is unaffected.
    negatives_only : bool, default=False
        Sum each denominator over the other rows only, leaving the positive out (MedMod's
        code); ``False`` is ALIGN's InfoNCE.
    {paired_network}
    {paired_training}
    {paired_early_stopping}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    ConVIRT : both directions, weighted, at a fixed temperature.
    VICReg : a non-contrastive objective.
    {ssl_see_also}

    References
    ----------
    .. [1] C. Jia et al. (2021). Scaling up visual and vision-language representation
           learning with noisy text supervision. ICML.
    .. [2] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.2.

    Examples
    --------
    >>> from skfusion.ssl import ALIGN
    >>> from skfusion.datasets import make_paired_image_ehr
    >>> X, Y = make_paired_image_ehr(n_samples=120, random_state=0)
    >>> ssl = ALIGN(output="ehr", projection_dim=8, hidden_dim=16, lstm_dim=16, max_epochs=3, random_state=0)
    >>> ssl.fit(X).transform(X[["ehr"]]).shape
    (120, 8)
    """

    _parameter_constraints = {
        **_SSLTransformer._parameter_constraints,
        **_TEMPERATURE,
        "swap_fraction": [Interval(Real, 0, 0.5, closed="both"), tuple, list],
        "negatives_only": ["boolean"],
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
        output="both",
        temperature=0.1,
        swap_fraction=0.0,
        negatives_only=False,
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
        self.output = output
        self.temperature = temperature
        self.swap_fraction = swap_fraction
        self.negatives_only = negatives_only
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
        return ALIGNLoss(_swap_range(self.swap_fraction), self.negatives_only)

    def _learn_temperature(self):
        return True


@fill_doc(**_ssl_docs("VICReg"))
class VICReg(_SSLTransformer):
    """VICReg: variance-invariance-covariance regularised pretraining of image and EHR embeddings.

    The loss of VICReg [1]_ between the image branch :math:`Z` and the EHR branch :math:`Z'`
    (MedMod [2]_: :math:`\\mathcal{{L}} = \\mathcal{{S}}(z_{{ehr}}, z_{{cxr}})`), each regularised
    on its own:

    .. math::

        \\mathcal{{L}} = \\lambda s(Z, Z') + \\frac{{\\mu}}{{2}} [v(Z) + v(Z')] + \\nu [c(Z) + c(Z')]

    with the invariance :math:`s` (mean squared difference of paired rows, as in the paper's
    Algorithm 1), the variance hinge :math:`v(Z) = \\frac{{1}}{{d}} \\sum_j \\max(0, \\gamma -
    \\sqrt{{\\mathrm{{Var}}(z^j) + \\epsilon}})` (:math:`\\gamma = 1`, :math:`\\epsilon = 10^{{-4}}`)
    and the covariance :math:`c(Z) = \\frac{{1}}{{d}} \\sum_{{i \\ne j}} C(Z)_{{ij}}^2` (the unbiased
    covariance of the batch). The variance terms are averaged (:math:`\\mu / 2`) as in the
    official implementation, which MedMod's code copies; the paper's formula read literally,
    :math:`\\mu [v(Z) + v(Z')]`, is ``variance_weight`` doubled. The coefficients
    :math:`\\lambda = \\mu = 25`, :math:`\\nu = 1` of the paper and of MedMod are the defaults,
    so ``VICReg()`` is MedMod's loss.

    {ssl_notes}

    Parameters
    ----------
    {paired_modalities}
    output : {{"image", "ehr", "both"}}, default="both"
        What ``transform`` returns: the image embedding, the EHR embedding, or both
        concatenated (image first). ``transform`` reads only the columns of what it returns.
    invariance_weight : float, default=25.0
        :math:`\\lambda`.
    variance_weight : float, default=25.0
        :math:`\\mu`, the weight of the mean of the two variance hinges.
    covariance_weight : float, default=1.0
        :math:`\\nu`.
    {paired_network}
    {paired_training}
    {paired_early_stopping}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    ConVIRT : bidirectional contrastive loss.
    ALIGN : symmetric contrastive loss on noisy pairs.
    {ssl_see_also}

    References
    ----------
    .. [1] A. Bardes, J. Ponce and Y. LeCun (2022). VICReg: variance-invariance-covariance
           regularization for self-supervised learning. ICLR.
    .. [2] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.3.2.

    Examples
    --------
    >>> from skfusion.ssl import VICReg
    >>> from skfusion.datasets import make_paired_image_ehr
    >>> X, Y = make_paired_image_ehr(n_samples=120, random_state=0)
    >>> ssl = VICReg(projection_dim=8, hidden_dim=16, lstm_dim=16, max_epochs=3, random_state=0)
    >>> ssl.fit_transform(X).shape
    (120, 16)
    """

    _parameter_constraints = {
        **_SSLTransformer._parameter_constraints,
        "invariance_weight": [Interval(Real, 0, None, closed="left")],
        "variance_weight": [Interval(Real, 0, None, closed="left")],
        "covariance_weight": [Interval(Real, 0, None, closed="left")],
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
        output="both",
        invariance_weight=25.0,
        variance_weight=25.0,
        covariance_weight=1.0,
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
        self.output = output
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
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
        return VICRegLoss(self.invariance_weight, self.variance_weight, self.covariance_weight)
