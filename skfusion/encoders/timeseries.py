"""Irregular ICU measurements to the bi-hourly 76-feature series of the MIMIC benchmarks.

The 17 clinical variables of Harutyunyan et al.'s MIMIC-III benchmark, reused by MedFuse and
MedMod on MIMIC-IV (MedMod, appendix A, Table 7), are binned every two hours, imputed by
carrying the last observation forward (the normal value of Table 7 before the first one),
one-hot encoded when categorical, standardized when continuous, and followed by one
observed-mask channel per variable: 59 values + 17 masks = 76 features per time step.
"""

import re
import warnings
from collections import Counter
from numbers import Real
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._compat import Interval, StrOptions
from .._images import is_missing_cell
from .._mimic import CATEGORIES, NORMAL_VALUES, NUMERIC_CODES, PLAUSIBLE_RANGES, VARIABLES
from ._base import BaseColumnEncoder
from ._event_store import EventView
from ._events import as_event_frame, pandas_cell, segments
from .clmbr import MEDS_BIRTH_CODE

_EPS = 1e-6
# Below this a standard deviation is a constant channel (the benchmark's Normalizer floor).
_MIN_STD = 1e-7
# An event later than this after admission is a unit error (seconds or minutes given as
# hours), not a long stay; binning it would also ask for millions of bins.
MAX_STAY_HOURS = 10 * 365.25 * 24
_US_PER_HOUR = 3_600_000_000
_N_VARIABLES = len(VARIABLES)
_IS_CATEGORICAL = np.array([v in CATEGORIES for v in VARIABLES])
_WIDTH = np.array([len(CATEGORIES.get(v, (v,))) for v in VARIABLES])
_START = np.concatenate([[0], np.cumsum(_WIDTH)[:-1]])
N_VALUES = int(_WIDTH.sum())
_CONTINUOUS = np.flatnonzero(~_IS_CATEGORICAL)
_CATEGORICAL = np.flatnonzero(_IS_CATEGORICAL)
_LOW, _HIGH = np.array([PLAUSIBLE_RANGES.get(v, (np.nan, np.nan, ""))[:2] for v in VARIABLES]).T
# The raw per-variable matrix holds a value (continuous) or a category index (categorical).
_NORMAL_RAW = np.array(
    [CATEGORIES[v].index(NORMAL_VALUES[v]) if v in CATEGORIES else NORMAL_VALUES[v] for v in VARIABLES],
    dtype=float,
)


def _variable_key(name):
    words = re.split(r"[^0-9a-z]+", str(name).lower().replace("glascow", "glasgow"))
    return " ".join(w for w in words if w and w != "of")


_VARIABLE_INDEX = {_variable_key(v): i for i, v in enumerate(VARIABLES)}


def _variable_indices(codes):
    """The variable of each code (an index into ``VARIABLES``), -1 where it is none."""
    return np.array([_VARIABLE_INDEX.get(_variable_key(c), -1) for c in codes], dtype=int)

_TEXT_INDEX = {v: {c.strip().lower(): k for k, c in enumerate(cats)} for v, cats in CATEGORIES.items()}
_CODE_INDEX = {v: {code: CATEGORIES[v].index(c) for code, c in codes.items()} for v, codes in NUMERIC_CODES.items()}


def channel_names(mask=True):
    """Names of the columns of a discretized series, in order.

    A continuous variable is one column named after it, a categorical variable one column
    per category named ``"{variable}->{category}"``, and, with ``mask=True``, the mask
    columns ``"mask->{variable}"`` follow (the MIMIC-III benchmark's header format).
    """
    names = []
    for v in VARIABLES:
        names += [f"{v}->{c}" for c in CATEGORIES[v]] if v in CATEGORIES else [v]
    if mask:
        names += [f"mask->{v}" for v in VARIABLES]
    return names


def _category_index(variable, text, number):
    """Index of a categorical value given as text or numeric code; None if it is neither."""
    if text is not None:
        index = _TEXT_INDEX[variable].get(text.strip().lower())
        if index is not None:
            return index
        try:
            number = float(text)
        except ValueError:
            return None
    if number is None or not float(number).is_integer():
        return None
    return _CODE_INDEX[variable].get(int(number))


