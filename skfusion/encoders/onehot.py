"""Curated one-hot EHR features: code presence in look-back windows and binned values.

Zhang et al. (2026, section 2.1) contrast the CLMBR embedding with "a manually curated 1-hot
encoding, where task-specific features - including demographics, laboratory results,
medications, diagnoses, and procedure codes - are selected and binarized into 1-hot
vectors". :class:`OneHotEHREncoder` builds that table from the same per-patient event frames
the CLMBR encoder reads.

Time is counted in days throughout the EHR encoders: numeric event times are days, datetime
event times are converted to days, and look-back windows are days or timedeltas.
"""

from numbers import Integral, Real

import numpy as np
import pandas as pd

from .._compat import Interval
from ._base import BaseColumnEncoder
from ._events import EventColumnMixin, runs


def _window_days(window):
    if window is None:
        return np.inf
    if isinstance(window, (pd.Timedelta, np.timedelta64)) or hasattr(window, "total_seconds"):
        return pd.Timedelta(window) / pd.Timedelta(days=1)
    return float(window)


def _window_name(days):
    return "all" if np.isinf(days) else f"{days:g}d"


def _bin_names(edges, quantile):
    if quantile:
        return [f"q{i + 1}" for i in range(len(edges) + 1)]
    cuts = [f"{e:g}" for e in edges]
    inner = [f"[{a},{b})" for a, b in zip(cuts, cuts[1:])]
    return [f"<{cuts[0]}", *inner, f">={cuts[-1]}"]


