"""MEDS cohorts: load_meds's views, meds_time_to_event, the example datasets, bad inputs."""

import copy
import hashlib
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
meds = pytest.importorskip("meds")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import PredefinedSplit, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sksurv.metrics import as_concordance_index_ipcw_scorer, concordance_index_censored  # noqa: E402

from skfusion.datasets import (  # noqa: E402
    load_meds,
    load_pbcseq_events,
    make_meds_cohort,
    make_pbcseq_meds,
    meds_time_to_event,
)
from skfusion.encoders import CLMBREmbedder, OneHotEHREncoder  # noqa: E402
from skfusion.encoders._events import pandas_cell  # noqa: E402
from skfusion.encoders._event_store import EventView  # noqa: E402
from skfusion.fusion import ConcatSurvival  # noqa: E402
from skfusion.ssl import TimeToEventPretraining  # noqa: E402

T0 = pd.Timestamp("2020-01-01")
DAY = pd.Timedelta(days=1)
US = pd.Timedelta(microseconds=1)


def _shard(rows, with_text=True):
    frame = pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value", "text_value"])
    if not with_text:
        frame = frame.drop(columns="text_value")
    return meds.DataSchema.align(pa.Table.from_pandas(frame, preserve_index=False))


# Subject 1: a static event, ties at the prediction time (T0 + 10 days), one event 1 us after it.
# Subject 2 (other shard): a pulmonary embolism code (prefix ICD10CM/I26), then death.
# Subject 3: nothing after its prediction time.
SHARD_A = [
    (1, T0 + 10 * DAY + US, "LAB/A", 9.0, None),
    (1, pd.NaT, "Gender/F", np.nan, None),
    (1, T0, "LAB/A", 1.5, None),
    (1, T0 + 10 * DAY, "DX/X", np.nan, "note"),
    (1, T0 + 10 * DAY, "LAB/A", 2.5, None),
    (1, T0 + 40 * DAY, "MEDS_DEATH", np.nan, None),
]
SHARD_B = [
    (2, T0, "DX/Y", np.nan, None),
    (2, T0 + 5 * DAY, "ICD10CM/I26.99", np.nan, None),
    (2, T0 + 20 * DAY, "MEDS_DEATH", np.nan, None),
    (3, T0, "DX/Y", np.nan, None),
    (3, T0 + 2 * DAY, "LAB/A", 4.0, None),
]


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "tiny"
    (root / "data" / "held_out").mkdir(parents=True)
    (root / "metadata").mkdir()
    pq.write_table(_shard(SHARD_A), root / "data" / "0.parquet")
    pq.write_table(_shard(SHARD_B, with_text=False), root / "data" / "held_out" / "1.parquet")
    splits = pd.DataFrame({"subject_id": np.array([1, 2, 3], dtype=np.int64), "split": ["train", "train", "held_out"]})
    pq.write_table(meds.SubjectSplitSchema.align(pa.Table.from_pandas(splits, preserve_index=False)),
                   root / meds.subject_splits_filepath)  # fmt: skip
    labels = pd.DataFrame(
        {
            "subject_id": np.array([1, 1, 2, 3], dtype=np.int64),
            "prediction_time": [T0 + 10 * DAY, T0 - DAY, T0 + DAY, T0 + 2 * DAY],
            "float_value": np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32),
        }
    )
    return root, labels


def _expected(rows, cutoff):
    """The hand cut: static events first, then events at or before ``cutoff`` in time order."""
    kept = [r for r in rows if pd.isna(r[1]) or r[1] <= cutoff]
    kept.sort(key=lambda r: (not pd.isna(r[1]), r[1] if not pd.isna(r[1]) else T0))
    return kept


def test_views_are_the_events_at_or_before_the_prediction_time(tiny):
    root, labels = tiny
    X, y = load_meds(root, labels)
    assert X.index.names == ["subject_id", "prediction_time", "split"]
    assert list(X.index.get_level_values("split")) == ["train", "train", "train", "held_out"]
    np.testing.assert_array_equal(y, np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32))
    shards = {1: SHARD_A, 2: SHARD_B, 3: SHARD_B}
    for view, (subject, cutoff) in zip(X["ehr"], zip(labels["subject_id"], labels["prediction_time"])):
        rows = _expected([r for r in shards[subject] if r[0] == subject], cutoff)
        frame = view.to_frame()
        assert frame.columns.tolist() == ["time", "code", "numeric_value", "text_value"]
        assert frame["code"].tolist() == [r[2] for r in rows]
        assert frame["time"].tolist()[sum(pd.isna(r[1]) for r in rows):] == [r[1] for r in rows if not pd.isna(r[1])]
        np.testing.assert_array_equal(frame["numeric_value"], np.array([r[3] for r in rows], dtype=np.float32))
        assert frame["text_value"].tolist() == [r[4] for r in rows]
    first = X["ehr"].iloc[0].to_frame()
    # The two events at exactly the prediction time are in; the one 1 us later is not.
    assert first["code"].tolist() == ["Gender/F", "LAB/A", "DX/X", "LAB/A"]
    # A static event belongs to every row of its subject, even one before any timed event.
    assert X["ehr"].iloc[1].to_frame()["code"].tolist() == ["Gender/F"]