class _Row(NamedTuple):
    """A non-missing cell with its row label, so that errors can name the row."""

    label: object
    cell: object


def _hours(time, where):
    if len(time) == 0:
        return np.zeros(0)
    if pd.api.types.is_datetime64_any_dtype(time):
        hours = (time - time.min()) / pd.Timedelta(hours=1)
    elif pd.api.types.is_timedelta64_dtype(time):
        hours = time / pd.Timedelta(hours=1)
    elif pd.api.types.is_numeric_dtype(time) and not pd.api.types.is_bool_dtype(time):
        hours = time.astype(float)
    else:
        raise ValueError(
            f"{where}: 'time' must be hours since admission (numbers), timedeltas or datetimes; "
            f"got dtype {time.dtype}."
        )
    hours = hours.to_numpy(dtype=float)
    if np.any(hours < 0):
        raise ValueError(f"{where}: event at {hours.min():g} h, before admission (time 0).")
    if np.any(hours > MAX_STAY_HOURS):
        raise ValueError(
            f"{where}, column 'time': an event at {hours.max():g} h is more than {MAX_STAY_HOURS:g} h "
            "(10 years) after admission; times must be hours since admission (not seconds or minutes)."
        )
    return hours


def _read_events(cell, where):
    """Event times (hours), codes, numeric values and text values (None where absent) of a frame."""
    cell = pandas_cell(cell)
    if not isinstance(cell, pd.DataFrame):
        raise ValueError(
            f"{where}: expected an event frame with columns time, code, numeric_value[, text_value]; "
            f"got {type(cell).__name__}."
        )
    events = as_event_frame(
        cell, where, extra=("text_value",), accepted_times="hours since admission (numbers), timedeltas or datetimes"
    )
    raw = events["text_value"].to_numpy(dtype=object)
    text = np.full(len(events), None, dtype=object)
    present = ~pd.isna(raw)
    text[present] = [str(t) for t in raw[present]]
    hours = _hours(events["time"], where)
    return hours, events["code"].to_numpy(dtype=object), events["numeric_value"].to_numpy(dtype=float), text