class OneHotEHREncoder(EventColumnMixin, BaseColumnEncoder):
    """Binary features from event frames: code presence per window and binned last values.

    For every selected code and every look-back window ending at the prediction time, one
    column says whether the code occurred in the window; for codes with numeric values, the
    most recent value in the window is also one-hot encoded into bins (quantiles of the
    training values, or the clinical thresholds you give). A window ``w`` holds the events
    at times ``t`` with ``prediction - w < t <= prediction``.

    Parameters
    ----------
    events : str, default="ehr"
        Raw column of per-patient event frames (``time``, ``code``, optional
        ``numeric_value``; a plain list of codes is read as events at times 0, 1, 2, ...).
    output : str, default=None
        Prefix of the output columns; None means ``events``.
    codes : list of str, default=None
        The codes to encode, in this order. None selects, in sorted order, every code seen
        in at least ``min_frequency`` of the training patients and every code of
        ``thresholds``.
    windows : list of {float, timedelta, None}, default=None
        Look-back windows: days (numbers) or timedeltas, None for the whole history. None
        means ``[None]``.
    thresholds : dict of str to list of float, default=None
        Clinical cut points per code (e.g. ``{"LOINC/1975-2": [1.2, 2.0]}``); the bins are
        ``<1.2``, ``[1.2,2)``, ``>=2``. Codes with values but no thresholds get ``n_bins``
        quantile bins learned in ``fit``.
    n_bins : int, default=4
        Number of quantile bins for the values of a code (fewer when values repeat); 1 keeps
        only the presence column.
    min_frequency : int or float, default=0.01
        For automatic selection: the least number (int) or fraction (float) of training
        patients with the code.
    index_time : str, default=None
        Column of ``X`` with each row's index time (days or datetimes; the prediction time of
        a MEDS label): later events are
        dropped and windows end there. None takes each row's last event as its prediction time.

    Attributes
    ----------
    codes_ : list of str
        The encoded codes.
    bin_edges_ : dict of str to ndarray
        Inner bin edges of the codes with value bins.
    windows_ : ndarray of float
        The windows in days (``inf`` for the whole history).
    feature_names_ : list of str
        ``"{code}@{window}"`` and ``"{code}@{window}:{bin}"``, e.g. ``LOINC/1975-2@365d:q3``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    CLMBREmbedder : the foundation-model embedding of the same event frames.

    References
    ----------
    .. [1] Z. Zhang, W. Chen, D. Le et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038, section 2.1.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfusion.encoders.onehot import OneHotEHREncoder
    >>> ehr = [pd.DataFrame({"time": [0, 200, 400], "code": ["Dx/A", "Lab/B", "Lab/B"],
    ...                      "numeric_value": [None, 1.0, 3.0]}),
    ...        pd.DataFrame({"time": [10], "code": ["Lab/B"], "numeric_value": [0.5]})]
    >>> X = pd.DataFrame({"ehr": ehr})
    >>> enc = OneHotEHREncoder(windows=[365, None], thresholds={"Lab/B": [2.0]}).fit(X)
    >>> row = enc.transform(X).iloc[0]
    >>> row[row == 1].index.tolist()
    ['ehr__Dx/A@all', 'ehr__Lab/B@365d', 'ehr__Lab/B@365d:>=2', 'ehr__Lab/B@all', 'ehr__Lab/B@all:>=2']
    """

    _parameter_constraints = {
        "events": [str],
        "output": [str, None],
        "codes": [list, None],
        "windows": [list, None],
        "thresholds": [dict, None],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "min_frequency": [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="both")],
        "index_time": [str, None],
    }

    def __init__(
        self,
        events="ehr",
        output=None,
        *,
        codes=None,
        windows=None,
        thresholds=None,
        n_bins=4,
        min_frequency=0.01,
        index_time=None,
    ):
        self.events = events
        self.output = output
        self.codes = codes
        self.windows = windows
        self.thresholds = thresholds
        self.n_bins = n_bins
        self.min_frequency = min_frequency
        self.index_time = index_time

    def _fit_cells(self, cells, y):
        windows = [None] if self.windows is None else self.windows
        self.windows_ = np.array([self._check_window(w) for w in windows])
        thresholds = self._check_thresholds()
        batch = self._read_batch(cells)
        if self.codes is not None:
            self.codes_ = [str(code) for code in self.codes]
        else:
            self.codes_ = sorted(set(self._frequent_codes(batch)) | set(thresholds))
        values = batch.values_by_code()
        self.bin_edges_ = {}
        for code in self.codes_:
            if code in thresholds:
                self.bin_edges_[code] = thresholds[code]
            elif self.n_bins > 1 and len(values.get(code, ())):
                edges = np.unique(np.quantile(values[code], np.arange(1, self.n_bins) / self.n_bins))
                if len(edges):
                    self.bin_edges_[code] = edges
        self.feature_names_ = self._feature_names(thresholds)
        return self

    def _check_window(self, window):
        days = _window_days(window)
        if not days > 0:
            raise ValueError(f"OneHotEHREncoder: window {window!r} must be positive (or None for all history).")
        return days

    def _check_thresholds(self):
        checked = {}
        for code, cuts in (self.thresholds or {}).items():
            cuts = np.asarray(cuts, dtype=float)
            if cuts.ndim != 1 or not len(cuts) or np.any(np.diff(cuts) <= 0) or not np.all(np.isfinite(cuts)):
                raise ValueError(
                    f"OneHotEHREncoder: thresholds for code {code!r} must be increasing finite numbers; got {cuts}."
                )
            checked[str(code)] = cuts
        return checked

    def _frequent_codes(self, batch):
        """The codes of at least ``min_frequency`` (number or share of) the batch's patients."""
        n_codes = len(batch.vocabulary)
        patients = np.bincount(np.unique(batch.rows * n_codes + batch.codes) % n_codes, minlength=n_codes)
        n_rows = len(batch.where)
        least = self.min_frequency if isinstance(self.min_frequency, Integral) else self.min_frequency * n_rows
        return list(batch.vocabulary[(patients >= least) & (patients > 0)])

    def _feature_names(self, thresholds):
        names = []
        for code in self.codes_:
            for days in self.windows_:
                window = f"{code}@{_window_name(days)}"
                names.append(window)
                if code in self.bin_edges_:
                    bins = _bin_names(self.bin_edges_[code], quantile=code not in thresholds)
                    names.extend(f"{window}:{b}" for b in bins)
        return names

    def _embedding_dim(self):
        return len(self.feature_names_)

    def _block_columns(self):
        return [f"{self._output_name()}__{name}" for name in self.feature_names_]

    def _encode_cells(self, cells):
        batch = self._read_batch(cells)
        out = np.zeros((len(cells), self._embedding_dim()), dtype=np.float32)
        starts, n_bins = self._layout()
        index = {code: k for k, code in enumerate(self.codes_)}
        columns = np.array([index.get(code, -1) for code in batch.vocabulary], dtype=np.int64)
        # Events are in time order, so those inside a window ending at the prediction time
        # are each row's last ones: a code is present in a window when its last event is,
        # and the last value inside (if any) is the code's last value.
        rows, codes, positions = batch.last(columns)
        self._set(out, batch, rows, positions, starts[codes], n_bins[codes], 0)
        binned = np.where(columns >= 0, n_bins[np.maximum(columns, 0)] > 0, False)
        rows, codes, positions = batch.last(np.where(binned, columns, -1), ~np.isnan(batch.values))
        bins = np.empty(len(rows), dtype=np.int64)
        _, bounds = runs(codes)  # ``last`` orders by code: one run per code
        for a, b in zip(bounds[:-1], bounds[1:]):
            edges = self.bin_edges_[self.codes_[codes[a]]]
            bins[a:b] = np.searchsorted(edges, batch.values[positions[a:b]], side="right")
        self._set(out, batch, rows, positions, starts[codes], n_bins[codes], 1 + bins)
        return out

    def _set(self, out, batch, rows, positions, starts, n_bins, shift):
        """Set, in each window holding the event at ``positions``, the column ``shift`` of its code's group."""
        inside = batch.days[positions, None] > batch.prediction[rows, None] - self.windows_
        columns = starts[:, None] + np.arange(len(self.windows_)) * (1 + n_bins[:, None]) + np.asarray(shift)[..., None]
        out[np.broadcast_to(rows[:, None], inside.shape)[inside], columns[inside]] = 1.0

    def _layout(self):
        """Per code: its first column and its number of value bins; each window's group spans ``1 + bins`` columns."""
        n_bins = np.array(
            [len(self.bin_edges_[code]) + 1 if code in self.bin_edges_ else 0 for code in self.codes_], dtype=np.int64
        )
        widths = len(self.windows_) * (1 + n_bins)
        return np.cumsum(widths) - widths, n_bins
