"""The only place skfusion touches scikit-learn's private API.

scikit-learn's parameter-validation machinery (``_fit_context`` and the constraint
classes) is private but is what every scikit-learn estimator uses; importing it here keeps
a future rename a one-file change.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils._set_output import _get_output_config

__all__ = ["HasMethods", "Interval", "Options", "StrOptions", "_fit_context", "_get_output_config"]
