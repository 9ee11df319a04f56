"""The catalogue of bad inputs to the encoders and data sets: each with its error and its words.

Every entry is an input a user can plausibly give (a unit error, a typo, a value from a
spreadsheet) that must end in a ``ValueError`` raised by skfusion naming the parameter, row
or column, never in a traceback from pandas or numpy, a silent wrong answer or a NaN.
"""

import numpy as np
import pandas as pd
import pytest

from skfusion.encoders import CLMBREmbedder, ClinicalTimeSeriesDiscretizer, OneHotEHREncoder, events_from_long_table


def events(times, codes, values=None):
    values = [np.nan] * len(codes) if values is None else values
    return pd.DataFrame({"time": times, "code": codes, "numeric_value": values})


GOOD_STAY = events([0.5, 3.0], ["Heart Rate", "Heart Rate"], [80.0, 90.0])
GOOD_HISTORY = events([-20000.0, 0.0, 10.0], ["SNOMED/184099003", "Dx/A", "Lab/B"], [np.nan, np.nan, 1.0])
TINY_CLMBR = dict(
    hidden_size=8, n_layers=1, n_heads=2, intermediate_size=8, min_count=1, max_epochs=0, batch_size=16, device="cpu"
)

# (id, bad cell of row 's2', message words). Each is tried on every reader of event frames.
BAD_EVENT_CELLS = [
    ("time inf", events([np.inf], ["X"], [1.0]), r"row 's2' of column '\w+': event frame row 0 .*'time'.*inf is not finite"),
    ("time -inf", events([1.0, -np.inf], ["X", "X"]), r"row 's2'.*event frame row 1 .*'time'.*-inf is not finite"),
    ("time NaN", events([1.0, np.nan], ["X", "X"]), r"row 's2'.*event frame row 1 .*'time'.*missing time \(NaN/NaT\)"),
    (
        "time NaT",
        pd.DataFrame({"time": [pd.Timestamp("2020-01-01"), pd.NaT], "code": ["X", "X"]}),
        r"row 's2'.*event frame row 1 .*'time'.*missing time",
    ),
    ("time text", events([1.0, "soon"], ["X", "X"]), r"row 's2'.*event frame row 1 .*'time': 'soon' is not a number but .*row 0 .* is \(1\.0\)"),
    ("time word", events(["soon"], ["X"]), r"row 's2'.*event frame row 0 .*'time'.*'soon' is not a time"),
    ("value text", events([1.0, 2.0], ["X", "X"], [1.0, "high"]), r"row 's2'.*event frame row 1 .*'numeric_value'.*'high' is not a number"),
    ("value inf", events([1.0], ["X"], [np.inf]), r"row 's2'.*event frame row 0 .*'numeric_value'.*inf is not finite"),
    ("code missing", events([1.0, 2.0], ["X", None]), r"row 's2'.*event frame row 1 .*'code'.*missing code"),
]


def _readers():
    return {
        "OneHotEHREncoder": (lambda: OneHotEHREncoder(), GOOD_HISTORY),
        "ClinicalTimeSeriesDiscretizer": (lambda: ClinicalTimeSeriesDiscretizer(), GOOD_STAY),
        "CLMBREmbedder": (lambda: CLMBREmbedder(**TINY_CLMBR), GOOD_HISTORY),
    }


@pytest.mark.parametrize("reader", list(_readers()))
@pytest.mark.parametrize(("cell", "match"), [c[1:] for c in BAD_EVENT_CELLS], ids=[c[0] for c in BAD_EVENT_CELLS])
def test_bad_event_cells_name_the_row_and_column(reader, cell, match):
    make, good = _readers()[reader]
    column = make().column
    X = pd.DataFrame({column: [good, cell]}, index=["s1", "s2"])
    with pytest.raises(ValueError, match=match):
        make().fit(X)
    fitted = make().fit(X.iloc[:1])
    with pytest.raises(ValueError, match=match):
        fitted.transform(X)


def test_discretizer_time_far_beyond_a_stay():
    # 1e300 h (or seconds given as hours) would ask for more bins than memory holds.
    X = pd.DataFrame({"ts": [GOOD_STAY, events([1.0, 1e300], ["Heart Rate", "pH"], [80.0, 7.3])]}, index=["s1", "s2"])
    with pytest.raises(ValueError, match=r"row 's2' of column 'ts', column 'time': an event at 1e\+300 h.*10 years"):
        ClinicalTimeSeriesDiscretizer().fit(X)
    seconds = events([0.0, 3600.0 * 24 * 30 * 12], ["Heart Rate", "Heart Rate"], [80.0, 85.0])
    with pytest.raises(ValueError, match=r"not seconds or minutes"):
        ClinicalTimeSeriesDiscretizer(max_hours=48).fit(pd.DataFrame({"ts": [seconds]}))


@pytest.mark.parametrize("at", [np.inf, -np.inf])
def test_non_finite_prediction_time_names_the_row(at):
    X = pd.DataFrame({"ehr": [GOOD_HISTORY, GOOD_HISTORY], "at": [20.0, at]}, index=["p1", "p2"])
    with pytest.raises(ValueError, match=r"row 'p2' of column 'at': prediction time -?inf is not finite"):
        OneHotEHREncoder(prediction_time="at").fit(X)


def test_prediction_time_text_names_the_position():
    X = pd.DataFrame({"ehr": [GOOD_HISTORY, GOOD_HISTORY], "at": ["2020-01-01", "later"]})
    with pytest.raises(ValueError, match=r"column 'at', row 1 \(position\): 'later' is not a time"):
        OneHotEHREncoder(prediction_time="at").fit(X)


def test_long_table_missing_time_names_the_row():
    long = pd.DataFrame({"stay": [1, 1], "time": [0.0, np.nan], "code": ["pH", "pH"], "value": [7.3, 7.2]})
    with pytest.raises(ValueError, match=r"column 'time' is missing in row\(s\) \[1\]"):
        events_from_long_table(long, id_column="stay")
