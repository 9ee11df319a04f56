"""The encoders' one featurization path: a column of MEDS views read at once from the store.

OneHotEHREncoder and CLMBREmbedder read a column into one flat ``EventBatch`` and featurize
it vectorized. Views of a store are gathered from it without building a frame per row; the
features must be those of the per-row event frames of the same events
(``view.to_event_frame()``), which are read and checked one by one, and those of a direct,
slow transcription of each encoder's rule (the reference).
"""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")
meds = pytest.importorskip("meds")

from skfusion.datasets import load_meds, make_meds_cohort, make_pbcseq_meds  # noqa: E402
from skfusion.encoders import CLMBREmbedder, OneHotEHREncoder  # noqa: E402
from skfusion.encoders._events import as_event_frame, to_days  # noqa: E402
from skfusion.encoders.clmbr import _tokenize, _Vocabulary  # noqa: E402

TINY = dict(birth_code=meds.birth_code, hidden_dim=8, n_heads=2, intermediate_dim=16, random_state=0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    labels = make_meds_cohort(root, n_subjects=60, random_state=0)
    return load_meds(root, labels)[0]


@pytest.fixture(scope="module")
def pbcseq(tmp_path_factory):
    root = tmp_path_factory.mktemp("pbcseq")
    labels = make_pbcseq_meds(root)
    return load_meds(root, labels)[0]


@pytest.fixture(params=["synthetic", "pbcseq"])
def views(request):
    X = request.getfixturevalue(request.param)
    # The label's prediction time, and one 100 days earlier, which cuts inside every view.
    predicted = X.index.get_level_values("prediction_time")
    return X.assign(pt=predicted, at=predicted - pd.Timedelta(days=100))


def frames_of(X):
    """The same rows with each view replaced by its per-row event frame."""
    return X.assign(ehr=[view.to_event_frame() for view in X["ehr"]])


def events_of(view, at):
    """One view's events up to ``at`` as the readers take them: frame, days, prediction day (the slow path)."""
    frame = as_event_frame(view.to_event_frame(), "row", extra=("text_value",))
    days = to_days(frame["time"], "row")
    cutoff = to_days(pd.Series([at]), "at")[0]
    keep = days <= cutoff
    return frame[keep].reset_index(drop=True), days[keep], cutoff


def onehot_reference(encoder, X):
    """OneHotEHREncoder's rule, event by event: presence per window, last value's bin."""
    out = np.zeros((len(X), len(encoder.feature_names_)), dtype=np.float32)
    columns = {name: i for i, name in enumerate(encoder.feature_names_)}
    for row, (view, cut) in enumerate(zip(X["ehr"], X[encoder.index_time or "pt"])):
        frame, days, prediction = events_of(view, cut)
        for code, day, value in zip(frame["code"], days, frame["numeric_value"]):
            if code not in encoder.codes_:
                continue
            for window in encoder.windows_:
                if not day > prediction - window:
                    continue
                name = f"{code}@{'all' if np.isinf(window) else f'{window:g}d'}"
                out[row, columns[name]] = 1
                if code in encoder.bin_edges_ and not np.isnan(value):
                    group = [columns[n] for n in encoder.feature_names_ if n.startswith(name + ":")]
                    out[row, group] = 0
                    out[row, group[np.searchsorted(encoder.bin_edges_[code], value, side="right")]] = 1
    return out


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"windows": [30, pd.Timedelta(days=365), None], "n_bins": 3, "index_time": "at"},
        {"windows": [90], "n_bins": 1, "min_frequency": 2},
        {"thresholds": {"SYNTH/LAB": [-0.5, 0.5], "LOINC/1975-2": [1.2, 2.0]}, "n_bins": 5, "index_time": "at"},
    ],
)
def test_onehot_features_of_views_are_those_of_their_frames(views, params):
    frames = frames_of(views)
    fitted = OneHotEHREncoder(**params).fit(views)
    # Without index_time a view is anchored at its label's prediction time: a frame needs it given.
    on_frames = OneHotEHREncoder(**{"index_time": "pt", **params}).fit(frames)
    assert fitted.codes_ == on_frames.codes_ and fitted.feature_names_ == on_frames.feature_names_
    assert fitted.bin_edges_.keys() == on_frames.bin_edges_.keys()
    for code, edges in fitted.bin_edges_.items():
        np.testing.assert_allclose(edges, on_frames.bin_edges_[code], rtol=1e-6, atol=1e-6)
    got = fitted.transform(views).filter(like="ehr__").to_numpy()
    np.testing.assert_array_equal(got, on_frames.transform(frames).filter(like="ehr__").to_numpy())
    np.testing.assert_array_equal(got, onehot_reference(fitted, views))
    assert got.any()


