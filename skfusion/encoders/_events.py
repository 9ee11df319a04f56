"""Per-patient event histories, as read by the EHR encoders.

A cell of an event column is one patient's history up to the prediction time, in either form:

- a MEDS-style ``pandas.DataFrame`` with columns ``time`` (datetimes or numbers), ``code``
  (strings such as ``"LOINC/2160-0"``) and optionally ``numeric_value`` (float, NaN where the
  event carries no value);
- a plain ordered sequence of code strings, read as events at times 0, 1, 2, ...

A polars DataFrame cell is read as its pandas copy. :func:`as_event_frame` turns either form
into one canonical frame, checked event by event. :class:`EventColumnMixin` reads a whole
column into one :class:`EventBatch` of flat columns, which the encoders featurize at once:
frames are read and checked one by one, the ``EventView`` cells of
:func:`skfusion.datasets.load_meds` (slices of one checked ``EventStore``) gathered from the
store in one go, with the same events, times and values as their event frames.
"""

from datetime import timedelta
from numbers import Real
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._images import is_missing_cell
from ._base import is_polars_frame
from ._event_store import NO_TIME, EventView

EVENT_COLUMNS = ("time", "code", "numeric_value")
# Every column some reader takes from an event frame: none may appear twice.
_READ_COLUMNS = (*EVENT_COLUMNS, "text_value", "unit")
_PAIR_TYPES = (tuple, list, dict, set, np.ndarray, pd.Series, pd.DataFrame)


def pandas_cell(cell):
    """An event cell with a polars DataFrame or an ``EventView`` turned into the pandas frame the readers read."""
    if isinstance(cell, EventView):
        return cell.to_event_frame()
    return cell.to_pandas() if is_polars_frame(cell) else cell


def as_event_frame(cell, where="cell", extra=(), accepted_times="numbers (days) or datetimes"):
    """Return ``cell`` as a frame with columns ``time``, ``code``, ``numeric_value``.

    Rows are sorted by time (stable, so simultaneous events keep their order).

    Parameters
    ----------
    cell : pandas.DataFrame or sequence of str
        One patient's events.
    where : str
        How to name this cell in error messages (e.g. ``"row 12 of column 'ehr'"``).
    extra : tuple of str, default=()
        Further columns of ``cell`` to keep (after the three, in the same sorted order);
        a column that ``cell`` lacks is filled with None.
    accepted_times : str, default="numbers (days) or datetimes"
        What the reader accepts as times, as said in error messages.

    Returns
    -------
    events : pandas.DataFrame

    Raises
    ------
    ValueError
        If the frame lacks ``time`` or ``code`` or has one of the columns it reads twice,
        or an event has a missing code, a missing (NaN/NaT) or non-finite time, a time
        that is neither a number, a datetime nor a timedelta, or a ``numeric_value`` that
        is not a finite number (booleans included: a yes/no finding is a code, not a
        measurement); or if a list cell holds anything but codes (e.g. ``(time, code)``
        pairs). The message names the frame's row (its position) and column.
    """
    if isinstance(cell, pd.DataFrame):
        missing = [c for c in ("time", "code") if c not in cell.columns]
        if missing:
            raise ValueError(f"{where}: event frame lacks column(s) {missing}; it needs 'time' and 'code'.")
        repeated = [c for c in (*_READ_COLUMNS, *extra) if (cell.columns == c).sum() > 1]
        if repeated:
            raise ValueError(
                f"{where}: the event frame has {int((cell.columns == repeated[0]).sum())} columns named "
                f"{repeated[0]!r}; keep one (which of them holds the events is unknown)."
            )
        frame = pd.DataFrame(
            {
                "time": _event_times(cell["time"], where, accepted_times),
                "code": cell["code"].to_numpy(dtype=object),
                "numeric_value": (
                    _event_values(cell["numeric_value"], where)
                    if "numeric_value" in cell.columns
                    else np.full(len(cell), np.nan)
                ),
                **{
                    name: cell[name].to_numpy(dtype=object) if name in cell.columns else np.full(len(cell), None)
                    for name in extra
                },
            }
        )
    elif isinstance(cell, (list, tuple, np.ndarray, pd.Series)):
        codes = np.empty(len(cell), dtype=object)
        codes[:] = list(cell)
        pairs = np.array([isinstance(c, _PAIR_TYPES) for c in codes], dtype=bool)
        if pairs.any():
            raise ValueError(
                f"{where}: list position {int(np.flatnonzero(pairs)[0])} holds a "
                f"{type(codes[pairs][0]).__name__}, not a code; a list cell is codes only, read as events "
                "at times 0, 1, 2, ...: give timed events as a frame with columns 'time' and 'code', e.g. "
                "pd.DataFrame(pairs, columns=['time', 'code'])."
            )
        frame = pd.DataFrame(
            {
                "time": np.arange(len(codes), dtype=float),
                "code": codes,
                "numeric_value": np.full(len(codes), np.nan),
                **{name: np.full(len(codes), None) for name in extra},
            }
        )
    else:
        raise ValueError(
            f"{where}: expected an event frame (time, code[, numeric_value]) or a list of codes; "
            f"got {type(cell).__name__}."
        )
    no_code = frame["code"].isna().to_numpy()
    if no_code.any():
        raise ValueError(f"{where}: {_event_at(no_code, 'code')}: missing code.")
    frame["code"] = frame["code"].astype(str)
    return frame.sort_values("time", kind="stable", ignore_index=True)