def test_encoders_read_a_view_with_static_events_dated():
    from skfusion.encoders._event_store import EventStore, EventView

    store = EventStore(np.array(["S", "A"], dtype=object), [0, 1], [np.iinfo(np.int64).min, 5 * 86_400_000_000],
                       np.array([np.nan, 1.0], dtype=np.float32))  # fmt: skip
    frame = pandas_cell(EventView(store, 0, 2, 9 * 86_400_000_000))
    assert frame["time"].tolist() == [pd.Timestamp("1970-01-06")] * 2
    alone = pandas_cell(EventView(store, 0, 1, 9 * 86_400_000_000))
    assert alone["time"].tolist() == [pd.Timestamp("1970-01-10")]


def test_encoders_anchor_a_view_at_its_prediction_time(tiny):
    # Subject 3's row: events at T0 and T0 + 2 days, predicted at T0 + 2 days; subject 2's
    # row: one event at T0, predicted at T0 + 1 day. A 1.5-day window ending at the
    # prediction time holds subject 3's lab and subject 2's diagnosis; one ending at the
    # last event would hold subject 2's too, and not tell the rows apart.
    root, labels = tiny
    X, _ = load_meds(root, labels)
    rows = X.iloc[2:]
    encoder = OneHotEHREncoder(windows=[0.5], min_frequency=1, n_bins=1).fit(rows)
    window = encoder.transform(rows).filter(like="ehr__")
    codes = dict(zip(encoder.codes_, range(len(encoder.codes_))))
    # Subject 2's diagnosis is 1 day before its prediction time: outside a half-day window.
    assert window.iloc[0, codes["DX/Y"]] == 0
    # Subject 3's lab is at its prediction time: inside.
    assert window.iloc[1, codes["LAB/A"]] == 1
    # Anchored at each row's last event instead, subject 2's diagnosis would be inside.
    frames = rows.assign(ehr=[view.to_frame() for view in rows["ehr"]])
    last = OneHotEHREncoder(windows=[0.5], min_frequency=1, n_bins=1).fit(frames).transform(frames)
    assert last.filter(like="ehr__").iloc[0, codes["DX/Y"]] == 1


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    labels = make_meds_cohort(root, n_subjects=90, random_state=0)
    return root, labels


def test_no_view_holds_an_event_after_its_prediction_time(cohort):
    root, labels = cohort
    X, _ = load_meds(root, labels)
    events = pd.concat([pd.read_parquet(p) for p in sorted((root / "data").glob("*.parquet"))])
    for (subject, cutoff, _), view in X["ehr"].items():
        times = view.to_frame()["time"]
        assert (times.dropna() <= cutoff).all()
        mine = events[events["subject_id"] == subject]
        # Everything at or before the cutoff (ties included) is there: the cut loses nothing.
        assert len(view) == int((mine["time"].isna() | (mine["time"] <= cutoff)).sum())
        assert (times == cutoff).sum() >= 1  # SYNTH/INDEX_VISIT sits exactly at the prediction time
        assert (mine["time"] > cutoff).any()  # the cohort has follow-up events a leak would show


def test_the_planted_signal_is_found(cohort):
    root, labels = cohort
    X, _ = load_meds(root, labels)
    y, followable = meds_time_to_event(root, X.index, ["MEDS_DEATH"])
    assert followable.all()
    lab = np.array([v.to_frame().query("code == 'SYNTH/LAB'")["numeric_value"].mean() for v in X["ehr"]])
    assert concordance_index_censored(y["event"], y["time"], lab)[0] > 0.7


