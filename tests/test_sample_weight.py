"""``sample_weight`` and ``class_weight``: integer weights are repeated rows, in every loss and in a fit.

The references: the losses on the rows repeated (torchsurv's, PyTorch's), scikit-survival's
Breslow estimator and ridge Cox model and scikit-learn's ``LogisticRegression`` on weighted
or repeated rows, and a direct transcription of the weighted Efron likelihood (R's ``coxph``).
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.util import Surv
from torch.nn import functional as F
from torchsurv.loss.cox import neg_partial_log_likelihood
from torchsurv.loss.weibull import neg_log_likelihood_weibull

from _batch_invariance import assert_float32_close
from skfusion import ConcatClassifier, ConcatSurvival, LateFusionClassifier
from skfusion._classifier import binary_cross_entropy, cross_entropy
from skfusion._survival import CoxModel, DiscreteTimeModel, WeibullModel, _weighted_quantile, breslow, cox_nll
from skfusion._training import fit_linear_start
from skfusion.fusion._pretraining import _ClassifierPretrainer

from test_encoders_fusion import TINY, sequence_frame


def _cohort(n=60, seed=0):
    """Six features in two blocks, a linear log-hazard, distinct times, 70% events; and integer weights 0-3."""
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, 6))
    eta = x[:, 0] - x[:, 3]
    time = rng.exponential(np.exp(-eta))
    event = rng.random(n) < 0.7
    X = pd.DataFrame(x, columns=[f"a__{i}" for i in range(3)] + [f"b__{i}" for i in range(3)])
    return X, Surv.from_arrays(event, time), eta, rng.randint(0, 4, n)


def _repeated(weight):
    return np.repeat(np.arange(len(weight)), weight)


def _cox(rows, weight, eta, y):
    """Our Cox loss of the log-hazards ``eta`` on rows ``rows`` with ``weight``."""
    target = torch.from_numpy(CoxModel().prepare(y["time"][rows], y["event"][rows], weight))
    return cox_nll(torch.tensor(eta[rows]), target[:, 1].bool(), target[:, 0], target[:, -1])


def _torchsurv(eta, y, ties_method):
    """torchsurv's partial likelihood summed, divided by the number of events: the mean per event (float64)."""
    event, time = torch.tensor(np.array(y["event"])), torch.tensor(np.array(y["time"]))
    loss = neg_partial_log_likelihood(torch.tensor(eta), event, time, ties_method=ties_method, reduction="sum")
    return loss.double() / y["event"].sum()


@pytest.mark.filterwarnings("ignore:Ties in `time` detected")
def test_integer_weights_of_cox_are_repeated_rows_under_breslow_ties():
    """Without tied event times, the weighted Efron likelihood is Breslow's, and a weight k is k copies of the row."""
    _, y, eta, weight = _cohort()
    rows = np.arange(len(y))
    repeated = _repeated(weight)
    ours = _cox(rows, weight.astype(float), eta, y)
    # torchsurv sums the tied rows in float32.
    torch.testing.assert_close(ours, _torchsurv(eta[repeated], y[repeated], "breslow"), rtol=1e-6, atol=0)
    # Copies of a censored row tie with no death: Efron's likelihood on the repeated rows is the same.
    censored_copies = np.where(y["event"], np.minimum(weight, 1), weight)
    on_copies = _cox(_repeated(censored_copies), np.ones(censored_copies.sum()), eta, y)
    torch.testing.assert_close(_cox(rows, censored_copies.astype(float), eta, y), on_copies, rtol=1e-12, atol=0)


@pytest.mark.filterwarnings("ignore:Ties in `time` detected")
def test_cox_with_unit_weights_is_torchsurvs_efron_likelihood_per_event():
    _, y, eta, _ = _cohort()
    tied = Surv.from_arrays(y["event"], np.round(y["time"], 1))  # 60 rows on a dozen times
    rows = np.arange(len(y))
    assert len(np.unique(tied["time"][tied["event"]])) < tied["event"].sum()
    expected = _torchsurv(eta, tied, "efron")
    torch.testing.assert_close(_cox(rows, np.ones(len(y)), eta, tied), expected, rtol=1e-6, atol=0)


