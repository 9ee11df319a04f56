"""The synthetic cohorts of ``bench_small_cohorts.py``: small training sets with a known truth.

Every generator gives an image embedding block ``img__0 ... img__11`` and an EHR modality,
a true linear predictor :math:`\\eta` (the log hazard for survival, :math:`1.5 \\eta` the
logit for classification) and targets drawn from it:

- ``"linear"``: an EHR block ``ehr__0 ... ehr__9``; all 22 features independent N(0, 1);
  :math:`\\eta = 0.8 \\, img_0 - 0.6 \\, img_1 + 0.7 \\, ehr_0` (3 of the 22 features, both
  modalities needed).
- ``"interaction"``: the same blocks, :math:`\\eta` = the linear part plus
  :math:`0.8 \\, img_2 \\, ehr_1`, a cross-modal product of two features outside the linear
  part, invisible to a linear model.
- ``"sequence"``: an object column ``"ehr"`` holding one ``(T_i, 12)`` float32 series per
  stay, ``T_i`` uniform on 6..24 steps, each variable its stay's N(0, 1) level plus N(0, 1)
  noise at every step; :math:`\\eta = 0.8 \\, \\bar x_0 - 0.6 \\, \\bar x_1 + 0.7 \\, img_0`
  with :math:`\\bar x_j` the stay's observed mean of variable ``j``, so a linear model on the
  per-stay means is the true model.
- ``"missing"``: ``"linear"`` with the image block all-NaN in 40% of the rows (drawn
  completely at random, exactly ``round(0.4 n)`` rows); :math:`\\eta` still uses the
  unobserved image features.

Survival: event times from a Cox model with a Weibull baseline,
:math:`S(t \\mid \\eta) = \\exp(-(t / 10)^{1.5} e^{\\eta})`, censored by independent
exponential times whose rate is fixed per generator (solved once, on 20,000 draws with a fixed
seed, for 40% censored rows). Classification: binary labels with
:math:`P(y = 1) = \\sigma(1.5 \\, \\eta)` (Bayes accuracy near 0.77 on ``"linear"``).

:func:`skfusion.datasets.make_multimodal_survival` is not used: its risk is a function of
latent factors seen through noisy features, so it has neither a risk on a few observed
features (the linear baseline's true model) nor a sequence column.
"""

import re
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import expit
from sksurv.util import Surv

GENERATORS = ("linear", "interaction", "sequence", "missing")
TASKS = ("survival", "classification")

N_IMAGE, N_EHR, N_VARIABLES = 12, 10, 12
STEPS = (6, 24)
COEFS = (0.8, -0.6, 0.7)
INTERACTION = 0.8
LOGIT_SCALE = 1.5
MISSING_IMAGE_RATE = 0.4
WEIBULL_SHAPE, WEIBULL_SCALE = 1.5, 10.0
CENSORED = 0.4
_CENSORING_DRAWS, _CENSORING_SEED = 20_000, 12345


class Cohort:
    """One draw of a generator: ``X`` (skfusion's data contract), ``y``, the true ``eta``."""

    def __init__(self, X, y, eta):
        self.X = X
        self.y = y
        self.eta = eta


def _blocks(name, n, rng):
    """The feature frame and the true linear predictor of ``n`` rows."""
    img = rng.normal(size=(n, N_IMAGE))
    columns = {f"img__{j}": img[:, j].astype(np.float32) for j in range(N_IMAGE)}
    if name == "sequence":
        series, means = _series(n, rng)
        eta = COEFS[0] * means[:, 0] + COEFS[1] * means[:, 1] + COEFS[2] * img[:, 0]
        return pd.DataFrame({**columns, "ehr": series}), eta
    ehr = rng.normal(size=(n, N_EHR))
    columns.update({f"ehr__{j}": ehr[:, j].astype(np.float32) for j in range(N_EHR)})
    eta = COEFS[0] * img[:, 0] + COEFS[1] * img[:, 1] + COEFS[2] * ehr[:, 0]
    if name == "interaction":
        eta = eta + INTERACTION * img[:, 2] * ehr[:, 1]
    X = pd.DataFrame(columns)
    if name == "missing":
        absent = rng.permutation(n)[: int(round(MISSING_IMAGE_RATE * n))]
        X.iloc[absent, :N_IMAGE] = np.nan
    return X, eta


