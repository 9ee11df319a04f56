"""One process of the 2-process job of tests/test_distributed.py (``torchrun --nproc_per_node=2 <this> OUT``).

Every process computes the same things on its share of the rows and writes them to
``OUT/rank{r}.pt``; the test compares them with one process computing on every row.
"""

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from skfusion import ConcatSurvival, MedFuseClassifier
from skfusion._distributed import gather_rows, process_shares
from skfusion.losses import global_neg_partial_log_likelihood

# (rows of rank 0, rows of rank 1, tied times, ties method) of the loss cases; the rows of
# rank 0 come first in the concatenated batch.
LOSS_CASES = [(10, 10, False, "efron"), (7, 12, True, "efron"), (13, 5, True, "breslow"), (0, 9, True, "efron")]


def cox_rows(n_rows, tied, seed):
    """``(log_hz, event, time)`` of ``n_rows`` rows; with ``tied``, times on a grid of 4 values."""
    generator = torch.Generator().manual_seed(seed)
    log_hz = torch.randn(n_rows, generator=generator)
    event = torch.rand(n_rows, generator=generator) < 0.7
    event[0] = True
    if tied:
        time = torch.randint(1, 5, (n_rows,), generator=generator).double()
    else:
        time = torch.rand(n_rows, generator=generator).double() * 1e9 + 1.7e9  # apart in float64 only
    return log_hz, event, time


def own_rows(n_rank0, rank):
    return slice(0, n_rank0) if rank == 0 else slice(n_rank0, None)


def loss_case(case, rank):
    """The global loss and the gradient reaching this process's log-hazards."""
    n_rank0, n_rank1, tied, ties_method = case
    log_hz, event, time = cox_rows(n_rank0 + n_rank1, tied, seed=100 * n_rank0 + n_rank1)
    rows = own_rows(n_rank0, rank)
    mine = log_hz[rows].clone().requires_grad_(True)
    loss = global_neg_partial_log_likelihood(mine, event[rows], time[rows], ties_method=ties_method)
    loss.backward()
    return {"loss": loss.detach(), "grad": mine.grad}


def ddp_gradients(rank):
    """Parameter gradients of a DDP-wrapped network trained with the global Cox loss, unscaled."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model = torch.nn.parallel.DistributedDataParallel(network)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(19, 3, generator=generator)
    _, event, time = cox_rows(19, tied=True, seed=2)
    rows = own_rows(7, rank)
    loss = global_neg_partial_log_likelihood(model(x[rows])[:, 0], event[rows], time[rows])
    loss.backward()
    return {"loss": loss.detach(), "grads": [p.grad.clone() for p in network.parameters()]}


def gathered_dtypes(rank):
    """gather_rows on int64, bool and float64 rows of unequal counts."""
    n_rows = 2 if rank == 0 else 3
    base = torch.arange(n_rows) + 10 * rank
    return gather_rows(base, base % 2 == 0, base.double() / 3)


# The data-parallel fits: ``name -> parameters`` added to the test's; "exact" and "early"
# have no dropout, whose masks are the one thing drawn differently by 2 processes.
FITS = {
    "dropout": {},
    "exact": {"dropout": 0.0, "early_stopping": False},
    "early": {"dropout": 0.0, "early_stopping": True, "n_iter_no_change": 2, "lr": 0.01},
}


def fits(X, y, params, rank, out):
    """ConcatSurvival fitted data-parallel on the test's rows; rank 0 pickles the fitted models."""
    results = {}
    for name, extra in FITS.items():
        model = ConcatSurvival(**{**params, **extra}).fit(X, y)
        results[name] = {
            "state": {key: value.clone() for key, value in model.net_.module_.state_dict().items()},
            "train_loss": [float(loss) for loss in model.net_.history[:, "train_loss"]],
        }
        if rank == 0:
            with open(out / f"model_{name}.pkl", "wb") as f:
                pickle.dump(model, f)
    return results


def image_frame(n=48, size=8):
    """A (size, size, 1) image column in [0, 1], every other image missing, an EHR series column and labels of both."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=n)
    logits = rng.normal(scale=0.5, size=(n, size, size, 1))
    logits[:, : size // 2] += signal[:, None, None, None]  # the top half's brightness
    images = (1 / (1 + np.exp(-logits))).astype(np.float32)
    series = [(rng.normal(size=(t, 3)) + signal[i]).astype(np.float32) for i, t in enumerate(rng.integers(2, 6, n))]
    cells = [None if i % 2 == 0 else image for i, image in enumerate(images)]
    X = pd.DataFrame({"ehr": pd.Series(series, dtype=object), "cxr": pd.Series(cells, dtype=object)})
    return X, (signal > 0).astype(int)


def image_fit():
    """MedFuse training a CNN on an image column: shares of 2 rows often hold no image, so
    the CNN is unused in that process's batch (DDP must look for unused parameters)."""
    X, labels = image_frame()
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    model = MedFuseClassifier(
        image_encoder=cnn, pretrain_encoders=False, max_epochs=3, batch_size=4, random_state=0, device="cpu"
    ).fit(X, labels)
    return {"state": dict(model.net_.module_.state_dict()), "accuracy": model.score(X, labels)}


def image_files_fit(folder):
    """The same MedFuse fit with the images as PNG files read by the loader (augmented, one worker)."""
    from PIL import Image

    X, labels = image_frame()
    folder.mkdir(exist_ok=True)
    paths = []
    for row, cell in enumerate(X["cxr"]):
        if cell is not None:
            paths.append(str(folder / f"{row}.png"))
            Image.fromarray(np.round(cell[..., 0] * 255).astype(np.uint8)).save(paths[-1])
        else:
            paths.append(None)
    X = X.assign(cxr=pd.Series(paths, dtype=object))
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    model = MedFuseClassifier(
        image_encoder=cnn, image_size=32, num_workers=1, pretrain_encoders=False, max_epochs=2, batch_size=4,
        random_state=0, device="cpu",
    ).fit(X, labels)
    return {"state": dict(model.net_.module_.state_dict())}


def errors(X, y, params):
    """The messages of the data-parallel run's own errors."""
    messages = {}
    for name, attempt in (
        ("batch_size", lambda: ConcatSurvival(**{**params, "batch_size": 1}).fit(X, y)),
        ("shares", lambda: process_shares([torch.arange(1)])),
    ):
        try:
            attempt()
        except ValueError as error:
            messages[name] = str(error)
    return messages


def main(out):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    with open(out / "data.pkl", "rb") as f:
        X, y, params = pickle.load(f)
    results = {
        "world_size": dist.get_world_size(),
        "loss_cases": [loss_case(case, rank) for case in LOSS_CASES],
        "ddp": ddp_gradients(rank),
        "gathered": gathered_dtypes(rank),
        "fits": fits(X, y, params, rank, out),
        "image": image_fit(),
        "image_files": image_files_fit(out / f"images{rank}"),
        "errors": errors(X, y, params),
    }
    torch.save(results, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
