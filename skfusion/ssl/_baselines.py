"""The self-supervised image-EHR baselines of MedMod (Elsharief et al. 2025, section 3.3.2): ConVIRT, VICReg, ALIGN."""

from numbers import Real

from .._compat import Interval, StrOptions
from .._docstrings import DOCS
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


def _fill_doc(**fields):
    def decorate(obj):
        obj.__doc__ = obj.__doc__.format(**DOCS, **{k: v.format(**fields) for k, v in _SSL_DOCS.items()})
        return obj

    return decorate


class _SSLTransformer(BasePairedPretraining):
    _parameter_constraints = {
        **BasePairedPretraining._parameter_constraints,
        "output": [StrOptions({"image", "ehr", "both"})],
    }


_TEMPERATURE = {"temperature": [Interval(Real, 0, None, closed="neither")]}


@_fill_doc(name="ConVIRT")
class ConVIRT(_SSLTransformer):
    """ConVIRT: bidirectional contrastive pretraining of an image and EHR embedding.

    The loss of ConVIRT [1]_ as MedMod [2]_ adapts it to chest X-rays and EHR: the image and
    the EHR of one stay are a positive pair, every other pairing in the batch a negative,

    .. math::

        \\mathcal{{L}} = \\lambda \\, \\ell^{{img \\to ehr}} + (1 - \\lambda) \\, \\ell^{{ehr \\to img}},
        \\qquad \\ell^{{a \\to b}} = -\\frac{{1}}{{N}} \\sum_i \\log
        \\frac{{e^{{\\cos(a_i, b_i) / \\tau}}}}{{\\sum_j e^{{\\cos(a_i, b_j) / \\tau}}}}

    with ConVIRT's :math:`\\lambda = 0.75` and :math:`\\tau = 0.1` by default
    (``image_weight=0.5`` is half MedMod's unweighted sum).

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
    {paired_network}
    {paired_training}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    ALIGN : the one-directional (EHR to image) InfoNCE.
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
    >>> ssl = ConVIRT(projection_dim=8, hidden_dim=16, lstm_hidden=16, max_epochs=3, random_state=0)
    >>> ssl.fit_transform(X).shape
    (120, 16)
    >>> ssl.get_feature_names_out()[[0, -1]].tolist()
    ['img__0', 'ehr__7']
    """

    _parameter_constraints = {
        **_SSLTransformer._parameter_constraints,
        **_TEMPERATURE,
        "image_weight": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        *,
        image=None,
        ehr=None,
        backbone=None,
        output="both",
        temperature=0.1,
        image_weight=0.75,
        projection_dim=128,
        hidden_dim=256,
        lstm_hidden=256,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=100,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.image = image
        self.ehr = ehr
        self.backbone = backbone
        self.output = output
        self.temperature = temperature
        self.image_weight = image_weight
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.lstm_hidden = lstm_hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.modality_dims = modality_dims

    def _criterion(self):
        return ConVIRTLoss(self.image_weight)


@_fill_doc(name="ALIGN")
class ALIGN(_SSLTransformer):
    """ALIGN: one-directional contrastive pretraining, from the EHR to the image.

    MedMod [2]_ writes ALIGN's [1]_ loss as :math:`\\mathcal{{L}} = \\mathcal{{S}}(z_{{ehr}},
    z_{{cxr}})` with :math:`\\mathcal{{S}}` the InfoNCE: each EHR embedding must find its own
    image among the batch,

    .. math::

        \\mathcal{{L}} = -\\frac{{1}}{{N}} \\sum_i \\log
        \\frac{{e^{{\\cos(z_{{ehr,i}}, z_{{img,i}}) / \\tau}}}}{{\\sum_j e^{{\\cos(z_{{ehr,i}}, z_{{img,j}}) / \\tau}}}}.

    That one direction is what this class implements (ALIGN's own normalized softmax
    adds the image-to-text direction: that is :class:`ConVIRT` with ``image_weight=0.5``).
    As in ALIGN, the temperature is learned, starting at ``temperature`` (the logit scale
    :math:`1/\\tau` is clipped at 100). MedMod's "noisy pairs" describe ALIGN's data, not its
    loss: pass the pairs you have.

    {ssl_notes}

    Parameters
    ----------
    {paired_modalities}
    output : {{"image", "ehr", "both"}}, default="both"
        What ``transform`` returns: the image embedding, the EHR embedding, or both
        concatenated (image first). ``transform`` reads only the columns of what it returns.
    temperature : float, default=0.1
        Initial :math:`\\tau` (learned).
    {paired_network}
    {paired_training}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    ConVIRT : both directions.
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
    >>> ssl = ALIGN(output="ehr", projection_dim=8, hidden_dim=16, lstm_hidden=16, max_epochs=3, random_state=0)
    >>> ssl.fit(X).transform(X[["ehr"]]).shape
    (120, 8)
    """

    _parameter_constraints = {**_SSLTransformer._parameter_constraints, **_TEMPERATURE}

    def __init__(
        self,
        *,
        image=None,
        ehr=None,
        backbone=None,
        output="both",
        temperature=0.1,
        projection_dim=128,
        hidden_dim=256,
        lstm_hidden=256,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=100,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.image = image
        self.ehr = ehr
        self.backbone = backbone
        self.output = output
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.lstm_hidden = lstm_hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.modality_dims = modality_dims

    def _criterion(self):
        return ALIGNLoss()

    def _learn_temperature(self):
        return True


@_fill_doc(name="VICReg")
class VICReg(_SSLTransformer):
    """VICReg: variance-invariance-covariance regularised pretraining of image and EHR embeddings.

    The loss of VICReg [1]_ between the image branch :math:`Z` and the EHR branch :math:`Z'`
    (MedMod [2]_: :math:`\\mathcal{{L}} = \\mathcal{{S}}(z_{{ehr}}, z_{{cxr}})`), each regularised
    on its own:

    .. math::

        \\mathcal{{L}} = \\lambda s(Z, Z') + \\mu [v(Z) + v(Z')] + \\nu [c(Z) + c(Z')]

    with the invariance :math:`s` (mean squared difference of paired rows, as in the paper's
    Algorithm 1), the variance hinge :math:`v(Z) = \\frac{{1}}{{d}} \\sum_j \\max(0, \\gamma -
    \\sqrt{{\\mathrm{{Var}}(z^j) + \\epsilon}})` (:math:`\\gamma = 1`, :math:`\\epsilon = 10^{{-4}}`)
    and the covariance :math:`c(Z) = \\frac{{1}}{{d}} \\sum_{{i \\ne j}} C(Z)_{{ij}}^2`. The usual
    coefficients :math:`\\lambda = \\mu = 25`, :math:`\\nu = 1` are the defaults.

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
        :math:`\\mu`.
    covariance_weight : float, default=1.0
        :math:`\\nu`.
    {paired_network}
    {paired_training}

    Attributes
    ----------
    {paired_attributes}

    See Also
    --------
    ConVIRT : bidirectional contrastive loss.
    ALIGN : one-directional contrastive loss.
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
    >>> ssl = VICReg(projection_dim=8, hidden_dim=16, lstm_hidden=16, max_epochs=3, random_state=0)
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
        output="both",
        invariance_weight=25.0,
        variance_weight=25.0,
        covariance_weight=1.0,
        projection_dim=128,
        hidden_dim=256,
        lstm_hidden=256,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=100,
        device="auto",
        random_state=None,
        verbose=0,
        modality_dims=None,
    ):
        self.image = image
        self.ehr = ehr
        self.backbone = backbone
        self.output = output
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.lstm_hidden = lstm_hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.modality_dims = modality_dims

    def _criterion(self):
        return VICRegLoss(self.invariance_weight, self.variance_weight, self.covariance_weight)
