"""Argument checks shared by the data-set generators and loaders: a ValueError naming the parameter."""

from numbers import Integral, Real

import numpy as np


def check_int(name, value, low=1):
    """``value`` as an int ``>= low``; booleans and floats are refused."""
    if not isinstance(value, Integral) or isinstance(value, (bool, np.bool_)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def check_real(name, value, low=-np.inf, high=np.inf, closed="both", allow_inf=False):
    """``value`` as a float in the interval from ``low`` to ``high`` (``closed`` as in sklearn's Interval)."""
    left = closed in ("left", "both")
    right = closed in ("right", "both")
    ok = (
        isinstance(value, Real)
        and not isinstance(value, (bool, np.bool_))
        and not np.isnan(value)
        and (allow_inf or np.isfinite(value))
        and (value >= low if left else value > low)
        and (value <= high if right else value < high)
    )
    if not ok:
        raise ValueError(f"{name} must be {_describe(low, high, left, right, allow_inf)}; got {value!r}.")
    return float(value)


def _describe(low, high, left, right, allow_inf):
    kind = "a number" if allow_inf else "a finite number"
    if np.isinf(low) and np.isinf(high):
        return kind
    if np.isinf(high):
        return f"{kind} {'>=' if left else '>'} {low:g}"
    if np.isinf(low):
        return f"{kind} {'<=' if right else '<'} {high:g}"
    return f"{kind} in {'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"


def check_per_modality(name, values, n_modalities, check):
    """A sequence with one entry per modality, each passed through ``check(entry_name, entry)``."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != n_modalities:
        raise ValueError(f"{name} must be a sequence with one entry per modality ({n_modalities}); got {values!r}.")
    return [check(f"{name}[{m}]", v) for m, v in enumerate(values)]


def check_modality_names(names):
    """Distinct non-empty strings without the ``__`` separator of the column names."""
    if isinstance(names, str) or not hasattr(names, "__len__") or not len(names):
        raise ValueError(f"modality_names must be a non-empty sequence of strings; got {names!r}.")
    for m, name in enumerate(names):
        if not isinstance(name, str) or not name or "__" in name:
            raise ValueError(
                f"modality_names[{m}] must be a non-empty string without '__' (columns are "
                f"'<name>__<j>'); got {name!r}."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"modality_names must be distinct; got {list(names)}.")
    return list(names)


def check_missing_rate(missing_rate, names):
    """Per-modality missing rates from None, one number for every modality, or a dict by name."""
    if missing_rate is None:
        return {}
    if isinstance(missing_rate, Real) and not isinstance(missing_rate, (bool, np.bool_)):
        rate = check_real("missing_rate", missing_rate, 0.0, 1.0)
        return {name: rate for name in names}
    if not isinstance(missing_rate, dict):
        raise ValueError(
            "missing_rate must be None, a number in [0, 1] (the same rate for every modality) or a dict "
            f"of modality name to rate; got {type(missing_rate).__name__}."
        )
    unknown = [key for key in missing_rate if key not in names]
    if unknown:
        raise ValueError(f"missing_rate names unknown modalities {unknown}; the modalities are {list(names)}.")
    return {name: check_real(f"missing_rate[{name!r}]", rate, 0.0, 1.0) for name, rate in missing_rate.items()}