def test_pickling_keeps_one_store(cohort):
    root, labels = cohort
    X, _ = load_meds(root, labels)
    views = list(X["ehr"])
    one, many = len(pickle.dumps(views[0])), len(pickle.dumps(views))
    assert one > 4 * len(views[0].store)  # the one view carries the whole store
    assert many - one < 200 * len(views)  # the 90 views carry it once, not 90 times
    loaded = pickle.loads(pickle.dumps(views))
    assert len({id(v.store) for v in loaded}) == 1
    assert loaded == views
    assert copy.copy(views[3]) == views[3] and copy.deepcopy(views[3]).store is views[3].store
    assert views[3] != views[4]
    again = pickle.loads(pickle.dumps(X))
    assert again["ehr"].tolist() == views and again.index.equals(X.index)
    assert X.iloc[[2, 0]]["ehr"].tolist() == [views[2], views[0]]
    assert X.copy(deep=True)["ehr"].tolist() == views


def test_predefined_split_holds_out_the_meds_held_out_subjects(cohort):
    root, labels = cohort
    X, _ = load_meds(root, labels)
    split = X.index.get_level_values("split")
    train, test = next(PredefinedSplit(np.where(split == "held_out", 0, -1)).split())
    assert set(split[test]) == {"held_out"} and "held_out" not in set(split[train])


def test_time_to_event_against_a_hand_computation(tiny):
    root, labels = tiny
    X, _ = load_meds(root, labels)
    with pytest.warns(UserWarning, match="1 of 4 rows have no record after"):
        y, followable = meds_time_to_event(root, X.index, ["MEDS_DEATH", "ICD10CM/I26*"])
    np.testing.assert_array_equal(followable, [True, True, True, False])
    np.testing.assert_array_equal(y["event"], [True, True, True, False])
    # Row 0: MEDS_DEATH 30 days after; the LAB/A 1 us after is no event. Row 1: from T0 - 1 day
    # to the death at T0 + 40. Row 2: the prefix matches ICD10CM/I26.99, 4 days after.
    np.testing.assert_allclose(y["time"], [30.0, 41.0, 4.0, 0.0])
    with pytest.warns(UserWarning, match="1 of 4"):
        y, _ = meds_time_to_event(root, labels, "MEDS_DEATH", horizon=20)
    np.testing.assert_array_equal(y["event"], [False, False, True, False])
    np.testing.assert_allclose(y["time"], [20.0, 20.0, 19.0, 0.0])
    with pytest.warns(UserWarning, match="1 of 4"):
        y, _ = meds_time_to_event(root, labels, ["DX/*"])
    # Row 0: DX/X at exactly the prediction time is an input, not the event: censored at
    # MEDS_DEATH (the last record). Row 1: DX/X 11 days later. Row 2: DX/Y is before.
    np.testing.assert_array_equal(y["event"], [False, True, False, False])
    np.testing.assert_allclose(y["time"], [30.0, 11.0, 19.0, 0.0])


def _write_ontology(root):
    """``metadata/codes.parquet`` with a three-level ancestry for the pulmonary embolism code."""
    codes = pd.DataFrame(
        {
            "code": ["ICD10CM/I26.99", "ICD10CM/I26", "LAB/A"],
            "description": [None, None, None],
            "parent_codes": [["ICD10CM/I26"], ["ICD10CM/I"], None],
        }
    )
    table = pa.Table.from_pandas(codes, preserve_index=False).cast(meds.CodeMetadataSchema.schema())
    pq.write_table(table, root / meds.code_metadata_filepath)


def _with_index_time(X):
    X = X.copy()
    X["index_time"] = X.index.get_level_values("prediction_time")
    return X


def test_tte_targets_are_the_subjects_events_after_each_prediction_time(tiny):
    root, labels = tiny
    X = _with_index_time(load_meds(root, labels)[0])
    futures, censoring, _ = TimeToEventPretraining()._follow_up(X, [0, 1, 2, 3])
    # Row 0: the events at exactly the prediction time are history; LAB/A 1 us later is not.
    # Row 1: from T0 - 1 day. Row 3: nothing after its prediction time (no follow-up).
    us = 1 / 86_400e6
    assert futures == [
        {"LAB/A": us, "MEDS_DEATH": 30.0},
        {"LAB/A": 1.0, "DX/X": 11.0, "MEDS_DEATH": 41.0},
        {"ICD10CM/I26.99": 4.0, "MEDS_DEATH": 19.0},
        {},
    ]
    assert censoring == [30.0, 41.0, 19.0, None]
    # The same targets from per-row frames holding each subject's whole timed record (a static
    # event is never a target).
    whole = [EventView(v.store, v.offset, v.end - v.offset).to_frame().dropna(subset=["time"]) for v in X["ehr"]]
    frames = X.assign(ehr=pd.Series(whole, index=X.index, dtype=object))
    from_frames, frame_censoring, _ = TimeToEventPretraining()._follow_up(frames, [0, 1, 2, 3])
    assert frame_censoring == censoring and [list(f) for f in from_frames] == [list(f) for f in futures]
    # The frames' times are float days since 1970 (exact to about 1e-11 of a day), the views' whole microseconds.
    for a, b in zip(from_frames, futures):
        np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=0, atol=1e-9)