def _efron_by_hand(eta, event, time, weight):
    """R's coxph (coxfit6.c) and lifelines: at each death time, d deaths of total weight W and mean weight W / d."""
    total = 0.0
    risk = weight * np.exp(eta)
    for t in np.unique(time[event & (weight > 0)]):
        dead = (time == t) & event & (weight > 0)
        d, at_risk, tied = dead.sum(), risk[time >= t].sum(), risk[dead].sum()
        total += (weight * eta)[dead].sum()
        total -= weight[dead].sum() / d * sum(np.log(at_risk - r / d * tied) for r in range(d))
    return -total / weight[event].sum()


def test_weighted_efron_likelihood_matches_its_transcription():
    _, y, eta, weight = _cohort()
    weight = weight * 0.7  # not integers
    tied = Surv.from_arrays(y["event"], np.round(y["time"], 1))
    ours = _cox(np.arange(len(y)), weight, eta, tied).item()
    assert ours == pytest.approx(_efron_by_hand(eta, tied["event"], tied["time"], weight), rel=1e-12)


def test_cox_rows_of_zero_weight_are_no_rows_and_the_scale_of_the_weights_is_free():
    _, y, eta, weight = _cohort()
    tied = Surv.from_arrays(y["event"], np.round(y["time"], 1))
    kept = np.flatnonzero(weight)
    # A death of zero weight tied with others is not counted among them by Efron's correction.
    assert (tied["event"] & (weight == 0)).any()
    dropped = _cox(kept, weight[kept].astype(float), eta, tied)
    torch.testing.assert_close(_cox(np.arange(len(y)), weight.astype(float), eta, tied), dropped, rtol=1e-12, atol=0)
    # Weights times c: the loss moves by the constant log c (every risk set is c times larger), its gradient not at all.
    grads = []
    for scale in (1.0, 1000.0):
        log_hz = torch.tensor(eta, requires_grad=True)
        target = torch.from_numpy(CoxModel().prepare(tied["time"], tied["event"], scale * weight))
        loss = cox_nll(log_hz, target[:, 1].bool(), target[:, 0], target[:, -1])
        loss.backward()
        grads.append((loss.item(), log_hz.grad))
    assert grads[1][0] == pytest.approx(grads[0][0] + np.log(1000.0), rel=1e-12)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-10, atol=1e-14)


def test_cox_loss_of_large_float32_log_hazards_is_finite():
    """exp() of a float32 log-hazard overflows from 89 on: the loss shifts them by their largest."""
    _, y, eta, weight = _cohort()
    rows = np.arange(len(y))
    big = 100.0 + 5 * eta
    target = torch.from_numpy(CoxModel().prepare(y["time"], y["event"], weight.astype(float)))
    as_float32 = cox_nll(torch.tensor(big, dtype=torch.float32), target[:, 1].bool(), target[:, 0], target[:, -1])
    assert as_float32.item() == pytest.approx(_cox(rows, weight.astype(float), big, y).item(), rel=1e-5)


def test_breslow_with_weights_is_scikit_survivals_on_repeated_rows():
    _, y, eta, weight = _cohort()
    weight[np.argsort(y["time"])[-5:]] = 0  # the longest follow-up has no weight: no one at risk there
    target = CoxModel().prepare(y["time"], y["event"], weight.astype(float))
    ours = breslow(eta, target[:, 1], target[:, 0].astype(np.intp), target[:, 2], target[:, -1])
    repeated = _repeated(weight)
    reference = BreslowEstimator().fit(eta[repeated], y["event"][repeated], y["time"][repeated])
    times = np.unique(y["time"][repeated])
    np.testing.assert_allclose(ours(times), reference.cum_baseline_hazard_(times), rtol=1e-12)
    assert np.isfinite(ours.y).all()


