"""The only place skfusion touches scikit-learn's private API.

scikit-learn's parameter-validation machinery (``_fit_context`` and the constraint
classes) is private but is what every scikit-learn estimator uses; importing it here keeps
a future rename a one-file change.
"""

import inspect

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import _check_sample_weight

__all__ = [
    "HasMethods",
    "Interval",
    "Options",
    "SequenceOf",
    "StrOptions",
    "_fit_context",
    "_get_output_config",
    "check_sample_weight",
]

# scikit-learn 1.7 added its own refusal of all-zero weights, whose message does not name
# the parameter: skfusion refuses them itself (skfusion._engine.check_weights), on every version.
_ZERO_WEIGHTS_ALLOWED = (
    {"allow_all_zero_weights": True}
    if "allow_all_zero_weights" in inspect.signature(_check_sample_weight).parameters
    else {}
)


def check_sample_weight(sample_weight, n_samples):
    """scikit-learn's validation of ``sample_weight``: a float64 array of ``n_samples`` non-negative finite weights.

    ``None`` gives ones and a number gives that weight to every row. A weight that is
    negative, NaN or infinite, or an array of another shape, is a ValueError naming
    ``sample_weight``; all-zero weights pass (the caller refuses them).
    """
    try:
        return _check_sample_weight(
            sample_weight, np.empty((n_samples, 0)), dtype=np.float64, ensure_non_negative=True, **_ZERO_WEIGHTS_ALLOWED
        )
    except ValueError as error:
        if "sample_weight" in str(error):
            raise
        # A 2-D array ("Sample weights must be 1D") or strings (NumPy's conversion error).
        raise ValueError(f"sample_weight: {error}") from None


class SequenceOf(HasMethods):
    """A list or tuple whose items all satisfy ``item`` (a predicate), described by ``description``.

    scikit-learn has no constraint for list-valued parameters; this one lets
    ``_parameter_constraints`` check every item, so a bad width fails at ``fit`` with
    scikit-learn's ``InvalidParameterError`` (a ``ValueError``) naming the parameter. It
    derives from ``HasMethods`` only because scikit-learn accepts constraint objects of its
    own classes alone.
    """

    def __init__(self, item, description):
        super().__init__([])
        self.item = item
        self.description = description

    def is_satisfied_by(self, val):
        return isinstance(val, (list, tuple)) and all(self.item(v) for v in val)

    def __str__(self):
        return f"a list or tuple of {self.description}"
