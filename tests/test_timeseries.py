import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skfusion.datasets._icu import make_icu_timeseries
from skfusion.encoders.timeseries import (
    CATEGORIES,
    NORMAL_VALUES,
    NUMERIC_CODES,
    VARIABLES,
    ClinicalTimeSeriesDiscretizer,
    channel_names,
    events_from_long_table,
)


def frame(events):
    """An event frame from (time, code, numeric_value, text_value) tuples."""
    out = pd.DataFrame(events, columns=["time", "code", "numeric_value", "text_value"])
    out["text_value"] = out["text_value"].astype(object)
    return out


# Patient A, by hand (timestep 2 h, bins (0, 2], (2, 4], (4, 6]):
#   bin 0: HR 80 then 90 (the last wins), GCS eye "3 To speech", temperature 37.0 at 2.0 h
#   bin 1: GCS total given as the number 14 -> category "14"
#   bin 2: HR 100, capillary refill given as the number 1 -> category "1.0"
PATIENT_A = frame(
    [
        (0.5, "Heart Rate", 80.0, None),
        (1.0, "Glascow coma scale eye opening", np.nan, "3 To speech"),
        (1.5, "Heart Rate", 90.0, None),
        (2.0, "Temperature", 37.0, None),
        (3.0, "Glasgow Coma Scale - Total", 14.0, None),
        (4.5, "heart rate", 100.0, None),
        (5.0, "Capillary Refill Rate", 1.0, None),
    ]
)
# Patient B only moves the fitted statistics: DBP {60, 80}, pH {7.2, 7.4}, temperature {36}.
PATIENT_B = frame(
    [
        (1.0, "Diastolic blood pressure", 60.0, None),
        (1.0, "pH", 7.2, None),
        (1.0, "Temperature", 36.0, None),
        (3.0, "Diastolic blood pressure", 80.0, None),
        (3.0, "pH", 7.4, None),
    ]
)


def expected_patient_a():
    """The 3 x 76 matrix of patient A, written out entry by entry."""
    hr_mean, hr_std = 95.0, 5.0  # observed HR cells: 90 (bin 0) and 100 (bin 2)
    temp_mean, temp_std = 36.5, 0.5  # observed cells 37 (A, bin 0) and 36 (B, bin 0)
    dbp = (59.0 - 70.0) / 10.0  # A never measures DBP: normal value 59, fitted mean 70, std 10
    ph = (7.4 - 7.3) / 0.1  # normal 7.4, fitted mean 7.3, std 0.1
    always = {
        "Diastolic blood pressure": dbp,
        "pH": ph,
        "Temperature": (37.0 - temp_mean) / temp_std,  # observed in bin 0, carried forward
        "Glasgow coma scale eye opening->3 To speech": 1.0,  # observed in bin 0, carried
        "Glasgow coma scale motor response->6 Obeys Commands": 1.0,  # never seen: normal
        "Glasgow coma scale verbal response->5 Oriented": 1.0,  # never seen: normal
    }
    bins = [
        {
            "Capillary refill rate->0.0": 1.0,  # normal value
            "Glasgow coma scale total->15": 1.0,  # normal value before the first total
            "Heart Rate": (90.0 - hr_mean) / hr_std,
            "mask->Heart Rate": 1.0,
            "mask->Glasgow coma scale eye opening": 1.0,
            "mask->Temperature": 1.0,
        },
        {
            "Capillary refill rate->0.0": 1.0,
            "Glasgow coma scale total->14": 1.0,
            "Heart Rate": (90.0 - hr_mean) / hr_std,  # carried forward
            "mask->Glasgow coma scale total": 1.0,
        },
        {
            "Capillary refill rate->1.0": 1.0,
            "Glasgow coma scale total->14": 1.0,  # carried forward
            "Heart Rate": (100.0 - hr_mean) / hr_std,
            "mask->Heart Rate": 1.0,
            "mask->Capillary refill rate": 1.0,
        },
    ]
    names = channel_names()
    matrix = np.zeros((3, 76))
    for k, entries in enumerate(bins):
        for name, value in {**always, **entries}.items():
            matrix[k, names.index(name)] = value
    return matrix


