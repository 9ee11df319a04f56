"""Data-parallel training: a 2-process job (torchrun, gloo, CPU) against one process on the same rows.

The job is launched once (``tests/_ddp_worker.py``); each test compares what its processes
computed with one process computing on every row.
"""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torchsurv.loss.cox import neg_partial_log_likelihood

from skfusion import ConcatSurvival
from skfusion.losses import global_neg_partial_log_likelihood
from skfusion.datasets import make_multimodal_survival

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
    pytest.mark.filterwarnings("ignore:Ties in `time` detected"),  # the tied cases are on purpose
]

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import _ddp_worker as worker  # noqa: E402

WORLD_SIZE = 2
PARAMS = {"max_epochs": 20, "batch_size": 64, "random_state": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    X, y = make_multimodal_survival(n_samples=500, n_features=(8, 8), random_state=0)
    return X.iloc[:350], y[:350], X.iloc[350:], y[350:]


@pytest.fixture(scope="module")
def job(data, tmp_path_factory):
    """The 2-process job's results per rank, and its folder (rank 0's fitted models)."""
    out = tmp_path_factory.mktemp("ddp")
    X, y, _, _ = data
    with open(out / "data.pkl", "wb") as f:
        pickle.dump((X, y, PARAMS), f)
    # --standalone: the rendezvous picks a free localhost port.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD_SIZE}"]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    run = subprocess.run(
        [*command, worker.__file__, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD_SIZE)], out


