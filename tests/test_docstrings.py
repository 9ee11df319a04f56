"""Every public estimator documents each of its parameters once, with the default of its signature."""

import ast
import importlib
import inspect
import re

import pytest
from numpydoc.docscrape import ClassDoc
from sklearn.base import BaseEstimator

MODULES = ["skfusion", "skfusion.encoders", "skfusion.ssl"]
ESTIMATORS = sorted(
    {
        getattr(importlib.import_module(module), name)
        for module in MODULES
        for name in importlib.import_module(module).__all__
        if inspect.isclass(getattr(importlib.import_module(module), name))
        and issubclass(getattr(importlib.import_module(module), name), BaseEstimator)
    },
    key=lambda cls: cls.__name__,
)


def documented_parameters(cls):
    """``{name: type line}`` of the Parameters section (``a, b : type`` documents both)."""
    return {name.strip(): p.type for p in ClassDoc(cls)["Parameters"] for name in p.name.split(",")}


def documented_default(type_line):
    """The value after ``default=`` (a Python literal, else the text), or None when there is none."""
    found = re.search(r"default=(.*)$", type_line)
    if found is None:
        return None
    text = found.group(1).strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def default_mismatches(cls):
    documented = documented_parameters(cls)
    signature = inspect.signature(cls.__init__).parameters
    found = [f"{name} is not documented" for name in signature if name != "self" and name not in documented]
    found += [f"{name} is documented but not a parameter" for name in documented if name not in signature]
    for name, param in signature.items():
        if name in documented and param.default is not inspect.Parameter.empty:
            written = documented_default(documented[name])
            if written != param.default:
                found.append(f"{name}: the docstring says default={written!r}, the signature {param.default!r}")
    return found


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_documented_parameters_and_defaults_are_the_signatures(cls):
    assert default_mismatches(cls) == []


def test_the_check_finds_a_wrong_default_and_a_folded_parameter():
    class Folded(BaseEstimator):
        """A docstring whose second parameter is folded into the first's text.

        Parameters
        ----------
        alpha : float, default=1e-2
            Strength.
                beta : int, default=3
                Folded by a fragment indented twice.
        """

        def __init__(self, alpha=1e-4, beta=3):
            self.alpha = alpha
            self.beta = beta

    assert default_mismatches(Folded) == [
        "beta is not documented",
        "alpha: the docstring says default=0.01, the signature 0.0001",
    ]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_parameter_is_validated(cls):
    # scikit-learn's check_param_validation does not run in parametrize_with_checks: a
    # parameter without a constraint would accept anything.
    parameters = set(inspect.signature(cls).parameters)
    constraints = set(getattr(cls, "_parameter_constraints", {}))
    assert parameters <= constraints, f"no constraint for {sorted(parameters - constraints)}"
