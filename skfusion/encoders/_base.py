"""The template every encoder follows: read one raw column, write a modality block.

An encoder reads the cells of one raw column (paths, arrays, event frames), turns each into
a fixed-length vector (written as ``"{output}__{i}"`` float columns) or into a variable-length
token sequence (written as one object column ``"{output}"`` holding a ``(T_i, d)`` array per
row), and passes every other column through unchanged, so encoders chain in a ``Pipeline``.
A missing cell (``None``, NaN or ``pd.NA``) gives a row of NaN (or ``None`` tokens): the fusion models
read that as "this modality is missing for this row".

A polars DataFrame is read as the pandas frame :func:`as_pandas_frame` makes of it, and
``set_output(transform="polars")`` returns :func:`to_polars_frame` of the pandas output:
numeric blocks as float columns, token columns and other cells polars cannot hold natively
(arrays, event frames) as ``pl.Object`` columns, so that a round trip gives back the same cells.
"""

import io

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.utils import get_map_location

from .._compat import _fit_context, _get_output_config
from .._images import is_missing_cell


def is_polars_frame(X):
    """Whether ``X`` is a polars DataFrame (without importing polars)."""
    return type(X).__module__.split(".")[0] == "polars" and type(X).__name__ == "DataFrame"


def _innermost(dtype):
    import polars as pl

    while isinstance(dtype, (pl.List, pl.Array)):
        dtype = dtype.inner
    return dtype


def _polars_cells(series):
    """The cells of a polars column as the pandas-style objects the encoders read.

    Nested numbers (``List``/``Array``, any depth) become ndarrays of their dtype; a list of
    structs (polars' per-row table) becomes a pandas DataFrame with the struct's fields as
    columns; a polars DataFrame in an ``Object`` column becomes a pandas one; a null is None.
    """
    import polars as pl

    inner = _innermost(series.dtype)
    if series.dtype == pl.Object:
        cells = series.to_list()
        return [c.to_pandas() if is_polars_frame(c) else c for c in cells]
    if isinstance(inner, pl.Struct) and isinstance(series.dtype, pl.List) and series.dtype.inner == inner:
        fields = [f.name for f in inner.fields]
        return [None if c is None else pd.DataFrame(c, columns=fields) for c in series.to_list()]
    if inner.is_numeric():
        dtype = pl.Series([], dtype=inner).to_numpy().dtype
        return [None if c is None else np.asarray(c, dtype=dtype) for c in series.to_list()]
    return series.to_list()


def as_pandas_frame(X):
    """A polars DataFrame as a pandas one (flat columns as pandas dtypes, nested cells as objects)."""
    import polars as pl

    columns = {}
    for name in X.columns:
        series = X[name]
        if series.dtype == pl.Object or isinstance(series.dtype, (pl.List, pl.Array)):
            columns[name] = pd.Series(_polars_cells(series), dtype=object)
        else:
            columns[name] = series.to_pandas()
    return pd.DataFrame(columns)


def to_polars_frame(frame):
    """A pandas DataFrame as a polars one; object columns of anything but text become ``pl.Object``."""
    import polars as pl

    columns = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            columns.append(pl.from_pandas(column).rename(str(name)))
            continue
        cells = [None if is_missing_cell(c) else c for c in column]
        text = all(c is None or isinstance(c, str) for c in cells)
        columns.append(pl.Series(str(name), cells, dtype=pl.String if text else pl.Object))
    return pl.DataFrame(columns)


