"""Synthetic paired image embeddings and EHR series where the EHR says what in the image matters."""

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.utils import Bunch, check_random_state

from ._checks import check_int, check_real

_TRUTH_SEED = 20250002


def make_paired_image_ehr(
    n_samples=500,
    *,
    n_labels=14,
    n_image_features=64,
    n_ehr_features=76,
    n_factors=4,
    n_nuisance=8,
    nuisance_scale=2.0,
    n_timesteps=(12, 48),
    informative_rate=0.25,
    return_truth=False,
    random_state=None,
):
    """Image embeddings and EHR time series sharing the disease factors the labels depend on.

    Each row has ``n_factors`` standard-normal disease factors :math:`u` that drive

    - ``n_labels`` multi-label findings, :math:`P(y_l = 1) = \\mathrm{expit}(a_l + u^\\top w_l)`
      (prevalences between 0.1 and 0.4);
    - the image embedding :math:`x = u A + \\texttt{nuisance\\_scale} \\cdot v N + \\varepsilon`:
      the factors, plus ``n_nuisance`` larger nuisance factors :math:`v` (acquisition and
      anatomy that say nothing about the findings) and unit noise;
    - the EHR series: ``T`` steps (drawn in ``n_timesteps``) of ``n_ehr_features``
      variables, :math:`e_t = g_t \\, u B + \\varepsilon_t` where :math:`g_t = 1.5` on the
      informative steps (each step with probability ``informative_rate``) and 0 elsewhere.

    So the EHR is informative about the part of the image that predicts the labels, and an
    alignment of the image with the EHR can learn to discard the nuisance: the setting where
    MedCAM's adaptation should help an image-only classifier trained on few labels.

    Parameters
    ----------
    n_samples : int, default=500
    n_labels : int, default=14
        Number of findings (MedMod's 14 radiology labels).
    n_image_features : int, default=64
    n_ehr_features : int, default=76
        Features per EHR step (MedMod's 76 after discretisation).
    n_factors : int, default=4
    n_nuisance : int, default=8
    nuisance_scale : float, default=2.0
    n_timesteps : tuple of (int, int), default=(12, 48)
        Range (inclusive) of the number of steps.
    informative_rate : float, default=0.25
        Probability that a step carries the factors (at least one step always does).
    return_truth : bool, default=False
        Also return a Bunch with ``factors``, ``nuisance``, ``proba`` and ``informative``
        (a list of boolean step masks).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : pandas.DataFrame
        ``img__0 ... img__{d-1}`` (float32) then the object column ``"ehr"`` of
        ``(T_i, n_ehr_features)`` float32 arrays.
    Y : ndarray of shape (n_samples, n_labels)
        0/1 label indicators.
    truth : sklearn.utils.Bunch
        Only with ``return_truth=True``.

    Examples
    --------
    >>> from skfusion.datasets import make_paired_image_ehr
    >>> X, Y = make_paired_image_ehr(n_samples=5, random_state=0)
    >>> X.shape, Y.shape, X["ehr"][0].shape[1]
    ((5, 65), (5, 14), 76)
    """
    for name in ("n_samples", "n_labels", "n_image_features", "n_ehr_features", "n_factors"):
        check_int(name, locals()[name])
    check_int("n_nuisance", n_nuisance, low=0)
    check_real("nuisance_scale", nuisance_scale, 0.0)
    if isinstance(n_timesteps, str) or not hasattr(n_timesteps, "__len__") or len(n_timesteps) != 2:
        raise ValueError(f"n_timesteps must be a pair of integers 1 <= low <= high; got {n_timesteps!r}.")
    low, high = (check_int(f"n_timesteps[{k}]", v) for k, v in enumerate(n_timesteps))
    if low > high:
        raise ValueError(f"n_timesteps must be a pair of integers 1 <= low <= high; got {n_timesteps!r}.")
    check_real("informative_rate", informative_rate, 0.0, 1.0)
    truth_rng = np.random.default_rng(_TRUTH_SEED)
    image_map = truth_rng.normal(size=(n_factors, n_image_features))
    nuisance_map = truth_rng.normal(size=(n_nuisance, n_image_features))
    ehr_map = truth_rng.normal(size=(n_factors, n_ehr_features)) / np.sqrt(n_factors)
    label_weights = truth_rng.normal(size=(n_factors, n_labels)) * 1.5 / np.sqrt(n_factors)
    intercepts = logit(truth_rng.uniform(0.1, 0.4, size=n_labels))

    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    factors = rng.normal(size=(n_samples, n_factors))
    nuisance = rng.normal(size=(n_samples, n_nuisance))
    image = factors @ image_map + nuisance_scale * nuisance @ nuisance_map + rng.normal(size=(n_samples, n_image_features))
    proba = expit(intercepts + factors @ label_weights)
    Y = (rng.random(proba.shape) < proba).astype(int)
    series, informative = [], []
    for i in range(n_samples):
        steps = int(rng.integers(low, high + 1))
        on = rng.random(steps) < informative_rate
        on[rng.integers(steps)] = True
        gain = np.where(on, 1.5, 0.0)[:, None]
        series.append((gain * (factors[i] @ ehr_map) + rng.normal(size=(steps, n_ehr_features))).astype(np.float32))
        informative.append(on)
    X = pd.DataFrame(image.astype(np.float32), columns=[f"img__{j}" for j in range(n_image_features)])
    X["ehr"] = pd.Series(series, dtype=object)
    if not return_truth:
        return X, Y
    return X, Y, Bunch(factors=factors, nuisance=nuisance, proba=proba, informative=informative)