def one_process_cox(case):
    """Loss and gradient of one process on the concatenated rows, with CoxModel's dense time ranks."""
    n_rank0, n_rank1, tied, ties_method = case
    log_hz, event, time = worker.cox_rows(n_rank0 + n_rank1, tied, seed=100 * n_rank0 + n_rank1)
    log_hz.requires_grad_(True)
    rank = torch.from_numpy(np.unique(time.numpy(), return_inverse=True)[1]).float()
    loss = neg_partial_log_likelihood(log_hz, event, rank, ties_method=ties_method)
    loss.backward()
    return loss.detach(), log_hz.grad


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(worker.LOSS_CASES)), ids=[str(c) for c in worker.LOSS_CASES])
def test_global_cox_loss_and_gradient_equal_one_process(job, index):
    results, _ = job
    case = worker.LOSS_CASES[index]
    loss, grad = one_process_cox(case)
    for rank, result in enumerate(results):
        torch.testing.assert_close(result["loss_cases"][index]["loss"], loss, rtol=1e-5, atol=1e-7)
        # The backward pass sums the identical gradients of the processes (see skfusion._distributed).
        own = grad[worker.own_rows(case[0], rank)]
        torch.testing.assert_close(result["loss_cases"][index]["grad"] / WORLD_SIZE, own, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_ddp_parameter_gradients_equal_one_process_without_scaling(job):
    # DDP averages the parameter gradients: with the unscaled global loss they are the
    # single-process gradients, not half of them.
    results, _ = job
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(19, 3, generator=torch.Generator().manual_seed(1))
    _, event, time = worker.cox_rows(19, tied=True, seed=2)
    rank = torch.from_numpy(np.unique(time.numpy(), return_inverse=True)[1]).float()
    loss = neg_partial_log_likelihood(network(x)[:, 0], event, rank)
    loss.backward()
    for result in results:
        torch.testing.assert_close(result["ddp"]["loss"], loss.detach(), rtol=1e-5, atol=1e-7)
        for got, expected in zip(result["ddp"]["grads"], network.parameters(), strict=True):
            torch.testing.assert_close(got, expected.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_gather_rows_concatenates_in_rank_order_with_unequal_counts(job):
    results, _ = job
    rows = torch.tensor([0, 1, 10, 11, 12])
    for result in results:
        values, even, thirds = result["gathered"]
        assert torch.equal(values, rows)
        assert torch.equal(even, rows % 2 == 0)
        assert thirds.dtype == torch.float64
        torch.testing.assert_close(thirds, rows.double() / 3)


def one_process_fit(data, name):
    X, y, _, _ = data
    return ConcatSurvival(**{**PARAMS, **worker.FITS[name]}).fit(X, y)


@pytest.mark.slow
def test_data_parallel_fit_gives_the_one_process_c_index(job, data):
    _, out = job
    _, _, X_test, y_test = data
    with open(out / "model_dropout.pkl", "rb") as f:
        parallel = pickle.load(f)
    single = one_process_fit(data, "dropout")
    # Rank 0's estimator is a plain fitted one: unwrapped, pickled, predicting in this process.
    assert type(parallel.net_.module_) is type(single.net_.module_)
    c_single, c_parallel = single.score(X_test, y_test), parallel.score(X_test, y_test)
    assert c_single > 0.65
    assert abs(c_parallel - c_single) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("name", ["exact", "early"])
def test_data_parallel_fit_without_dropout_follows_the_one_process_fit(job, data, name):
    # Same batches, same loss, same gradients: without dropout masks, only float rounding differs.
    results, out = job
    _, _, X_test, y_test = data
    single = one_process_fit(data, name)
    with open(out / f"model_{name}.pkl", "rb") as f:
        parallel = pickle.load(f)
    losses = [result["fits"][name]["train_loss"] for result in results]
    assert len(losses[0]) == len(losses[1])  # early stopping agreed in every process
    if name == "early":
        # The held-out loss of one process and of two differ by rounding: with a patience of 2,
        # that may move the stop by an epoch. The epochs both ran follow each other.
        assert len(single.net_.history) < PARAMS["max_epochs"] and len(losses[0]) < PARAMS["max_epochs"]
        common = min(len(losses[0]), len(single.net_.history))
        np.testing.assert_allclose(losses[0][:common], single.net_.history[:common, "train_loss"], rtol=1e-5)
    else:
        assert len(losses[0]) == len(single.net_.history)
        np.testing.assert_allclose(losses[0], single.net_.history[:, "train_loss"], rtol=1e-5)
    np.testing.assert_allclose(parallel.predict(X_test), single.predict(X_test), atol=1e-2)
    assert abs(parallel.score(X_test, y_test) - single.score(X_test, y_test)) < 0.005


@pytest.mark.slow
@pytest.mark.parametrize("name", list(worker.FITS))
def test_every_process_ends_with_the_same_network(job, name):
    states = [result["fits"][name]["state"] for result in job[0]]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


@pytest.mark.slow
def test_data_parallel_fit_of_an_image_encoder_with_images_missing_from_a_share(job):
    states = [result["image"]["state"] for result in job[0]]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    assert job[0][0]["image"]["accuracy"] > 0.8


@pytest.mark.slow
def test_data_parallel_fit_over_image_files(job):
    states = [result["image_files"]["state"] for result in job[0]]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


@pytest.mark.parametrize(
    ("error", "match"),
    [
        ("batch_size", r"batch_size=1 is smaller than the 2 processes"),
        ("shares", r"1 rows cannot be shared among the 2 processes"),
    ],
)
@pytest.mark.slow
def test_data_parallel_bad_inputs(job, error, match):
    for result in job[0]:
        assert re.search(match, result["errors"].get(error, "no ValueError"))


def test_global_loss_needs_a_process_group():
    log_hz, event, time = worker.cox_rows(5, tied=False, seed=0)
    with pytest.raises(ValueError, match="init_process_group"):
        global_neg_partial_log_likelihood(log_hz, event, time)


def test_global_loss_checks_shapes():
    log_hz, event, time = worker.cox_rows(5, tied=False, seed=0)
    with pytest.raises(ValueError, match=r"event must be a 1-d tensor .* log_hz \(5 rows\); got shape \(4,\)"):
        global_neg_partial_log_likelihood(log_hz, event[:4], time)


@pytest.fixture
def one_process_job():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_global_loss_takes_array_likes(one_process_job):
    log_hz, event, time = worker.cox_rows(6, tied=False, seed=0)
    expected = global_neg_partial_log_likelihood(log_hz, event, time)
    from_lists = global_neg_partial_log_likelihood(log_hz.tolist(), event.tolist(), time.tolist())
    torch.testing.assert_close(from_lists, expected)
    from_numbers = global_neg_partial_log_likelihood(log_hz, event.double().numpy(), time.numpy())
    torch.testing.assert_close(from_numbers, expected)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"time": [2.0, float("nan"), 5.0, 1.0]}, r"time must be finite; it is NaN or infinite in rows \[1\] of the gathered batch"),
        ({"time": [2.0, 3.0, float("inf"), 1.0]}, r"time must be finite; .* rows \[2\]"),
        ({"event": [1.0, 0.5, 0.0, 1.0]}, r"event must hold indicators \(True/False or 0/1\); rows \[1\] .* hold \[0\.5\]"),
        ({"event": [1, 2, 0, 1]}, r"event must hold indicators .* rows \[1\] .* hold \[2\]"),
        ({"ties_method": "exact"}, r"ties_method must be one of \('efron', 'breslow'\), got 'exact'"),
        ({"reduction": "none"}, r"reduction must be one of \('mean', 'sum'\), got 'none'"),
    ],
    ids=["nan-time", "inf-time", "half-event", "event-2", "ties-method", "reduction"],
)
def test_global_loss_refuses_bad_targets_and_parameters(one_process_job, change, match):
    # Without ties: torchsurv reads ties_method only where times are tied.
    inputs = {"log_hz": torch.zeros(4), "event": [True, False, True, True], "time": [2.0, 3.0, 5.0, 1.0], **change}
    with pytest.raises(ValueError, match=match):
        global_neg_partial_log_likelihood(**inputs)