class BaseColumnEncoder(TransformerMixin, BaseEstimator):
    """Base class of the encoders: one raw column in, one modality block out.

    Subclasses name the constructor parameter that picks the raw column by the role the
    column plays (``events`` for event frames, ``image`` for images) in ``_column_parameter``,
    take ``output`` as a constructor parameter (``output=None`` means "same name as the
    column") and implement:

    - ``_fit_cells(cells, y)``: learn from the non-missing cells (optional; default no-op),
    - ``_encode_cells(cells)``: return an ``(n, d)`` float array for vector outputs, or a
      list of ``(T_i, d)`` arrays for token outputs, for a list of non-missing cells,
    - ``_returns_tokens()``: whether the output is a token column (default False),
    - ``_embedding_dim()``: ``d`` after fit.
    """

    #: The constructor parameter holding the name of the raw column read (set by each encoder).
    _column_parameter = None

    @property
    def _column(self):
        return getattr(self, self._column_parameter)

    def _fit_cells(self, cells, y):
        return self

    def _returns_tokens(self):
        return False

    def _output_name(self):
        return self._column if self.output is None else self.output

    def _check_frame(self, X, reset):
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                f"{type(self).__name__} needs a pandas DataFrame (or a polars one) with a raw column "
                f"{self._column!r}; got {type(X).__name__}."
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if self._column not in X.columns:
            raise ValueError(
                f"{type(self).__name__}: column {self._column!r} is not in X "
                f"(columns: {list(X.columns)[:10]}{' ...' if X.shape[1] > 10 else ''})."
            )
        return X[self._column].tolist()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn what the encoder needs from the raw column of ``X`` that the encoder reads.

        Parameters
        ----------
        X : pandas.DataFrame or polars.DataFrame
            Frame holding the raw column; other columns are ignored here.
        y : array-like, default=None
            Ignored by unsupervised encoders.

        Returns
        -------
        self : object
        """
        X = as_pandas_frame(X) if is_polars_frame(X) else X
        cells = self._check_frame(X, reset=True)
        present = [c for c in cells if not is_missing_cell(c)]
        if not present:
            raise ValueError(f"{type(self).__name__}: column {self._column!r} has no non-missing cell.")
        self._fit_cells(present, y)
        return self

    def transform(self, X):
        """Replace the raw column by its encoding, passing every other column through.

        Parameters
        ----------
        X : pandas.DataFrame or polars.DataFrame

        Returns
        -------
        Xt : pandas.DataFrame or polars.DataFrame
            ``X`` without the raw column read, plus the ``"{output}__{i}"`` float columns (or the
            ``"{output}"`` token column) appended at the end, same index. A polars frame
            with ``set_output(transform="polars")``.
        """
        check_is_fitted(self)
        X = as_pandas_frame(X) if is_polars_frame(X) else X
        cells = self._check_frame(X, reset=False)
        rows = [i for i, c in enumerate(cells) if not is_missing_cell(c)]
        encoded = self._encode_cells([cells[i] for i in rows]) if rows else None
        rest = X.drop(columns=[self._column])
        name = self._output_name()
        if self._returns_tokens():
            tokens = np.full(len(cells), None, dtype=object)
            for i, arr in zip(rows, encoded or []):
                tokens[i] = np.asarray(arr, dtype=np.float32)
            block = pd.DataFrame({name: tokens}, index=X.index)
        else:
            values = np.full((len(cells), self._embedding_dim()), np.nan, dtype=np.float32)
            if rows:
                values[rows] = encoded
            block = pd.DataFrame(values, index=X.index, columns=self._block_columns())
        out = pd.concat([rest, block], axis=1)
        # scikit-learn's own polars conversion goes through pyarrow, which cannot hold
        # arrays or frames in a cell; the wrapper keeps a polars frame as it is.
        return to_polars_frame(out) if _get_output_config("transform", self)["dense"] == "polars" else out

    def _block_columns(self):
        name = self._output_name()
        return [f"{name}__{i}" for i in range(self._embedding_dim())]

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the passed-through columns, then the new block.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Unused: the names are those seen in ``fit`` (scikit-learn's signature).

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self)
        passthrough = [c for c in self.feature_names_in_ if c != self._column]
        new = [self._output_name()] if self._returns_tokens() else self._block_columns()
        return np.asarray(passthrough + new, dtype=object)

    def __getstate__(self):
        # A network pickled as an attribute keeps its device: one fitted on CUDA would not
        # load on a machine without it. The networks go together (so that the ones sharing
        # modules still share them) into bytes that __setstate__ loads onto a device present.
        state = self.__dict__.copy()
        networks = {key: value for key, value in state.items() if isinstance(value, torch.nn.Module)}
        if networks:
            buffer = io.BytesIO()
            torch.save(networks, buffer)
            state = {key: value for key, value in state.items() if key not in networks}
            state["_networks_on_device"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        networks = state.pop("_networks_on_device", None)
        if networks is not None:
            # The fitted device (device_, else the skorch net's), or the CPU with skorch's
            # DeviceWarning where CUDA is not available.
            fitted = state["device_"] if "device_" in state else getattr(state.get("net_"), "device", None)
            location = get_map_location(fitted)
            state.update(torch.load(io.BytesIO(networks), map_location=location, weights_only=False))
            if "device_" in state:
                state["device_"] = type(state["device_"])(location)
        self.__dict__.update(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        # The blocks are float32 (token cells float32 arrays) whatever the input: no dtype passes through.
        tags.transformer_tags.preserves_dtype = []
        return tags

