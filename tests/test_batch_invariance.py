"""The float32-tolerant batch-invariance checks must still catch an output that depends on its batch."""

import numpy as np
import pytest
from _batch_invariance import assert_batch_invariant, assert_float32_close
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler


class _PositionRounding(TransformerMixin, BaseEstimator):
    """Adds 1e-8 times the row's position in the batch: the size of float32 kernel rounding."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X + 1e-8 * np.arange(len(X))[:, None]


class _BatchCentred(TransformerMixin, BaseEstimator):
    """Centres each batch on its own mean, as a network left with batch statistics at predict does."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X - X.mean(axis=0)


class _OrderDependent(TransformerMixin, BaseEstimator):
    """Adds the previous row of the batch to each row, as a padding or masking bug across rows does."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X + 0.01 * np.roll(X, 1, axis=0)


def test_float32_rounding_by_batch_position_passes():
    assert_batch_invariant(_PositionRounding())
    assert_batch_invariant(StandardScaler())


def test_output_depending_on_the_batch_fails():
    with pytest.raises(AssertionError, match="transform of _BatchCentred depends on the batch it is computed in"):
        assert_batch_invariant(_BatchCentred())


def test_output_depending_on_the_order_fails():
    with pytest.raises(AssertionError, match="transform of _OrderDependent depends on the order of the rows"):
        assert_batch_invariant(_OrderDependent())


def test_float32_close_accepts_rounding_and_refuses_other_rows_or_gaps():
    outputs = np.random.default_rng(0).normal(scale=50.0, size=(20, 3)).astype(np.float32)
    rounded = outputs * (1 + 4 * np.finfo(np.float32).eps * np.sign(outputs))
    assert_float32_close(rounded, outputs)
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        assert_float32_close(outputs[::-1], outputs)  # rows put back in the wrong order
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        assert_float32_close(outputs + 1e-3, outputs)
    with_gap = outputs.copy()
    with_gap[3] = np.nan
    assert_float32_close(with_gap, with_gap.copy())
    with pytest.raises(AssertionError, match="nan location mismatch"):
        assert_float32_close(with_gap, outputs)
