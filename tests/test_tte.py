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


# --------------------------------------------------------------------------- the synthetic cohort

from skfusion.datasets import make_imaging_ehr_cohort  # noqa: E402


def test_cohort_layout_and_truth():
    X, outcomes, truth = make_imaging_ehr_cohort(n_samples=30, n_codes=5, n_driven=2, random_state=0, return_truth=True)
    assert list(X.columns) == ["ct", "ehr", "index_time"]
    assert X["ct"][0].shape == (8, 32, 32) and X["ct"][0].dtype == np.float32
    assert truth.biomarkers.shape == (30, 2) and truth.outcome_risk.shape == (30, 2)
    np.testing.assert_array_equal(truth.code_risk[:, 2:], 0.0)  # undriven codes
    for i in range(30):
        frame, index = X["ehr"][i], X["index_time"][i]
        assert list(frame.columns) == ["time", "code", "numeric_value"]
        assert (frame["time"] < index).sum() >= 3  # history before the scan
        assert frame["code"].iloc[-1] == "VISIT" and frame["time"].iloc[-1] > index  # follow-up ends in a visit
        future = frame[frame["time"] > index]
        assert not future[future["code"] != "VISIT"]["code"].duplicated().any()  # first occurrences
    for y in outcomes.values():
        assert y.dtype.names == ("event", "time") and 0 < y["event"].mean() < 1
    again, _ = make_imaging_ehr_cohort(n_samples=30, n_codes=5, n_driven=2, random_state=0)
    np.testing.assert_array_equal(again["ct"][3], X["ct"][3])


def test_cohort_biomarkers_are_in_the_image_and_drive_the_codes():
    X, _, truth = make_imaging_ehr_cohort(n_samples=300, random_state=1, return_truth=True)
    volumes = np.stack(X["ct"].to_list())
    for j, (z, y, x) in enumerate(truth.biomarker_voxels):  # each nodule brightens with its biomarker
        patch = volumes[:, z, y - 1 : y + 2, x - 1 : x + 2].mean(axis=(1, 2))
        assert np.corrcoef(patch, truth.biomarkers[:, j])[0, 1] > 0.5
    has_code = np.array([(f["code"] == "DX/00").any() and (f["time"][f["code"] == "DX/00"] > t).any()
                         for f, t in zip(X["ehr"], X["index_time"])])
    risk = truth.code_risk[:, 0]
    assert risk[has_code].mean() > risk[~has_code].mean() + 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"n_driven": 20, "n_codes": 5}, "n_driven .* cannot exceed n_codes"),
        ({"volume_shape": (8, 32)}, "volume_shape must be three integers"),
        ({"follow_up": (0, 10)}, "follow_up must be a pair"),
        ({"signal": -1.0}, "signal must be a finite non-negative number"),
    ],
)
def test_cohort_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_imaging_ehr_cohort(**kwargs)
