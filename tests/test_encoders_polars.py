"""Every encoder reads a polars DataFrame as it reads pandas, and writes polars on request."""

import numpy as np
import pandas as pd
import pytest

from skfusion.encoders import (
    CLMBREmbedder,
    ClinicalTimeSeriesDiscretizer,
    CTVolumeEmbedder,
    ImageEmbedder,
    OneHotEHREncoder,
)
from skfusion.encoders._base import as_pandas_frame, to_polars_frame

pl = pytest.importorskip("polars")

BIRTH = "SNOMED/184099003"


def _history(rng, n_events):
    times = np.sort(rng.uniform(0, 400, n_events)).round(1)
    codes = rng.choice(["Dx/A", "Lab/B", "Rx/C"], n_events)
    values = np.where(codes == "Lab/B", rng.normal(2, 1, n_events).round(2), np.nan)
    return pd.DataFrame(
        {"time": [-20000.0, *times], "code": [BIRTH, *codes], "numeric_value": [np.nan, *values]}
    )


def _stay(rng, n_events):
    typical = {"Heart Rate": 90.0, "pH": 7.3, "Glasgow coma scale total": 14.0}
    codes = rng.choice(list(typical), n_events)
    return pd.DataFrame(
        {
            "time": np.sort(rng.uniform(0, 20, n_events)).round(2),
            "code": codes,
            "numeric_value": [typical[c] + rng.integers(0, 2) for c in codes],
        }
    )


def _raw_cells(kind, rng):
    if kind == "events":
        return [_history(rng, 6), _history(rng, 3), None, _history(rng, 8)]
    if kind == "stay":
        return [_stay(rng, 6), _stay(rng, 3), None, _stay(rng, 8)]
    if kind == "volume":
        return [rng.normal(40, 30, (3, 16, 16)) for _ in range(3)] + [None]
    return [rng.random((20, 18)) for _ in range(3)] + [None]


ENCODERS = {
    "OneHotEHREncoder": (lambda: OneHotEHREncoder(windows=[100, None]), "events"),
    "CLMBREmbedder": (
        lambda: CLMBREmbedder(
            hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=8, min_frequency=1, max_epochs=1,
            batch_size=4, device="cpu", random_state=0,
        ),
        "events",
    ),
    "ClinicalTimeSeriesDiscretizer": (lambda: ClinicalTimeSeriesDiscretizer(), "stay"),
    "CTVolumeEmbedder": (lambda: CTVolumeEmbedder(), "volume"),
    "CTVolumeEmbedder(pool=None)": (lambda: CTVolumeEmbedder(pool=None), "volume"),
    "ImageEmbedder": (lambda: ImageEmbedder(), "image"),
}  # fmt: skip


def _frame(name):
    make, kind = ENCODERS[name]
    enc = make()
    rng = np.random.default_rng(0)
    # A numeric passthrough block and an object passthrough column (another modality's raw cells).
    X = pd.DataFrame(
        {
            "clin__age": [61.0, 70.0, np.nan, 55.0],
            enc._column: _raw_cells(kind, rng),
            "note": ["a", None, "c", "d"],
            "other": [np.zeros((2, 3)), None, np.ones((1, 3)), np.ones((2, 3))],
        }
    )
    return make, X


def _polars_objects(X):
    """The polars frame a user builds from ``X``: object columns as ``pl.Object``."""
    return pl.DataFrame(
        [
            pl.Series(c, [None if v is None else v for v in X[c]], dtype=pl.Object)
            if X[c].dtype == object and c != "note"
            else pl.from_pandas(X[c])
            for c in X.columns
        ]
    )


def assert_same_frame(expected, actual):
    """Same columns and cells; a polars frame is compared through its pandas conversion."""
    actual = as_pandas_frame(actual) if isinstance(actual, pl.DataFrame) else actual
    assert list(actual.columns) == list(expected.columns)
    for name in expected.columns:
        want, got = expected[name].tolist(), actual[name].tolist()
        for a, b in zip(want, got):
            if isinstance(a, (np.ndarray, pd.DataFrame)):
                assert type(b) is type(a)
                np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
            elif a is None or (isinstance(a, float) and np.isnan(a)):
                assert b is None or (isinstance(b, float) and np.isnan(b))
            else:
                assert a == b