def femr_tokens(view, dictionary, max_length, birth_code, at):
    """femr 0.2.3's ``BatchCreator.add_patient`` on one view, flat vocabulary (ids and days since birth)."""
    frame, days, _ = events_of(view, at)
    codes = frame["code"].tolist()
    birth = days[codes.index(birth_code)] if birth_code in codes else (days[0] if len(days) else 0.0)
    ids, ages, seen, today = [], [], set(), None
    texts = [None if pd.isna(text) else text for text in frame["text_value"]]
    for code, value, text, day in zip(codes, frame["numeric_value"], texts, days):
        if np.floor(day) != today:
            today, seen = np.floor(day), set()
        found = []
        for entry_id, entry in enumerate(dictionary["vocab"]):
            if entry["code_string"] != code:
                continue
            if not np.isnan(value) and entry["type"] == "numeric" and entry["val_start"] <= value < entry["val_end"]:
                found = [entry_id]
                break
            if np.isnan(value) and text is not None and entry["type"] == "text" and entry["text_string"] == text:
                found = [entry_id]
            if np.isnan(value) and text is None and entry["type"] == "code":
                found = [entry_id]
        if not found or all(f in seen for f in found):
            continue
        seen.update(found)
        ids += found
        ages.append(day - birth)
    return np.array(ids[-max_length:], dtype=np.int64), np.array(ages[-max_length:], dtype=np.float32)


def tokens_of(embedder, X):
    return embedder._tokenize_all(embedder._read_all(embedder._check_frame(X, reset=False)))


@pytest.mark.parametrize("params", [{}, {"index_time": "at", "max_length": 6, "min_frequency": 2}])
def test_clmbr_features_of_views_are_those_of_their_frames(views, params):
    frames = frames_of(views)
    fitted = CLMBREmbedder(**TINY, **params, max_epochs=1, batch_size=64).fit(views)
    on_frames = CLMBREmbedder(**TINY, **{"index_time": "pt", **params}, max_epochs=1, batch_size=64).fit(frames)
    assert fitted.dictionary_ == on_frames.dictionary_
    assert fitted.summary_codes_ == on_frames.summary_codes_
    for code, quantiles in fitted.value_quantiles_.items():
        np.testing.assert_allclose(quantiles, on_frames.value_quantiles_[code], rtol=1e-6, atol=1e-6)
    assert fitted.loss_curve_ == on_frames.loss_curve_
    got = fitted.transform(views).filter(like="ehr__").to_numpy()
    np.testing.assert_allclose(got, on_frames.transform(frames).filter(like="ehr__").to_numpy(), rtol=1e-6, atol=1e-6)
    at = views[params.get("index_time", "pt")]
    for mine, theirs, view, cut in zip(tokens_of(fitted, views), tokens_of(on_frames, frames), views["ehr"], at):
        want_ids, want_ages = femr_tokens(view, fitted.dictionary_, fitted.max_length, fitted.birth_code, cut)
        np.testing.assert_array_equal(mine.ids, want_ids)
        np.testing.assert_array_equal(mine.ages, want_ages)
        for a, b in zip(mine[:4], theirs[:4]):
            np.testing.assert_array_equal(a, b)


