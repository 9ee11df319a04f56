"""The only place skfusion touches scikit-learn's private API.

scikit-learn's parameter-validation machinery (``_fit_context`` and the constraint
classes) is private but is what every scikit-learn estimator uses; importing it here keeps
a future rename a one-file change.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils._set_output import _get_output_config

__all__ = ["HasMethods", "Interval", "Options", "SequenceOf", "StrOptions", "_fit_context", "_get_output_config"]


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