def test_layout_is_the_benchmark_76():
    names = channel_names()
    assert len(names) == 76 and len(channel_names(mask=False)) == 59
    assert sum(len(c) for c in CATEGORIES.values()) == 47 and len(VARIABLES) == 17
    assert names[:4] == [
        "Capillary refill rate->0.0",
        "Capillary refill rate->1.0",
        "Diastolic blood pressure",
        "Fraction inspired oxygen",
    ]
    assert names[58] == "pH" and names[59] == "mask->Capillary refill rate" and names[75] == "mask->pH"


def test_hand_worked_patient():
    enc = ClinicalTimeSeriesDiscretizer().fit(pd.DataFrame({"ts": [PATIENT_A, PATIENT_B]}))
    out = enc.transform(pd.DataFrame({"ts": [PATIENT_A]}))["ts"][0]
    assert out.dtype == np.float32 and out.shape == (3, 76)
    np.testing.assert_allclose(out, expected_patient_a(), atol=1e-6)
    assert enc.channel_names_ == channel_names()


def test_mask_false_drops_the_mask_columns():
    X = pd.DataFrame({"ts": [PATIENT_A, PATIENT_B]})
    with_mask = ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"][0]
    without = ClinicalTimeSeriesDiscretizer(mask=False).fit_transform(X)["ts"][0]
    assert without.shape == (3, 59)
    np.testing.assert_array_equal(without, with_mask[:, :59])


def _reference(rows, timestep, end):
    """Slow transcription of the documented algorithm: rows are (hour, variable, value) with
    categorical values as category strings. Returns the unstandardized (t, 59) values
    (category one-hots) and the (t, 17) mask."""
    eps = 1e-6
    n_bins = max(int(math.floor(end / timestep - eps)) + 1, 1)
    observed = [[None] * 17 for _ in range(n_bins)]
    for hour, variable, value in rows:
        b = max(int(math.floor(hour / timestep - eps)), 0)
        observed[b][VARIABLES.index(variable)] = value
    values = np.zeros((n_bins, 59))
    mask = np.zeros((n_bins, 17))
    for j, variable in enumerate(VARIABLES):
        current = NORMAL_VALUES[variable]
        start = sum(len(CATEGORIES.get(v, (v,))) for v in VARIABLES[:j])
        for b in range(n_bins):
            if observed[b][j] is not None:
                current = observed[b][j]
                mask[b, j] = 1
            if variable in CATEGORIES:
                values[b, start + CATEGORIES[variable].index(current)] = 1
            else:
                values[b, start] = current
    return values, mask


def _reference_rows(events, cap):
    rows = []
    for t, code, number, text in events[["time", "code", "numeric_value", "text_value"]].itertuples(index=False):
        if t > cap + 1e-6:
            continue
        if code in CATEGORIES:
            value = text if isinstance(text, str) else NUMERIC_CODES[code][int(number)]
        else:
            value = number
        rows.append((t, code, value))
    return rows


@pytest.mark.parametrize(("task", "max_hours"), [("in_hospital_mortality", 48.0), ("phenotyping", None)])
def test_matches_slow_reference_on_generated_stays(task, max_hours):
    X, _ = make_icu_timeseries(6, task=task, random_state=3)
    enc = ClinicalTimeSeriesDiscretizer(max_hours=max_hours).fit(X)
    out = enc.transform(X)["ts"]
    cap = np.inf if max_hours is None else max_hours
    for events, series in zip(X["ts"], out):
        last = events["time"].max()
        end = cap if last > cap else last
        values, mask = _reference(_reference_rows(events, cap), enc.timestep, end)
        expected = (np.hstack([values, mask]) - enc.mean_) / enc.scale_
        np.testing.assert_allclose(series, expected, rtol=1e-5, atol=1e-5)


