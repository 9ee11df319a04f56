"""The catalogue of bad and unusual inputs to the fusion estimators.

Each entry is an input a user can give, with the error (or warning) skfusion must answer
with and the words its message must contain: never a traceback from inside torch, pandas
or torchsurv, never a silent wrong answer. The encoders' catalogues are in
``test_bad_inputs_*.py``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from skfusion import ConcatClassifier, ConcatSurvival, LateFusionSurvival
from skfusion.datasets import make_multimodal_survival

FAST = {"max_epochs": 3, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(n_samples=120, n_features=(6, 4), random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return ConcatSurvival(**FAST).fit(X, y)


def _survival(event, time):
    return Surv.from_arrays(np.asarray(event, dtype=bool), np.asarray(time, dtype=float))


# (id, estimator parameters, the words of the error)
BAD_PARAMETERS = [
    ("width 0", {"hidden_dims": [0]}, "hidden_dims"),
    ("negative width", {"hidden_dims": [-4]}, "hidden_dims"),
    ("string width", {"hidden_dims": ["a"]}, "hidden_dims"),
    ("huge width", {"hidden_dims": [10**8]}, "hidden_dims"),
    ("boolean width", {"hidden_dims": [True]}, "hidden_dims"),
    ("modality names not str", {"modalities": [0, 1]}, "modalities"),
    ("modality widths not positive", {"modality_dims": [0, 10]}, "modality_dims"),
    ("unknown device", {"device": "tpu"}, "'device' parameter"),
    ("early_stopping not bool", {"early_stopping": "yes"}, "early_stopping"),
]


@pytest.mark.parametrize("params, words", [c[1:] for c in BAD_PARAMETERS], ids=[c[0] for c in BAD_PARAMETERS])
def test_bad_parameter_is_named(data, params, words):
    X, y = data
    with pytest.raises(ValueError, match=words):
        ConcatSurvival(**FAST, **params).fit(X, y)


def test_diverging_training_names_lr(data):
    X, y = data
    with pytest.raises(ValueError, match=r"diverged.*lr=1000000"):
        ConcatSurvival(lr=1e6, max_epochs=50, random_state=0).fit(X, y)


def test_one_row_fit(data):
    X, y = data
    with pytest.raises(ValueError, match="n_samples=1"):
        ConcatSurvival(**FAST).fit(X.iloc[:1], y[:1])


def test_duplicate_column_names(data):
    X, y = data
    duplicated = X.rename(columns={"ehr__1": "ehr__0"})
    with pytest.raises(ValueError, match=r"duplicate column names \['ehr__0'\]"):
        ConcatSurvival(**FAST).fit(duplicated, y)


# (id, y builder from (event, time), the words of the error)
BAD_TARGETS = [
    ("time of 1e300", lambda e, t: _survival(e, np.where(np.arange(len(t)) == 5, 1e300, t)), r"times above .* rows \[5\]"),
    ("negative time", lambda e, t: _survival(e, np.where(np.arange(len(t)) == 2, -1.0, t)), r"negative times in rows \[2\]"),
    ("NaN time", lambda e, t: _survival(e, np.where(np.arange(len(t)) == 3, np.nan, t)), r"non-finite times in rows \[3\]"),
    (
        "(time, event) order",
        lambda e, t: np.array(list(zip(t, e)), dtype=[("time", float), ("event", bool)]),
        r"\(time, event\) order",
    ),
    (
        "string event field",
        lambda e, t: np.array(list(zip(np.where(e, "yes", "no"), t)), dtype=[("event", "U3"), ("time", float)]),
        "event field 'event' must be boolean",
    ),
    ("every row censored", lambda e, t: _survival(np.zeros(len(t)), t), "censored"),
    ("plain array", lambda e, t: t, "structured array"),
]


@pytest.mark.parametrize("make_y, words", [c[1:] for c in BAD_TARGETS], ids=[c[0] for c in BAD_TARGETS])
def test_bad_survival_target(data, make_y, words):
    X, y = data
    with pytest.raises(ValueError, match=words):
        ConcatSurvival(**FAST).fit(X, make_y(y["event"], y["time"]))


def test_survival_target_given_to_a_classifier(data):
    X, y = data
    with pytest.raises(ValueError, match=r"survival target.*ConcatSurvival"):
        ConcatClassifier(**FAST).fit(X, y)


def test_early_stopping_validation_split_holds_events(data):
    X, y = data
    few = y.copy()
    few["event"][:] = False
    few["event"][[3, 50, 90]] = True
    # Without the linear start, which on 2 training events may rank the held-out one perfectly (a loss of 0 too).
    model = ConcatSurvival(
        early_stopping=True, validation_fraction=0.1, max_epochs=3, linear_path=False, random_state=0
    ).fit(X, few)
    valid = model.net_.history[-1]["valid_loss"]
    assert np.isfinite(valid) and valid > 0  # an all-censored validation split has a zero loss
    one = y.copy()
    one["event"][:] = False
    one["event"][7] = True
    with pytest.raises(ValueError, match="early_stopping needs a validation split holding events"):
        ConcatSurvival(early_stopping=True, **FAST).fit(X, one)


def test_early_stopping_auto_follows_the_number_of_validation_events(data, monkeypatch):
    X, y = data
    # 120 rows, far fewer than 100 validation events: internal folds choose the epochs, and the
    # final run on all rows holds none out.
    model = ConcatSurvival(**FAST).fit(X, y)
    assert not any("valid_loss" in row for row in model.net_.history)
    monkeypatch.setattr("skfusion._survival.MIN_VALIDATION_EVENTS", 5)
    model = ConcatSurvival(**FAST).fit(X, y)
    assert model.net_.history[-1]["valid_loss"] > 0
    few = y.copy()
    few["event"][20:] = False  # 20 events: 2 in a 10% split
    assert not any("valid_loss" in row for row in ConcatSurvival(**FAST).fit(X, few).net_.history)


@pytest.mark.parametrize("value, words", [(1e39, "beyond float32's range"), (np.inf, "contains inf")])
def test_out_of_range_inputs(data, value, words):
    X, y = data
    bad = X.astype(np.float64)
    bad.loc[4, "img__2"] = value
    with pytest.raises(ValueError, match=words) as error:
        ConcatSurvival(**FAST).fit(bad, y)
    assert "row 4, column 'img__2'" in str(error.value)


def test_inputs_far_outside_the_training_range_are_refused_at_predict(data, fitted):
    X, _ = data
    extreme = X.iloc[:5].copy()
    extreme.loc[2, "ehr__1"] = 1e30
    with pytest.raises(ValueError, match=r"modality 'ehr', row 2.*standard deviations"):
        fitted.predict(extreme)


def test_unscaled_huge_features_train_finitely(data):
    X, y = data
    scaled = X * 1e30
    model = ConcatSurvival(**FAST).fit(scaled, y)
    reference = ConcatSurvival(**FAST).fit(X, y)
    # The standardized inputs differ in their last bits, and the linear start's L-BFGS stops
    # within its tolerance of the optimum, not on the same bits: risks agree to 1e-4.
    np.testing.assert_allclose(model.predict(scaled), reference.predict(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        model.predict_survival_function(scaled, return_array=True),
        reference.predict_survival_function(X, return_array=True),
        rtol=1e-4, atol=1e-4,
    )


def test_modality_missing_in_every_row(data):
    X, y = data
    absent = X.copy()
    absent[[c for c in X.columns if c.startswith("ehr__")]] = np.nan
    with pytest.warns(UserWarning, match="modality 'ehr' is missing .* in every row"):
        LateFusionSurvival(**FAST).fit(absent, y)
    with pytest.raises(ValueError, match="modality 'ehr' is missing"):
        ConcatSurvival(**FAST).fit(absent, y)


@pytest.mark.parametrize(
    "method", ["predict", "predict_survival_function", "predict_cumulative_hazard_function", "score"]
)
def test_not_fitted(data, method):
    X, y = data
    args = (X, y) if method == "score" else (X,)
    with pytest.raises(NotFittedError):
        getattr(ConcatSurvival(), method)(*args)


def test_array_after_frame_fit_warns_and_reads_by_position(data, fitted):
    X, _ = data
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        by_position = fitted.predict(X.to_numpy())
    np.testing.assert_allclose(by_position, fitted.predict(X), rtol=1e-6)


def test_column_transformer_prefixes_are_recognised(data):
    X, y = data
    img = [c for c in X.columns if c.startswith("img__")]
    ehr = [c for c in X.columns if c.startswith("ehr__")]
    scale = ColumnTransformer([("scale", StandardScaler(), img), ("keep", "passthrough", ehr)])
    pipe = Pipeline([("ct", scale.set_output(transform="pandas")), ("fuse", LateFusionSurvival(**FAST))]).fit(X, y)
    assert [spec.name for spec in pipe[-1].layout_] == ["img", "ehr"]


def test_array_split_by_the_default_rule_warns(data):
    X, y = data
    with pytest.warns(UserWarning, match=r"split into halves.*m0.*m1.*set_output"):
        Pipeline([("scale", StandardScaler()), ("fuse", ConcatSurvival(**FAST))]).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)  # FAST's few epochs; not the warning tested here
        ConcatSurvival(modality_dims=[6, 4], **FAST).fit(X.to_numpy(), y)


def test_polars_frame_is_grouped_like_pandas(data):
    pl = pytest.importorskip("polars")
    X, y = data
    model = ConcatSurvival(**FAST).fit(pl.from_pandas(X), y)
    assert [spec.name for spec in model.layout_] == ["img", "ehr"]
    np.testing.assert_allclose(model.predict(pl.from_pandas(X)), ConcatSurvival(**FAST).fit(X, y).predict(X), rtol=1e-6)


def test_survival_grids_are_computed_by_blocks_of_rows(data, fitted, monkeypatch):
    X, _ = data
    whole = fitted.predict_survival_function(X, return_array=True)
    monkeypatch.setattr("skfusion._survival._GRID_BLOCK", 7)
    np.testing.assert_array_equal(fitted.predict_survival_function(X, return_array=True), whole)
    # The same 4-row batch on both sides: its network outputs are those of the grid, bit for bit
    # (rows of the 120-row batch may round differently).
    funcs = fitted.predict_cumulative_hazard_function(X.iloc[:4])
    first = fitted.predict_survival_function(X.iloc[:4], return_array=True)
    np.testing.assert_allclose(np.vstack([f(fitted.unique_times_) for f in funcs]), -np.log(first), rtol=1e-10)
    # StepFunctions hold their row's network outputs, not its values on every training time.
    curves = fitted.predict_survival_function(X)
    assert "y" not in vars(curves[0]) and curves[0].outputs.shape == (1,)
    np.testing.assert_allclose(np.vstack([f(fitted.unique_times_) for f in curves]), whole, rtol=1e-12)


def test_large_times_keep_their_order_for_the_cox_loss():
    # Seconds since 1970: float32 would make neighbouring times equal (ties); ranks do not.
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 4)), columns=["a__0", "a__1", "b__0", "b__1"])
    time = rng.exponential(1000, 80)
    y_small, y_large = _survival(rng.random(80) < 0.7, time), None
    y_large = _survival(y_small["event"], 1.7e9 + time)
    params = dict(early_stopping=False, max_epochs=5, random_state=0)
    small = ConcatSurvival(**params).fit(X, y_small).predict(X)
    large = ConcatSurvival(**params).fit(X, y_large).predict(X)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)