def test_weighted_quantiles_are_numpys_inverted_cdf_quantiles_of_the_repeated_rows():
    rng = np.random.RandomState(0)
    values, weight = rng.exponential(size=40), rng.randint(0, 4, 40)
    q = np.array([0.125, 0.25, 0.5, 0.75, 1.0])  # q * n exact in floating point: NumPy's index is the true one
    expected = np.quantile(values[_repeated(weight)], q, method="inverted_cdf")
    np.testing.assert_array_equal(_weighted_quantile(values, weight.astype(float), q), expected)
    np.testing.assert_array_equal(_weighted_quantile(values, 0.1 * weight, q), expected)  # the scale is free
    unweighted = np.quantile(values, q, method="inverted_cdf")
    np.testing.assert_array_equal(_weighted_quantile(values, np.ones(40), q), unweighted)


def _unfitted(model):
    return DiscreteTimeModel(model.n_durations) if isinstance(model, DiscreteTimeModel) else WeibullModel()


@pytest.mark.parametrize("model", [WeibullModel(), DiscreteTimeModel(n_durations=4)], ids=["weibull", "discrete"])
def test_weibull_and_discrete_time_with_integer_weights_are_repeated_rows(model):
    """The marginal fits and bins of ``prepare``, and the loss: integer weights equal the rows repeated."""
    _, y, eta, weight = _cohort()
    repeated = _repeated(weight)
    weighted, copies = _unfitted(model), _unfitted(model)
    target = torch.from_numpy(weighted.prepare(y["time"], y["event"], weight / weight.mean()))
    target_copies = torch.from_numpy(copies.prepare(y["time"][repeated], y["event"][repeated], np.ones(len(repeated))))
    for name in ("time_scale_", "cuts_"):
        if hasattr(weighted, name):
            np.testing.assert_array_equal(getattr(weighted, name), getattr(copies, name))
    # The Weibull marginal fit is L-BFGS-B's on two sums of the same terms.
    np.testing.assert_allclose(weighted.offset_, copies.offset_, rtol=1e-5, atol=1e-8)
    copies.offset_ = weighted.offset_
    out = torch.from_numpy(np.column_stack([eta] * weighted.n_outputs) * 0.3)
    expected = copies.loss(out[repeated], target_copies)
    torch.testing.assert_close(weighted.loss(out, target), expected, rtol=1e-12, atol=0)


def test_weibull_loss_with_unit_weights_is_torchsurvs():
    _, y, eta, _ = _cohort()
    model = WeibullModel()
    target = torch.from_numpy(model.prepare(y["time"], y["event"], np.ones(len(y))))
    out = torch.from_numpy(0.3 * eta[:, None])
    expected = neg_log_likelihood_weibull(model._params(out), target[:, 1].bool(), target[:, 0])
    # torchsurv's result is float32.
    torch.testing.assert_close(model.loss(out, target), expected.double(), rtol=1e-6, atol=0)


def test_classification_losses_with_integer_weights_are_repeated_rows():
    rng = np.random.RandomState(1)
    weight = rng.randint(0, 4, 30)
    repeated = _repeated(weight)
    logits = torch.from_numpy(rng.normal(size=(30, 3)))
    ones = np.ones(len(repeated))
    for labels, loss, reference, dtype in (
        (rng.randint(0, 3, 30), cross_entropy, F.cross_entropy, torch.long),
        (rng.randint(0, 2, (30, 3)), binary_cross_entropy, F.binary_cross_entropy_with_logits, torch.float64),
    ):
        target = torch.from_numpy(np.column_stack([labels, weight]).astype(float))
        expected = reference(logits[repeated], torch.from_numpy(labels[repeated]).to(dtype))
        torch.testing.assert_close(loss(logits, target), expected, rtol=1e-12, atol=0)
        target_copies = torch.from_numpy(np.column_stack([labels[repeated], ones]).astype(float))
        torch.testing.assert_close(loss(logits[repeated], target_copies), expected, rtol=1e-12, atol=0)