def test_standardization_uses_observed_cells_of_fit_only():
    # HR observed once (100) in a 5-bin stay, then carried: the imputed cells must not count.
    long_stay = frame([(1.0, "Heart Rate", 100.0, None), (9.0, "Glucose", 150.0, None)])
    short_stay = frame([(1.0, "Heart Rate", 50.0, None)])
    enc = ClinicalTimeSeriesDiscretizer().fit(pd.DataFrame({"ts": [long_stay, short_stay]}))
    hr = channel_names().index("Heart Rate")
    glucose = channel_names().index("Glucose")
    assert enc.mean_[hr] == pytest.approx(75.0) and enc.scale_[hr] == pytest.approx(25.0)
    assert enc.mean_[glucose] == pytest.approx(150.0) and enc.scale_[glucose] == 1.0  # one cell: std 0
    mean, scale = enc.mean_.copy(), enc.scale_.copy()
    other = frame([(0.5, "Heart Rate", 140.0, None), (0.7, "Glucose", 300.0, None)])
    out = enc.transform(pd.DataFrame({"ts": [other]}))["ts"][0]
    np.testing.assert_array_equal(enc.mean_, mean)
    np.testing.assert_array_equal(enc.scale_, scale)
    assert out[0, hr] == pytest.approx((140.0 - 75.0) / 25.0)
    assert out[0, glucose] == pytest.approx(150.0)
    never = channel_names().index("Weight")  # never observed in fit: centred on its normal value
    assert enc.mean_[never] == NORMAL_VALUES["Weight"] and out[0, never] == 0.0


