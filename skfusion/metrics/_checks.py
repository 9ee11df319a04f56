"""Input checks shared by the metrics: every error names the argument (and rows) at fault."""

import numpy as np
from sksurv.util import check_y_survival


def as_rows(x, name):
    """``x`` as an ndarray whose first axis is the samples (lists, Series, DataFrames too)."""
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"{name} must be an array with one entry per sample, got a scalar.")
    return x


def check_lengths(**arrays):
    """Raise unless every array has as many rows as the first one."""
    (ref_name, ref), *others = arrays.items()
    for name, array in others:
        if len(array) != len(ref):
            raise ValueError(f"{name} has {len(array)} rows but {ref_name} has {len(ref)}.")


def check_numeric(x, name):
    """Raise, naming ``name``, if ``x`` holds strings: scores and probabilities are numbers.

    Object arrays of other things (StepFunctions) are left to the checks that read them.
    """
    if x.dtype.kind in "US":
        strings = x.ravel()[:1].tolist()
    elif x.dtype.kind == "O":
        strings = [v for v in x.ravel() if isinstance(v, (str, bytes))]
    else:
        return x
    if not strings:
        return x
    first = strings[0]
    raise ValueError(
        f"{name} must hold numbers, got strings (e.g. {first!r}); if they are numbers written as text, "
        f"convert them first (np.asarray({name}, dtype=float))."
    )


def check_finite(x, name):
    """Raise, naming the first bad rows, if a numeric ``x`` holds NaN or infinity.

    Object arrays that do not convert to float (labels, StepFunctions) are left alone.
    """
    values = x
    if x.dtype.kind == "O":
        try:
            values = x.astype(float)
        except (TypeError, ValueError):
            return x
    if values.dtype.kind in "fc":
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"{name} contains NaN or infinite values in rows {rows[:10].tolist()}.")
    return x


def check_survival(y, name, *, allow_all_censored=False):
    """``(event, time)`` of a structured survival array, or a ValueError naming ``name``."""
    names = getattr(getattr(y, "dtype", None), "names", None)
    if names is None or len(names) != 2:
        got = f"an array of dtype {y.dtype}" if hasattr(y, "dtype") else type(y).__name__
        raise ValueError(
            f"{name} must be a structured array with an event field and a time field, as made by "
            f"sksurv.util.Surv.from_arrays(event, time); got {got}."
        )
    try:
        return check_y_survival(y, allow_all_censored=allow_all_censored)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def check_times(times, name, *, increasing=False, at_least=1):
    """``times`` as a finite, non-negative 1-D float array (strictly increasing if asked)."""
    values = np.atleast_1d(np.asarray(times))
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a 1-D array of numbers, got shape {values.shape} and dtype {values.dtype}.")
    values = values.astype(float)
    if len(values) < at_least:
        raise ValueError(f"{name} needs at least {at_least} values, got {len(values)}.")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must hold finite non-negative times, got {values[:10].tolist()}.")
    if increasing and (np.diff(values) <= 0).any():
        raise ValueError(f"{name} must be strictly increasing, got {values[:10].tolist()}.")
    return values


def check_probabilities(x, name):
    """Raise, naming the first bad rows, unless every value of ``x`` is in [0, 1]."""
    check_numeric(np.asarray(x), name)
    check_finite(np.asarray(x, dtype=float), name)
    values = np.asarray(x, dtype=float).reshape(len(x), -1)
    bad = ((values < 0) | (values > 1)).any(axis=1)
    if bad.any():
        raise ValueError(f"{name} must hold probabilities in [0, 1]; rows {np.flatnonzero(bad)[:10].tolist()} do not.")
    return x
