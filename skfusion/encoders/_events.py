"""Per-patient event histories, as read by the EHR encoders.

A cell of an event column is one patient's history up to the prediction time, in either form:

- a MEDS-style ``pandas.DataFrame`` with columns ``time`` (datetimes or numbers), ``code``
  (strings such as ``"LOINC/2160-0"``) and optionally ``numeric_value`` (float, NaN where the
  event carries no value);
- a plain ordered sequence of code strings, read as events at times 0, 1, 2, ...

:func:`as_event_frame` turns either into one canonical frame so that every encoder reads the
same thing.
"""

import numpy as np
import pandas as pd

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
