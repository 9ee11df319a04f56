"""One cohort's events in shared columns, and light views into them (one per row of ``X``).

:func:`skfusion.datasets.load_meds` reads a MEDS dataset into one :class:`EventStore` and
gives every label row an :class:`EventView`: the subject's events up to the row's
prediction time, as ``(store, offset, length)``. The store sits on the encoders' floor so
that the event readers (``_events.py``) recognise a view without importing the data sets.
"""

import numpy as np
import pandas as pd

# The int64 that numpy reads as NaT in datetime64: static events (no time) sort first.
NO_TIME = np.iinfo(np.int64).min


class EventStore:
    """A cohort's events in columns, grouped by subject, each subject's events sorted by time.

    Parameters
    ----------
    vocabulary : ndarray of str
        The distinct codes; ``codes`` index into it.
    codes : ndarray of int
        Each event's code, as a position in ``vocabulary``.
    times : ndarray of int64
        Each event's time in microseconds since 1970-01-01 (MEDS's ``timestamp[us]``);
        ``NO_TIME`` (numpy's NaT) for a static event, which sorts before every timed one.
    values : ndarray of float32
        ``numeric_value``, NaN where the event has none.
    text : ndarray of object or None
        ``text_value`` (None where the event has none), or None when the data has no text.
    parents : dict or None, default=None
        The codes' ontology: ``{code: tuple of parent codes}`` (the ``parent_codes`` of the
        dataset's ``metadata/codes.parquet``), None when the data has none.

    The arrays are made read-only: views and their copies share them.
    """

    def __init__(self, vocabulary, codes, times, values, text=None, parents=None):
        self.vocabulary = _frozen(np.asarray(vocabulary, dtype=object))
        self.codes = _frozen(np.asarray(codes))
        self.times = _frozen(np.asarray(times, dtype=np.int64))
        self.values = _frozen(np.asarray(values, dtype=np.float32))
        self.text = None if text is None else _frozen(np.asarray(text, dtype=object))
        self.parents = parents

    def __reduce__(self):
        return type(self), (self.vocabulary, self.codes, self.times, self.values, self.text, self.parents)

    def __len__(self):
        return len(self.codes)


def _frozen(array):
    array.setflags(write=False)
    return array


class EventView:
    """One row's events: ``length`` events of ``store`` from ``offset`` on, up to ``index_time``.

    Parameters
    ----------
    store : EventStore
        The cohort's shared columns.
    offset, length : int
        Where the row's events start in the store, and how many there are.
    index_time : int or None, default=None
        The row's prediction time in microseconds since 1970-01-01 (every event of the
        view is at or before it); None when not known.
    end : int or None, default=None
        Where the subject's events end in the store (the view starts at the subject's first
        event): the events after the prediction time lie in ``[offset + length, end)``. Only
        :class:`~skfusion.ssl.TimeToEventPretraining` reads them, as its training targets
        (:meth:`subject_events`); the encoders never do. None when not known.

    Notes
    -----
    A view holds no events of its own. Pickling keeps one store per pickle (pickle keeps
    one copy of an object referenced many times), and ``copy.copy`` and ``copy.deepcopy``
    share the store, which is read-only.
    """

    __slots__ = ("store", "offset", "length", "index_time", "end")

    def __init__(self, store, offset, length, index_time=None, end=None):
        self.store = store
        self.offset = int(offset)
        self.length = int(length)
        self.index_time = None if index_time is None else int(index_time)
        self.end = None if end is None else int(end)

    def __reduce__(self):
        return type(self), (self.store, self.offset, self.length, self.index_time, self.end)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __len__(self):
        return self.length

    def _slice(self):
        return slice(self.offset, self.offset + self.length)

    def __eq__(self, other):
        if not isinstance(other, EventView):
            return NotImplemented
        if self.length != other.length or self.index_time != other.index_time:
            return False
        a, b = self._slice(), other._slice()
        s, t = self.store, other.store
        same = (
            np.array_equal(s.vocabulary[s.codes[a]], t.vocabulary[t.codes[b]])
            and np.array_equal(s.times[a], t.times[b])
            and np.array_equal(s.values[a], t.values[b], equal_nan=True)
        )
        return same and (
            (s.text is None and t.text is None)
            or (s.text is not None and t.text is not None and list(s.text[a]) == list(t.text[b]))
        )

    __hash__ = None

    def __repr__(self):
        return f"EventView({self.length} events)"

    def to_frame(self):
        """The events as a MEDS-style frame.

        Returns
        -------
        events : pandas.DataFrame
            Columns ``time`` (``datetime64[us]``, NaT for a static event), ``code`` (str),
            ``numeric_value`` (float32, NaN where absent) and, when the data has text,
            ``text_value`` (None where absent). Static events come first, then by time.
        """
        return self._frame(self.store.times[self._slice()].view("datetime64[us]"))

    def _frame(self, times):
        rows, store = self._slice(), self.store
        frame = pd.DataFrame(
            {"time": times, "code": store.vocabulary[store.codes[rows]], "numeric_value": store.values[rows].copy()}
        )
        if store.text is not None:
            frame["text_value"] = pd.Series(store.text[rows], dtype=object)  # None, not pandas's NaN
        return frame

    def subject_events(self):
        """All the subject's events, those after the prediction time included: ``(times, codes)``.

        ``times`` are int64 microseconds (``NO_TIME`` for a static event, first), ``codes``
        positions in ``store.vocabulary``, sorted by time: read-only views of the store. The
        targets of time-to-event pretraining are the events that follow a scan; no encoder
        reads them.

        Raises
        ------
        ValueError
            If the view does not know where its subject's events end (``end`` is None).
        """
        if self.end is None:
            raise ValueError("this EventView does not know its subject's later events (made without end=).")
        rows = slice(self.offset, self.end)
        return self.store.times[rows], self.store.codes[rows]

    def to_event_frame(self):
        """The events as the EHR encoders read them: :meth:`to_frame` with every event timed.

        The encoders place every event in time, so a static event (NaT) is dated at the
        view's first timed event, or at its prediction time when it has none (else at
        1970-01-01): it is known from the start of the record, and stays at or before
        the prediction time. The encoders gather a column of views from the store at
        once, with these times; the frame gives the same features.

        Returns
        -------
        events : pandas.DataFrame
        """
        times = self.store.times[self._slice()].copy()
        static = times == NO_TIME
        if static.any():
            timed = times[~static]
            times[static] = timed[0] if len(timed) else (self.index_time or 0)
        return self._frame(times.view("datetime64[us]"))