def test_tte_ontology_from_the_meds_metadata(tiny):
    root, labels = tiny
    _write_ontology(root)
    X = _with_index_time(load_meds(root, labels)[0])
    rng = np.random.default_rng(0)
    X["ct"] = [rng.normal(0, 300, (3, 32, 32)).astype(np.float32) for _ in range(len(X))]
    tte = TimeToEventPretraining(ontology="metadata", max_epochs=1, batch_size=2, random_state=0)
    with pytest.warns(UserWarning, match="1 row"):  # subject 3 has no follow-up
        tte.fit(X)
    # ICD10CM/I26.99 in row 2 also stands for its parent and grandparent, at its time.
    counts = dict(zip(tte.tasks_, tte.task_event_counts_))
    assert counts["ICD10CM/I26"] == counts["ICD10CM/I"] == counts["ICD10CM/I26.99"] == 1
    ancestors = dict(zip(tte.tasks_, tte.task_ancestors_))
    assert ancestors["ICD10CM/I26.99"] == ("ICD10CM/I", "ICD10CM/I26") and ancestors["MEDS_DEATH"] == ()
    futures = tte._follow_up(X, [2])[0]
    assert futures == [{"ICD10CM/I26.99": 4.0, "ICD10CM/I26": 4.0, "ICD10CM/I": 4.0, "MEDS_DEATH": 19.0}]


def test_tte_ontology_metadata_needs_meds_parents(tiny):
    root, labels = tiny
    X = _with_index_time(load_meds(root, labels)[0])  # codes.parquet absent: no parents
    with pytest.raises(ValueError, match="has no parent_codes"):
        TimeToEventPretraining(ontology="metadata")._follow_up(X, [0])
    frames = X.assign(ehr=pd.Series([v.to_frame() for v in X["ehr"]], index=X.index, dtype=object))
    with pytest.raises(ValueError, match="holds no MEDS event views"):
        TimeToEventPretraining(ontology="metadata")._follow_up(frames, [0])
    numbers = X.assign(index_time=np.arange(len(X), dtype=float))
    with pytest.raises(ValueError, match="holds numbers"):
        TimeToEventPretraining()._follow_up(numbers, [0])


def test_codes_that_match_nothing_warn(tiny):
    root, labels = tiny
    with pytest.warns(UserWarning, match=r"\['ICD10CM/Q99\*'\] match no code"):
        meds_time_to_event(root, labels[:3], ["MEDS_DEATH", "ICD10CM/Q99*"])


@pytest.mark.parametrize("horizon", [0, -1.0, np.inf, "30"])
def test_a_bad_horizon_is_refused(tiny, horizon):
    root, labels = tiny
    with pytest.raises(ValueError, match="horizon"):
        meds_time_to_event(root, labels, ["MEDS_DEATH"], horizon=horizon)


def test_not_a_meds_folder(tmp_path):
    with pytest.raises(ValueError, match="no 'data' folder"):
        load_meds(tmp_path, pd.DataFrame({"subject_id": [1], "prediction_time": [T0]}))


@pytest.mark.parametrize(
    "column, values",
    [("time", ["2020-01-01"]), ("subject_id", np.array([1], dtype=np.int32)), ("code", [None])],
)
def test_a_shard_that_breaks_the_schema_is_named(tmp_path, column, values):
    (tmp_path / "data").mkdir()
    table = {"subject_id": np.array([1], dtype=np.int64), "time": pa.array([T0], pa.timestamp("us")), "code": ["A"]}
    table[column] = values
    pq.write_table(pa.table(table), tmp_path / "data" / "bad.parquet")
    with pytest.raises(ValueError, match=rf"bad\.parquet.*column '{column}'"):
        load_meds(tmp_path, pd.DataFrame({"subject_id": [1], "prediction_time": [T0]}))