class ClinicalTimeSeriesDiscretizer(BaseColumnEncoder):
    """Discretize irregular ICU measurements into MIMIC-style bi-hourly series (76 features).

    Each cell of the raw column ``events`` is one ICU stay's measurements of the 17 clinical
    variables of the MIMIC-III benchmark [1]_ used by MedFuse [2]_ and MedMod [3]_ (MedMod,
    appendix A, Table 7). The stay becomes a ``(t, 76)`` float32 array (``mask=True``):

    1. **Bins.** Time is cut into bins of ``timestep`` hours; bin ``k`` holds the events at
       times in ``(k * timestep, (k + 1) * timestep]`` (an event at time 0 goes to bin 0), as
       in the benchmark's discretizer. The series has ``t = floor(end / timestep - 1e-6) + 1``
       bins, where ``end`` is ``max_hours`` when it is set (later events are dropped, and a
       shorter stay is padded to it, as the benchmark's ``transform(X, end=48)`` for
       in-hospital mortality: always 24 bins of 2 hours), else the stay's last event of a
       known variable. Numeric times are hours since
       admission (``start_time='zero'`` in the benchmark); datetimes (or text parsed as
       datetimes) are measured from the stay's first event; timedeltas from admission. A
       negative, missing or non-finite time, or one more than 10 years
       (:data:`MAX_STAY_HOURS`) after admission (seconds given as hours), is an error.
    2. **Within a bin** the last measurement of a variable wins.
    3. **Imputation.** An empty bin (padding bins included) takes the variable's last
       observed value (carried forward, the benchmark's ``impute_strategy='previous'``), or
       the normal value of Table 7 (:data:`NORMAL_VALUES`) before the first observation.
    4. **Encoding.** Categorical variables are one-hot encoded over the benchmark's category
       lists (:data:`CATEGORIES`, several spellings of the same score are separate
       categories, as there); continuous variables are standardized with the mean and the
       sample standard deviation (``ddof=1``) learned in ``fit`` over every bin of the
       imputed training series (observed, carried-forward, normal and padding values alike),
       as the benchmark's ``Normalizer`` is fitted on the discretizer's output.
    5. **Masks.** With ``mask=True`` one column per variable is 1 where the bin holds an
       observation of it and 0 where it was imputed (every padding bin).

    Column layout (``channel_names_`` lists every name), with the benchmark's channel and
    category order: ``Capillary refill rate`` one-hot (2 columns), ``Diastolic blood
    pressure`` (1), ``Fraction inspired oxygen`` (1), ``Glasgow coma scale eye opening``
    (8), ``motor response`` (12), ``total`` (13), ``verbal response`` (12), then
    ``Glucose``, ``Heart Rate``, ``Height``, ``Mean blood pressure``, ``Oxygen saturation``,
    ``Respiratory rate``, ``Systolic blood pressure``, ``Temperature``, ``Weight``, ``pH``
    (1 each): 59 value columns (47 one-hot + 12 continuous); with ``mask=True`` the 17 mask
    columns follow in the same variable order: 76 columns. With ``mask=False`` there are 59.

    **Reading events.** A cell is a MEDS-style frame read by
    :func:`skfusion.encoders._events.as_event_frame` (columns ``time``, ``code``,
    ``numeric_value``) plus an optional ``text_value`` column of strings for categorical
    values. ``code`` names the variable; names match case-insensitively ignoring punctuation,
    the word "of" and the benchmark's "Glascow" spelling, so ``"Heart Rate"``,
    ``"Glascow coma scale total"`` and Table 7's ``"Glasgow Coma Scale - Total"`` all match.
    A categorical value is a category string in ``text_value`` or a numeric code in
    ``numeric_value`` or ``text_value`` (the score: GCS eye 1-4, motor 1-6, verbal 1-5,
    total 3-15, capillary refill 0/1; :data:`NUMERIC_CODES`). Continuous values are read
    from ``numeric_value``. An event without a value is ignored. Events of other codes are
    ignored with one warning per call listing them. A long table (one row per
    measurement) becomes such a column with :func:`events_from_long_table`.

    **MEDS event views.** A cell may also be the event view of
    :func:`~skfusion.datasets.load_meds`: the subject's whole record up to the row's
    prediction time, which has no admission to count hours from. Its stay is then the
    ``max_hours`` hours that end at the prediction time (which must be set): hour 0 is
    ``prediction_time - max_hours``, and earlier and static events are not read. For
    MedFuse's in-hospital mortality (the first 48 hours of the ICU stay) the label table's
    prediction time is 48 hours after admission and ``max_hours=48``. The views of a column
    are gathered from their dataset at once, and give the features of the per-row frames of
    the same events (times as timedeltas from hour 0). A MEDS record holds every kind of
    event, so the codes that are not variables are ignored without a warning, but a column
    where no code of its windows is a variable warns: its codes need renaming to the
    variables' names.

    **Implausible values.** A continuous value outside its physical range
    (:data:`PLAUSIBLE_RANGES`: heart rate 0-350 beats/min, SpO2 0-100 %, FiO2 0-1, temperature
    14-47 degrees Celsius, ...), a categorical value that is neither a category nor a valid
    code, or text for a continuous variable raises a ValueError naming the row, the variable,
    the value and its time; with ``implausible="drop"`` such events are dropped instead,
    with one warning per call counting them per variable.

    **Empty and missing stays.** A stay without any usable event is one bin (``max_hours``
    worth of bins when it is set) of normal values with an all-zero mask. A missing cell (None/NaN) gives a None token cell (missing
    modality).

    Parameters
    ----------
    events : str, default="ts"
        The raw column holding the event frames (or MEDS event views).
    output : str, default=None
        Name of the output token column; None uses ``events``.
    timestep : float, default=2.0
        Bin width in hours (MedFuse and MedMod: 2 hours).
    max_hours : float, default=None
        Keep only the events in the first ``max_hours`` hours and give every stay that many
        hours of bins (48 for in-hospital mortality: 24 bins); None keeps every event and
        ends each series at its last event. Required for MEDS event views, whose stay is
        the ``max_hours`` hours up to the prediction time.
    mask : bool, default=True
        Append the 17 observed-mask columns (76 features instead of 59).
    implausible : {"raise", "drop"}, default="raise"
        What to do with implausible values (see above).

    Attributes
    ----------
    channel_names_ : list of str
        Name of each column of a discretized series (:func:`channel_names`).
    mean_ : ndarray of shape (n_channels,)
        Subtracted from each column: the mean of a continuous variable over every bin of
        the imputed training series (its normal value if it was never observed), 0 for
        one-hot and mask columns.
    scale_ : ndarray of shape (n_channels,)
        Divides each column: the sample standard deviation (``ddof=1``) of a continuous
        variable over the same bins; 1 where it is below 1e-7 (a constant channel) or
        undefined (a single bin), and for one-hot and mask columns.
    n_features_in_ : int
        Number of columns of ``X`` at fit.
    feature_names_in_ : ndarray of str
        Column names of ``X`` at fit.

    See Also
    --------
    events_from_long_table : Build the event column from one row per measurement.

    References
    ----------
    .. [1] H. Harutyunyan, H. Khachatrian, D. C. Kale, G. Ver Steeg and A. Galstyan (2019).
           Multitask learning and benchmarking with clinical time series data. Scientific
           Data 6, 96 (``YerevaNN/mimic3-benchmarks``, ``mimic3models/preprocessing.py``).
    .. [2] N. Hayat, K. J. Geras and F. E. Shamout (2022). MedFuse: multi-modal fusion with
           clinical time-series data and chest X-ray images. Machine Learning for
           Healthcare (MLHC), PMLR 182, section 4.1.
    .. [3] S. Elsharief, S. Shurrab, B. Al Jorf, L. J. Lechuga López, K. J. Geras and
           F. E. Shamout (2025). MedMod: multimodal benchmark for medical prediction tasks
           with electronic health records and chest X-ray scans. PMLR 287, section 3.2.2
           and appendix A, Table 7.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfusion.encoders.timeseries import ClinicalTimeSeriesDiscretizer
    >>> stay = pd.DataFrame({
    ...     "time": [0.5, 1.0, 3.0],
    ...     "code": ["Heart Rate", "Glascow coma scale total", "Heart Rate"],
    ...     "numeric_value": [80.0, 14.0, 100.0],
    ... })
    >>> X = pd.DataFrame({"ts": [stay, None]})
    >>> Xt = ClinicalTimeSeriesDiscretizer().fit_transform(X)
    >>> Xt["ts"][0].shape, Xt["ts"][1]
    ((2, 76), None)
    >>> enc = ClinicalTimeSeriesDiscretizer(mask=False).fit(X)
    >>> len(enc.channel_names_), enc.channel_names_[7]
    (59, 'Glasgow coma scale eye opening->4 Spontaneously')
    """

    _column_parameter = "events"
    _parameter_constraints = {
        "events": [str],
        "output": [str, None],
        "timestep": [Interval(Real, 0, None, closed="neither")],
        "max_hours": [Interval(Real, 0, None, closed="neither"), None],
        "mask": ["boolean"],
        "implausible": [StrOptions({"raise", "drop"})],
    }

    def __init__(self, events="ts", output=None, *, timestep=2.0, max_hours=None, mask=True, implausible="raise"):
        self.events = events
        self.output = output
        self.timestep = timestep
        self.max_hours = max_hours
        self.mask = mask
        self.implausible = implausible

    def _returns_tokens(self):
        return True

    def _embedding_dim(self):
        return len(self.channel_names_)

    def _check_frame(self, X, reset):
        # The template hands only the non-missing cells to the hooks; keep their row labels.
        cells = super()._check_frame(X, reset)
        return [c if is_missing_cell(c) else _Row(label, c) for label, c in zip(X.index, cells)]

    def _fit_cells(self, cells, y):
        # The benchmark's Normalizer: every bin of the imputed training series counts,
        # carried-forward, normal and padding values included, with the sample std.
        imputed = np.concatenate([raw for raw, _ in self._discretize_all(cells)])
        self.channel_names_ = channel_names(self.mask)
        self.mean_ = np.zeros(len(self.channel_names_))
        self.scale_ = np.ones(len(self.channel_names_))
        columns = _START[_CONTINUOUS]
        self.mean_[columns] = imputed[:, _CONTINUOUS].mean(axis=0)
        if len(imputed) > 1:
            std = imputed[:, _CONTINUOUS].std(axis=0, ddof=1)
            self.scale_[columns] = np.where(std < _MIN_STD, 1.0, std)
        return self

    def _encode_cells(self, cells):
        return [self._encode(raw, seen) for raw, seen in self._discretize_all(cells)]

    def _encode(self, raw, seen):
        n_bins = len(raw)
        out = np.zeros((n_bins, len(self.channel_names_)), dtype=np.float32)
        cols = _START[_CONTINUOUS]
        out[:, cols] = (raw[:, _CONTINUOUS] - self.mean_[cols]) / self.scale_[cols]
        hot = _START[_CATEGORICAL] + raw[:, _CATEGORICAL].astype(int)
        out[np.arange(n_bins)[:, None], hot] = 1.0
        if self.mask:
            out[:, N_VALUES:] = seen
        return out

    def _discretize_all(self, rows):
        """Raw imputed series and observed masks of every row, warning once per call."""
        stays, unknown = self._read_stays(rows)
        dropped, series = Counter(), []
        for row, stay in zip(rows, stays):
            raw, seen, row_dropped = self._discretize(*stay, self._where(row))
            dropped.update(row_dropped)
            series.append((raw, seen))
        name = type(self).__name__
        if unknown:
            listed = ", ".join(f"{code!r} ({n})" for code, n in sorted(unknown.items()))
            warnings.warn(
                f"{name}: ignored events of {len(unknown)} unknown variable(s) in column {self._column!r} "
                f"(event counts): {listed}. Known variables: {list(VARIABLES)}.",
                UserWarning,
                stacklevel=5,
            )
        if dropped:
            listed = ", ".join(f"{VARIABLES[v]!r} ({n})" for v, n in sorted(dropped.items()))
            warnings.warn(
                f"{name}: dropped {sum(dropped.values())} implausible value(s) in column {self._column!r}: {listed}.",
                UserWarning,
                stacklevel=5,
            )
        return series

    def _where(self, row):
        return f"row {row.label!r} of column {self._column!r}"

    def _read_stays(self, rows):
        """Every row's ``(hours, variable, numbers, texts)``, and the counts of the frames' unknown codes.

        Frames are read and checked one by one; the event views of each store are gathered
        from it at once (:meth:`_view_stays`).
        """
        stays, unknown, views = [None] * len(rows), Counter(), {}
        for i, row in enumerate(rows):
            if isinstance(row.cell, EventView):
                views.setdefault(id(row.cell.store), []).append(i)
                continue
            hours, codes, numbers, texts = _read_events(row.cell, self._where(row))
            names, position = np.unique(codes.astype(str), return_inverse=True)
            variable = _variable_indices(names)[position]
            unknown.update(codes[variable < 0].tolist())
            stays[i] = (hours, variable, numbers, texts)
        for group in views.values():
            for i, stay in zip(group, self._view_stays([rows[i] for i in group])):
                stays[i] = stay
        return stays, unknown

    def _view_stays(self, rows):
        """The stays of rows whose cells are event views of one store, gathered from it at once.

        A view's stay is the ``max_hours`` hours up to its prediction time: its hours count
        from ``prediction time - max_hours``, in whole microseconds, and its earlier and
        static events are not read. The codes are matched to the variables once per vocabulary.
        """
        name = type(self).__name__
        if self.max_hours is None:
            raise ValueError(
                f"{name}: column {self._column!r} holds MEDS event views, whose records have no admission to "
                "count hours from: set max_hours (48 for in-hospital mortality) to read the max_hours hours up "
                "to each row's prediction time."
            )
        views = [row.cell for row in rows]
        for row, view in zip(rows, views):
            if view.index_time is None:
                raise ValueError(f"{name}: {self._where(row)}: this event view has no prediction time.")
        store = views[0].store
        lengths = np.array([v.length for v in views], dtype=np.int64)
        events = segments(np.array([v.offset for v in views], dtype=np.int64), lengths)
        starts = np.array([v.index_time for v in views], dtype=np.int64) - round(self.max_hours * _US_PER_HOUR)
        starts = np.repeat(starts, lengths)
        times = store.times[events]
        variable = _variable_indices(store.vocabulary)[store.codes[events]]
        keep = np.flatnonzero((times >= starts) & (variable >= 0))
        if len(views) and not len(keep):
            warnings.warn(
                f"{name}: none of the events of the {len(views)} MEDS event view(s) of column {self._column!r} "
                f"in their last {self.max_hours:g} hours is one of the variables {list(VARIABLES)} (codes are "
                "matched by name): every series is the variables' normal values.",
                UserWarning,
                stacklevel=7,
            )
        hours = (times[keep] - starts[keep]) / _US_PER_HOUR
        numbers = store.values[events[keep]].astype(float)
        texts = np.full(len(keep), None, dtype=object) if store.text is None else store.text[events[keep]]
        bounds = np.r_[0, np.cumsum(np.bincount(np.repeat(np.arange(len(views)), lengths)[keep], minlength=len(views)))]
        return [
            (hours[a:b], variable[keep[a:b]], numbers[a:b], texts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])
        ]

    def _discretize(self, hours, variable, numbers, texts, where):
        """One stay's ``(t, 17)`` raw matrix (values or category indices, imputed), mask and dropped counts.

        ``variable`` is each event's variable index, -1 for an unknown code.
        """
        end_cap = np.inf if self.max_hours is None else self.max_hours
        keep = (variable >= 0) & (hours <= end_cap + _EPS)
        hours, variable, numbers, texts = hours[keep], variable[keep], numbers[keep], texts[keep]
        values, bad = self._parse_values(variable, numbers, texts)
        dropped = Counter()
        if bad.any():
            if self.implausible == "raise":
                k = np.flatnonzero(bad)[0]
                raise ValueError(self._implausible_message(where, variable[k], numbers[k], texts[k], hours[k]))
            dropped.update(variable[bad].tolist())
        usable = ~np.isnan(values)
        # As the benchmark's transform(X, end=48) for in-hospital mortality: a capped series
        # always reaches the cap, a shorter stay is padded (carried forward, mask 0).
        end = self.max_hours if self.max_hours is not None else (hours[usable].max() if usable.any() else 0.0)
        return (*self._bin(hours[usable], variable[usable], values[usable], end), dropped)

    @staticmethod
    def _parse_values(variable, numbers, texts):
        """Per-event value (or category index), NaN without a value; and the implausible flags."""
        values = np.full(len(variable), np.nan)
        bad = np.zeros(len(variable), dtype=bool)
        has_text = np.array([t is not None for t in texts], dtype=bool)
        continuous = ~_IS_CATEGORICAL[variable]
        values[continuous] = numbers[continuous]
        bad[continuous] = (numbers[continuous] < _LOW[variable[continuous]]) | (
            numbers[continuous] > _HIGH[variable[continuous]]
        )
        bad |= continuous & np.isnan(numbers) & has_text
        for k in np.flatnonzero(~continuous & (has_text | ~np.isnan(numbers))):
            number = None if np.isnan(numbers[k]) else numbers[k]
            index = _category_index(VARIABLES[variable[k]], texts[k], number)
            bad[k] = index is None
            values[k] = np.nan if index is None else index
        values[bad] = np.nan
        return values, bad

    def _implausible_message(self, where, v, number, text, hour):
        variable = VARIABLES[v]
        shown = text if text is not None else float(number)
        if variable in CATEGORIES:
            expected = (
                f"one of its categories {list(CATEGORIES[variable])} or a numeric code "
                f"{min(NUMERIC_CODES[variable])}-{max(NUMERIC_CODES[variable])}"
            )
        else:
            low, high, unit = PLAUSIBLE_RANGES[variable]
            expected = f"a numeric_value from {low:g} to {high:g} {unit}".rstrip()
        return (
            f"{type(self).__name__}: {where}: {variable!r} value {shown!r} at {hour:g} h is implausible "
            f"(expected {expected}); pass implausible='drop' to drop such values."
        )

    def _bin(self, hours, variable, values, end):
        n_bins = max(int(np.floor(end / self.timestep - _EPS)) + 1, 1)
        bins = np.maximum(np.floor(hours / self.timestep - _EPS), 0).astype(int)
        flat = bins * _N_VARIABLES + variable
        # Events are sorted by time: the last occurrence of a (bin, variable) pair wins.
        _, first_from_end = np.unique(flat[::-1], return_index=True)
        last = len(flat) - 1 - first_from_end
        raw = np.full((n_bins, _N_VARIABLES), np.nan)
        raw.flat[flat[last]] = values[last]
        seen = ~np.isnan(raw)
        source = np.maximum.accumulate(np.where(seen, np.arange(n_bins)[:, None], 0), axis=0)
        raw = raw[source, np.arange(_N_VARIABLES)]
        raw = np.where(np.isnan(raw), _NORMAL_RAW, raw)
        return raw, seen


