"""The catalogue of bad inputs to the encoders and data sets: each with its error and its words.

Every entry is an input a user can plausibly give (a unit error, a typo, a value from a
spreadsheet) that must end in a ``ValueError`` raised by skfusion naming the parameter, row
or column, never in a traceback from pandas or numpy, a silent wrong answer or a NaN.
"""

import numpy as np
import pandas as pd
import pytest

from skfusion.datasets import (
    load_pbcseq_events,
    load_pbcseq_timeseries,
    make_icu_timeseries,
    make_multimodal_classification,
    make_multimodal_survival,
    make_paired_image_ehr,
)
from skfusion.encoders import CLMBREmbedder, ClinicalTimeSeriesDiscretizer, OneHotEHREncoder, events_from_long_table


def events(times, codes, values=None):
    values = [np.nan] * len(codes) if values is None else values
    return pd.DataFrame({"time": times, "code": codes, "numeric_value": values})


GOOD_STAY = events([0.5, 3.0], ["Heart Rate", "Heart Rate"], [80.0, 90.0])
GOOD_HISTORY = events([-20000.0, 0.0, 10.0], ["SNOMED/184099003", "Dx/A", "Lab/B"], [np.nan, np.nan, 1.0])
TINY_CLMBR = dict(
    hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=8, min_frequency=1, max_epochs=0, batch_size=16, device="cpu"
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
    (
        "code twice",
        pd.concat([events([1.0], ["X"]), pd.DataFrame({"code": ["Y"]})], axis=1),
        r"row 's2' of column '\w+': the event frame has 2 columns named 'code'; keep one",
    ),
    (
        "value twice",
        pd.concat([events([1.0], ["X"], [1.0]), pd.DataFrame({"numeric_value": [2.0]})], axis=1),
        r"row 's2'.*2 columns named 'numeric_value'",
    ),
    (
        "value boolean",
        events([1.0, 2.0], ["X", "X"], [True, False]),
        r"row 's2'.*event frame row 0 .*'numeric_value': True is a boolean, not a measurement",
    ),
    (
        "value boolean among numbers",
        events([1.0, 2.0], ["X", "X"], [1.5, False]),
        r"row 's2'.*event frame row 1 .*'numeric_value': False is a boolean, not a measurement",
    ),
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
    column = make().events
    X = pd.DataFrame({column: [good, cell]}, index=["s1", "s2"])
    with pytest.raises(ValueError, match=match):
        make().fit(X)
    fitted = make().fit(X.iloc[:1])
    with pytest.raises(ValueError, match=match):
        fitted.transform(X)


@pytest.mark.parametrize("reader", ["OneHotEHREncoder", "CLMBREmbedder"])
def test_time_code_pairs_in_a_list_cell_name_the_row(reader):
    make, good = _readers()[reader]
    X = pd.DataFrame({"ehr": [good, [(0.0, "Dx/A"), (1.0, "Lab/B")]]}, index=["s1", "s2"])
    match = r"row 's2' of column 'ehr': list position 0 holds a tuple, not a code; .* frame with columns 'time' and 'code'"
    with pytest.raises(ValueError, match=match):
        make().fit(X)


@pytest.mark.parametrize("reader", list(_readers()))
def test_polars_frame_cells_read_as_their_pandas_frames(reader):
    pl = pytest.importorskip("polars")
    make, good = _readers()[reader]
    column = make().events
    other = good.assign(time=good["time"] + 1.0)
    as_pandas = pd.DataFrame({column: [good, other]}, index=["s1", "s2"])
    as_polars = pd.DataFrame({column: [good, pl.from_pandas(other)]}, index=["s1", "s2"])
    seeded = {"random_state": 0} if reader == "CLMBREmbedder" else {}
    expected = make().set_params(**seeded).fit(as_pandas).transform(as_pandas)
    got = make().set_params(**seeded).fit(as_polars).transform(as_polars)
    pd.testing.assert_frame_equal(got, expected)


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
        OneHotEHREncoder(index_time="at").fit(X)


def test_prediction_time_text_names_the_position():
    X = pd.DataFrame({"ehr": [GOOD_HISTORY, GOOD_HISTORY], "at": ["2020-01-01", "later"]})
    with pytest.raises(ValueError, match=r"column 'at', row 1 \(position\): 'later' is not a time"):
        OneHotEHREncoder(index_time="at").fit(X)


def test_long_table_missing_time_names_the_row():
    long = pd.DataFrame({"stay": [1, 1], "time": [0.0, np.nan], "code": ["pH", "pH"], "value": [7.3, 7.2]})
    with pytest.raises(ValueError, match=r"column 'time' is missing in row\(s\) \[1\]"):
        events_from_long_table(long, id_column="stay")


# Data sets: (id, call, message words).
BAD_DATASET_CALLS = [
    ("n_samples float", lambda: make_multimodal_survival(2.5), r"n_samples must be an integer >= 1; got 2\.5"),
    ("n_samples text", lambda: make_multimodal_classification("10"), r"n_samples must be an integer >= 1; got '10'"),
    ("n_features 0", lambda: make_multimodal_survival(20, n_features=(0, 3)), r"n_features\[0\] must be an integer >= 1"),
    ("n_features int", lambda: make_multimodal_survival(20, n_features=5), r"n_features must be a sequence with one entry per modality \(2\)"),
    ("modality_names repeated", lambda: make_multimodal_survival(20, modality_names=("a", "a")), r"modality_names must be distinct"),
    ("modality_names separator", lambda: make_multimodal_survival(20, modality_names=("a__b", "c")), r"modality_names\[0\] must be .* without '__'"),
    ("n_informative 0", lambda: make_multimodal_survival(20, n_informative=0), r"n_informative must be an integer >= 1"),
    ("signal NaN", lambda: make_multimodal_survival(20, signal=(np.nan, 1.0)), r"signal\[0\] must be a finite number; got nan"),
    ("interaction text", lambda: make_multimodal_survival(20, interaction="a"), r"interaction must be a finite number; got 'a'"),
    ("noise negative", lambda: make_multimodal_classification(20, noise=-1.0), r"noise must be a finite number >= 0"),
    ("censoring 1", lambda: make_multimodal_survival(20, censoring=1.0), r"censoring must be a finite number in \[0, 1\)"),
    ("n_external negative", lambda: make_multimodal_survival(20, n_external=-1), r"n_external must be an integer >= 0"),
    ("shift inf", lambda: make_multimodal_survival(20, n_external=5, shift=np.inf), r"shift must be a finite number; got inf"),
    ("n_classes float", lambda: make_multimodal_classification(20, n_classes=2.5), r"n_classes must be an integer >= 2"),
    ("missing_rate 1.5", lambda: make_multimodal_survival(20, missing_rate=1.5), r"missing_rate must be a finite number in \[0, 1\]"),
    ("missing_rate key", lambda: make_multimodal_survival(20, missing_rate={"cxr": 0.3}), r"missing_rate names unknown modalities \['cxr'\]"),
    ("missing_rate value", lambda: make_multimodal_survival(20, missing_rate={"img": -0.1}), r"missing_rate\['img'\] must be"),
    ("missing_rate list", lambda: make_multimodal_survival(20, missing_rate=[0.1, 0.2]), r"missing_rate must be None, a number in \[0, 1\].*got list"),
    ("icu missing_rate NaN", lambda: make_icu_timeseries(5, missing_rate=np.nan), r"missing_rate must be a finite number in \[0, 1\]"),
    ("icu n_samples float", lambda: make_icu_timeseries(5.0), r"n_samples must be an integer"),
    ("icu prevalence text", lambda: make_icu_timeseries(5, prevalence="high"), r"prevalence for task='in_hospital_mortality' must be"),
    ("paired n_timesteps int", lambda: make_paired_image_ehr(5, n_timesteps=3), r"n_timesteps must be a pair"),
    ("paired n_timesteps reversed", lambda: make_paired_image_ehr(5, n_timesteps=(9, 3)), r"n_timesteps must be a pair"),
    ("paired nuisance_scale", lambda: make_paired_image_ehr(5, nuisance_scale=-1), r"nuisance_scale must be a finite number >= 0"),
    ("paired informative_rate", lambda: make_paired_image_ehr(5, informative_rate=2), r"informative_rate must be a finite number in \[0, 1\]"),
    ("pbcseq landmark text", lambda: load_pbcseq_events(landmark="a year"), r"landmark must be a finite number >= 0"),
    ("pbcseq birth_code", lambda: load_pbcseq_events(birth_code=3), r"birth_code must be a non-empty string"),
    ("pbcseq max_days text", lambda: load_pbcseq_timeseries(max_days="a"), r"max_days must be a number >= 0"),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in BAD_DATASET_CALLS], ids=[c[0] for c in BAD_DATASET_CALLS])
def test_bad_dataset_arguments_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
