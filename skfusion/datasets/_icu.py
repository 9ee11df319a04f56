"""Synthetic ICU stays shaped like the MIMIC-IV extraction of MedFuse and MedMod.

Each stay has three independent standard-normal latent factors: a severity ``s`` seen by
both modalities, a physiological factor ``v`` seen only in the vital signs and a
radiographic factor ``r`` seen only in the chest X-ray embedding. They drive

- the 17 clinical variables of MedMod's Table 7, measured at irregular times (Poisson
  processes with variable-specific rates; some variables are never measured in some
  stays): the deviation of each vital sign from its normal value grows with the
  severity as the stay goes on, :math:`e(t) = s \\, (0.6 + 0.4 \\min(t / 48, 1))`;
- an image embedding :math:`x = (s, r, n_1, n_2) W + \\varepsilon` (two nuisance factors
  ``n``, a fixed map ``W``, unit noise), all-NaN for a missing image;
- the labels of the chosen task through logistic models of the latents (a log-normal
  model of the remaining stay for ``length_of_stay``), whose intercepts are solved so that
  the population prevalence of each label is the one asked for.

So each modality carries information the other lacks, and the true probabilities (the
oracle) are known.
"""

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, ndtr
from sklearn.utils import Bunch, check_random_state

from .._mimic import NUMERIC_CODES
from ._checks import check_int, check_real

TASKS = ("in_hospital_mortality", "phenotyping", "decompensation", "length_of_stay", "radiology")

# The 25 CCS phenotypes with their type and training-set prevalence (MedFuse, Table 4).
PHENOTYPES = (
    ("Acute and unspecified renal failure", "acute", 0.269),
    ("Acute cerebrovascular disease", "acute", 0.056),
    ("Acute myocardial infarction", "acute", 0.074),
    ("Cardiac dysrhythmias", "mixed", 0.326),
    ("Chronic kidney disease", "chronic", 0.206),
    ("Chronic obstructive pulmonary disease", "chronic", 0.143),
    ("Complications of surgical/medical care", "acute", 0.189),
    ("Conduction disorders", "mixed", 0.100),
    ("Congestive heart failure; nonhypertensive", "mixed", 0.255),
    ("Coronary atherosclerosis and related", "chronic", 0.311),
    ("Diabetes mellitus with complications", "mixed", 0.114),
    ("Diabetes mellitus without complication", "chronic", 0.172),
    ("Disorders of lipid metabolism", "chronic", 0.404),
    ("Essential hypertension", "chronic", 0.418),
    ("Fluid and electrolyte disorders", "acute", 0.371),
    ("Gastrointestinal hemorrhage", "acute", 0.070),
    ("Hypertension with complications", "chronic", 0.215),
    ("Other liver diseases", "mixed", 0.125),
    ("Other lower respiratory disease", "acute", 0.095),
    ("Other upper respiratory disease", "acute", 0.048),
    ("Pleurisy; pneumothorax; pulmonary collapse", "acute", 0.067),
    ("Pneumonia", "acute", 0.127),
    ("Respiratory failure; insufficiency; arrest (adult)", "acute", 0.160),
    ("Septicemia (except in labor)", "acute", 0.158),
    ("Shock", "acute", 0.123),
)
# Phenotypes a chest X-ray shows: they load on the radiographic factor.
_THORACIC = {
    "Chronic obstructive pulmonary disease",
    "Congestive heart failure; nonhypertensive",
    "Other lower respiratory disease",
    "Pleurisy; pneumothorax; pulmonary collapse",
    "Pneumonia",
    "Respiratory failure; insufficiency; arrest (adult)",
}
_SEVERITY_WEIGHT = {"acute": 1.0, "mixed": 0.6, "chronic": 0.3}

