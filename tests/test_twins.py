"""The survival and classifier twins of every fusion family differ in their task alone.

A family is one private base class holding its logic and two thin public estimators,
``XSurvival(SurvivalMixin, _X)`` and ``XClassifier(ClassifierHeadMixin, _X)``
(``docs/extending.md``). The pairs are found from ``skfusion.__all__``, so a new family is
checked as soon as it is exported.
"""

import inspect

import pytest

import skfusion
from skfusion._base import BaseFusion
from skfusion._classifier import ClassifierHeadMixin
from skfusion._survival import SurvivalMixin

TASK_PARAMETERS = {SurvivalMixin: {"loss", "n_durations"}, ClassifierHeadMixin: {"class_weight"}}

# Shared parameters whose default is the task's (survival, classifier), each with its reason.
TASK_DEFAULTS = {
    # docs/design.md, "The default training recipe": 1e-2 raised the classifiers' log loss on digits.
    "weight_decay": (1e-2, 1e-4),
}
# The same, for some families only.
FAMILY_DEFAULTS = {
    # docs/design.md: with "auto" the attention classifiers' log loss rose on breast cancer.
    "CrossAttention": {"batch_size": ("auto", 256)},
    "CoAttention": {"batch_size": ("auto", 256)},
}
# Public fusion estimators without a twin, each with its reason.
NO_TWIN = {
    "MedCAMClassifier": "MedCAM (skfusion.ssl) classifies images: an EHR-adapted image encoder and a linear head",
}

PUBLIC = {name: getattr(skfusion, name) for name in skfusion.__all__}
FUSION = {name: cls for name, cls in PUBLIC.items() if inspect.isclass(cls) and issubclass(cls, BaseFusion)}
PAIRS = sorted(
    (name[: -len("Survival")], cls, FUSION[name[: -len("Survival")] + "Classifier"])
    for name, cls in FUSION.items()
    if name.endswith("Survival") and name[: -len("Survival")] + "Classifier" in FUSION
)


def _ids(pair):
    return pair[0]


def _signature(cls):
    return inspect.signature(cls.__init__).parameters


def _below(cls, mixin):
    """``cls``'s MRO below the task mixin: what is left once the mixin's own MRO is taken out."""
    task = set(mixin.__mro__) - {object}
    return [klass for klass in cls.__mro__[1:] if klass not in task]


def test_every_public_fusion_estimator_has_its_twin():
    paired = {cls.__name__ for _, *twins in PAIRS for cls in twins}
    assert len(PAIRS) >= 9  # the nine families of the README: the search found them
    assert sorted(set(FUSION) - paired - set(NO_TWIN)) == []
    assert all(name in FUSION for name in NO_TWIN), "a NO_TWIN entry names no public fusion estimator"


@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_twins_differ_in_their_task_parameters_only(pair):
    family, survival, classifier = pair
    own = {SurvivalMixin: _signature(survival), ClassifierHeadMixin: _signature(classifier)}
    shared = set(own[SurvivalMixin]) & set(own[ClassifierHeadMixin])
    for mixin, parameters in own.items():
        assert set(parameters) - shared == TASK_PARAMETERS[mixin], f"{family}: {mixin.__name__} twin's own parameters"
    # In the same order, and keyword-only, as every estimator of the package.
    order = [[p for p in parameters if p in shared] for parameters in own.values()]
    assert order[0] == order[1], f"{family}: the shared parameters are in another order"
    kinds = {p.kind for parameters in own.values() for name, p in parameters.items() if name != "self"}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}, f"{family}: a parameter is not keyword-only"
    task_defaults = {**TASK_DEFAULTS, **FAMILY_DEFAULTS.get(family, {})}
    for name in sorted(shared - {"self"}):
        defaults = (own[SurvivalMixin][name].default, own[ClassifierHeadMixin][name].default)
        assert defaults == task_defaults.get(name, (defaults[0],) * 2), f"{family}: {name} defaults {defaults}"


@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_twins_share_one_private_base(pair):
    _, survival, classifier = pair
    assert survival.__mro__[1] is SurvivalMixin and classifier.__mro__[1] is ClassifierHeadMixin
    below = _below(survival, SurvivalMixin)
    assert below == _below(classifier, ClassifierHeadMixin)
    assert below[0].__name__.startswith("_") and issubclass(below[0], BaseFusion)
    # The thin estimators write their signature and nothing else (BaseFusion.__init_subclass__
    # adds the task's constraints, scikit-learn the metadata-routing request methods).
    for cls in (survival, classifier):
        written = {
            name
            for name, value in vars(cls).items()
            if not name.endswith("_request") and (not name.startswith("__") or inspect.isfunction(value))
        }
        assert written == {"__init__", "_parameter_constraints"}, f"{cls.__name__} defines {sorted(written)}"


@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_twins_validate_the_same_shared_parameters(pair):
    _, survival, classifier = pair
    constraints = {
        SurvivalMixin: survival._parameter_constraints,
        ClassifierHeadMixin: classifier._parameter_constraints,
    }
    for mixin, own in constraints.items():
        assert set(mixin._task_parameter_constraints) <= set(own)
    shared = [{k: v for k, v in own.items() if k not in TASK_PARAMETERS[mixin]} for mixin, own in constraints.items()]
    assert shared[0] == shared[1]