def test_bad_label_tables(tiny):
    root, labels = tiny
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['prediction_time'\]"):
        load_meds(root, labels.drop(columns="prediction_time"))
    unknown = labels.assign(subject_id=np.array([1, 7, 8, 7], dtype=np.int64))
    with pytest.raises(ValueError, match=r"2 subject\(s\) of the label table are not in the MEDS data: \[7, 8\]"):
        load_meds(root, unknown)
    nat = labels.assign(prediction_time=[T0, pd.NaT, T0, pd.NaT])
    with pytest.raises(ValueError, match=r"2 row\(s\) have no prediction_time .* row 1"):
        load_meds(root, nat)
    with pytest.raises(ValueError, match=r"fills 2 value columns"):
        load_meds(root, labels.assign(boolean_value=True))
    with pytest.raises(ValueError, match="column 'note'"):
        load_meds(root, labels.assign(note="x"))


def test_the_dataset_is_only_read(tiny):
    root, labels = tiny

    def state():
        files = [p for p in root.rglob("*") if p.is_file()]
        return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files}

    before = state()
    load_meds(root, labels)
    with pytest.warns(UserWarning):
        meds_time_to_event(root, labels, ["MEDS_DEATH"])
    assert state() == before


def test_pbcseq_meds_is_valid_and_gives_load_pbcseq_events(tmp_path):
    labels = make_pbcseq_meds(tmp_path)
    for shard in (tmp_path / "data").glob("*.parquet"):
        meds.DataSchema.validate(pq.read_table(shard))
    meds.CodeMetadataSchema.validate(pq.read_table(tmp_path / meds.code_metadata_filepath))
    meds.SubjectSplitSchema.validate(pq.read_table(tmp_path / meds.subject_splits_filepath))
    meds.LabelSchema.validate(pq.read_table(labels))
    meds.DatasetMetadataSchema.validate(pd.read_json(tmp_path / meds.dataset_metadata_filepath, typ="series").to_dict())
    X, died = load_meds(tmp_path, labels)
    y, followable = meds_time_to_event(tmp_path, labels, ["MEDS_DEATH"])
    X_ref, y_ref = load_pbcseq_events(landmark=365)
    np.testing.assert_array_equal(X.index.get_level_values("subject_id"), X_ref.index)
    assert followable.all()
    np.testing.assert_array_equal(y["event"], y_ref["event"])
    np.testing.assert_array_equal(died, y_ref["event"])
    np.testing.assert_allclose(y["time"], y_ref["time"])
    rename = {meds.birth_code: "SNOMED/184099003"}
    for view, ref in zip(X["ehr"], X_ref["ehr"]):
        mine = view.to_frame().replace({"code": rename})
        assert sorted(zip(mine["code"], mine["numeric_value"].fillna(-1).round(3))) == sorted(
            zip(ref["code"], ref["numeric_value"].astype(np.float32).fillna(-1).round(3))
        )
    with pytest.raises(ValueError, match="already holds a 'data' folder"):
        make_pbcseq_meds(tmp_path)