def _event_at(bad, column):
    """``"event frame row k (position), column 'c'"`` for the first flagged position."""
    return f"event frame row {int(np.flatnonzero(bad)[0])} (position), column {column!r}"


def _event_values(values, where):
    """``numeric_value`` as floats (NaN: no value); a ValueError at the first bad entry."""
    values = pd.Series(values).reset_index(drop=True)
    # pandas reads True as 1.0; a boolean is a finding, not a measured value (MEDS).
    booleans = _booleans(values)
    if booleans.any():
        shown = bool(values[np.flatnonzero(booleans)[0]])
        raise ValueError(
            f"{where}: {_event_at(booleans, 'numeric_value')}: {shown!r} is a boolean, not a measurement; "
            "give a yes/no finding as a code of its own (or as the numbers 0 and 1 if that is what is meant)."
        )
    _refuse_complex(values, "numeric_value", where)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    not_number = np.isnan(numbers) & values.notna().to_numpy()
    if not_number.any():
        shown = values[np.flatnonzero(not_number)[0]]
        raise ValueError(f"{where}: {_event_at(not_number, 'numeric_value')}: {shown!r} is not a number.")
    infinite = np.isinf(numbers)
    if infinite.any():
        shown = numbers[infinite][0]
        raise ValueError(f"{where}: {_event_at(infinite, 'numeric_value')}: value {shown:g} is not finite.")
    return numbers


def _refuse_complex(values, column, where):
    """A ValueError at the first complex entry of ``values``: as a float it would lose its imaginary part."""
    if values.dtype.kind == "c":
        found = values.notna().to_numpy()
    elif values.dtype == object:
        found = np.array([isinstance(v, (complex, np.complexfloating)) for v in values], dtype=bool)
    else:
        return
    if found.any():
        shown = complex(values[np.flatnonzero(found)[0]])
        raise ValueError(f"{where}: {_event_at(found, column)}: {shown!r} is a complex number. Complex data not supported.")


def _booleans(values):
    """Where ``values`` holds booleans (only bool and object columns can)."""
    if pd.api.types.is_bool_dtype(values):
        return values.notna().to_numpy()
    if values.dtype != object:
        return np.zeros(len(values), dtype=bool)
    return np.array([isinstance(v, (bool, np.bool_)) for v in values], dtype=bool)


