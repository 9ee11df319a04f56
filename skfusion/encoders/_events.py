"""Per-patient event histories, as read by the EHR encoders.

A cell of an event column is one patient's history up to the prediction time, in either form:

- a MEDS-style ``pandas.DataFrame`` with columns ``time`` (datetimes or numbers), ``code``
  (strings such as ``"LOINC/2160-0"``) and optionally ``numeric_value`` (float, NaN where the
  event carries no value);
- a plain ordered sequence of code strings, read as events at times 0, 1, 2, ...

:func:`as_event_frame` turns either into one canonical frame so that every encoder reads the
same thing.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd

from ._base import is_missing_cell

EVENT_COLUMNS = ("time", "code", "numeric_value")


def as_event_frame(cell, where="cell"):
    """Return ``cell`` as a frame with columns ``time``, ``code``, ``numeric_value``.

    Rows are sorted by time (stable, so simultaneous events keep their order).

    Parameters
    ----------
    cell : pandas.DataFrame or sequence of str
        One patient's events.
    where : str
        How to name this cell in error messages (e.g. ``"row 12 of column 'ehr'"``).

    Returns
    -------
    events : pandas.DataFrame

    Raises
    ------
    ValueError
        If the frame lacks ``time`` or ``code``, has a missing time or code, or a value that
        is not numeric.
    """
    if isinstance(cell, pd.DataFrame):
        missing = [c for c in ("time", "code") if c not in cell.columns]
        if missing:
            raise ValueError(f"{where}: event frame lacks column(s) {missing}; it needs 'time' and 'code'.")
        frame = pd.DataFrame(
            {
                "time": cell["time"].to_numpy(),
                "code": cell["code"].to_numpy(dtype=object),
                "numeric_value": (
                    pd.to_numeric(cell["numeric_value"], errors="raise").to_numpy(dtype=float)
                    if "numeric_value" in cell.columns
                    else np.full(len(cell), np.nan)
                ),
            }
        )
    elif isinstance(cell, (list, tuple, np.ndarray, pd.Series)):
        codes = list(cell)
        frame = pd.DataFrame(
            {
                "time": np.arange(len(codes), dtype=float),
                "code": np.asarray(codes, dtype=object),
                "numeric_value": np.full(len(codes), np.nan),
            }
        )
    else:
        raise ValueError(
            f"{where}: expected an event frame (time, code[, numeric_value]) or a list of codes; "
            f"got {type(cell).__name__}."
        )
    if frame["time"].isna().any():
        raise ValueError(f"{where}: event frame has a missing time.")
    if frame["code"].isna().any():
        raise ValueError(f"{where}: event frame has a missing code.")
    frame["code"] = frame["code"].astype(str)
    return frame.sort_values("time", kind="stable", ignore_index=True)


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
    try:
        stamps = pd.to_datetime(times, format="mixed")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: event times must be numbers (days) or datetimes.") from exc
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return ((stamps - pd.Timestamp(0)) / pd.Timedelta(days=1)).to_numpy(dtype=float)


class EventColumnMixin:
    """Reads an event column row by row, naming rows in errors, cut at ``prediction_time``.

    ``prediction_time`` (a constructor parameter of the encoder) is None, or the name of a
    column of ``X`` holding each row's prediction time (days or datetimes, as the events):
    events after it are dropped and it is the time the look-back windows end at. Without it,
    a row's last event is its prediction time.
    """

    def _check_frame(self, X, reset):
        cells = super()._check_frame(X, reset)
        cutoffs, is_number = self._cutoffs(X)
        return [
            cell
            if is_missing_cell(cell)
            else _EventCell(cell, f"row {label!r} of column {self.column!r}", cutoff, is_number)
            for cell, label, cutoff in zip(cells, X.index, cutoffs)
        ]

    def _cutoffs(self, X):
        if self.prediction_time is None:
            return [None] * len(X), False
        if self.prediction_time not in X.columns:
            raise ValueError(
                f"{type(self).__name__}: prediction_time column {self.prediction_time!r} is not in X."
            )
        times = X[self.prediction_time]
        if times.isna().any():
            label = times.index[times.isna().to_numpy()][0]
            raise ValueError(f"row {label!r} of column {self.prediction_time!r}: missing prediction time.")
        return list(to_days(times, f"column {self.prediction_time!r}")), is_number(times)

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
