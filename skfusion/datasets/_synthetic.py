"""Synthetic multimodal data with a known truth.

Each modality ``m`` has a latent factor :math:`z_m \\sim N(\\mu, I_k)` seen through a random
linear map plus noise, :math:`x_m = z_m W_m + \\varepsilon` (an "embedding" of width
``n_features[m]``). The true linear predictor is

.. math::

    \\eta = \\sum_m s_m \\, \\beta_m^\\top z_m + \\gamma \\, (\\beta_1^\\top z_1)(\\beta_2^\\top z_2)

with per-modality signal strengths :math:`s_m` (``signal``) and a cross-modal interaction
:math:`\\gamma` (``interaction``). Survival times follow a Cox model with a Weibull baseline,
censored by independent exponential times whose rate is tuned to the requested censoring
rate; class labels follow a logistic (or multinomial) model of :math:`\\eta`.

An external cohort (``n_external``) shares every parameter (maps, coefficients, baseline) but
has shifted latent means and a per-feature offset, like a second site with another scanner.
"""

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sksurv.util import Surv

from ._checks import check_int, check_missing_rate, check_modality_names, check_per_modality, check_real


def _check_args(
    n_samples, n_features, modality_names, n_informative, signal, interaction, noise, n_external, shift, missing_rate
):
    """Validate the parameters shared by the generators; return the per-modality missing rates."""
    check_int("n_samples", n_samples)
    names = check_modality_names(modality_names)
    check_per_modality("n_features", n_features, len(names), check_int)
    check_per_modality("signal", signal, len(names), check_real)
    check_int("n_informative", n_informative)
    check_real("interaction", interaction)
    check_real("noise", noise, 0.0)
    check_int("n_external", n_external, low=0)
    check_real("shift", shift)
    return check_missing_rate(missing_rate, names)


class _Truth:
    """The parameters shared by the internal and external cohorts.

    ``n_outcomes`` linear predictors share the latents and feature maps but have their own
    coefficients (one per class logit for classification).
    """

    def __init__(self, rng, n_features, n_informative, signal, interaction, n_outcomes=1):
        self.k = n_informative
        self.maps = [rng.normal(size=(n_informative, d)) / np.sqrt(n_informative) for d in n_features]
        self.coefs = rng.normal(size=(n_outcomes, len(n_features), n_informative)) / np.sqrt(n_informative)
        self.signal = np.asarray(signal, dtype=float)
        self.interaction = interaction
        self.site_offsets = [rng.normal(size=d) for d in n_features]

    def sample(self, rng, n, shift, noise):
        """Feature blocks and the ``(n, n_outcomes)`` linear predictors of ``n`` new samples."""
        latents = np.stack([rng.normal(loc=shift, size=(n, self.k)) for _ in self.maps], axis=1)
        scores = np.einsum("nmk,omk->nom", latents, self.coefs)
        eta = scores @ self.signal
        if len(self.maps) > 1:
            eta = eta + self.interaction * scores[:, :, 0] * scores[:, :, 1]
        blocks = [
            latents[:, m] @ w + noise * rng.normal(size=(n, w.shape[1])) + shift * off
            for m, (w, off) in enumerate(zip(self.maps, self.site_offsets))
        ]
        return blocks, eta


def _frame(blocks, names, missing_rate, rng):
    columns = {}
    for name, block in zip(names, blocks):
        block = block.astype(np.float32)
        rate = missing_rate.get(name, 0.0)
        block[rng.random(len(block)) < rate] = np.nan
        for j in range(block.shape[1]):
            columns[f"{name}__{j}"] = block[:, j]
    X = pd.DataFrame(columns)
    # A row must keep at least one modality: restore the first where all went missing.
    first = [f"{names[0]}__{j}" for j in range(blocks[0].shape[1])]
    none = np.all([X[[f"{n}__0"]].isna().to_numpy()[:, 0] for n in names], axis=0)
    X.loc[none, first] = blocks[0][none].astype(np.float32)
    return X


def _censoring_rate(event_time, target, rng):
    """Exponential censoring rate giving a censored fraction close to ``target`` (bisection)."""
    if target <= 0:
        return 0.0
    unit = rng.exponential(size=len(event_time))
    low, high = 1e-8, 1e4
    for _ in range(100):
        rate = np.sqrt(low * high)
        if np.mean(unit / rate < event_time) < target:
            low = rate
        else:
            high = rate
    return rate


def _survival_target(rng, eta, censoring, shape=1.5, scale=10.0, rate=None):
    u = rng.random(len(eta))
    event_time = scale * (-np.log(u) / np.exp(eta)) ** (1.0 / shape)
    if rate is None:
        rate = _censoring_rate(event_time, censoring, np.random.default_rng(0))
    censor_time = rng.exponential(size=len(eta)) / rate if rate > 0 else np.full(len(eta), np.inf)
    event = event_time <= censor_time
    return Surv.from_arrays(event, np.minimum(event_time, censor_time)), rate