# The 14 CheXpert findings of MedMod's radiology task; the prevalences are illustrative
# (an ICU population), not taken from the paper.
RADIOLOGY_FINDINGS = (
    ("Atelectasis", 0.30),
    ("Cardiomegaly", 0.25),
    ("Consolidation", 0.10),
    ("Edema", 0.25),
    ("Enlarged Cardiomediastinum", 0.05),
    ("Fracture", 0.03),
    ("Lung Lesion", 0.04),
    ("Lung Opacity", 0.45),
    ("No Finding", 0.10),
    ("Pleural Effusion", 0.40),
    ("Pleural Other", 0.02),
    ("Pneumonia", 0.10),
    ("Pneumothorax", 0.07),
    ("Support Devices", 0.50),
)

# Remaining-stay buckets of the benchmark, in days: (0, 1), (1, 2), ..., (7, 8), (8, 14), (14, inf).
LOS_BUCKET_EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 14, np.inf)

_DEFAULT_PREVALENCE = {"in_hospital_mortality": 0.13, "decompensation": 0.10}
# Weights of (severity, physiology, radiography) in the logit of the binary tasks.
_BINARY_WEIGHTS = np.array([1.5, 0.7, 0.7])
_LOS_MEDIAN_DAYS, _LOS_WEIGHTS, _LOS_SIGMA = 2.0, np.array([0.5, 0.3, 0.3]), 0.7
_TRUTH_SEED = 20220101


def _label_weights(task):
    """Fixed ``(n_labels, 3)`` weights of the latents in each label's logit."""
    if task == "phenotyping":
        physiology = np.random.default_rng(_TRUTH_SEED).normal(scale=0.7, size=len(PHENOTYPES))
        return np.array(
            [
                [_SEVERITY_WEIGHT[kind], physiology[k], 1.0 if name in _THORACIC else 0.2]
                for k, (name, kind, _) in enumerate(PHENOTYPES)
            ]
        )
    if task == "radiology":
        sign = np.array([-1.0 if name == "No Finding" else 1.0 for name, _ in RADIOLOGY_FINDINGS])
        return sign[:, None] * np.array([0.4, 0.0, 1.2])
    return _BINARY_WEIGHTS[None, :]


