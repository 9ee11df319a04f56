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
    """The 3 x 76 matrix of patient A, written out entry by entry.

    The statistics are fitted, as the benchmark's Normalizer, on every bin of the imputed
    series of A (3 bins) and B (2 bins), N = 5, with the sample standard deviation.
    """
    # HR: A 90, 90 (carried), 100; B 86, 86 (normal). Mean 452 / 5; squared deviations
    # 0.16 + 0.16 + 92.16 + 19.36 + 19.36 = 131.2, over N - 1 = 4.
    hr_mean, hr_std = 90.4, math.sqrt(131.2 / 4)
    # Temperature: A 37, 37, 37; B 36, 36. Squared deviations 3 * 0.16 + 2 * 0.36 = 1.2.
    temp_mean, temp_std = 36.6, math.sqrt(1.2 / 4)
    # DBP: A 59, 59, 59 (normal); B 60, 80. Squared deviations 3 * 19.36 + 11.56 + 275.56.
    dbp = (59.0 - 63.4) / math.sqrt(345.2 / 4)
    # pH: A 7.4, 7.4, 7.4 (normal); B 7.2, 7.4. Squared deviations 4 * 0.0016 + 0.0256.
    ph = (7.4 - 7.36) / math.sqrt(0.032 / 4)
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


def _benchmark_normalizer(series):
    """Means and stds of the continuous columns as the benchmark's Normalizer: running sums
    over every bin, ``sqrt((sum_sq - 2 sum mean + N mean^2) / (N - 1))``."""
    stacked = np.concatenate(series)
    n, total, total_sq = len(stacked), stacked.sum(axis=0), (stacked**2).sum(axis=0)
    means = total / n
    stds = np.sqrt(np.maximum(total_sq - 2.0 * total * means + n * means**2, 0.0) / (n - 1))
    continuous = ["->" not in name for name in channel_names()]
    return np.where(continuous, means, 0.0), np.where(continuous & (stds >= 1e-7), stds, 1.0)