@pytest.mark.parametrize("name", list(ENCODERS))
def test_polars_output(name):
    make, X = _frame(name)
    expected = make().fit_transform(X)
    enc = make().set_output(transform="polars")
    out = enc.fit_transform(X)
    assert isinstance(out, pl.DataFrame)
    assert out.columns == list(enc.get_feature_names_out())
    assert out.schema["clin__age"] == pl.Float64 and out.schema["note"] == pl.String
    assert out.schema["other"] == pl.Object
    block = [c for c in out.columns if c.startswith(enc._output_name())]
    assert all(out.schema[c] == (pl.Object if enc._returns_tokens() else pl.Float32) for c in block)
    assert_same_frame(expected, out)
    assert_same_frame(expected, enc.transform(X))
    # The round trip back through polars' own to_pandas keeps the cells.
    assert_same_frame(expected, out.to_pandas())


@pytest.mark.parametrize("name", list(ENCODERS))
def test_polars_input_reads_as_pandas(name):
    make, X = _frame(name)
    expected = make().fit(X).transform(X)
    polars_X = _polars_objects(X)
    enc = make().fit(polars_X)
    np.testing.assert_array_equal(enc.feature_names_in_, X.columns)
    assert_same_frame(expected, enc.transform(polars_X))
    assert_same_frame(expected, make().fit(X).transform(polars_X))


def test_native_polars_event_lists_and_arrays():
    """Event histories as a list of structs, images as nested lists, polars frames as cells."""
    make, X = _frame("OneHotEHREncoder")
    records = [None if c is None else c.to_dict("records") for c in X["ehr"]]
    native = pl.DataFrame({"ehr": records, "clin__age": X["clin__age"]})
    assert isinstance(native.schema["ehr"], pl.List)
    X = X[["ehr", "clin__age"]]
    expected = make().fit(X).transform(X)
    assert_same_frame(expected, make().fit(native).transform(native))
    frames = pl.DataFrame({"ehr": pl.Series([None if c is None else pl.from_pandas(c) for c in X["ehr"]], dtype=pl.Object),
                           "clin__age": X["clin__age"]})  # fmt: skip
    assert_same_frame(expected, make().fit(frames).transform(frames))

    make, X = _frame("ImageEmbedder")
    nested = pl.DataFrame({"img": [None if c is None else c.tolist() for c in X["img"]]})
    expected = make().fit(X[["img"]]).transform(X[["img"]])
    assert_same_frame(expected, make().fit(nested).transform(nested))
    fixed = pl.DataFrame({"img": pl.Series(list(X["img"]), dtype=pl.Array(pl.Float64, (20, 18)))})
    assert_same_frame(expected, make().fit(fixed).transform(fixed))


def test_empty_event_list_in_polars_is_an_empty_history():
    rows = [[{"time": 1.0, "code": "Dx/A", "numeric_value": None}], []]
    native = pl.DataFrame({"ehr": rows}, schema={"ehr": pl.List(pl.Struct({"time": pl.Float64, "code": pl.String, "numeric_value": pl.Float64}))})
    out = OneHotEHREncoder().fit(native).transform(native)
    assert out.to_numpy().tolist() == [[1.0], [0.0]]


def test_polars_encoders_chain_in_a_pipeline():
    from sklearn.pipeline import make_pipeline

    _, X = _frame("OneHotEHREncoder")
    X["ts"] = _raw_cells("stay", np.random.default_rng(1))
    pipe = make_pipeline(OneHotEHREncoder(), ClinicalTimeSeriesDiscretizer()).set_output(transform="polars")
    out = pipe.fit_transform(_polars_objects(X))
    expected = make_pipeline(OneHotEHREncoder(), ClinicalTimeSeriesDiscretizer()).fit_transform(X)
    assert isinstance(out, pl.DataFrame)
    assert_same_frame(expected, out)


def test_to_polars_frame_keeps_text_and_objects():
    frame = pd.DataFrame({"a": [1.5, np.nan], "b": ["x", None], "c": [np.zeros(2), None]})
    out = to_polars_frame(frame)
    assert out.schema == {"a": pl.Float64, "b": pl.String, "c": pl.Object}
    assert_same_frame(frame, out)