def _event_times(times, where, accepted):
    """Event times as numbers, datetimes or timedeltas, checked entry by entry.

    Missing (NaN/NaT) times are refused rather than dropped: an event without a time cannot
    be placed before or after the prediction time, and dropping it silently would change
    the encoding. Text is parsed as datetimes (and then sorted chronologically, not as text).
    """
    times = pd.Series(times).reset_index(drop=True)
    missing = times.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"{where}: {_event_at(missing, 'time')}: missing time (NaN/NaT); give every event a time or drop it."
        )
    _refuse_complex(times, "time", where)
    if times.dtype == object and len(times) and all(_is_real(v) for v in times):
        times = times.astype(float)
    if is_number(times):
        infinite = ~np.isfinite(times.to_numpy(dtype=float))
        if infinite.any():
            shown = float(times[np.flatnonzero(infinite)[0]])
            raise ValueError(f"{where}: {_event_at(infinite, 'time')}: time {shown:g} is not finite.")
        return times.to_numpy()
    if pd.api.types.is_bool_dtype(times) or times.dtype.kind in "mM" or not len(times):
        return times.to_numpy()
    if all(isinstance(v, (pd.Timedelta, np.timedelta64, timedelta)) for v in times):
        return pd.to_timedelta(times).to_numpy()
    return parse_datetimes(times, f"{where}: event frame row {{k}} (position), column 'time'", accepted).to_numpy()


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def parse_datetimes(values, entry, accepted):
    """Text or timestamps as datetimes; a ValueError naming the first entry that is not one.

    ``entry`` describes position ``k`` in messages (a template with ``{k}``) and ``accepted``
    what the caller accepts as times.
    """
    values = pd.Series(values).reset_index(drop=True)
    numbers = np.array([_is_real(v) for v in values], dtype=bool)
    if numbers.any() and not numbers.all():
        k, other = int(np.flatnonzero(numbers)[0]), int(np.flatnonzero(~numbers)[0])
        raise ValueError(
            f"{entry.format(k=other)}: {values[other]!r} is not a number but {entry.format(k=k)} is "
            f"({values[k]!r}); times must be {accepted}, one kind throughout."
        )
    try:
        return pd.to_datetime(values, format="mixed")
    except (TypeError, ValueError, OverflowError) as exc:
        parsed = pd.to_datetime(values, format="mixed", errors="coerce")
        bad = (parsed.isna() & values.notna()).to_numpy()
        k = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise ValueError(f"{entry.format(k=k)}: {values[k]!r} is not a time; times must be {accepted} ({exc}).") from exc


class _EventCell(NamedTuple):
    """One non-missing cell of an event column, with where it came from and its cut-off."""

    value: object
    where: str
    cutoff: float | None  # prediction time in days
    cutoff_is_number: bool  # whether it was given as a number of days (not a datetime)


def is_number(times):
    """Whether event times are numbers (days) rather than datetimes."""
    return pd.api.types.is_numeric_dtype(times) and not pd.api.types.is_bool_dtype(times)


def to_days(times, where):
    """Event times as float days: numbers are taken as days, datetimes counted from 1970-01-01."""
    times = pd.Series(times)
    if pd.api.types.is_bool_dtype(times):
        raise ValueError(f"{where}: event times are booleans; use numbers (days) or datetimes.")
    if is_number(times):
        return times.to_numpy(dtype=float)
    if times.dtype.kind == "M":
        stamps = times
    else:
        stamps = parse_datetimes(times, f"{where}, row {{k}} (position)", "numbers (days) or datetimes")
    return ((utc_naive(stamps) - pd.Timestamp(0)) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def utc_naive(stamps):
    """A datetime Series as tz-naive UTC (a tz-naive one as it is): the clock event times are read on."""
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None) if stamps.dt.tz is not None else stamps