def _series(n, rng):
    """``n`` stays of ``(T_i, N_VARIABLES)`` float32 series and their per-stay observed means."""
    steps = rng.integers(STEPS[0], STEPS[1] + 1, size=n)
    levels = np.repeat(rng.normal(size=(n, N_VARIABLES)), steps, axis=0)
    values = (levels + rng.normal(size=levels.shape)).astype(np.float32)
    cells = np.empty(n, dtype=object)
    for i, cell in enumerate(np.split(values, np.cumsum(steps)[:-1])):
        cells[i] = cell
    means = np.stack([cell.mean(axis=0, dtype=np.float64) for cell in cells])
    return cells, means


def _event_times(eta, rng):
    u = rng.random(len(eta))
    return WEIBULL_SCALE * (-np.log(u) / np.exp(eta)) ** (1.0 / WEIBULL_SHAPE)


@lru_cache
def censoring_rate(name):
    """The exponential censoring rate giving ``CENSORED`` censored rows under ``name`` (bisection)."""
    rng = np.random.default_rng(_CENSORING_SEED)
    _, eta = _blocks(name, _CENSORING_DRAWS, rng)
    event_time = _event_times(eta, rng)
    unit = rng.exponential(size=len(eta))
    low, high = 1e-6, 1e3
    for _ in range(60):
        rate = np.sqrt(low * high)
        if np.mean(unit / rate < event_time) < CENSORED:
            low = rate
        else:
            high = rate
    return rate


def true_survival(eta, times):
    """The true survival probabilities ``(n, len(times))`` of rows with linear predictor ``eta``."""
    cumulative = (np.asarray(times, dtype=float) / WEIBULL_SCALE) ** WEIBULL_SHAPE
    return np.exp(-np.exp(np.asarray(eta, dtype=float))[:, None] * cumulative[None, :])


def make_cohort(name, task, n, seed):
    """Draw ``n`` rows of generator ``name`` for ``task``, reproducibly from ``seed``.

    Parameters
    ----------
    name : {"linear", "interaction", "sequence", "missing"}
    task : {"survival", "classification"}
    n : int
    seed : int or sequence of int
        Entropy for :func:`numpy.random.default_rng`.

    Returns
    -------
    Cohort
        ``X`` (DataFrame), ``y`` (a survival structured array or 0/1 labels) and ``eta``.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose from {GENERATORS}.")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}.")
    rng = np.random.default_rng(seed)
    X, eta = _blocks(name, n, rng)
    if task == "classification":
        return Cohort(X, (rng.random(n) < expit(LOGIT_SCALE * eta)).astype(int), eta)
    event_time = _event_times(eta, rng)
    censor_time = rng.exponential(size=n) / censoring_rate(name)
    y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    return Cohort(X, y, eta)


def linear_features(X_train, X_test):
    """The linear baseline's features: the blocks side by side, standardized on the training rows.

    A sequence column becomes its per-stay means (one column per variable); a block with
    missing rows is filled with its training means and gets one missingness indicator.

    Returns
    -------
    train, test : ndarray of shape (n_rows, n_features)
    """
    parts_train, parts_test = [], []
    for prefix in dict.fromkeys(str(c).split("__", 1)[0] for c in X_train.columns):
        train, test = (_reduce(X, prefix) for X in (X_train, X_test))
        absent = np.isnan(train).all(axis=1)
        if absent.any():
            means = train[~absent].mean(axis=0)
            train, test = (
                np.column_stack([np.where(np.isnan(a), means, a), np.isnan(a).all(axis=1)]) for a in (train, test)
            )
        parts_train.append(train)
        parts_test.append(test)
    train, test = np.hstack(parts_train), np.hstack(parts_test)
    centre, scale = train.mean(axis=0), train.std(axis=0)
    scale[scale == 0] = 1.0
    return (train - centre) / scale, (test - centre) / scale


def _reduce(X, prefix):
    if prefix in X.columns and X[prefix].dtype == object:
        return np.stack([cell.mean(axis=0, dtype=np.float64) for cell in X[prefix]])
    return X.filter(regex=f"^{re.escape(prefix)}__").to_numpy(dtype=float)
