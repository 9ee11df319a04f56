"""A synthetic imaging + EHR cohort: CT-like volumes whose planted biomarkers drive future events."""

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state
from sksurv.util import Surv

_TRUTH_SEED = 20250013
_AIR, _LUNG, _TISSUE = -1000.0, -800.0, 40.0
_VISIT = "VISIT"


def _check_int(name, value, low):
    if not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def _check_range(name, value):
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, Real) for v in value)
        and 0 < value[0] <= value[1]
    ):
        raise ValueError(f"{name} must be a pair (low, high) with 0 < low <= high; got {value!r}.")


def _axes(shape):
    """Voxel coordinates scaled to [-1, 1] along each axis."""
    return [np.linspace(-1, 1, n) for n in shape]


def _anatomy(shape):
    """Air outside an elliptic body of soft tissue holding two elliptic lungs (HU)."""
    _, y, x = np.meshgrid(*_axes(shape), indexing="ij")
    volume = np.full(shape, _AIR)
    volume[(y / 0.85) ** 2 + (x / 0.95) ** 2 <= 1] = _TISSUE
    for side in (-0.45, 0.45):
        volume[((y + 0.05) / 0.6) ** 2 + ((x - side) / 0.32) ** 2 <= 1] = _LUNG
    return volume


def _blobs(shape, centres, amplitudes, width):
    """Sum of Gaussian blobs: ``centres`` (n, k, 3) in [-1, 1] coordinates, ``amplitudes`` (n, k) in HU.

    A blob is twice as wide along z as in the plane; the Gaussian factorises over the axes.
    """
    z, y, x = (
        np.exp(-0.5 * ((axis[None, None] - centres[..., a, None]) / (w * width)) ** 2)
        for a, (axis, w) in enumerate(zip(_axes(shape), (2, 1, 1)))
    )
    return np.einsum("nk,nkz,nky,nkx->nzyx", amplitudes, z, y, x, optimize=True)