def _view_anchors(cells):
    """Each ``EventView``'s prediction day (None for other cells and views without one).

    The days come from the conversion of the event times (:func:`to_days`), so that an event
    exactly at the prediction time is at it, not a rounding error after it.
    """
    known = [i for i, cell in enumerate(cells) if isinstance(cell, EventView) and cell.index_time is not None]
    days = [None] * len(cells)
    if known:
        stamps = np.array([cells[i].index_time for i in known], dtype=np.int64).view("datetime64[us]")
        for i, day in zip(known, to_days(pd.Series(stamps), "prediction times")):
            days[i] = float(day)
    return days


class EventBatch(NamedTuple):
    """The events of a column's rows in flat columns, each row's in time order.

    Row ``i``'s events are at ``offsets[i]:offsets[i + 1]``, the events after its prediction
    time already cut.
    """

    offsets: np.ndarray  # (n_rows + 1,) int64
    vocabulary: np.ndarray  # the distinct codes read, sorted (object array of str)
    codes: np.ndarray  # each event's code, as a position in vocabulary
    days: np.ndarray  # float64, as to_days reads the event times
    values: np.ndarray  # float64 numeric_value, NaN where none
    texts: np.ndarray | None  # text_value (str or None), when asked for and any row has it
    units: np.ndarray | None  # unit (str or None), likewise
    prediction: np.ndarray  # (n_rows,) float64 prediction day; NaN for a row without events or cut-off
    where: list  # how errors name each row

    @property
    def lengths(self):
        """Number of events of each row."""
        return np.diff(self.offsets)

    @property
    def rows(self):
        """The row of each event."""
        return np.repeat(np.arange(len(self.where)), self.lengths)

    def values_by_code(self):
        """``{code: its events' values}`` over every event with a value, codes sorted, values in event order."""
        measured = np.flatnonzero(~np.isnan(self.values))
        order, bounds = runs(self.codes[measured])
        values = self.values[measured][order]
        return {
            self.vocabulary[self.codes[measured[order[a]]]]: values[a:b] for a, b in zip(bounds[:-1], bounds[1:])
        }

    def last(self, columns, mask=None):
        """The last event of each row per column, for the codes given a column.

        Parameters
        ----------
        columns : ndarray of int
            The column of each code of ``vocabulary`` (-1: not read).
        mask : ndarray of bool, default=None
            The events to consider (None: all).

        Returns
        -------
        rows, columns, positions : ndarray of int
            For every (row, column) with such events, the position of the row's last one in
            the flat arrays; ordered by column, then row.
        """
        column = columns[self.codes]
        positions = np.flatnonzero(column >= 0 if mask is None else (column >= 0) & mask)
        n_rows = len(self.where)
        keys = column[positions] * n_rows + self.rows[positions]
        order, bounds = runs(keys)
        # A stable sort keeps each run in event order: its last element is the latest event.
        last = order[bounds[1:] - 1]
        return keys[last] % n_rows, keys[last] // n_rows, positions[last]


def runs(keys):
    """``(order, bounds)``: ``keys[order]`` sorted stably, its runs of equal keys at ``bounds[j]:bounds[j + 1]``."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    return order, np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True]) if len(keys) else np.zeros(1, int)


def segments(starts, lengths):
    """The positions ``starts[i], ..., starts[i] + lengths[i] - 1`` of every ``i``, one after the other."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)


class _Chunk(NamedTuple):
    """Events of some rows of a column, one row after the other, before they join one batch."""

    rows: np.ndarray  # the batch rows, in this chunk's order
    lengths: np.ndarray  # their numbers of events
    vocabulary: np.ndarray  # distinct codes (object)
    codes: np.ndarray  # positions in vocabulary
    days: np.ndarray
    values: np.ndarray
    extra: dict  # column name -> object array (str or None), or None where absent


