"""Fit-time and memory benchmark of skfusion's estimators against hand-written torch loops and pycox.

Cases (``--cases``; N from ``--sizes`` for the narrow Cox case, ``--family-size`` for the others):

- ``cox``: ``ConcatSurvival`` with its defaults (``linear_path=True``, ``standardize=True``) on
  the narrow shape of issue 15 (two modalities x 256 float32 features, network 512 -> 256 -> 1
  beside a linear path 512 -> 1, Cox loss with Efron ties), against a hand-written loop of the
  identical network, loss (torchsurv, Efron), optimizer (Adam, lr 1e-3, weight decay 1e-4),
  batch size (256) and epochs, and against pycox's ``CoxPH`` of the identical network (its
  own Breslow-ties loss); and ``ConcatSurvival(linear_path=False)`` against the hand loop of
  the network alone;
- ``cox-wide``: the same on 1024 + 768 features (network 1792 -> 512 -> 1);
- ``classifier``: ``ConcatClassifier`` (two classes, cross-entropy) against the hand loop of
  the identical network, with and without the linear path;
- ``co-attention``: ``CoAttentionSurvival`` against a hand loop of the identical module
  (built by the estimator, trained on the float32, standardized blocks the estimator's
  batches hold, which the hand loop gets ready: its conversion is not timed).

The hand loop is the tight loop one writes by hand: the data made a row-major float32
tensor once (standardized, not timed), then per epoch ``torch.randperm``, and per batch the
rows indexed from that tensor, forward, loss, backward, Adam; no DataLoader, no validation.
skfusion's ``fit`` is timed whole, on the DataFrame: the checks and conversion, the
standardization statistics, the linear start (``linear_path=True``: the penalized linear
model's L-BFGS path, 3 internal folds x 6 penalties, before training), the epochs and the
training rows' forward pass for Breslow's baseline. skfusion runs with
``early_stopping=False`` (the default ``"auto"`` may hold out a validation split, which
changes the work). ``--overrides`` adds "skfusion + former overrides": the same fit with the
override of skorch's private ``_set_training`` that ``FusionNet`` had until issue 24 (setting
the modes only when one differs) beside the one it keeps (``run_single_epoch`` without
skorch's ``get_len`` walk, for CLMBR's batches), to show what the dropped one saved. Every method of a case runs once to warm
up, then ``--repeats`` times interleaved in this one process; the table gives the median CPU
time (``time.process_time``, one torch thread) and its ratio to its reference, and
skfusion's CPU time outside its epoch loop and in its linear start. Peak memory is measured
in a subprocess per method (``/proc/self/clear_refs`` then ``VmHWM``): the resident memory
the fit adds, as a multiple of the float32 size of the data, and the excess over the
reference's. ``--python`` runs the whole measurement under each interpreter given (e.g. one
environment with pandas 2 and one with pandas 3) and writes one table with a ``pandas``
column.

Usage::

    python benchmarks/bench_fit.py [--sizes 2000 20000 200000] [--cases cox cox-wide classifier co-attention]
        [--python .venv/bin/python /tmp/venv-pd2/bin/python] [--overrides]
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
NARROW, WIDE = (256, 256), (1024, 768)
BATCH = 256
# The cases: (feature widths, estimator, task, epochs).
CASES = {
    "cox": (NARROW, "ConcatSurvival", "survival", 5),
    "cox-wide": (WIDE, "ConcatSurvival", "survival", 2),
    "classifier": (NARROW, "ConcatClassifier", "classification", 5),
    "co-attention": (NARROW, "CoAttentionSurvival", "survival", 5),
}
NO_LINEAR, HAND_NO_LINEAR = "skfusion, linear_path=False", "hand, no linear path"
HAND_START = "hand + linear start"
OVERRIDES = "skfusion + former overrides"
# Each method's ratio is to its reference: the hand loop of the same network; the second
# ratio of skfusion's defaults is to the hand loop that also fits the same linear start.
REFERENCE = {NO_LINEAR: HAND_NO_LINEAR, HAND_NO_LINEAR: HAND_NO_LINEAR, HAND_START: HAND_START}
SECOND_REFERENCE = {"skfusion": HAND_START, OVERRIDES: HAND_START}


def _data(n, dims, task, seed=0):
    from skfusion.datasets import make_multimodal_classification, make_multimodal_survival

    make = make_multimodal_survival if task == "survival" else make_multimodal_classification
    return make(n_samples=n, n_features=tuple(dims), n_informative=8, random_state=seed)


def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


class HandNet(torch.nn.Module):
    """The network ``Concat*`` builds, on one concatenated tensor: ``mlp(x) (+ linear(x))``."""

    def __init__(self, in_dim, n_outputs=1, linear_path=True):
        from skfusion.modules._blocks import default_hidden_dims

        super().__init__()
        # skfusion's default width: in_dim // 2, at most 512.
        (hidden,) = default_hidden_dims(in_dim)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(hidden, n_outputs)
        )
        self.linear = torch.nn.Linear(in_dim, n_outputs) if linear_path else None

    def forward(self, x):
        out = self.mlp(x)
        return out if self.linear is None else out + self.linear(x)


def _cox_loss(log_hz, target):
    from torchsurv.loss.cox import neg_partial_log_likelihood

    return neg_partial_log_likelihood(log_hz[:, 0], target[:, 1].bool(), target[:, 0], ties_method="efron")


def _ready(X):
    """What a hand loop trains on: the frame as one row-major float32 tensor, standardized."""
    x = torch.tensor(X.to_numpy(dtype=np.float32))
    return (x - x.mean(0)) / x.std(0).clamp_min(1e-12)


def _train(net, forward, target, loss, n, epochs, alpha=None):
    """The floor: shuffled index batches, forward, loss, backward, Adam.

    With ``alpha`` (a linear start's penalty), the linear path's weights decay by ``alpha``
    and its bias not at all, as skfusion trains its linear start.
    """
    params = net.parameters()
    if alpha is not None:
        rest = [p for name, p in net.named_parameters() if not name.startswith("linear.")]
        params = [{"params": rest}, {"params": [net.linear.weight], "weight_decay": alpha}]
        params.append({"params": [net.linear.bias], "weight_decay": 0.0})
    optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
    net.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        for _ in range(epochs):
            for idx in torch.randperm(n).split(BATCH):
                optimizer.zero_grad()
                batch_loss = loss(forward(idx), target[idx])
                batch_loss.backward()
                optimizer.step()


def _with_linear_start(net, x, task, y):
    """Fit ``net.linear`` as skfusion's linear start (its own function, folds and losses) and return its alpha.

    The hand loop of the same model: the penalized linear model's L-BFGS path over the
    same 3 folds and 6 penalties, then the final fit, on the same inputs.
    """
    from skfusion._classifier import cross_entropy
    from skfusion._survival import CoxModel
    from skfusion._training import fit_linear_start, folds

    if task == "classification":
        labels = np.unique(y, return_inverse=True)[1]
        target, loss, strata = np.column_stack([labels, np.ones(len(y))]), cross_entropy, labels
    else:
        target, loss, strata = CoxModel().prepare(y["time"], y["event"], np.ones(len(y))), CoxModel().loss, y["event"]
    n_outputs = net.linear.out_features
    layer, alpha = fit_linear_start(
        x, torch.from_numpy(target).float(), loss, n_outputs, folds(len(x), strata, 0), 1e-4
    )
    net.linear.load_state_dict(layer.state_dict())
    return alpha


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


def make_runners(estimator, task, X, y, epochs, overrides=False):
    """``{method: callable}`` fitting each method once on ``(X, y)``.

    A survival method's hand loop and pycox return the CPU seconds of their baseline hazard
    (which skfusion's ``fit`` includes), so that the table can show them with and without it.
    """
    import skfusion

    extra = {"guide": "img"} if estimator == "CoAttentionSurvival" else {}
    settings = dict(max_epochs=epochs, batch_size=BATCH, weight_decay=1e-4, early_stopping=False, random_state=0)
    model = getattr(skfusion, estimator)(**settings, **extra)
    def fitting(estimator):
        def run():
            estimator.fit(X, y)

        return run

    runners = {"skfusion": fitting(model)}
    if overrides:

        def run_overrides():
            with former_overrides():
                model.fit(X, y)

        runners[OVERRIDES] = run_overrides
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

        return {**runners, "hand": run_hand}
    plain = getattr(skfusion, estimator)(**settings, linear_path=False)
    runners[NO_LINEAR] = fitting(plain)
    x = _ready(X)
    if task == "classification":
        codes = torch.from_numpy(np.unique(y, return_inverse=True)[1])

        def hand(linear_path, start=False):
            torch.manual_seed(0)
            net = HandNet(x.shape[1], n_outputs=2, linear_path=linear_path)
            alpha = _with_linear_start(net, x, task, y) if start else None
            _train(net, lambda idx: net(x[idx]), codes, torch.nn.functional.cross_entropy, len(x), epochs, alpha)

    else:
        target = _survival_target(y)

        def hand(linear_path, start=False):
            torch.manual_seed(0)
            net = HandNet(x.shape[1], linear_path=linear_path)
            alpha = _with_linear_start(net, x, task, y) if start else None
            _train(net, lambda idx: net(x[idx]), target, _cox_loss, len(x), epochs, alpha)
            return _hand_baseline(net, lambda idx: net(x[idx]), len(x), y)

    hands = {"hand": lambda: hand(True), HAND_START: lambda: hand(True, start=True), HAND_NO_LINEAR: lambda: hand(False)}
    if task == "classification":
        return {**runners, **hands}

    def run_pycox():
        import torchtuples as tt
        from pycox.models import CoxPH

        torch.manual_seed(0)
        pycox = CoxPH(HandNet(x.shape[1]), tt.optim.Adam(lr=1e-3, weight_decay=1e-4))
        durations, events = y["time"].astype(np.float32), y["event"].astype(np.float32)
        pycox.fit(x.numpy(), (durations, events), batch_size=BATCH, epochs=epochs, verbose=False)
        start = time.process_time()
        pycox.compute_baseline_hazards(batch_size=BATCH)
        return time.process_time() - start

    return {**runners, **hands, "pycox": run_pycox}


def _former_set_training(self, training=True):
    # FusionNet's override until issue 24: the modes are set only when one differs.
    from skorch import NeuralNet

    modules = [getattr(self, name + "_") for name in self._modules + self._criteria]
    trees = [m.modules() for m in modules if isinstance(m, torch.nn.Module)]
    if not all(sub.training == training for tree in trees for sub in tree):
        NeuralNet._set_training(self, training)


@contextmanager
def former_overrides():
    """Inside the block, ``FusionNet`` has the override of skorch's ``_set_training`` it had until issue 24.

    Its other former override, ``run_single_epoch``, it still has (unchanged).
    """
    from skfusion._engine import FusionNet

    FusionNet._set_training = _former_set_training
    try:
        yield
    finally:
        del FusionNet._set_training


class Timers:
    """CPU seconds inside skfusion's epoch loop (``FusionNet.fit_loop``) and its linear start, summed over calls."""

    def __init__(self):
        from skfusion._base import BaseFusion
        from skfusion._engine import FusionNet

        self.seconds = {"loop": 0.0, "linear start": 0.0}
        self._wrap(FusionNet, "fit_loop", "loop")
        self._wrap(BaseFusion, "_linear_start", "linear start")

    def _wrap(self, cls, name, key):
        method = getattr(cls, name)

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[key] += time.process_time() - start

        setattr(cls, name, timed)

    def reset(self):
        self.seconds = dict.fromkeys(self.seconds, 0.0)


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
    runner = make_runners(estimator, task, X, y, epochs, overrides=method == OVERRIDES)[method]
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


def measure(case, n, repeats, memory, timeout, overrides):
    """Rows of the table for one case and size (without the ``pandas`` column)."""
    dims, estimator, task, epochs = CASES[case]
    X, y = _data(n, dims, task)
    runners = make_runners(estimator, task, X, y, epochs, overrides)
    timers = Timers.instance
    for fn in runners.values():
        fn()  # warm-up: torch's first calls, pycox's imports
    times = {name: [] for name in runners}
    baseline = {name: [] for name in runners}
    outside, linear_start = {}, {}
    for _ in range(repeats):
        for name, fn in runners.items():
            timers.reset()
            seconds, baseline_seconds = _cpu(fn)
            if baseline_seconds is not None:
                # Timed without its baseline; "+ baseline" is the same run, whole.
                baseline[name].append(seconds)
                seconds -= baseline_seconds
            times[name].append(seconds)
            if name.startswith("skfusion"):
                outside.setdefault(name, []).append(seconds - timers.seconds["loop"])
                linear_start.setdefault(name, []).append(timers.seconds["linear start"])
    peaks = {name: _memory(case, n, name, timeout) for name in runners} if memory else {}
    with_baseline = {f"{name} + baseline": runs for name, runs in baseline.items() if runs}
    rows = []
    for name, runs in {**times, **with_baseline}.items():
        med = statistics.median(runs)
        ref = REFERENCE.get(name.removesuffix(" + baseline"), "hand")
        plain = statistics.median(times[ref])
        # Survival fits are also compared with the hand loop that computes its baseline hazard.
        like_for_like = name.endswith("baseline") or (name.startswith("skfusion") and baseline[ref])
        full = statistics.median(baseline[ref]) if like_for_like else plain
        ratio = f"{med / plain:.2f}" + (f" ({med / full:.2f})" if full != plain else "")
        out = f"{statistics.median(outside[name]):.3f}" if name in outside else "-"
        start = f"{statistics.median(linear_start[name]):.3f}" if name in linear_start else "-"
        peak = peaks.get(name)
        peak_text = "-" if peak is None else f"{peak:.2f}"
        beyond = "-"
        if name != ref and not name.endswith("baseline") and peak is not None and peaks.get(ref) is not None:
            beyond = f"{peak - peaks[ref]:+.2f}"
        # Against the hand loop that fits the same linear start (with its baseline hazard, as skfusion's fit).
        second = SECOND_REFERENCE.get(name)
        same_work = "-"
        if second in times:
            same_work = f"{med / statistics.median(baseline[second] or times[second]):.2f}"
        rows.append(
            f"| {case} | {n} | {epochs} | {name} | {med:.3f} | {', '.join(f'{t:.2f}' for t in runs)} | {ref} | "
            f"{ratio} | {same_work} | {out} | {start} | {peak_text} | {beyond} |"
        )
        print(rows[-1], flush=True)
    return rows


def _machine():
    import pandas as pd

    return (
        f"{platform.machine()}, {os.cpu_count()} cores (shared), CPU instruction set "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"pandas {pd.__version__}"
    )


def _run_under(python, argv):
    """The rows of this benchmark run by ``python`` (another environment), each with its ``pandas`` column."""
    out = subprocess.run([python, __file__, *argv, "--rows-only"], stdout=subprocess.PIPE, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["machine"], [f"| {result['pandas']} {row}" for row in result["rows"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000], help="N of the cox case")
    parser.add_argument("--family-size", type=int, default=20000, help="N of the other cases")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--overrides", action="store_true", help="also time the former overrides of skorch's epoch")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a memory run is stopped")
    parser.add_argument("--python", nargs="+", help="interpreters to run the measurement under (default: this one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, n, method = args.child
        _child(case, int(n), method)
        return
    load_before = os.getloadavg()[0]
    if args.python:
        argv = [arg for arg in sys.argv[1:] if arg not in args.python and arg != "--python"]
        machines, rows = [], []
        for python in args.python:
            machine, python_rows = _run_under(python, argv)
            machines.append(machine)
            rows += python_rows
    else:
        import pandas as pd

        torch.set_num_threads(1)
        Timers.instance = Timers()
        rows = []
        for case in args.cases:
            for n in args.sizes if case == "cox" else [args.family_size]:
                rows += measure(case, n, args.repeats, not args.no_memory, args.timeout, args.overrides)
        if args.rows_only:
            print(json.dumps({"machine": _machine(), "pandas": pd.__version__, "rows": rows}))
            return
        machines, rows = [_machine()], [f"| {pd.__version__} {row}" for row in rows]
    header = [
        "# Fit: time and memory against hand-written torch loops and pycox",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {'; '.join(machines)}; one torch thread. Load average (1 min) at the start "
        f"{load_before:.1f}, at the end {os.getloadavg()[0]:.1f}.",
        "",
        "Batch 256, Adam (lr 1e-3, weight decay 1e-4), skfusion with `early_stopping=False` and otherwise its "
        "defaults (`linear_path=True`, `standardize=True`). `cox` and `classifier`: 2 modalities x 256 features, "
        "network 512 -> 256 -> out beside a linear path 512 -> out; `cox-wide`: 1024 + 768 features, network "
        "1792 -> 512 -> 1 beside 1792 -> 1; `co-attention`: `CoAttentionSurvival`'s defaults on the narrow shape, "
        "the hand loop training the identical module. `hand`: the tight loop of the same network (the linear "
        "path included) on a ready row-major float32 tensor (built and standardized before the clock starts), "
        "`torch.randperm` per epoch, rows indexed per batch, torchsurv's Efron loss or cross-entropy, Adam; "
        "`hand, no linear path`: the same without the linear path, the reference of `skfusion, "
        "linear_path=False`; `hand + linear start`: `hand` after fitting its linear path as skfusion's "
        "linear start (skfusion's own `fit_linear_start` on the same 3 folds, then the linear weights "
        "decayed by the chosen penalty), the reference of `vs hand + linear start`: the engine's cost "
        "around the same work. CPU seconds (`time.process_time`), median of the interleaved runs after one "
        "warm-up run each; `ratio` = median / the reference's, and in brackets / the reference's with its "
        "baseline hazard. `+ baseline`: the same runs including what a Cox model needs before it can predict "
        "survival (the trained network's outputs over the training rows and Breslow's baseline; pycox's "
        "`compute_baseline_hazards`), which skfusion's `fit` includes and the plain rows exclude. "
        "`outside loop` = skfusion's CPU seconds outside its epoch loop (the linear start included); "
        "`linear start` = its penalized linear model's L-BFGS path (3 folds x 6 penalties, then all rows). "
        "`peak/data` = peak resident memory added by the fit (a subprocess per method) / the float32 "
        "size of the data; `beyond ref` = the method's `peak/data` minus its reference's.",
        "",
        "| pandas | case | N | epochs | method | CPU s (median) | runs | reference | ratio (+ baseline) "
        "| vs hand + linear start | outside loop s | linear start s | peak/data | beyond ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")


if __name__ == "__main__":
    main()