def _intercept(scale, prevalence):
    """Intercept ``a`` with ``E[expit(a + scale * Z)] = prevalence`` for ``Z ~ N(0, 1)``."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    weights = weights / weights.sum()
    return brentq(lambda a: weights @ expit(a + scale * nodes) - prevalence, -30.0, 30.0)


def _check_args(n_samples, task, missing_rate, n_image_features, prevalence):
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}; got {task!r}.")
    check_int("n_samples", n_samples)
    check_int("n_image_features", n_image_features)
    check_real("missing_rate", missing_rate, 0.0, 1.0)
    if prevalence is None:
        return
    if task == "length_of_stay":
        raise ValueError("prevalence does not apply to task='length_of_stay' (10 buckets); leave it None.")
    n_labels = len(_label_weights(task))
    try:
        values = np.atleast_1d(np.asarray(prevalence, dtype=float))
    except (TypeError, ValueError):
        values = np.full(0, np.nan)
    if values.shape not in ((1,), (n_labels,)) or not np.all((values > 0) & (values < 1)):
        raise ValueError(
            f"prevalence for task={task!r} must be a number or {n_labels} numbers in (0, 1); got {prevalence!r}."
        )


def _labels(task, latent, prevalence, rng):
    """Labels, true probabilities and label names of the task."""
    if task == "length_of_stay":
        centre = np.log(_LOS_MEDIAN_DAYS) + latent @ _LOS_WEIGHTS
        days = np.exp(centre + _LOS_SIGMA * rng.normal(size=len(latent)))
        edges = np.log(np.asarray(LOS_BUCKET_EDGES[1:-1], dtype=float))
        cdf = ndtr((edges[None, :] - centre[:, None]) / _LOS_SIGMA)
        proba = np.diff(np.column_stack([np.zeros(len(latent)), cdf, np.ones(len(latent))]), axis=1)
        labels = np.searchsorted(np.asarray(LOS_BUCKET_EDGES[1:-1]), days, side="right")
        names = [f"{lo}-{hi} days" for lo, hi in zip(LOS_BUCKET_EDGES[:-1], LOS_BUCKET_EDGES[1:])]
        return labels, proba, names
    weights = _label_weights(task)
    if task == "phenotyping":
        names, default = [p[0] for p in PHENOTYPES], [p[2] for p in PHENOTYPES]
    elif task == "radiology":
        names, default = [f[0] for f in RADIOLOGY_FINDINGS], [f[1] for f in RADIOLOGY_FINDINGS]
    else:
        names, default = [task], [_DEFAULT_PREVALENCE[task]]
    target = np.broadcast_to(np.asarray(default if prevalence is None else prevalence, dtype=float), len(weights))
    scales = np.linalg.norm(weights, axis=1)
    intercepts = np.array([_intercept(s, p) for s, p in zip(scales, target)])
    proba = expit(intercepts + latent @ weights.T)
    labels = (rng.random(proba.shape) < proba).astype(int)
    if len(names) == 1:
        return labels[:, 0], proba[:, 0], names
    return labels, proba, names


def _window(task, rng, n):
    """Hours of each stay that the series covers."""
    if task == "in_hospital_mortality":
        return np.full(n, 48.0)
    stay = np.minimum(12.0 + rng.lognormal(np.log(48.0), 0.5, size=n), 240.0)
    if task in ("decompensation", "length_of_stay"):
        return rng.uniform(6.0, stay)
    return stay


# Vital signs: code, mean hours between measurements, then normal value, effect of the
# severity expression, effect of the physiological factor, between-stay and within-stay
# standard deviations, clipping range and rounding.
_VITALS = (
    ("Heart Rate", 1.5, (86, 10, 6, 8, 4, 30, 220, 0)),
    ("Respiratory rate", 1.5, (19, 3, 2, 3, 2, 5, 60, 0)),
    ("Oxygen saturation", 1.5, (97, -1.5, -0.5, 1, 1, 60, 100, 0)),
    ("Temperature", 4.0, (36.9, 0.2, 0.4, 0.3, 0.3, 33, 42, 1)),
    ("Glucose", 6.0, (128, 20, 15, 20, 15, 40, 600, 0)),
)


class _Stay:
    """Draws one stay's measurements and collects them as arrays."""

    def __init__(self, rng, severity, physiology, end):
        self.rng, self.severity, self.physiology, self.end = rng, severity, physiology, end
        self.chunks = []

    def expression(self, t):
        return self.severity * (0.6 + 0.4 * np.minimum(t / 48.0, 1.0))

    def times(self, every):
        """Poisson measurement times with mean spacing ``every`` hours in ``(0, end]``."""
        return np.sort(self.rng.uniform(0.0, self.end, size=self.rng.poisson(self.end / every)))

    def vital(self, t, normal, sev, phys, between, within, low, high, decimals):
        value = normal + sev * self.expression(t) + phys * self.physiology + self.rng.normal(scale=between)
        value = value + self.rng.normal(scale=within, size=len(t))
        return np.round(np.clip(value, low, high), decimals)

    def add(self, code, t, numbers, texts=None):
        texts = np.full(len(t), None, dtype=object) if texts is None else texts
        self.chunks.append((t, np.full(len(t), code, dtype=object), np.asarray(numbers, dtype=float), texts))

    def vitals(self):
        bp = self.times(1.5)
        systolic = self.vital(bp, 118, -10, 6, 10, 6, 50, 250, 0)
        diastolic = self.vital(bp, 59, -5, 3, 6, 4, 20, 150, 0)
        self.add("Systolic blood pressure", bp, systolic)
        self.add("Diastolic blood pressure", bp, diastolic)
        mean = (systolic + 2 * diastolic) / 3 + self.rng.normal(scale=2, size=len(bp))
        self.add("Mean blood pressure", bp, np.round(mean))
        for code, every, args in _VITALS:
            t = self.times(every)
            self.add(code, t, self.vital(t, *args))

    def occasional(self):
        """Variables measured in some stays only (FiO2 mostly in the sicker ones)."""
        rng = self.rng
        if rng.random() < 0.5:
            t = self.times(8.0)
            self.add("pH", t, self.vital(t, 7.4, -0.04, 0.0, 0.02, 0.03, 6.8, 7.7, 2))
        if rng.random() < expit(self.severity - 0.5):
            t = self.times(6.0)
            fio2 = 0.21 + 0.15 * np.maximum(self.expression(t), 0) + np.abs(rng.normal(scale=0.05, size=len(t)))
            self.add("Fraction inspired oxygen", t, np.round(np.clip(fio2, 0.21, 1.0), 2))
        if rng.random() < 0.15:
            t = self.times(8.0)
            self.add("Capillary refill rate", t, rng.random(len(t)) < expit(self.expression(t) - 2))
        if rng.random() < 0.3:
            self.add("Height", rng.uniform(0, min(4.0, self.end), size=1), np.round(rng.normal(170, 10, size=1)))
        if rng.random() < 0.7:
            weight = np.round(np.clip(rng.normal(81, 15, size=1), 35, 250), 1)
            self.add("Weight", rng.uniform(0, min(6.0, self.end), size=1), weight)

    def glasgow(self):
        """Eye, verbal and motor responses (text) and the total (numeric), charted together."""
        t = self.times(4.0)
        noise = self.rng.normal(scale=1.5, size=len(t))
        deficit = np.clip(np.rint(2.5 * self.expression(t) + noise), 0, 12).astype(int)
        motor = np.minimum(5, np.rint(deficit * 5 / 12)).astype(int)
        verbal = np.minimum(4, deficit - motor)
        eye = deficit - motor - verbal
        for name, score in (("eye opening", 4 - eye), ("verbal response", 5 - verbal), ("motor response", 6 - motor)):
            code = f"Glasgow coma scale {name}"
            texts = np.array([NUMERIC_CODES[code][k] for k in score], dtype=object)
            self.add(code, t, np.full(len(t), np.nan), texts)
        self.add("Glasgow coma scale total", t, 15 - deficit)

    def frame(self):
        """The event frame (time, code, numeric_value, text_value), sorted by time."""
        self.vitals()
        self.occasional()
        self.glasgow()
        t, codes, numbers, texts = (np.concatenate(part) for part in zip(*self.chunks))
        order = np.argsort(t, kind="stable")
        return pd.DataFrame(
            {
                "time": t[order],
                "code": codes[order],
                "numeric_value": numbers[order],
                "text_value": pd.Series(texts[order], dtype=object),
            }
        )