def test_clmbr_reads_text_of_views_as_their_frames(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = pd.Timestamp("2020-01-01")
    rows = [
        (1, pd.NaT, "Gender/F", np.nan, None),
        (1, t0 - pd.Timedelta(days=9000), meds.birth_code, np.nan, None),
        (1, t0, "DX/X", np.nan, "note"),
        (1, t0, "DX/X", np.nan, "other"),
        (1, t0 + pd.Timedelta(hours=2), "DX/X", np.nan, "note"),
        (1, t0 + pd.Timedelta(days=1), "LAB/A", 2.5, None),
        (2, t0, "DX/X", np.nan, None),
        (2, t0, "LAB/A", 0.5, "high"),
    ]
    frame = pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value", "text_value"])
    (tmp_path / "data").mkdir()
    table = meds.DataSchema.align(pa.Table.from_pandas(frame, preserve_index=False))
    pq.write_table(table, tmp_path / "data" / "0.parquet")
    ids = np.array([1, 2], dtype=np.int64)
    labels = pd.DataFrame({"subject_id": ids, "prediction_time": [t0 + pd.Timedelta(days=2)] * 2})
    X = load_meds(tmp_path, labels)[0]
    vocab = [
        {"type": "code", "code_string": "DX/X", "weight": -1},
        {"type": "text", "code_string": "DX/X", "text_string": "note", "weight": -1},
        {"type": "numeric", "code_string": "LAB/A", "val_start": float("-inf"), "val_end": 1.0, "weight": -1},
        {"type": "numeric", "code_string": "LAB/A", "val_start": 1.0, "val_end": float("inf"), "weight": -1},
        {"type": "code", "code_string": "Gender/F", "weight": -1},
    ]
    dictionary = {"vocab": vocab, "is_hierarchical": False, "age_stats": {"mean": 0.0, "std": 1e8}}
    with pytest.warns(UserWarning, match="1 training row"):  # subject 2 has no birth event
        embedder = CLMBREmbedder(**TINY, max_epochs=0, min_frequency=1).fit(X)
    history = embedder._read_all(embedder._check_frame(X, reset=False))
    on_frames = embedder._read_all(embedder._check_frame(frames_of(X), reset=False))
    assert history.batch.texts.tolist() == on_frames.batch.texts.tolist()
    tokens = _tokenize(history, _Vocabulary(dictionary), 1024, "test")
    for mine, theirs, view in zip(tokens, _tokenize(on_frames, _Vocabulary(dictionary), 1024, "test"), X["ehr"]):
        want_ids, want_ages = femr_tokens(view, dictionary, 1024, meds.birth_code, X.index[0][1])
        np.testing.assert_array_equal(mine.ids, want_ids)
        np.testing.assert_array_equal(mine.ages, want_ages)
        np.testing.assert_array_equal(mine.ids, theirs.ids)
    # Subject 1: Gender/F (dated at the birth), the noted DX/X (not the "other" one: no entry),
    # the second "note" the same day skipped, the lab's bin [1, inf) the next day.
    assert tokens[0].ids.tolist() == [4, 1, 3]
    # Subject 2: DX/X's code entry; a value with text reads the value.
    assert tokens[1].ids.tolist() == [0, 2]
    hierarchical = {
        "vocab": [{"type": "code", "code_string": "DX/X", "weight": -1},
                  {"type": "text", "text_string": "note", "weight": -1},
                  {"type": "numeric", "val_start": float("-inf"), "weight": -1}],
        "is_hierarchical": True, "age_stats": {"mean": 0.0, "std": 1e8},
    }  # fmt: skip
    for mine, theirs in zip(*(_tokenize(h, _Vocabulary(hierarchical), 1024, "test") for h in (history, on_frames))):
        np.testing.assert_array_equal(mine.ids, theirs.ids)
        np.testing.assert_array_equal(mine.weights, theirs.weights)
    bags = _tokenize(history, _Vocabulary(hierarchical), 1024, "test")[0]
    # DX/X + "note"; DX/X + nothing new that day for "other"; the lab's value bin the next day.
    assert bags.ids.tolist() == [[0, 1], [2, 0]] and bags.weights.tolist() == [[1.0, 1.0], [1.0, 0.0]]


def test_no_event_after_the_prediction_time_reaches_the_encoders(synthetic):
    predicted = synthetic.index.get_level_values("prediction_time")
    X = synthetic.assign(pt=predicted, at=predicted - pd.Timedelta(days=100))
    # MEDS_DEATH and SYNTH/FOLLOW_UP come only after the prediction time.
    after = [meds.death_code, "SYNTH/FOLLOW_UP"]
    for index_time in (None, "at"):
        cutoff = X[index_time or "pt"]
        encoder = OneHotEHREncoder(codes=after + ["SYNTH/INDEX_VISIT"], index_time=index_time).fit(X)
        batch = encoder._read_batch(encoder._check_frame(X, reset=False))
        days = to_days(pd.Series(cutoff), "cutoff")
        assert (batch.days <= days[batch.rows]).all()
        np.testing.assert_array_equal(batch.prediction, days)
        assert not set(batch.vocabulary[batch.codes]) & set(after)
        # Everything at or before it is read (static events dated inside the history).
        frames = [events_of(view, at)[0] for view, at in zip(X["ehr"], cutoff)]
        np.testing.assert_array_equal(batch.lengths, [len(f) for f in frames])
        Xt = encoder.transform(X)
        assert not Xt.filter(like="MEDS_DEATH").to_numpy().any() and not Xt.filter(like="FOLLOW_UP").to_numpy().any()
        # The index visit is exactly at the label's prediction time: in (a tie, not a rounding error
        # past it) without a column, out 100 days earlier.
        visit = Xt.filter(like="INDEX_VISIT").to_numpy()
        assert visit.all() if index_time is None else not visit.any()


def test_a_column_mixing_stores_and_frames(synthetic):
    import pickle

    X = synthetic.iloc[:30].assign(at=synthetic.index.get_level_values("prediction_time")[:30] - pd.Timedelta(days=50))
    views = list(X["ehr"])
    # Rows 10-19 from a second store of the same events (as a second load_meds gives).
    copies = pickle.loads(pickle.dumps(views[10:20]))
    assert copies[0].store is not views[0].store
    frames = [v.to_event_frame() for v in views[20:]]
    one_store = X.assign(ehr=[*views[:20], *frames])
    mixed = X.assign(ehr=[*views[:10], *copies, *frames])
    for index_time in (None, "at"):
        params = dict(windows=[30, None], index_time=index_time)
        want = OneHotEHREncoder(**params).fit(one_store)
        got = OneHotEHREncoder(**params).fit(mixed)
        assert got.codes_ == want.codes_
        np.testing.assert_array_equal(got.transform(mixed).to_numpy(), want.transform(one_store).to_numpy())
        if index_time == "at":
            # Cut at a column, a view and its event frame are the same history.
            np.testing.assert_array_equal(got.transform(mixed).to_numpy(), want.transform(frames_of(X)).to_numpy())
    # A list of codes (times 0, 1, ...) among views is read too.
    listed = X.assign(ehr=[*views[:29], ["SYNTH/LAB", "Gender/F"]])
    Xt = OneHotEHREncoder(codes=["SYNTH/LAB", "Gender/F"], n_bins=1).fit(listed).transform(listed)
    assert Xt.iloc[-1].tolist()[-2:] == [1.0, 1.0]
    alone = OneHotEHREncoder(codes=["SYNTH/LAB", "Gender/F"], n_bins=1).fit(X).transform(X)
    np.testing.assert_array_equal(Xt.iloc[:29], alone.iloc[:29])


def test_views_against_a_numeric_prediction_time_are_refused(synthetic):
    X = synthetic.iloc[:3].assign(at=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"row .* of column 'ehr': event times and prediction time must both be"):
        OneHotEHREncoder(index_time="at").fit(X)
    with pytest.raises(ValueError, match=r"row .* of column 'ehr': event times and prediction time must both be"):
        OneHotEHREncoder(index_time="at").fit(frames_of(X))