def test_weighted_linear_start_is_scikit_learns_weighted_logistic_regression():
    rng = np.random.RandomState(2)
    x = rng.normal(size=(200, 4))
    labels = np.argmax(x[:, :3] + rng.normal(size=(200, 3)), axis=1)
    weight = rng.uniform(0, 3, 200)
    alpha = 0.02
    target = torch.from_numpy(np.column_stack([labels, weight / weight.mean()]))
    layer, _ = fit_linear_start(torch.tensor(x), target, cross_entropy, 3, None, alpha)
    # scikit-learn's objective: sum_i w_i loss_i / sum_i w_i + ||W||^2 / (2 C sum_i w_i).
    reference = LogisticRegression(C=1 / (alpha * weight.sum()), tol=1e-10, max_iter=10_000)
    reference.fit(x, labels, sample_weight=weight)
    np.testing.assert_allclose(layer.weight.detach().numpy(), reference.coef_, rtol=1e-3, atol=1e-4)


def test_weighted_linear_start_of_cox_is_the_ridge_cox_model_of_the_repeated_rows():
    """Distinct event times: Breslow's and Efron's ties agree, and integer weights are repeated rows."""
    X, y, _, weight = _cohort(150, 3)
    z = (X - X.mean()) / X.std(ddof=0)
    target = torch.from_numpy(CoxModel().prepare(y["time"], y["event"], weight.astype(float)))
    alpha = 0.05
    layer, _ = fit_linear_start(torch.tensor(z.to_numpy()), target, CoxModel().loss, 1, None, alpha)
    repeated = _repeated(weight)
    n_events = y["event"][repeated].sum()
    reference = CoxPHSurvivalAnalysis(alpha=alpha * n_events, ties="breslow").fit(z.iloc[repeated], y[repeated])
    np.testing.assert_allclose(layer.weight.detach().numpy().ravel(), reference.coef_, rtol=1e-3, atol=5e-4)


# One full batch, no dropout, no internal standardization and no linear start: training sees
# the weights only through the losses (tests above) and the marginal fits of prepare. The
# linear start's float32 L-BFGS stops at round-off, 1e-3 apart on the same loss summed over
# weights or over repeated rows (its equivalence is tested above, on float64 inputs).
EXACT = {
    "linear_path": False, "standardize": False, "dropout": 0.0, "batch_size": 512, "max_epochs": 20,
    "early_stopping": False, "lr": 0.01, "random_state": 0,
}


@pytest.mark.float32_batch
@pytest.mark.parametrize("loss", ["cox", "weibull", "discrete"])
def test_a_survival_model_fitted_with_integer_weights_is_the_model_of_the_repeated_rows(loss):
    X, y, _, weight = _cohort()
    if loss == "cox":
        # Efron's likelihood treats the copies of a death as tied deaths, the weights do not (docs/design.md).
        weight = np.where(y["event"], np.minimum(weight, 1), weight)
    repeated = _repeated(weight)
    weighted = ConcatSurvival(loss=loss, **EXACT).fit(X, y, sample_weight=weight)
    copies = ConcatSurvival(loss=loss, **EXACT).fit(X.iloc[repeated], y[repeated])
    assert_float32_close(weighted.predict(X), copies.predict(X))
    # Rows of zero weight add their times to the grid, with no step of the baseline there.
    curves = np.vstack([f(copies.unique_times_) for f in weighted.predict_survival_function(X)])
    assert_float32_close(curves, copies.predict_survival_function(X, return_array=True))


@pytest.mark.float32_batch
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_a_classifier_fitted_with_integer_weights_is_the_model_of_the_repeated_rows(task):
    X, _, eta, weight = _cohort()
    rng = np.random.RandomState(5)
    binary = (eta + rng.normal(size=len(X)) > 0).astype(int)
    labels = {
        "binary": binary,
        "multiclass": rng.randint(0, 3, len(X)),
        "multilabel": np.column_stack([binary, rng.randint(0, 2, len(X))]),
    }[task]
    repeated = _repeated(weight)
    weighted = ConcatClassifier(**EXACT).fit(X, labels, sample_weight=weight)
    copies = ConcatClassifier(**EXACT).fit(X.iloc[repeated], labels[repeated])
    assert_float32_close(weighted.predict_proba(X), copies.predict_proba(X))