def events_from_long_table(
    table,
    *,
    id_column,
    time_column="time",
    code_column="code",
    value_column="value",
    events="ts",
    birth_column=None,
    birth_code=MEDS_BIRTH_CODE,
):
    """Turn a long table (one row per measurement) into one event frame per stay.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per measurement, with a stay/patient id, a time, a variable name and a
        value. The value column may mix numbers and strings (as the benchmark's per-stay CSV
        files do once melted): values that parse as numbers go to ``numeric_value``, the
        other strings (categorical values such as ``"4 Spontaneously"``) to ``text_value``.
    id_column : str
        Column identifying the stay; one output row per distinct id, in order of first
        appearance.
    time_column, code_column, value_column : str, default="time", "code", "value"
        Columns holding the time, the variable name and the value.
    events : str, default="ts"
        Name of the output event column.
    birth_column : str, default=None
        Column holding each id's time of birth, on the scale of ``time_column`` (a datetime
        for datetime times; for times in days since admission, minus the age at admission
        in days). Each id whose birth is known (the same value in all its rows that have
        one) gets a first event ``birth_code`` at that time, from which
        :class:`~skfusion.encoders.CLMBREmbedder` counts ages; an id without one gets
        none. For :class:`ClinicalTimeSeriesDiscretizer`, which reads only its 17
        variables and warns about any other code, leave it None.
    birth_code : str, default="SNOMED/184099003"
        Code of the birth events: MEDS 0.1.3's, the one
        :class:`~skfusion.encoders.CLMBREmbedder` looks for.

    Returns
    -------
    events : pandas.DataFrame
        Indexed by the ids (index name ``id_column``), one object column ``events`` holding
        each stay's frame with columns ``time``, ``code``, ``numeric_value``, ``text_value``
        (the birth event first, with neither value), as read by
        :class:`ClinicalTimeSeriesDiscretizer` and :class:`~skfusion.encoders.CLMBREmbedder`.

    Raises
    ------
    ValueError
        If a column is absent, an id or a time is missing, an id has two birth times, or
        a birth comes after the id's first event (a birth column not on the time scale,
        such as an age).

    Examples
    --------
    >>> import pandas as pd
    >>> from skfusion.encoders.timeseries import events_from_long_table
    >>> long = pd.DataFrame({
    ...     "stay": [7, 7, 9],
    ...     "time": [0.5, 1.0, 2.0],
    ...     "code": ["Heart Rate", "Glascow coma scale eye opening", "pH"],
    ...     "value": [88, "3 To speech", 7.31],
    ... })
    >>> events = events_from_long_table(long, id_column="stay")
    >>> events.index.tolist(), events["ts"][7]["text_value"].tolist()
    ([7, 9], [None, '3 To speech'])

    With each patient's birth (here in days, as the times):

    >>> long["birth"] = [-20000.0, -20000.0, -25000.0]
    >>> events = events_from_long_table(long, id_column="stay", events="ehr", birth_column="birth")
    >>> events["ehr"][9][["time", "code"]]
          time              code
    0 -25000.0  SNOMED/184099003
    1      2.0                pH
    """
    needed = [id_column, time_column, code_column, value_column] + ([birth_column] if birth_column is not None else [])
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"events_from_long_table: table lacks column(s) {missing}; it has {list(table.columns)}.")
    for name in (id_column, time_column):
        if table[name].isna().any():
            rows = table.index[table[name].isna()].tolist()[:10]
            raise ValueError(f"events_from_long_table: column {name!r} is missing in row(s) {rows}.")
    ids = table[id_column]
    raw = table[value_column].to_numpy(dtype=object)
    numbers = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    texts = np.full(len(raw), None, dtype=object)
    is_text = np.isnan(numbers) & ~pd.isna(raw)
    texts[is_text] = [str(t) for t in raw[is_text]]
    measurements = pd.DataFrame(
        {
            "time": table[time_column].to_numpy(),
            "code": table[code_column].to_numpy(dtype=object),
            "numeric_value": numbers,
            "text_value": pd.Series(texts, dtype=object),
        }
    )
    ids = ids.to_numpy()
    if birth_column is not None:
        measurements, ids = _with_births(measurements, ids, table[birth_column].to_numpy(), birth_column, birth_code)
    groups = measurements.groupby(ids, sort=False)
    cells = np.empty(groups.ngroups, dtype=object)
    labels = []
    for i, (label, frame) in enumerate(groups):
        cells[i] = frame.reset_index(drop=True)
        labels.append(label)
    return pd.DataFrame({events: cells}, index=pd.Index(labels, name=id_column))