@pytest.mark.parametrize(
    ("task", "max_hours"),
    [("in_hospital_mortality", 48.0), ("phenotyping", None), ("decompensation", 72.0)],
)
def test_matches_slow_reference_on_generated_stays(task, max_hours):
    X, _ = make_icu_timeseries(6, task=task, random_state=3)
    enc = ClinicalTimeSeriesDiscretizer(max_hours=max_hours).fit(X)
    out = enc.transform(X)["ts"]
    cap = np.inf if max_hours is None else max_hours
    raw = []
    for events in X["ts"]:
        end = events["time"].max() if max_hours is None else max_hours  # the benchmark's end=
        values, mask = _reference(_reference_rows(events, cap), enc.timestep, end)
        raw.append(np.hstack([values, mask]))
    mean, scale = _benchmark_normalizer(raw)
    np.testing.assert_allclose(enc.mean_, mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(enc.scale_, scale, rtol=1e-7)
    for series, values in zip(out, raw):
        np.testing.assert_allclose(series, (values - mean) / scale, rtol=1e-5, atol=1e-5)
    if max_hours is not None:
        assert {len(s) for s in out} == {int(max_hours / enc.timestep)}


def test_standardization_counts_every_imputed_bin_of_fit():
    # HR observed once (100) in a 5-bin stay and carried forward: the 4 carried bins count,
    # as in the benchmark's Normalizer fitted on the discretized series.
    long_stay = frame([(1.0, "Heart Rate", 100.0, None), (9.0, "Glucose", 150.0, None)])
    short_stay = frame([(1.0, "Heart Rate", 50.0, None)])
    enc = ClinicalTimeSeriesDiscretizer().fit(pd.DataFrame({"ts": [long_stay, short_stay]}))
    hr = channel_names().index("Heart Rate")
    glucose = channel_names().index("Glucose")
    # HR bins: 100 x 5, 50 x 1: mean 550 / 6, deviations 50/6 (5 times) and -250/6.
    hr_mean = 550 / 6
    hr_std = math.sqrt((5 * (50 / 6) ** 2 + (250 / 6) ** 2) / 5)
    # Glucose bins: 128 (normal) x 4, 150, then 128 for the short stay: mean 790 / 6.
    glucose_mean = 790 / 6
    glucose_std = math.sqrt((5 * (128 - glucose_mean) ** 2 + (150 - glucose_mean) ** 2) / 5)
    assert enc.mean_[hr] == pytest.approx(hr_mean) and enc.scale_[hr] == pytest.approx(hr_std)
    assert enc.mean_[glucose] == pytest.approx(glucose_mean) and enc.scale_[glucose] == pytest.approx(glucose_std)
    mean, scale = enc.mean_.copy(), enc.scale_.copy()
    other = frame([(0.5, "Heart Rate", 140.0, None), (0.7, "Glucose", 300.0, None)])
    out = enc.transform(pd.DataFrame({"ts": [other]}))["ts"][0]
    np.testing.assert_array_equal(enc.mean_, mean)
    np.testing.assert_array_equal(enc.scale_, scale)
    assert out[0, hr] == pytest.approx((140.0 - hr_mean) / hr_std)
    assert out[0, glucose] == pytest.approx((300.0 - glucose_mean) / glucose_std)
    never = channel_names().index("Weight")  # never observed in fit: constant normal value, scale 1
    assert enc.mean_[never] == NORMAL_VALUES["Weight"] and enc.scale_[never] == 1.0 and out[0, never] == 0.0


def test_one_bin_fit_keeps_unit_scale():
    # A single training bin has no sample standard deviation: nothing is scaled.
    enc = ClinicalTimeSeriesDiscretizer().fit(pd.DataFrame({"ts": [frame([(1.0, "Heart Rate", 70.0, None)])]}))
    assert np.all(enc.scale_ == 1.0) and enc.mean_[channel_names().index("Heart Rate")] == 70.0


def test_short_stay_padded_to_max_hours_by_hand():
    """A 30-hour stay with max_hours=48: 24 bins as the benchmark's transform(X, end=48).

    Events: HR 90 at 1 h (bin 0), HR 110 at 24.5 h (bin 12), pH 7.3 at 30 h (bin 14). Bins
    15-23 are padding: carried forward, mask 0. Fitted on this stay alone (N = 24 bins):
    HR is 90 in bins 0-11 and 110 in bins 12-23, mean 100, sample variance 24 * 100 / 23;
    pH is 7.4 (normal) in bins 0-13 and 7.3 in bins 14-23: mean 7.4 - 10 * 0.1 / 24,
    deviations 1/24 (14 times) and -7/120 (10 times), sum of squares 7/120, variance 7/2760.
    """
    stay = frame([(1.0, "Heart Rate", 90.0, None), (24.5, "Heart Rate", 110.0, None), (30.0, "pH", 7.3, None)])
    X = pd.DataFrame({"ts": [stay]})
    assert ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"][0].shape == (15, 76)
    enc = ClinicalTimeSeriesDiscretizer(max_hours=48).fit(X)
    out = enc.transform(X)["ts"][0]
    assert out.shape == (24, 76)
    hr_std, ph_mean, ph_std = math.sqrt(2400 / 23), 7.4 - 1 / 24, math.sqrt(7 / 2760)
    names = channel_names()
    hr, ph = names.index("Heart Rate"), names.index("pH")
    assert enc.mean_[hr] == pytest.approx(100.0) and enc.scale_[hr] == pytest.approx(hr_std)
    assert enc.mean_[ph] == pytest.approx(ph_mean) and enc.scale_[ph] == pytest.approx(ph_std)
    expected = np.zeros((24, 76))
    for k in range(24):
        expected[k, hr] = (-10.0 if k < 12 else 10.0) / hr_std
        expected[k, ph] = (1 / 24 if k < 14 else -7 / 120) / ph_std
        for variable in CATEGORIES:  # never observed: the normal category, every bin
            expected[k, names.index(f"{variable}->{NORMAL_VALUES[variable]}")] = 1.0
    expected[0, names.index("mask->Heart Rate")] = 1.0
    expected[12, names.index("mask->Heart Rate")] = 1.0
    expected[14, names.index("mask->pH")] = 1.0
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert not out[15:, 59:].any()  # padding: no observation


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
    assert capped.mean_[hr] == pytest.approx((23 * 80.0 + 90.0) / 24)  # the 60 h value is not seen
    assert ClinicalTimeSeriesDiscretizer().fit_transform(X)["ts"][0].shape == (30, 76)
    # Every stay gets the 24 bins, whether its events reach past the cap or stop early.
    for last in (60.0, 3.0):
        early = frame([(1.0, "Heart Rate", 80.0, None), (last, "Heart Rate", 90.0, None)])
        assert capped.transform(pd.DataFrame({"ts": [early]}))["ts"][0].shape == (24, 76)
    empty = capped.transform(pd.DataFrame({"ts": [frame([])]}))["ts"][0]
    assert empty.shape == (24, 76) and not empty[:, 59:].any()


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
    hr = names.index("Heart Rate")
    assert out[1][0, hr] == pytest.approx((86.0 - enc.mean_[hr]) / enc.scale_[hr])


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
    enc = ClinicalTimeSeriesDiscretizer(events="vitals", output="ehr", timestep=1.0, max_hours=24, mask=False)
    params = enc.get_params()
    assert params == {
        "events": "vitals",
        "output": "ehr",
        "timestep": 1.0,
        "max_hours": 24,
        "mask": False,
        "implausible": "raise",
    }
    assert clone(enc).get_params() == params
    X = pd.DataFrame({"age": [70.0, 55.0], "vitals": [PATIENT_A, PATIENT_B]})
    Xt = enc.fit_transform(X)
    assert list(Xt.columns) == ["age", "ehr"] and Xt["ehr"][0].shape == (24, 59)  # padded to 24 h of 1 h
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
