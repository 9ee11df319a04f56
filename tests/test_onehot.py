"""OneHotEHREncoder: windows, value bins, code selection, prediction times, bad input."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skfusion.encoders.onehot import OneHotEHREncoder


def frame(times, codes, values=None):
    values = [np.nan] * len(codes) if values is None else values
    return pd.DataFrame({"time": times, "code": codes, "numeric_value": values})


@pytest.fixture
def X():
    return pd.DataFrame(
        {
            "ehr": [
                frame([0, 100, 300, 400], ["Dx/A", "Lab/B", "Lab/B", "Rx/C"], [np.nan, 1.0, 5.0, np.nan]),
                frame([50, 60], ["Lab/B", "Dx/A"], [3.0, np.nan]),
                frame([10], ["Rx/C"]),
            ],
            "age": [60.0, 70.0, 80.0],
        },
        index=["p1", "p2", "p3"],
    )


def test_presence_and_thresholds_by_hand(X):
    enc = OneHotEHREncoder(windows=[200, None], thresholds={"Lab/B": [2.0, 4.0]}).fit(X)
    out = enc.transform(X)
    assert list(out.columns[:1]) == ["age"]
    # p1's prediction time is day 400: the 200-day window holds days (200, 400].
    p1 = {
        "ehr__Dx/A@200d": 0, "ehr__Dx/A@all": 1,
        "ehr__Lab/B@200d": 1, "ehr__Lab/B@200d:<2": 0, "ehr__Lab/B@200d:[2,4)": 0, "ehr__Lab/B@200d:>=4": 1,
        "ehr__Lab/B@all": 1, "ehr__Lab/B@all:<2": 0, "ehr__Lab/B@all:[2,4)": 0, "ehr__Lab/B@all:>=4": 1,
        "ehr__Rx/C@200d": 1, "ehr__Rx/C@all": 1,
    }
    assert out.loc["p1"].drop("age").to_dict() == p1
    # p2's last event is day 60; its Lab/B value 3.0 falls in [2, 4).
    assert out.loc["p2", "ehr__Lab/B@200d:[2,4)"] == 1 and out.loc["p2", "ehr__Rx/C@all"] == 0
    assert list(enc.get_feature_names_out()) == ["age"] + [f"ehr__{name}" for name in enc.feature_names_]


def test_quantile_bins_follow_training_values(X):
    enc = OneHotEHREncoder(codes=["Lab/B"], n_bins=2).fit(X)
    np.testing.assert_allclose(enc.bin_edges_["Lab/B"], np.quantile([1.0, 5.0, 3.0], [0.5]))
    out = enc.transform(X)
    assert out["ehr__Lab/B@all:q2"].tolist() == [1, 1, 0]  # last values 5 and 3 are >= the median 3
    assert out["ehr__Lab/B@all:q1"].tolist() == [0, 0, 0]


def test_min_frequency_count_and_fraction(X):
    assert OneHotEHREncoder(min_frequency=2).fit(X).codes_ == ["Dx/A", "Lab/B", "Rx/C"]
    assert OneHotEHREncoder(min_frequency=0.9).fit(X).codes_ == []
    assert OneHotEHREncoder(min_frequency=0.9, thresholds={"Rx/C": [1.0]}).fit(X).codes_ == ["Rx/C"]


def test_prediction_time_column_and_timedelta_windows(X):
    start = pd.Timestamp("2020-01-01")
    dated = X.assign(ehr=[f.assign(time=start + pd.to_timedelta(f["time"], unit="D")) for f in X["ehr"]])
    dated["at"] = start + pd.to_timedelta([150, 60, 5], unit="D")
    enc = OneHotEHREncoder(windows=[pd.Timedelta(days=120)], index_time="at", n_bins=1).fit(dated)
    out = enc.transform(dated)
    # p1 at day 150: Lab/B on day 100 counts, the later events do not; p3's only event is after
    # day 5. Codes are selected from the events before the prediction times: Rx/C never is.
    assert out.loc["p1"].filter(like="ehr__").to_dict() == {"ehr__Dx/A@120d": 0, "ehr__Lab/B@120d": 1}
    assert out.loc["p3"].filter(like="ehr__").sum() == 0
    numeric = OneHotEHREncoder(windows=[120], index_time="at", n_bins=1).fit(X.assign(at=[150, 60, 5]))
    same = numeric.transform(X.assign(at=[150, 60, 5])).filter(like="ehr__")
    np.testing.assert_array_equal(same, out.filter(like="ehr__"))


def test_missing_and_empty_cells(X):
    enc = OneHotEHREncoder().fit(X)
    out = enc.transform(pd.DataFrame({"ehr": [None, frame([], [])], "age": [1.0, 2.0]}))
    block = out.filter(like="ehr__").to_numpy()
    assert np.isnan(block[0]).all() and (block[1] == 0).all()


def test_plain_code_lists():
    X = pd.DataFrame({"ehr": [["A", "B"], ["B"]]})
    out = OneHotEHREncoder(min_frequency=1).fit_transform(X)
    assert out.to_dict("list") == {"ehr__A@all": [1.0, 0.0], "ehr__B@all": [1.0, 1.0]}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"thresholds": {"Lab/B": [4.0, 2.0]}}, "thresholds for code 'Lab/B' must be increasing"),
        ({"windows": [0]}, "window 0 must be positive"),
        ({"index_time": "when"}, "index_time column 'when' is not in X"),
    ],
)
def test_bad_parameters(X, params, message):
    with pytest.raises(ValueError, match=message):
        OneHotEHREncoder(**params).fit(X)


def test_bad_cells_and_times_name_the_row(X):
    bad = X.assign(ehr=[X.loc["p1", "ehr"], pd.DataFrame({"time": [1.0]}), X.loc["p3", "ehr"]])
    with pytest.raises(ValueError, match=r"row 'p2' of column 'ehr'.*lacks column"):
        OneHotEHREncoder().fit(bad)
    with pytest.raises(ValueError, match=r"row 'p3' of column 'at': missing prediction time"):
        OneHotEHREncoder(index_time="at").fit(X.assign(at=[1.0, 2.0, np.nan]))
    with pytest.raises(ValueError, match=r"row 'p1' of column 'ehr'.*both be numbers \(days\) or both datetimes"):
        OneHotEHREncoder(index_time="at").fit(X.assign(at=pd.Timestamp("2020-01-01")))


def test_clone_keeps_parameters():
    enc = OneHotEHREncoder(windows=[30, None], thresholds={"x": [1.0]}, min_frequency=3)
    assert clone(enc).get_params() == enc.get_params()


def test_text_times_are_sorted_as_datetimes_not_as_text():
    # As text "10:00" sorts before "9:00"; the last value (at 10:00) must win.
    history = pd.DataFrame(
        {"time": ["2020-01-02 10:00", "2020-01-02 9:00"], "code": ["Lab/B", "Lab/B"], "numeric_value": [3.0, 1.0]}
    )
    X = pd.DataFrame({"ehr": [history]})
    row = OneHotEHREncoder(thresholds={"Lab/B": [2.0]}).fit(X).transform(X).iloc[0]
    assert row["ehr__Lab/B@all:>=2"] == 1.0 and row["ehr__Lab/B@all:<2"] == 0.0
    # Numbers in an object column are days, not nanoseconds since 1970: 0.5 days apart.
    numbers = pd.DataFrame({"time": pd.Series([1.0, 1.5], dtype=object), "code": ["Lab/B", "Dx/A"]})
    X = pd.DataFrame({"ehr": [numbers]})
    row = OneHotEHREncoder(windows=[0.25, None]).fit(X).transform(X).iloc[0]
    assert row["ehr__Lab/B@0.25d"] == 0.0 and row["ehr__Lab/B@all"] == 1.0 and row["ehr__Dx/A@0.25d"] == 1.0