def make_multimodal_survival(
    n_samples=500,
    *,
    n_features=(64, 32),
    modality_names=("img", "ehr"),
    n_informative=4,
    signal=(1.0, 1.0),
    interaction=0.0,
    noise=1.0,
    censoring=0.3,
    missing_rate=None,
    n_external=0,
    shift=1.0,
    return_truth=False,
    random_state=None,
):
    """Generate multimodal survival data with a known true risk.

    Parameters
    ----------
    n_samples : int, default=500
    n_features : tuple of int, default=(64, 32)
        Width of each modality's embedding block.
    modality_names : tuple of str, default=("img", "ehr")
    n_informative : int, default=4
        Dimension of each modality's latent factor.
    signal : tuple of float, default=(1.0, 1.0)
        Strength of each modality's contribution to the log hazard; unequal values make
        imbalanced modalities.
    interaction : float, default=0.0
        Coefficient of the cross-modal product term (first two modalities).
    noise : float, default=1.0
        Standard deviation of the feature noise.
    censoring : float, default=0.3
        Target fraction of censored samples (independent exponential censoring), in [0, 1).
    missing_rate : float or dict of str to float, default=None
        Fraction of rows whose block is all-NaN: one number in [0, 1] for every modality, or
        a dict from modality name to rate (modalities it leaves out are never missing). Each
        modality's rows are drawn independently; a row never loses every modality (the
        first is restored), so the first modality's realised rate is below the one asked for.
    n_external : int, default=0
        If positive, also return an external cohort of this size (same truth, shifted
        latent means and a site offset on the features).
    shift : float, default=1.0
        Size of the external cohort's shift.
    return_truth : bool, default=False
        Also return the true log hazard :math:`\\eta` of each sample.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : pandas.DataFrame
        Blocks ``"{name}__{j}"`` (float32).
    y : structured ndarray
        ``Surv.from_arrays(event, time)``.
    X_external, y_external : DataFrame, structured ndarray
        Only when ``n_external > 0``.
    risk, risk_external : ndarray
        Only when ``return_truth=True``: the true log hazards.

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(n_samples=100, random_state=0)
    >>> X.shape, y.dtype.names
    ((100, 96), ('event', 'time'))
    """
    missing_rate = _check_args(
        n_samples, n_features, modality_names, n_informative, signal, interaction, noise, n_external, shift, missing_rate
    )
    check_real("censoring", censoring, 0.0, 1.0, closed="left")
    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    truth = _Truth(rng, n_features, n_informative, signal, interaction)
    blocks, eta = truth.sample(rng, n_samples, 0.0, noise)
    eta = eta[:, 0]
    y, rate = _survival_target(rng, eta, censoring)
    out = [_frame(blocks, modality_names, missing_rate, rng), y]
    risks = [eta]
    if n_external:
        blocks_ext, eta_ext = truth.sample(rng, n_external, shift, noise)
        eta_ext = eta_ext[:, 0]
        y_ext, _ = _survival_target(rng, eta_ext, censoring, rate=rate)
        out += [_frame(blocks_ext, modality_names, missing_rate, rng), y_ext]
        risks.append(eta_ext)
    return tuple(out + risks) if return_truth else tuple(out)


def make_multimodal_classification(
    n_samples=500,
    *,
    n_classes=2,
    n_features=(64, 32),
    modality_names=("img", "ehr"),
    n_informative=4,
    signal=(1.0, 1.0),
    interaction=0.0,
    noise=1.0,
    missing_rate=None,
    n_external=0,
    shift=1.0,
    return_truth=False,
    random_state=None,
):
    """Generate multimodal classification data with known class probabilities.

    Class ``c > 0`` has its own coefficients and linear predictor ``eta_c`` (class 0 is the
    reference, ``eta_0 = 0``); labels are drawn from ``softmax(3 * eta)`` (for two classes, a
    logistic model).

    Parameters
    ----------
    n_samples : int, default=500
    n_classes : int, default=2
    n_features, modality_names, n_informative, signal, interaction, noise, missing_rate, n_external, shift
        As in :func:`make_multimodal_survival`.
    return_truth : bool, default=False
        Also return the true class probabilities.
    random_state : int, RandomState instance or None, default=None
        As in :func:`make_multimodal_survival`.

    Returns
    -------
    X : pandas.DataFrame
    y : ndarray of int
    X_external, y_external : only when ``n_external > 0``
    proba, proba_external : only when ``return_truth=True``

    Examples
    --------
    >>> from skfusion.datasets import make_multimodal_classification
    >>> X, y = make_multimodal_classification(n_samples=100, n_classes=3, random_state=0)
    >>> X.shape, sorted(set(y.tolist()))
    ((100, 96), [0, 1, 2])
    """
    missing_rate = _check_args(
        n_samples, n_features, modality_names, n_informative, signal, interaction, noise, n_external, shift, missing_rate
    )
    check_int("n_classes", n_classes, low=2)
    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    truth = _Truth(rng, n_features, n_informative, signal, interaction, n_outcomes=n_classes - 1)

    def draw(n, shift_):
        blocks, eta = truth.sample(rng, n, shift_, noise)
        logits = np.column_stack([np.zeros(n), 3.0 * eta])
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        labels = (rng.random(n)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)
        return blocks, np.minimum(labels, n_classes - 1), proba

    blocks, labels, proba = draw(n_samples, 0.0)
    out = [_frame(blocks, modality_names, missing_rate, rng), labels]
    probas = [proba]
    if n_external:
        blocks_ext, labels_ext, proba_ext = draw(n_external, shift)
        out += [_frame(blocks_ext, modality_names, missing_rate, rng), labels_ext]
        probas.append(proba_ext)
    return tuple(out + probas) if return_truth else tuple(out)
