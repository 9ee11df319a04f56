"""Fit-time and memory benchmark of skfusion's estimators against hand-written torch loops and pycox.

Cases (``--cases``; N from ``--sizes`` for the narrow Cox case, ``--family-size`` for the others):

- ``cox``: ``ConcatSurvival`` on the narrow shape of issue 15 (two modalities x 256 float32
  features, the default network 512 -> 256 -> 1, Cox loss with Efron ties), against a
  hand-written loop of the identical network, loss (torchsurv, Efron), optimizer (Adam,
  lr 1e-3, weight decay 1e-4), batch size (256) and epochs, and against pycox's ``CoxPH`` of
  the identical network (its own Breslow-ties loss);
- ``cox-wide``: the same on 1024 + 768 features (network 1792 -> 512 -> 1);
- ``classifier``: ``ConcatClassifier`` (two classes, cross-entropy) against the hand loop of
  the identical network;
- ``co-attention``: ``CoAttentionSurvival`` against a hand loop of the identical module
  (built by the estimator, trained on the float32, standardized blocks the estimator's
  batches hold, which the hand loop gets ready: its conversion is not timed).

skfusion runs with ``early_stopping=False`` (the default ``"auto"`` may hold out a
validation split, which changes the work). "skfusion, skorch's own epoch" is the same fit
with ``FusionNet``'s two overrides of skorch's private methods (``run_single_epoch``,
``_set_training``) swapped for skorch's own: what the overrides save. Every method of a case runs once to warm up,
then ``--repeats`` times interleaved in this one process; the table gives the median CPU
time (``time.process_time``, one torch thread) and its ratio to the hand loop, and
skfusion's CPU time outside its epoch loop (validation, conversion, standardization, the
forward pass over the training rows and the Breslow baseline). Peak memory is measured in a
subprocess per method (``/proc/self/clear_refs`` then ``VmHWM``): the resident memory the
fit adds, as a multiple of the float32 size of the data, and skfusion's excess over the
hand loop's.

Usage::

    python benchmarks/bench_fit.py [--sizes 2000 20000 200000] [--cases cox cox-wide classifier co-attention]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "fit.md"
SKORCH_EPOCH = "skfusion, skorch's own epoch"
NARROW, WIDE = (256, 256), (1024, 768)
BATCH = 256
# The cases: (feature widths, estimator, task, epochs).
CASES = {
    "cox": (NARROW, "ConcatSurvival", "survival", 5),
    "cox-wide": (WIDE, "ConcatSurvival", "survival", 2),
    "classifier": (NARROW, "ConcatClassifier", "classification", 5),
    "co-attention": (NARROW, "CoAttentionSurvival", "survival", 5),
}


def _data(n, dims, task, seed=0):
    from skfusion.datasets import make_multimodal_classification, make_multimodal_survival

    make = make_multimodal_survival if task == "survival" else make_multimodal_classification
    return make(n_samples=n, n_features=tuple(dims), n_informative=8, random_state=seed)


def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def _network(in_dim, n_outputs=1):
    from skfusion.modules._blocks import default_hidden_dims

    # skfusion's default width: in_dim // 2, at most 512.
    (hidden,) = default_hidden_dims(in_dim)
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(hidden, n_outputs)
    )


def _cox_loss(log_hz, target):
    from torchsurv.loss.cox import neg_partial_log_likelihood

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        return neg_partial_log_likelihood(log_hz[:, 0], target[:, 1].bool(), target[:, 0], ties_method="efron")


def _float32(X):
    # The frame's values as float32, without a copy when they already are (pandas keeps
    # them column-major: the rows are then gathered from a strided tensor).
    return torch.from_numpy(X.to_numpy(dtype=np.float32))


def _train(net, forward, target, loss, n, epochs):
    """The floor: shuffled index batches, forward, loss, backward, Adam."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(BATCH):
            optimizer.zero_grad()
            batch_loss = loss(forward(idx), target[idx])
            batch_loss.backward()
            optimizer.step()
            batch_loss.item()


def _survival_target(y):
    return torch.from_numpy(np.column_stack([y["time"], y["event"]]).astype(np.float32))


def _hand_baseline(net, forward, n, y):
    """What a hand-written Cox model does before it can predict survival: the trained
    network's outputs over the training rows (eval mode, consecutive batches) and Breslow's
    cumulative baseline hazard from them. Returns its CPU seconds."""
    start = time.process_time()
    net.eval()
    with torch.inference_mode():
        log_hz = torch.cat([forward(torch.arange(lo, min(lo + BATCH, n))) for lo in range(0, n, BATCH)])
    times, rank = np.unique(y["time"], return_inverse=True)
    deaths = np.bincount(rank, weights=y["event"], minlength=len(times))
    at_risk = np.bincount(rank, weights=np.exp(log_hz[:, 0].double().numpy()), minlength=len(times))
    np.cumsum(deaths / at_risk[::-1].cumsum()[::-1])
    return time.process_time() - start