def test_equal_weights_are_no_weights():
    X, y, _, _ = _cohort()
    params = {"max_epochs": 5, "random_state": 0}
    unweighted = ConcatSurvival(**params).fit(X, y).predict(X)
    threes = ConcatSurvival(**params).fit(X, y, sample_weight=np.full(len(X), 3.0)).predict(X)
    np.testing.assert_array_equal(threes, unweighted)
    uneven = ConcatSurvival(**params).fit(X, y, sample_weight=np.arange(len(X)) % 3).predict(X)
    assert not np.allclose(uneven, unweighted)


@pytest.fixture(scope="module")
def imbalanced():
    X, _, eta, weight = _cohort(90, 7)
    labels = np.where(eta > 1.0, "rare", np.where(eta > -0.5, "mid", "common"))
    return X, labels, weight + 1.0


FIT = {"max_epochs": 5, "random_state": 0}


def test_balanced_class_weight_is_scikit_learns_sample_weights(imbalanced):
    X, labels, weight = imbalanced
    balanced = ConcatClassifier(class_weight="balanced", **FIT).fit(X, labels)
    explicit = ConcatClassifier(**FIT).fit(X, labels, sample_weight=compute_sample_weight("balanced", labels))
    assert_float32_close(balanced.predict_proba(X), explicit.predict_proba(X))
    # With sample weights, "balanced" counts the classes under them, as LogisticRegression does.
    both = ConcatClassifier(class_weight="balanced", **FIT).fit(X, labels, sample_weight=weight)
    classes = np.unique(labels)
    per_class = compute_class_weight("balanced", classes=classes, y=labels, sample_weight=weight)
    product = weight * per_class[np.searchsorted(classes, labels)]
    explicit = ConcatClassifier(**FIT).fit(X, labels, sample_weight=product)
    assert_float32_close(both.predict_proba(X), explicit.predict_proba(X))
    assert not np.allclose(both.predict_proba(X), balanced.predict_proba(X))


def test_a_class_weight_dict_multiplies_the_rows_of_its_classes(imbalanced):
    X, labels, weight = imbalanced
    model = ConcatClassifier(class_weight={"rare": 4.0}, **FIT).fit(X, labels, sample_weight=weight)
    explicit = ConcatClassifier(**FIT).fit(X, labels, sample_weight=weight * np.where(labels == "rare", 4.0, 1.0))
    assert_float32_close(model.predict_proba(X), explicit.predict_proba(X))


def test_late_fusion_averaging_gives_each_unimodal_model_its_rows_weights(imbalanced):
    X, labels, weight = imbalanced
    X = X.copy()
    X.loc[X.index[:10], ["b__0", "b__1", "b__2"]] = np.nan  # modality b on the last 80 rows only
    model = LateFusionClassifier(mode="average", class_weight="balanced", **FIT).fit(X, labels, sample_weight=weight)
    classes = np.unique(labels)
    per_class = compute_class_weight("balanced", classes=classes, y=labels, sample_weight=weight)
    product = weight * per_class[np.searchsorted(classes, labels)]
    rows = np.arange(10, 90)
    alone = model.estimators_["b"]
    refit = clone(alone).fit(X.iloc[rows], labels[rows], sample_weight=product[rows])
    assert_float32_close(alone.predict_proba(X.iloc[rows]), refit.predict_proba(X.iloc[rows]))
    unweighted = clone(alone).fit(X.iloc[rows], labels[rows])
    assert not np.allclose(alone.predict_proba(X.iloc[rows]), unweighted.predict_proba(X.iloc[rows]))