def _frames_chunk(rows, frames, extra):
    """The checked event frames of ``rows`` (``(frame, days)`` pairs) as one chunk."""
    codes, vocabulary = pd.factorize(np.concatenate([f["code"].to_numpy(dtype=object) for f, _ in frames]))
    return _Chunk(
        np.asarray(rows),
        np.array([len(f) for f, _ in frames], dtype=np.int64),
        np.asarray(vocabulary, dtype=object),
        codes,
        np.concatenate([days for _, days in frames]),
        np.concatenate([f["numeric_value"].to_numpy(dtype=float) for f, _ in frames]),
        {name: _texts(np.concatenate([f[name].to_numpy(dtype=object) for f, _ in frames])) for name in extra},
    )


def _texts(column):
    """A text column as str, None where missing."""
    return np.array([None if pd.isna(t) else str(t) for t in column], dtype=object)


def _views_chunk(rows, views, extra):
    """The views of one store as one chunk, dated as :meth:`EventView.to_event_frame` dates them.

    A static event (``NO_TIME``) takes the time of its view's first timed event, else the
    view's prediction time (else 1970-01-01).
    """
    store = views[0].store
    lengths = np.array([v.length for v in views], dtype=np.int64)
    events = segments(np.array([v.offset for v in views], dtype=np.int64), lengths)
    times = store.times[events]
    static = times == NO_TIME
    if static.any():
        starts = np.cumsum(lengths) - lengths
        timed = np.flatnonzero(~static)
        first = np.searchsorted(timed, starts)
        has_timed = first < len(timed)
        has_timed[has_timed] = timed[first[has_timed]] < (starts + lengths)[has_timed]
        fallback = np.array([v.index_time or 0 for v in views], dtype=np.int64)
        anchor = np.where(has_timed, times[timed[np.minimum(first, len(timed) - 1)]] if len(timed) else 0, fallback)
        times[static] = np.repeat(anchor, lengths)[static]
    texts = None if store.text is None else store.text[events]
    return _Chunk(
        np.asarray(rows),
        lengths,
        store.vocabulary,
        store.codes[events],
        # The frames' own conversion, so that a view's days are those of its event frame, bit for bit.
        to_days(pd.Series(times.view("datetime64[us]")), "events"),
        store.values[events].astype(float),
        {name: texts if name == "text_value" else None for name in extra},
    )


def _join(chunks, cells, extra):
    """One batch of the chunks' rows, in the order of ``cells``, each row cut at its prediction time."""
    n_rows = len(cells)
    vocabularies = [c.vocabulary for c in chunks]
    vocabulary, inverse = np.unique(np.concatenate(vocabularies).astype(str), return_inverse=True)
    shift = np.cumsum([0, *map(len, vocabularies[:-1])])
    lengths = np.zeros(n_rows, dtype=np.int64)
    starts = np.zeros(n_rows, dtype=np.int64)
    offset = 0
    for chunk in chunks:
        lengths[chunk.rows] = chunk.lengths
        starts[chunk.rows] = offset + np.cumsum(chunk.lengths) - chunk.lengths
        offset += int(chunk.lengths.sum())
    events = segments(starts, lengths)
    codes = inverse[np.concatenate([c.codes + s for c, s in zip(chunks, shift)])][events]
    days = np.concatenate([c.days for c in chunks])[events]
    values = np.concatenate([c.values for c in chunks])[events]
    columns = {}
    for name in extra:
        if all(c.extra[name] is None for c in chunks):
            columns[name] = None
            continue
        parts = [np.full(len(c.codes), None, dtype=object) if c.extra[name] is None else c.extra[name] for c in chunks]
        columns[name] = np.concatenate(parts)[events]
    # Cut at the prediction time; without one, a row's last event is its prediction time.
    cutoffs = np.array([np.inf if c.cutoff is None else c.cutoff for c in cells], dtype=float)
    rows = np.repeat(np.arange(n_rows), lengths)
    keep = days <= cutoffs[rows]
    ends = np.cumsum(lengths)
    last = np.where(lengths > 0, days[np.maximum(ends - 1, 0)] if len(days) else np.nan, np.nan)
    offsets = np.r_[0, np.cumsum(np.bincount(rows[keep], minlength=n_rows))]
    return EventBatch(
        offsets,
        np.array([str(code) for code in vocabulary], dtype=object),
        codes[keep],
        days[keep],
        values[keep],
        None if columns.get("text_value") is None else columns["text_value"][keep],
        None if columns.get("unit") is None else columns["unit"][keep],
        np.where(np.isinf(cutoffs), last, cutoffs),
        [c.where for c in cells],
    )