def test_a_pipeline_fits_and_scores_on_meds(cohort):
    root, labels = cohort
    X, _ = load_meds(root, labels)
    y, followable = meds_time_to_event(root, X.index, ["MEDS_DEATH"], horizon=1500)
    fuse = ConcatSurvival(max_epochs=2, linear_path=False, early_stopping=False, random_state=0)
    pipe = Pipeline([("emb", OneHotEHREncoder()), ("fuse", fuse)])
    scorer = as_concordance_index_ipcw_scorer(pipe, tau=float(np.quantile(y["time"], 0.8)))
    rows = np.flatnonzero(followable)[:45]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # two epochs: under-trained on purpose
        scores = cross_val_score(scorer, X.iloc[rows], y[rows], cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()



def test_clmbr_reads_meds_views(cohort):
    root, labels = cohort
    X, _ = load_meds(root, labels)
    # max_epochs=0: the tokenizer, vocabulary and code summary read every view; no training.
    emb = CLMBREmbedder(birth_code=meds.birth_code, hidden_dim=8, n_heads=2, intermediate_dim=16, max_epochs=0,
                        random_state=0)  # fmt: skip
    Z = emb.fit_transform(X)
    assert "SYNTH/LAB" in emb.summary_codes_
    assert len(Z) == len(X) and np.isfinite(Z.to_numpy(dtype=float)).all()


@pytest.fixture
def icu(tmp_path):
    """A MEDS dataset of ICU measurements, with other codes, static events, events before a
    48-hour window, at its start and at and after the prediction time; the label table
    predicts at 48 hours after each admission."""
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for subject in range(1, 9):
        admission = T0 + subject * DAY + pd.Timedelta(minutes=int(rng.integers(0, 600)))
        prediction = admission + pd.Timedelta(hours=48)
        rows += [(subject, pd.NaT, "GENDER//F", np.nan, None), (subject, admission - 30 * DAY, "Heart Rate", 70.0, None)]
        rows.append((subject, admission, "Heart Rate", 90.0, None))  # hour 0 of the window
        for minutes in np.sort(rng.integers(1, 48 * 60, size=20)):
            time = admission + pd.Timedelta(minutes=int(minutes))
            kind = rng.integers(4)
            if kind == 0:
                rows.append((subject, time, "Heart Rate", float(rng.integers(50, 150)), None))
            elif kind == 1:
                rows.append((subject, time, "Glascow coma scale total", np.nan, str(rng.integers(3, 16))))
            elif kind == 2:
                rows.append((subject, time, "Glasgow coma scale eye opening", np.nan, "4 Spontaneously"))
            else:
                rows.append((subject, time, "ICD10CM/I26.99", np.nan, None))
        rows += [
            (subject, prediction, "Oxygen saturation", 97.0, None),  # at the prediction time: read
            (subject, prediction + US, "Heart Rate", 200.0, None),  # after it: never read
        ]
        labels.append((subject, prediction))
    root = tmp_path / "icu"
    (root / "data").mkdir(parents=True)
    pq.write_table(_shard(rows), root / "data" / "0.parquet")
    table = pd.DataFrame(labels, columns=["subject_id", "prediction_time"]).assign(boolean_value=True)
    return root, table.astype({"subject_id": np.int64}), rows


def test_discretizer_reads_views_as_the_frames_of_their_windows(icu):
    from skfusion.encoders.timeseries import ClinicalTimeSeriesDiscretizer

    root, labels, rows = icu
    X, _ = load_meds(root, labels)
    frames = []
    for subject, prediction in zip(labels["subject_id"], labels["prediction_time"]):
        start = prediction - pd.Timedelta(hours=48)
        kept = sorted((r for r in rows if r[0] == subject and not pd.isna(r[1]) and start <= r[1] <= prediction),
                      key=lambda r: r[1])  # fmt: skip
        frames.append(pd.DataFrame({
            "time": [r[1] - start for r in kept], "code": [r[2] for r in kept],
            "numeric_value": np.array([r[3] for r in kept], dtype=np.float32), "text_value": [r[4] for r in kept],
        }))  # fmt: skip
    discretizer = ClinicalTimeSeriesDiscretizer(events="ehr", max_hours=48)
    from_views = discretizer.fit(X).transform(X)["ehr"]
    reference = ClinicalTimeSeriesDiscretizer(events="ehr", max_hours=48)
    with pytest.warns(UserWarning, match="ICD10CM"):  # frames name their unknown codes, views do not
        expected = reference.fit_transform(pd.DataFrame({"ehr": frames}))["ehr"]
    np.testing.assert_array_equal(discretizer.mean_, reference.mean_)
    np.testing.assert_array_equal(discretizer.scale_, reference.scale_)
    for got, want in zip(from_views, expected):
        assert got.shape == (24, 76)
        np.testing.assert_array_equal(got, want)
    # The event at the prediction time is read (last bin), the one 1 us after it is not.
    oxygen = discretizer.channel_names_.index("mask->Oxygen saturation")
    heart = discretizer.channel_names_.index("Heart Rate")
    for series in from_views:
        assert series[-1, oxygen] == 1 and not series[:-1, oxygen].any()
        assert (series[:, heart] * discretizer.scale_[heart] + discretizer.mean_[heart]).max() < 151


def test_discretizer_on_views_needs_max_hours_and_warns_when_no_code_is_a_variable(icu, tiny):
    from skfusion.encoders.timeseries import ClinicalTimeSeriesDiscretizer

    root, labels, _ = icu
    X, _ = load_meds(root, labels)
    with pytest.raises(ValueError, match="set max_hours"):
        ClinicalTimeSeriesDiscretizer(events="ehr").fit(X)
    other, other_labels = tiny
    Y, _ = load_meds(other, other_labels)
    with pytest.warns(UserWarning, match="is one of the variables"):
        series = ClinicalTimeSeriesDiscretizer(events="ehr", max_hours=48).fit_transform(Y)["ehr"]
    assert all(not s[:, 59:].any() for s in series)