def test_the_pre_training_stage_is_weighted():
    X, labels, _ = sequence_frame()
    weight = np.random.RandomState(0).randint(0, 4, len(X)).astype(float)
    model = ConcatClassifier(**TINY, pretrain_encoders=True, freeze_encoders=True, class_weight={1: 2.0})
    encoder = model.fit(X, labels, sample_weight=weight).network_.encoders["ts"].state_dict()
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    settings = {k: getattr(model, k) for k in ("lr", "batch_size", "max_epochs", "early_stopping", "weight_decay")}
    first = _ClassifierPretrainer(modality="ts", encoder=model._make_encoder, random_state=seed, **settings)
    product = weight * np.where(labels == 1, 2.0, 1.0)
    expected = first.fit(X, labels, sample_weight=product).network_.encoder.state_dict()
    for name, value in encoder.items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("sample_weight", "message"),
    [
        (-np.ones(60), "Negative values in data passed to `sample_weight`"),
        (np.r_[np.nan, np.ones(59)], "Input sample_weight contains NaN"),
        (np.r_[np.inf, np.ones(59)], "Input sample_weight contains infinity"),
        (np.ones(59), r"sample_weight.shape == \(59,\), expected \(60,\)"),
        (np.ones((60, 2)), "sample_weight: Sample weights must be 1D"),
        (np.zeros(60), "sample_weight is zero for every sample"),
    ],
    ids=["negative", "nan", "inf", "length", "2-d", "all zero"],
)
@pytest.mark.parametrize(
    "estimator", [ConcatSurvival(max_epochs=1), ConcatClassifier(max_epochs=1)], ids=["survival", "classifier"]
)
def test_bad_sample_weights_are_refused_by_name(estimator, sample_weight, message):
    X, y, eta, _ = _cohort()
    y = y if isinstance(estimator, ConcatSurvival) else (eta > 0).astype(int)
    with pytest.raises(ValueError, match=message):
        clone(estimator).fit(X, y, sample_weight=sample_weight)


def test_weights_that_leave_no_event_or_no_row_of_a_class_are_refused():
    X, y, eta, _ = _cohort()
    with pytest.raises(ValueError, match="sample_weight is zero on every event"):
        ConcatSurvival(max_epochs=1).fit(X, y, sample_weight=(~y["event"]).astype(float))
    labels = (eta > 0).astype(int)
    with pytest.raises(ValueError, match=r"zero on every row of class\(es\) \[0\]"):
        ConcatClassifier(max_epochs=1).fit(X, labels, sample_weight=labels)
    with pytest.raises(ValueError, match=r"zero on every row of class\(es\) \[1\]"):
        ConcatClassifier(max_epochs=1, class_weight={1: 0.0}).fit(X, labels)


@pytest.mark.parametrize(
    ("class_weight", "y_kind", "message"),
    [
        ("balanced", "multilabel", "class_weight='balanced' applies to binary and multi-class targets"),
        ({0: 2.0}, "multilabel", "y is a label-indicator matrix"),
        ({0: 1.0, 5: 2.0}, "binary", r"class_weight names class\(es\) \[5\] that y does not have"),
        ({"0": 2.0}, "binary", r"class_weight names class\(es\) \['0'\]"),
        ({0: -1.0}, "binary", "class_weight must map classes to non-negative finite numbers"),
        ({0: np.nan}, "binary", "class_weight must map classes to non-negative finite numbers"),
        ("auto", "binary", "The 'class_weight' parameter of ConcatClassifier must be"),
    ],
    ids=[
        "balanced multilabel", "dict multilabel", "unknown class", "key of another type", "negative", "nan", "unknown"
    ],
)
def test_bad_class_weights_are_refused_by_name(class_weight, y_kind, message):
    X, _, eta, _ = _cohort()
    labels = (eta > 0).astype(int)
    y = np.column_stack([labels, 1 - labels]) if y_kind == "multilabel" else labels
    with pytest.raises(ValueError, match=message):
        ConcatClassifier(class_weight=class_weight, max_epochs=1).fit(X, y)