def _check_time_kinds(cell, times_are_numbers):
    if cell.cutoff is not None and times_are_numbers != cell.cutoff_is_number:
        raise ValueError(
            f"{cell.where}: event times and prediction time must both be numbers (days) or both datetimes."
        )


class EventColumnMixin:
    """Reads an event column into one :class:`EventBatch`, naming rows in errors, cut at ``index_time``.

    Frames (and lists of codes) are read and checked one by one by :func:`as_event_frame`;
    the ``EventView`` cells of each store are gathered from it with one index, dated as
    :meth:`~skfusion.encoders._event_store.EventView.to_event_frame` dates them. A column
    may mix views of several stores, frames and lists.

    ``index_time`` (a constructor parameter of the encoder) is None, or the name of a
    column of ``X`` holding each row's prediction time (days or datetimes, as the events):
    events after it are dropped and it is the time the look-back windows end at. Without it,
    a row of :func:`~skfusion.datasets.load_meds` is anchored at its label's prediction time
    (which its view carries), any other row at its last event.
    """

    _column_parameter = "events"

    def _check_frame(self, X, reset):
        cells = super()._check_frame(X, reset)
        cutoffs, is_number = self._cutoffs(X, cells)
        read = []
        for cell, label, cutoff in zip(cells, X.index, cutoffs):
            if is_missing_cell(cell):
                read.append(cell)
                continue
            value = cell if isinstance(cell, EventView) else pandas_cell(cell)
            read.append(_EventCell(value, f"row {label!r} of column {self._column!r}", cutoff, is_number))
        return read

    def _cutoffs(self, X, cells):
        if self.index_time is None:
            return _view_anchors(cells), False
        if self.index_time not in X.columns:
            raise ValueError(
                f"{type(self).__name__}: index_time column {self.index_time!r} is not in X."
            )
        times = X[self.index_time]
        if times.isna().any():
            label = times.index[times.isna().to_numpy()][0]
            raise ValueError(f"row {label!r} of column {self.index_time!r}: missing prediction time.")
        days = to_days(times, f"column {self.index_time!r}")
        infinite = ~np.isfinite(days)
        if infinite.any():
            label = times.index[infinite][0]
            raise ValueError(
                f"row {label!r} of column {self.index_time!r}: prediction time {float(times[label]):g} is not finite."
            )
        return list(days), is_number(times)

    @staticmethod
    def _read_batch(cells, extra=()):
        """The events of ``cells`` (from ``_check_frame``) as one :class:`EventBatch`.

        Frames are read and checked one by one (:func:`as_event_frame`), in row order; the
        views of each store are gathered from it at once (the store was checked when loaded).
        ``extra`` names the text columns to read too (``"text_value"``, ``"unit"``).
        """
        frames, views = {}, {}
        for row, cell in enumerate(cells):
            if isinstance(cell.value, EventView):
                if len(cell.value):
                    _check_time_kinds(cell, times_are_numbers=False)  # a view's times are datetimes
                views.setdefault(id(cell.value.store), []).append(row)
                continue
            frame = as_event_frame(cell.value, cell.where, extra)
            days = to_days(frame["time"], cell.where)
            if len(frame):
                _check_time_kinds(cell, is_number(frame["time"]))
            frames[row] = (frame, days)
        chunks = [_views_chunk(rows, [cells[r].value for r in rows], extra) for rows in views.values()]
        if frames:
            chunks.append(_frames_chunk(list(frames), list(frames.values()), extra))
        return _join(chunks, cells, extra)
