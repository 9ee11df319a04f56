"""Time-to-event pretraining: MOTOR's likelihood against its equation, the cohort, the transformer."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from skfusion.modules.tte import PiecewiseExponentialHead, piecewise_exponential_nll


def _nll_loop(log_hazard, time, event, boundaries):
    """sum_p [h_p e_p - d_p log h_p] per (row, task), averaged, with plain loops."""
    n, n_pieces, n_tasks = len(log_hazard), len(log_hazard[0]), len(log_hazard[0][0])
    total = 0.0
    for i in range(n):
        for k in range(n_tasks):
            t = time[i][k]
            for p in range(n_pieces):
                start, stop = boundaries[p], boundaries[p + 1]
                spent = max(0.0, min(t, stop) - start)
                happened = bool(event[i][k]) and start <= t < stop
                total += math.exp(log_hazard[i][p][k]) * spent - (log_hazard[i][p][k] if happened else 0.0)
    return total / (n * n_tasks)


@pytest.fixture
def example():
    """Three rows, two tasks, three pieces [0, 1), [1, 3), [3, inf); events on and off boundaries."""
    boundaries = [0.0, 1.0, 3.0, math.inf]
    time = [[0.5, 2.0], [3.0, 4.5], [1.0, 0.2]]
    event = [[True, False], [True, True], [False, True]]
    log_hazard = np.random.default_rng(0).normal(size=(3, 3, 2)).tolist()
    return log_hazard, time, event, boundaries


def test_piecewise_exponential_nll_matches_the_loop(example):
    log_hazard, time, event, boundaries = example
    got = piecewise_exponential_nll(
        torch.tensor(log_hazard, dtype=torch.float64),
        torch.tensor(time, dtype=torch.float64),
        torch.tensor(event),
        torch.tensor(boundaries, dtype=torch.float64),
    )
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.item(), _nll_loop(log_hazard, time, event, boundaries), rtol=1e-12)


def test_one_piece_is_the_exponential_likelihood():
    """With one piece [0, inf) the loss is mean(h t - d log h), the exponential model."""
    log_h = torch.tensor([[[0.3]], [[-1.2]]], dtype=torch.float64)
    time = torch.tensor([[2.0], [0.7]], dtype=torch.float64)
    event = torch.tensor([[True], [False]])
    got = piecewise_exponential_nll(log_h, time, event, torch.tensor([0.0, math.inf], dtype=torch.float64))
    expected = ((math.exp(0.3) * 2.0 - 0.3) + math.exp(-1.2) * 0.7) / 2
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)


def test_head_is_a_low_rank_read_out_of_a_per_piece_representation():
    torch.manual_seed(0)
    head = PiecewiseExponentialHead(5, n_pieces=3, n_tasks=4, rank=2, log_rates=torch.log(torch.arange(1.0, 5.0)))
    head.double()
    z = torch.randn(6, 5, dtype=torch.float64)
    out = head(z)
    assert out.shape == (6, 3, 4)
    W, b = head.pieces.weight.detach(), head.pieces.bias.detach()
    beta, c = head.tasks.weight.detach(), head.tasks.bias.detach()
    for i in range(6):
        for p in range(3):
            r = W[p * 2 : p * 2 + 2] @ z[i] + b[p * 2 : p * 2 + 2]
            for k in range(4):
                np.testing.assert_allclose(out[i, p, k].item(), (beta[k] @ r + c[k]).item(), rtol=1e-12)
    np.testing.assert_allclose(c.numpy(), np.log(np.arange(1.0, 5.0)), rtol=1e-6)