def _with_births(events, ids, births, birth_column, birth_code):
    """``events`` and ``ids`` with a ``birth_code`` event first in each id whose birth is known.

    The ids keep their order of first appearance, and their events the table's order.
    """
    index, labels = pd.factorize(ids)
    names = labels.tolist()  # plain Python labels for the messages
    known = pd.DataFrame({"id": index, "birth": births})[~pd.isna(births)].drop_duplicates()
    several = known[known["id"].duplicated(keep=False)]
    if len(several):
        first_id = several["id"].iloc[0]
        raise ValueError(
            f"events_from_long_table: id {names[first_id]!r} has several values in column {birth_column!r} "
            f"({several.loc[several['id'] == first_id, 'birth'].tolist()[:3]}); an id has one time of birth."
        )
    known = known.set_index("id")["birth"]
    first_event = events["time"].groupby(index).min().loc[known.index]
    try:
        late = known.to_numpy() > first_event.to_numpy()
    except TypeError as exc:
        raise ValueError(
            f"events_from_long_table: column {birth_column!r} ({known.dtype}) cannot be compared with the times "
            f"({events['time'].dtype}); give the births on the time column's scale (datetimes for datetime times)."
        ) from exc
    if late.any():
        k = np.flatnonzero(late)[0]
        raise ValueError(
            f"events_from_long_table: id {names[known.index[k]]!r} is born at {known.iloc[k]} (column "
            f"{birth_column!r}), after its first event at {first_event.iloc[k]}: give times of birth on the "
            "time column's scale, not ages."
        )
    birth_events = pd.DataFrame(
        {
            "time": known.to_numpy(),
            "code": np.full(len(known), birth_code, dtype=object),
            "numeric_value": np.nan,
            "text_value": pd.Series([None] * len(known), dtype=object),
        }
    )
    combined = pd.concat([birth_events, events], ignore_index=True)
    id_index = np.concatenate([known.index.to_numpy(), index])
    # A stable sort by id (order of first appearance), each birth before its id's events.
    order = np.lexsort((np.r_[np.zeros(len(known)), np.ones(len(index))], id_index))
    return combined.iloc[order].reset_index(drop=True), labels[id_index[order]]
