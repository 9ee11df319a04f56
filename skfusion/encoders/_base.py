"""The template every encoder follows: read one raw column, write a modality block.

An encoder reads the cells of one raw column (paths, arrays, event frames), turns each into
a fixed-length vector (written as ``"{output}__{i}"`` float columns) or into a variable-length
token sequence (written as one object column ``"{output}"`` holding a ``(T_i, d)`` array per
row), and passes every other column through unchanged, so encoders chain in a ``Pipeline``.
A missing cell (``None`` or NaN) gives a row of NaN (or ``None`` tokens): the fusion models
read that as "this modality is missing for this row".
"""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._compat import _fit_context


def is_missing_cell(cell):
    """Whether a raw cell stands for a missing modality (``None`` or a float NaN)."""
    return cell is None or (isinstance(cell, float) and np.isnan(cell))


class BaseColumnEncoder(TransformerMixin, BaseEstimator):
    """Base class of the encoders: one raw column in, one modality block out.

    Subclasses set ``column`` and ``output`` as constructor parameters (``output=None``
    means "same name as the column") and implement:

    - ``_fit_cells(cells, y)``: learn from the non-missing cells (optional; default no-op),
    - ``_encode_cells(cells)``: return an ``(n, d)`` float array for vector outputs, or a
      list of ``(T_i, d)`` arrays for token outputs, for a list of non-missing cells,
    - ``_returns_tokens()``: whether the output is a token column (default False),
    - ``_embedding_dim()``: ``d`` after fit.
    """

    def _fit_cells(self, cells, y):
        return self

    def _returns_tokens(self):
        return False

    def _output_name(self):
        return self.column if self.output is None else self.output

    def _check_frame(self, X, reset):
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                f"{type(self).__name__} needs a pandas DataFrame with a raw column "
                f"{self.column!r}; got {type(X).__name__}."
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if self.column not in X.columns:
            raise ValueError(
                f"{type(self).__name__}: column {self.column!r} is not in X "
                f"(columns: {list(X.columns)[:10]}{' ...' if X.shape[1] > 10 else ''})."
            )
        return X[self.column].tolist()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn what the encoder needs from the raw column ``column`` of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            Frame holding the raw column; other columns are ignored here.
        y : array-like, default=None
            Ignored by unsupervised encoders.

        Returns
        -------
        self : object
        """
        cells = self._check_frame(X, reset=True)
        present = [c for c in cells if not is_missing_cell(c)]
        if not present:
            raise ValueError(f"{type(self).__name__}: column {self.column!r} has no non-missing cell.")
        self._fit_cells(present, y)
        return self

    def transform(self, X):
        """Replace the raw column by its encoding, passing every other column through.

        Parameters
        ----------
        X : pandas.DataFrame

        Returns
        -------
        Xt : pandas.DataFrame
            ``X`` without ``column``, plus the ``"{output}__{i}"`` float columns (or the
            ``"{output}"`` token column) appended at the end, same index.
        """
        check_is_fitted(self)
        cells = self._check_frame(X, reset=False)
        rows = [i for i, c in enumerate(cells) if not is_missing_cell(c)]
        encoded = self._encode_cells([cells[i] for i in rows]) if rows else None
        rest = X.drop(columns=[self.column])
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
        return pd.concat([rest, block], axis=1)

    def _block_columns(self):
        name = self._output_name()
        return [f"{name}__{i}" for i in range(self._embedding_dim())]

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the passed-through columns, then the new block."""
        check_is_fitted(self)
        passthrough = [c for c in self.feature_names_in_ if c != self.column]
        new = [self._output_name()] if self._returns_tokens() else self._block_columns()
        return np.asarray(passthrough + new, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags

