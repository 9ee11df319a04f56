"""Per-patient event histories, as read by the EHR encoders.

A cell of an event column is one patient's history up to the prediction time, in either form:

- a MEDS-style ``pandas.DataFrame`` with columns ``time`` (datetimes or numbers), ``code``
  (strings such as ``"LOINC/2160-0"``) and optionally ``numeric_value`` (float, NaN where the
  event carries no value);
- a plain ordered sequence of code strings, read as events at times 0, 1, 2, ...

A polars DataFrame cell is read as its pandas copy, an ``EventView`` (a row of
:func:`skfusion.datasets.load_meds`) as its event frame. :func:`as_event_frame` turns either
form into one canonical frame so that every encoder reads the same thing.
"""

from datetime import timedelta
from numbers import Real
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._images import is_missing_cell
from ._base import is_polars_frame
from ._event_store import US_PER_DAY, EventView

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
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return ((stamps - pd.Timestamp(0)) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def _view_anchor(cell):
    """``(prediction day, False)`` of an ``EventView`` that knows its prediction time; ``(None, False)`` otherwise."""
    if isinstance(cell, EventView) and cell.index_time is not None:
        return cell.index_time / US_PER_DAY, False
    return None, False


class EventColumnMixin:
    """Reads an event column row by row, naming rows in errors, cut at ``index_time``.

    ``index_time`` (a constructor parameter of the encoder) is None, or the name of a
    column of ``X`` holding each row's prediction time (days or datetimes, as the events):
    events after it are dropped and it is the time the look-back windows end at. Without it,
    a row of :func:`~skfusion.datasets.load_meds` is anchored at its label's prediction time
    (which its view carries), any other row at its last event.
    """

    _column_parameter = "events"

    def _check_frame(self, X, reset):
        cells = super()._check_frame(X, reset)
        cutoffs, is_number = self._cutoffs(X)
        read = []
        for cell, label, cutoff in zip(cells, X.index, cutoffs):
            if is_missing_cell(cell):
                read.append(cell)
                continue
            anchor = _view_anchor(cell) if cutoff is None else (cutoff, is_number)
            read.append(_EventCell(pandas_cell(cell), f"row {label!r} of column {self._column!r}", *anchor))
        return read

    def _cutoffs(self, X):
        if self.index_time is None:
            return [None] * len(X), False
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
    def _read_events(cell):
        """Event frame, event days and prediction day of one cell (events after it dropped)."""
        frame = as_event_frame(cell.value, cell.where)
        days = to_days(frame["time"], cell.where)
        if cell.cutoff is None:
            return frame, days, (days[-1] if len(days) else np.nan)
        if len(frame) and is_number(frame["time"]) != cell.cutoff_is_number:
            raise ValueError(
                f"{cell.where}: event times and prediction time must both be numbers (days) or both datetimes."
            )
        keep = days <= cell.cutoff
        return frame[keep].reset_index(drop=True), days[keep], cell.cutoff