def make_icu_timeseries(
    n_samples=200,
    *,
    task="in_hospital_mortality",
    missing_rate=0.5,
    n_image_features=32,
    prevalence=None,
    return_truth=False,
    random_state=None,
):
    """Generate synthetic ICU stays (17 clinical variables) with a chest X-ray embedding.

    A stand-in for the MIMIC-IV + MIMIC-CXR data of MedFuse [1]_ and MedMod [2]_ with a known
    truth (see the module notes): the event column feeds
    :class:`~skfusion.encoders.timeseries.ClinicalTimeSeriesDiscretizer`.

    Observation windows: the first 48 hours for ``"in_hospital_mortality"``; the whole stay
    (12 hours plus a log-normal duration of median 48 hours, at most 240 hours) for
    ``"phenotyping"`` and ``"radiology"``; the stay up to a uniformly drawn prediction time
    (at least 6 hours) for ``"decompensation"`` and ``"length_of_stay"``, one prediction
    time per stay.

    Parameters
    ----------
    n_samples : int, default=200
        Number of stays.
    task : {"in_hospital_mortality", "phenotyping", "decompensation", "length_of_stay", \
"radiology"}, default="in_hospital_mortality"
        The MedMod task whose labels are returned: binary mortality (in hospital, or within
        24 hours for decompensation), 25 multilabel phenotypes (:data:`PHENOTYPES`), the
        remaining stay in the benchmark's 10 buckets (:data:`LOS_BUCKET_EDGES`, days) or 14
        multilabel radiology findings (:data:`RADIOLOGY_FINDINGS`).
    missing_rate : float, default=0.5
        Fraction of stays without an image (``round(rate * n_samples)`` stays drawn
        completely at random): their ``img__*`` block is all-NaN.
    n_image_features : int, default=32
        Width ``d`` of the image embedding ``img__0 ... img__{d-1}``.
    prevalence : float or array-like, default=None
        Population prevalence of the positive label: a number for the binary tasks (default
        0.13 for in-hospital mortality, 0.10 for decompensation, above MIMIC's hourly 2 % so
        that small samples hold positives), a number or one per label for the multilabel
        tasks (default: the phenotype prevalences of MedFuse's Table 4 and illustrative
        radiology ones). Not used for ``"length_of_stay"``.
    return_truth : bool, default=False
        Also return the truth (below).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : pandas.DataFrame
        Column ``"ts"``: one event frame per stay (``time`` in hours since admission,
        ``code`` the variable name, ``numeric_value``, ``text_value`` for the Glasgow coma
        scale responses given as strings such as ``"4 Spontaneously"``), then the float32
        image block ``img__0 ... img__{d-1}``.
    y : ndarray of int
        ``(n_samples,)`` for the binary tasks and length of stay (bucket 0-9),
        ``(n_samples, n_labels)`` indicators for the multilabel tasks.
    truth : sklearn.utils.Bunch
        Only with ``return_truth=True``: ``latent`` ``(n_samples, 3)`` (severity,
        physiology, radiography), ``severity`` (its first column), ``proba`` (the true
        probability of each label, or of each bucket for length of stay), ``label_names``,
        ``image_present`` (bool) and ``hours`` (the length of each observation window).

    References
    ----------
    .. [1] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: Multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare, PMLR 182.
    .. [2] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287.

    Examples
    --------
    >>> from skfusion.datasets._icu import make_icu_timeseries
    >>> X, y = make_icu_timeseries(n_samples=20, task="phenotyping", random_state=0)
    >>> X.shape, y.shape
    ((20, 33), (20, 25))
    >>> sorted(X["ts"][0].columns)
    ['code', 'numeric_value', 'text_value', 'time']
    """
    _check_args(n_samples, task, missing_rate, n_image_features, prevalence)
    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    latent = rng.normal(size=(n_samples, 3))
    hours = _window(task, rng, n_samples)
    cells = np.empty(n_samples, dtype=object)
    for i in range(n_samples):
        cells[i] = _Stay(rng, latent[i, 0], latent[i, 1], hours[i]).frame()
    image_map = np.random.default_rng(_TRUTH_SEED).normal(size=(4, n_image_features)) / np.sqrt(2.0)
    image_latent = np.column_stack([latent[:, 0], latent[:, 2], rng.normal(size=(n_samples, 2))])
    image = (image_latent @ image_map + rng.normal(size=(n_samples, n_image_features))).astype(np.float32)
    present = np.ones(n_samples, dtype=bool)
    present[rng.permutation(n_samples)[: int(round(missing_rate * n_samples))]] = False
    image[~present] = np.nan
    labels, proba, names = _labels(task, latent, prevalence, rng)
    X = pd.concat(
        [
            pd.DataFrame({"ts": cells}),
            pd.DataFrame(image, columns=[f"img__{j}" for j in range(n_image_features)]),
        ],
        axis=1,
    )
    if not return_truth:
        return X, labels
    truth = Bunch(
        latent=latent,
        severity=latent[:, 0],
        proba=proba,
        label_names=names,
        image_present=present,
        hours=hours,
    )
    return X, labels, truth