def make_runners(estimator, task, X, y, epochs):
    """``{method: callable}`` fitting each method once on ``(X, y)``.

    A survival method's hand loop and pycox return the CPU seconds of their baseline hazard
    (which skfusion's ``fit`` includes), so that the table can show them with and without it.
    """
    import skfusion

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = _float32(X)
    extra = {"guide": "img"} if estimator == "CoAttentionSurvival" else {}
    model = getattr(skfusion, estimator)(
        max_epochs=epochs, batch_size=BATCH, weight_decay=1e-4, early_stopping=False, random_state=0, **extra
    )

    def run_skfusion():
        model.fit(X, y)

    def run_skorch_epoch():
        with skorchs_own_epoch():
            model.fit(X, y)

    if estimator == "CoAttentionSurvival":
        # The module needs the layout; the hand loop trains a fresh copy on the same blocks,
        # made float32 and standardized as the estimator's batches are (not timed).
        from skfusion._data import ModalityDataset

        blocks = ModalityDataset(model._blocks(X, reset=True)[0]).batch(torch.arange(len(X)))[0]
        target = _survival_target(y)

        def run_hand():
            torch.manual_seed(0)
            net = model._build_module(1)

            def forward(idx):
                return net(**{name: {k: v[idx] for k, v in block.items()} for name, block in blocks.items()})

            _train(net, forward, target, _cox_loss, len(X), epochs)
            return _hand_baseline(net, forward, len(X), y)

        return {"skfusion": run_skfusion, SKORCH_EPOCH: run_skorch_epoch, "hand": run_hand}
    if task == "classification":
        codes = torch.from_numpy(np.unique(y, return_inverse=True)[1])

        def run_hand():
            torch.manual_seed(0)
            net = _network(x.shape[1], n_outputs=2)
            _train(net, lambda idx: net(x[idx]), codes, torch.nn.functional.cross_entropy, len(x), epochs)

        return {"skfusion": run_skfusion, SKORCH_EPOCH: run_skorch_epoch, "hand": run_hand}
    target = _survival_target(y)

    def run_hand():
        torch.manual_seed(0)
        net = _network(x.shape[1])
        _train(net, lambda idx: net(x[idx]), target, _cox_loss, len(x), epochs)
        return _hand_baseline(net, lambda idx: net(x[idx]), len(x), y)

    def run_pycox():
        import torchtuples as tt
        from pycox.models import CoxPH

        torch.manual_seed(0)
        pycox = CoxPH(_network(x.shape[1]), tt.optim.Adam(lr=1e-3, weight_decay=1e-4))
        durations, events = y["time"].astype(np.float32), y["event"].astype(np.float32)
        pycox.fit(x.numpy(), (durations, events), batch_size=BATCH, epochs=epochs, verbose=False)
        start = time.process_time()
        pycox.compute_baseline_hazards(batch_size=BATCH)
        return time.process_time() - start

    return {"skfusion": run_skfusion, SKORCH_EPOCH: run_skorch_epoch, "hand": run_hand, "pycox": run_pycox}


@contextmanager
def skorchs_own_epoch():
    """Inside the block, ``FusionNet`` runs skorch's ``run_single_epoch`` and ``_set_training``, not its overrides.

    The overrides skip skorch's walk over a nested batch to read its size and its mode
    switch of every submodule before every batch: this variant measures what they save.
    """
    from skorch import NeuralNet

    from skfusion._engine import FusionNet

    saved = FusionNet.run_single_epoch, FusionNet._set_training
    FusionNet.run_single_epoch, FusionNet._set_training = NeuralNet.run_single_epoch, NeuralNet._set_training
    try:
        yield
    finally:
        FusionNet.run_single_epoch, FusionNet._set_training = saved