def make_imaging_ehr_cohort(
    n_samples=300,
    *,
    volume_shape=(8, 32, 32),
    n_biomarkers=2,
    n_nuisance=2,
    n_codes=12,
    n_driven=6,
    n_outcomes=2,
    signal=1.0,
    follow_up=(365.0, 1825.0),
    noise=20.0,
    return_truth=False,
    random_state=None,
):
    """CT-like volumes, the EHR before and after each scan, and held-out outcomes with a known truth.

    Each patient has ``n_biomarkers`` standard-normal biomarkers :math:`b` and
    ``n_nuisance`` nuisance factors :math:`v`, seen in a ``volume_shape`` CT volume in
    Hounsfield units (HU): air around an elliptic body of soft tissue (40 HU) with two lungs
    (-800 HU); biomarker :math:`j` is a nodule at a fixed place in a lung (jittered by a few
    voxels) of amplitude :math:`200 e^{b_j / 2}` HU; each nuisance factor is a brighter
    blob, :math:`400 e^{v_k / 2}` HU, at a random place; plus a global HU offset (scanner
    calibration) and voxel noise. The nuisance dominates the image's variance and drives
    nothing.

    The EHR is an event frame per patient around the scan time ``index_time`` (days):
    3 to 10 history events before it, then follow-up until a last visit, uniform in
    ``follow_up`` days after it, with routine ``"VISIT"`` events. Codes ``"DX/00"`` to
    ``"DX/{n_codes - 1}"`` first occur after the scan at exponential times of hazard
    :math:`\\lambda_k e^{s \\, w_k^\\top b}` (``s = signal``); the first ``n_driven`` codes
    have unit-norm :math:`w_k`, the others :math:`w_k = 0`. The held-out outcomes are not
    in the frames: outcome :math:`j` has hazard :math:`\\lambda e^{s \\, u_j^\\top b}` with a
    unit-norm :math:`u_j` (true risk :math:`s \\, u_j^\\top b`), censored at the end of
    follow-up. The maps, places and rates are fixed (one seed), the patients follow
    ``random_state``.

    Parameters
    ----------
    n_samples : int, default=300
    volume_shape : tuple of (int, int, int), default=(8, 32, 32)
        ``(Z, H, W)`` voxels.
    n_biomarkers : int, default=2
    n_nuisance : int, default=2
    n_codes : int, default=12
        Diagnosis codes that can follow the scan.
    n_driven : int, default=6
        How many of them the biomarkers drive.
    n_outcomes : int, default=2
        Held-out outcomes.
    signal : float, default=1.0
        Log-hazard ratio per standard deviation of the biomarker score.
    follow_up : tuple of (float, float), default=(365, 1825)
        Range of the follow-up in days.
    noise : float, default=20.0
        Standard deviation of the voxel noise (HU).
    return_truth : bool, default=False
        Also return a Bunch with ``biomarkers`` (n, n_biomarkers), ``nuisance`` (n,
        n_nuisance), ``outcome_risk`` (n, n_outcomes, the true log-hazard ratios),
        ``code_risk`` (n, n_codes), ``codes``, ``driven_codes`` and ``biomarker_voxels``
        (n_biomarkers, 3), the ``(z, y, x)`` voxel at the centre of each nodule.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : pandas.DataFrame
        ``"ct"`` (``(Z, H, W)`` float32 arrays in HU), ``"ehr"`` (frames with ``time``,
        ``code``, ``numeric_value``, times in days) and ``"index_time"`` (float days).
    outcomes : dict of str to structured ndarray
        ``"outcome_0"``, ...: survival targets (``sksurv.util.Surv``) from the index time, in
        days.
    truth : sklearn.utils.Bunch
        Only with ``return_truth=True``.

    Examples
    --------
    >>> from skfusion.datasets import make_imaging_ehr_cohort
    >>> X, outcomes = make_imaging_ehr_cohort(n_samples=4, random_state=0)
    >>> list(X.columns), X["ct"][0].shape, sorted(outcomes)
    (['ct', 'ehr', 'index_time'], (8, 32, 32), ['outcome_0', 'outcome_1'])
    """
    for name, value, low in (
        ("n_samples", n_samples, 1),
        ("n_biomarkers", n_biomarkers, 1),
        ("n_nuisance", n_nuisance, 0),
        ("n_codes", n_codes, 1),
        ("n_driven", n_driven, 0),
        ("n_outcomes", n_outcomes, 1),
    ):
        _check_int(name, value, low)
    if n_driven > n_codes:
        raise ValueError(f"n_driven ({n_driven}) cannot exceed n_codes ({n_codes}).")
    if not (len(volume_shape) == 3 and all(isinstance(v, Integral) and v >= 4 for v in volume_shape)):
        raise ValueError(f"volume_shape must be three integers >= 4 (Z, H, W); got {volume_shape!r}.")
    _check_range("follow_up", follow_up)
    for name, value in (("signal", signal), ("noise", noise)):
        if not isinstance(value, Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite non-negative number; got {value!r}.")

    truth_rng = np.random.default_rng(_TRUTH_SEED)
    places = np.column_stack(
        [
            truth_rng.uniform(-0.4, 0.4, n_biomarkers),
            truth_rng.uniform(-0.3, 0.2, n_biomarkers),
            np.where(np.arange(n_biomarkers) % 2 == 0, -0.45, 0.45) + truth_rng.uniform(-0.1, 0.1, n_biomarkers),
        ]
    )
    code_weights = np.zeros((n_codes, n_biomarkers))
    code_weights[:n_driven] = _unit_rows(truth_rng, n_driven, n_biomarkers)
    code_rates = np.exp(truth_rng.uniform(np.log(1 / 2000), np.log(1 / 400), n_codes))
    outcome_weights = _unit_rows(truth_rng, n_outcomes, n_biomarkers)

    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    b = rng.normal(size=(n_samples, n_biomarkers))
    v = rng.normal(size=(n_samples, n_nuisance))
    volumes = _volumes(rng, volume_shape, places, b, v, noise)
    index = rng.uniform(1000.0, 4000.0, n_samples)
    end = rng.uniform(*follow_up, n_samples)
    code_risk = signal * b @ code_weights.T
    first = rng.exponential(size=(n_samples, n_codes)) / (code_rates * np.exp(code_risk))
    codes = [f"DX/{k:02d}" for k in range(n_codes)]
    frames = [_events(rng, codes, index[i], end[i], first[i]) for i in range(n_samples)]
    outcome_risk = signal * b @ outcome_weights.T
    outcome_time = rng.exponential(size=(n_samples, n_outcomes)) / (np.exp(outcome_risk) / 1000.0)
    outcomes = {
        f"outcome_{j}": Surv.from_arrays(outcome_time[:, j] <= end, np.minimum(outcome_time[:, j], end))
        for j in range(n_outcomes)
    }
    X = pd.DataFrame(
        {
            "ct": pd.Series(list(volumes.astype(np.float32)), dtype=object),
            "ehr": pd.Series(frames, dtype=object),
            "index_time": index,
        }
    )
    if not return_truth:
        return X, outcomes
    truth = Bunch(
        biomarkers=b,
        nuisance=v,
        outcome_risk=outcome_risk,
        code_risk=code_risk,
        codes=codes,
        driven_codes=codes[:n_driven],
        biomarker_voxels=np.rint((places + 1) / 2 * (np.asarray(volume_shape) - 1)).astype(int),
    )
    return X, outcomes, truth


def _unit_rows(rng, n, d):
    rows = rng.normal(size=(n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _volumes(rng, shape, places, b, v, noise):
    n = len(b)
    jitter = rng.uniform(-0.08, 0.08, size=(n, len(places), 3))
    volumes = _anatomy(shape)[None] + _blobs(shape, places[None] + jitter, 200.0 * np.exp(b / 2), 0.12)
    if v.shape[1]:
        m = n * v.shape[1]
        spots = np.column_stack([rng.uniform(-0.6, 0.6, (m, 1)), rng.uniform(-0.6, 0.6, (m, 2))])
        volumes += _blobs(shape, spots.reshape(n, v.shape[1], 3), 400.0 * np.exp(v / 2), 0.15)
    volumes += rng.normal(0, 30.0, size=(n, 1, 1, 1)) + rng.normal(0, noise, size=volumes.shape)
    return volumes


def _events(rng, codes, index, end, first):
    """One patient's frame: history before ``index``, first occurrences and visits until ``index + end``."""
    n_history = int(rng.integers(3, 11))
    history_codes = rng.choice(codes + [_VISIT], size=n_history)
    times = [index - rng.uniform(1, 1000, n_history)]
    labels = [history_codes]
    seen = first < end
    times.append(index + first[seen])
    labels.append(np.asarray(codes, dtype=object)[seen])
    visits = np.sort(rng.uniform(0, end, int(rng.poisson(end / 180.0))))
    times.append(index + np.append(visits, end))
    labels.append(np.full(len(visits) + 1, _VISIT, dtype=object))
    times, labels = np.concatenate(times), np.concatenate(labels).astype(object)
    order = np.argsort(times, kind="stable")
    return pd.DataFrame({"time": times[order], "code": labels[order], "numeric_value": np.full(len(times), np.nan)})