def test_unknown_variables_give_one_warning_listing_them():
    a = frame([(1.0, "Heart Rate", 80.0, None), (1.0, "Lactate", 2.0, None)])
    b = frame([(1.0, "Lactate", 3.0, None), (2.0, "Urine output", 50.0, None)])
    X = pd.DataFrame({"ts": [a, b]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Xt = ClinicalTimeSeriesDiscretizer().fit(X).transform(X)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2  # one for fit, one for transform
    assert "'Lactate' (2)" in messages[1] and "'Urine output' (1)" in messages[1]
    assert Xt["ts"][1].shape == (1, 76)  # b keeps its bin, filled with normal values
    assert Xt["ts"][1][0, 59:].sum() == 0


@pytest.mark.parametrize(
    ("code", "number", "text", "match"),
    [
        ("Heart Rate", -5.0, None, r"row 'b'.*'Heart Rate' value -5\.0 at 2 h is implausible"),
        ("Oxygen saturation", 101.0, None, r"row 'b'.*'Oxygen saturation' value 101\.0"),
        ("Fraction inspired oxygen", 40.0, None, r"row 'b'.*'Fraction inspired oxygen'.*not percent"),
        ("Temperature", 98.6, None, r"row 'b'.*'Temperature'.*degrees Celsius"),
        ("Glascow coma scale eye opening", np.nan, "Wide awake", r"row 'b'.*'Glasgow coma scale eye opening' value"),
        ("Glasgow coma scale total", 2.0, None, r"row 'b'.*'Glasgow coma scale total' value 2\.0.*3-15"),
        ("Glasgow coma scale motor response", 4.5, None, r"row 'b'.*motor response"),
        ("Heart Rate", np.nan, "fast", r"row 'b'.*'Heart Rate' value 'fast'"),
    ],
)
def test_implausible_value_names_row_and_variable(code, number, text, match):
    bad = frame([(0.5, "Heart Rate", 80.0, None), (2.0, code, number, text)])
    X = pd.DataFrame({"ts": [PATIENT_A, bad]}, index=["a", "b"])
    with pytest.raises(ValueError, match=match):
        ClinicalTimeSeriesDiscretizer().fit(X)
    with pytest.warns(UserWarning, match=r"dropped 1 implausible value"):
        dropped = ClinicalTimeSeriesDiscretizer(implausible="drop").fit_transform(X)["ts"]["b"]
    clean = ClinicalTimeSeriesDiscretizer().fit(X.iloc[:1]).transform(
        pd.DataFrame({"ts": [frame([(0.5, "Heart Rate", 80.0, None)])]})
    )
    assert dropped.shape == (1, 76)
    np.testing.assert_array_equal(dropped[:, 59:], clean["ts"][0][:, 59:])


def test_categorical_values_as_text_or_codes():
    as_text = frame(
        [
            (1.0, "Glasgow coma scale verbal response", np.nan, "4 Confused"),
            (1.0, "Glasgow coma scale total", np.nan, "9"),
            (1.0, "Capillary refill rate", np.nan, "1.0"),
            (1.0, "Glasgow coma scale eye opening", np.nan, "spontaneously"),  # case-insensitive
        ]
    )
    as_codes = frame(
        [
            (1.0, "Glasgow coma scale verbal response", 4.0, None),
            (1.0, "Glasgow coma scale total", np.nan, "9.0"),
            (1.0, "Capillary refill rate", 1.0, None),
            (1.0, "Glasgow coma scale eye opening", np.nan, "Spontaneously"),
        ]
    )
    X = pd.DataFrame({"ts": [as_text, as_codes]})
    out = ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"]
    np.testing.assert_array_equal(out[0], out[1])
    names = channel_names()
    hot = {names[j] for j in np.flatnonzero(out[0][0, :59] == 1)}
    assert {
        "Glasgow coma scale verbal response->4 Confused",
        "Glasgow coma scale total->9",
        "Capillary refill rate->1.0",
        "Glasgow coma scale eye opening->Spontaneously",
    } <= hot


def test_times_as_datetimes_and_timedeltas():
    hours = frame([(0.0, "Heart Rate", 80.0, None), (3.5, "Heart Rate", 90.0, None), (5.0, "pH", 7.3, None)])
    start = pd.Timestamp("2130-01-01 08:00")
    as_dates = hours.assign(time=start + pd.to_timedelta(hours["time"], unit="h"))
    as_deltas = hours.assign(time=pd.to_timedelta(hours["time"], unit="h"))
    X = pd.DataFrame({"ts": [hours, as_dates, as_deltas]})
    out = ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"]
    assert out[0].shape == (3, 76)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_max_hours_caps_the_series():
    events = frame(
        [(1.0, "Heart Rate", 80.0, None), (47.0, "Heart Rate", 90.0, None), (60.0, "Heart Rate", 200.0, None)]
    )
    X = pd.DataFrame({"ts": [events]})
    capped = ClinicalTimeSeriesDiscretizer(max_hours=48).fit(X)
    assert capped.transform(X)["ts"][0].shape == (24, 76)
    hr = channel_names().index("Heart Rate")
    assert capped.mean_[hr] == pytest.approx(85.0)  # the 60 h value is not seen
    assert ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"][0].shape == (30, 76)
    # Events reaching past the cap give the full 24 bins even if the last kept one is early.
    early = frame([(1.0, "Heart Rate", 80.0, None), (60.0, "Heart Rate", 90.0, None)])
    assert capped.transform(pd.DataFrame({"ts": [early]}))["ts"][0].shape == (24, 76)


def test_empty_and_missing_stays():
    empty = frame([])
    X = pd.DataFrame({"ts": [PATIENT_A, empty, None]})
    enc = ClinicalTimeSeriesDiscretizer().fit(X)
    out = enc.transform(X)["ts"]
    assert out[2] is None
    assert out[1].shape == (1, 76) and out[1][0, 59:].sum() == 0
    with pytest.warns(UserWarning, match="'Lactate'"):
        normal = enc.transform(pd.DataFrame({"ts": [frame([(0.0, "Lactate", 1.0, None)])]}))
    np.testing.assert_array_equal(out[1], normal["ts"][0])
    names = channel_names()
    assert out[1][0, names.index("Glasgow coma scale total->15")] == 1.0
    assert out[1][0, names.index("Heart Rate")] == pytest.approx((86.0 - enc.mean_[names.index("Heart Rate")]) / 5.0)


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        (["Heart Rate", "pH"], r"row 1 of column 'ts': expected an event frame"),
        (pd.DataFrame({"code": ["Heart Rate"], "numeric_value": [80.0]}), r"row 1 of column 'ts'.*lacks column"),
        (frame([(-1.0, "Heart Rate", 80.0, None)]), r"row 1 of column 'ts': event at -1 h, before admission"),
        (frame([("noon", "Heart Rate", 80.0, None)]), r"row 1 of column 'ts': event frame row 0.*'time'.*'noon'"),
        (frame([(True, "Heart Rate", 80.0, None)]), r"row 1 of column 'ts': 'time' must be hours"),
    ],
)
def test_bad_cells_name_the_row(cell, match):
    X = pd.DataFrame({"ts": [PATIENT_A, cell]})
    with pytest.raises(ValueError, match=match):
        ClinicalTimeSeriesDiscretizer().fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"timestep": 0}, "timestep"),
        ({"max_hours": -1}, "max_hours"),
        ({"implausible": "ignore"}, "implausible"),
        ({"mask": "yes"}, "mask"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        ClinicalTimeSeriesDiscretizer(**params).fit(pd.DataFrame({"ts": [PATIENT_A]}))


def test_missing_column_and_non_frame_input():
    with pytest.raises(ValueError, match="column 'ts' is not in X"):
        ClinicalTimeSeriesDiscretizer().fit(pd.DataFrame({"events": [PATIENT_A]}))
    with pytest.raises(ValueError, match="needs a pandas DataFrame"):
        ClinicalTimeSeriesDiscretizer().fit(np.zeros((2, 2)))


def test_clone_params_pickle_and_feature_names():
    enc = ClinicalTimeSeriesDiscretizer(column="vitals", output="ehr", timestep=1.0, max_hours=24, mask=False)
    params = enc.get_params()
    assert params == {
        "column": "vitals",
        "output": "ehr",
        "timestep": 1.0,
        "max_hours": 24,
        "mask": False,
        "implausible": "raise",
    }
    assert clone(enc).get_params() == params
    X = pd.DataFrame({"age": [70.0, 55.0], "vitals": [PATIENT_A, PATIENT_B]})
    Xt = enc.fit_transform(X)
    assert list(Xt.columns) == ["age", "ehr"] and Xt["ehr"][0].shape == (5, 59)
    assert list(enc.get_feature_names_out()) == ["age", "ehr"]
    again = pickle.loads(pickle.dumps(enc)).transform(X)
    np.testing.assert_array_equal(again["ehr"][0], Xt["ehr"][0])


def test_pipeline_with_a_classifier():
    X, y = make_icu_timeseries(60, random_state=0)
    mean_over_time = FunctionTransformer(lambda frame: np.stack([a.mean(axis=0) for a in frame["ts"]]))
    model = make_pipeline(ClinicalTimeSeriesDiscretizer(max_hours=48), mean_over_time, LogisticRegression())
    model.fit(X[["ts"]], y)
    proba = model.predict_proba(X[["ts"]])
    assert proba.shape == (60, 2)
    fitted = model.steps[0][1]
    assert len(fitted.channel_names_) == 76 and fitted.n_features_in_ == 1


def test_events_from_long_table():
    long = pd.DataFrame(
        {
            "stay": [7, 9, 7, 7],
            "hours": [0.5, 1.0, 1.0, 4.5],
            "variable": ["Heart Rate", "pH", "Glascow coma scale eye opening", "Glasgow coma scale total"],
            "value": [88, 7.31, "3 To speech", "14"],
        }
    )
    events = events_from_long_table(long, id_column="stay", time_column="hours", code_column="variable")
    assert events.index.tolist() == [7, 9] and events.index.name == "stay"
    seven = events["ts"][7]
    assert seven["numeric_value"].tolist()[0] == 88.0 and np.isnan(seven["numeric_value"][1])
    assert seven["text_value"].tolist() == [None, "3 To speech", None]
    assert seven["numeric_value"][2] == 14.0
    direct = frame(
        [
            (0.5, "Heart Rate", 88.0, None),
            (1.0, "Glascow coma scale eye opening", np.nan, "3 To speech"),
            (4.5, "Glasgow coma scale total", 14.0, None),
        ]
    )
    enc = ClinicalTimeSeriesDiscretizer().fit(events)
    from_direct = enc.transform(pd.DataFrame({"ts": [direct]}))["ts"][0]
    np.testing.assert_array_equal(enc.transform(events)["ts"][7], from_direct)


def test_events_from_long_table_bad_input():
    long = pd.DataFrame({"stay": [1, None], "time": [0.0, 1.0], "code": ["pH", "pH"], "value": [7.3, 7.2]})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['patient'\]"):
        events_from_long_table(long, id_column="patient")
    with pytest.raises(ValueError, match=r"column 'stay' is missing in row\(s\) \[1\]"):
        events_from_long_table(long, id_column="stay")