class LoopTimer:
    """CPU seconds spent inside skfusion's epoch loop (``FusionNet.fit_loop``), summed over calls."""

    def __init__(self):
        from skfusion._engine import FusionNet

        self.seconds = 0.0
        fit_loop = FusionNet.fit_loop

        def timed(net, *args, **kwargs):
            start = time.process_time()
            try:
                return fit_loop(net, *args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        FusionNet.fit_loop = timed


def _cpu(fn):
    """CPU seconds of ``fn()`` and what it returns."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _child(case, n, method):
    """Fit ``method`` once and print its peak memory above the memory held before the fit."""
    import pycox.models  # noqa: F401  (libraries loaded before the fit is measured)
    import torchsurv.loss.cox  # noqa: F401

    torch.set_num_threads(1)
    dims, estimator, task, epochs = CASES[case]
    X, y = _data(n, dims, task)
    runner = make_runners(estimator, task, X, y, epochs)[method]
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    runner()
    peak = _rss_kib("VmHWM")
    print(json.dumps({"extra_bytes": (peak - before) * 1024, "data_bytes": X.shape[0] * X.shape[1] * 4}))


def _memory(case, n, method, timeout):
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", case, str(n), method],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["extra_bytes"] / result["data_bytes"]


def measure(case, n, repeats, memory, timeout):
    """Rows of the table for one case and size."""
    dims, estimator, task, epochs = CASES[case]
    X, y = _data(n, dims, task)
    runners = make_runners(estimator, task, X, y, epochs)
    loop = LoopTimer.instance
    for fn in runners.values():
        fn()  # warm-up: torch's first calls, pycox's imports
    times = {name: [] for name in runners}
    baseline = {name: [] for name in runners}
    outside = []
    for _ in range(repeats):
        for name, fn in runners.items():
            loop.seconds = 0.0
            seconds, baseline_seconds = _cpu(fn)
            if baseline_seconds is not None:
                # Timed without its baseline; "+ baseline" is the same run, whole.
                baseline[name].append(seconds)
                seconds -= baseline_seconds
            times[name].append(seconds)
            if name == "skfusion":
                outside.append(seconds - loop.seconds)
    peaks = {name: _memory(case, n, name, timeout) for name in runners} if memory else {}
    hand = statistics.median(times["hand"])
    with_baseline = {f"{name} + baseline": runs for name, runs in baseline.items() if runs}
    rows = []
    for name, runs in {**times, **with_baseline}.items():
        med = statistics.median(runs)
        # Survival fits are also compared with the hand loop that computes its baseline hazard.
        like_for_like = name.endswith("baseline") or (name in ("skfusion", SKORCH_EPOCH) and baseline["hand"])
        ref = statistics.median(baseline["hand"]) if like_for_like else hand
        ratio = f"{med / hand:.2f}" + (f" ({med / ref:.2f})" if ref != hand else "")
        out = f"{statistics.median(outside):.3f}" if name == "skfusion" else "-"
        peak = peaks.get(name)
        peak_text = "-" if peak is None else f"{peak:.2f}"
        beyond = "-"
        if name not in ("hand", "hand + baseline") and peak is not None and peaks.get("hand") is not None:
            beyond = f"{peak - peaks['hand']:+.2f}"
        rows.append(
            f"| {case} | {n} | {epochs} | {name} | {med:.3f} | {', '.join(f'{t:.2f}' for t in runs)} | {ratio} | "
            f"{out} | {peak_text} | {beyond} |"
        )
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000], help="N of the cox case")
    parser.add_argument("--family-size", type=int, default=20000, help="N of the other cases")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a memory run is stopped")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, n, method = args.child
        _child(case, int(n), method)
        return
    torch.set_num_threads(1)
    LoopTimer.instance = LoopTimer()
    load_before = os.getloadavg()[0]
    rows = []
    for case in args.cases:
        for n in args.sizes if case == "cox" else [args.family_size]:
            rows += measure(case, n, args.repeats, not args.no_memory, args.timeout)
    header = [
        "# Fit: time and memory against hand-written torch loops and pycox",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"torch {torch.__version__}, one torch thread, CPU. Load average (1 min) at the start "
        f"{load_before:.1f}, at the end {os.getloadavg()[0]:.1f}.",
        "",
        "Batch 256, Adam (lr 1e-3, weight decay 1e-4), skfusion with `early_stopping=False`. "
        "`cox` and `classifier`: 2 modalities x 256 features, network 512 -> 256 -> out; `cox-wide`: "
        "1024 + 768 features, network 1792 -> 512 -> 1; `co-attention`: `CoAttentionSurvival`'s "
        "defaults on the narrow shape, the hand loop training the identical module. CPU seconds "
        "(`time.process_time`), median of the interleaved runs after one warm-up run each; `ratio` = "
        "median / the hand loop's, and in brackets / the hand loop's with its baseline hazard. "
        "`+ baseline`: the same runs including what a Cox model needs before it can predict survival "
        "(the trained network's outputs over the training rows and Breslow's baseline; pycox's "
        "`compute_baseline_hazards`), which skfusion's `fit` includes and the plain rows exclude. "
        "`outside loop` = skfusion's CPU seconds outside its epoch loop. "
        "`peak/data` = peak resident memory added by the fit (a subprocess per method) / the float32 "
        "size of the data; `beyond hand` = the method's `peak/data` minus the hand loop's.",
        "",
        "| case | N | epochs | method | CPU s (median) | runs | ratio to hand (+ baseline) | outside loop s "
        "| peak/data | beyond hand |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")


if __name__ == "__main__":
    main()
