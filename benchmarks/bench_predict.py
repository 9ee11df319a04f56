"""Prediction-time benchmark of skfusion's estimators against the hand-written forward pass and pycox.

On the narrow shape of issue 15 (two modalities x 256 float32 features, the default network
512 -> 256 -> 1, Cox loss), a ``ConcatSurvival``, a ``ConcatClassifier`` and a
``CoAttentionSurvival`` are fitted briefly, then:

- ``predict`` on ``--predict-rows`` rows (a DataFrame, as a user calls it) is timed against a
  hand-written forward pass of the same network (the fitted module's MLP and linear path,
  ``mlp(x) + linear(x)``, in eval mode under ``torch.inference_mode()``, consecutive batches
  of ``batch_size``) on one ready row-major float32 tensor of the standardized inputs: the
  floor for this workload; the same for the classifier's ``predict_proba`` (the hand pass
  adds the softmax); the co-attention model's ``predict`` against its module on the same
  float32 blocks, already built;
- ``predict_survival_function(return_array=True)`` and
  ``predict_cumulative_hazard_function(return_array=True)`` on ``--grid-rows`` rows are timed
  against pycox's ``CoxPH.predict_surv`` of the identical network (the fitted module wrapped
  to take the concatenated tensor), its Breslow baseline computed on the same training rows.

Each case is timed on its own: the median of ``--repeats`` runs of each method,
interleaved, after one warm-up run of each, on CPU time with one torch thread. Peak
memory is measured in separate runs with
``tracemalloc`` (NumPy's allocations are traced, torch's are not) and reported as a multiple
of the output's size. ``--python`` runs the whole measurement under each interpreter given
(e.g. one environment with pandas 2 and one with pandas 3) and writes one table with a
``pandas`` column.

Usage::

    python benchmarks/bench_predict.py [--predict-rows 200000] [--grid-rows 20000]
        [--python .venv/bin/python /tmp/venv-pd2/bin/python]
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "predict.md"
DIMS = (256, 256)


def _data(n, seed, task="survival"):
    from skfusion.datasets import make_multimodal_classification, make_multimodal_survival

    make = make_multimodal_survival if task == "survival" else make_multimodal_classification
    return make(n_samples=n, n_features=DIMS, n_informative=8, random_state=seed)


def _tensors(model, X):
    """The float32, standardized blocks skfusion feeds its module, built once (not timed)."""
    from skfusion._data import ModalityDataset

    return ModalityDataset(model._blocks(X, reset=False)[0]).batch(torch.arange(len(X)))[0]


def tight_forward(module, x, batch_size):
    """The hand pass of a ``Concat*`` network on one tensor: ``mlp(x) + linear(x)``, batch by batch."""
    mlp, linear = module.deep.head, module.linear
    mlp.eval()
    with torch.inference_mode():
        return torch.cat([mlp(x[lo : lo + batch_size]) + linear(x[lo : lo + batch_size]) for lo in range(0, len(x), batch_size)])


def hand_forward(module, blocks, batch_size):
    module.eval()
    n = len(next(iter(blocks.values()))["present"])
    outputs = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = {name: {k: v[start : start + batch_size] for k, v in b.items()} for name, b in blocks.items()}
            outputs.append(module(**batch))
    return torch.cat(outputs).numpy()


class ConcatInput(torch.nn.Module):
    """The fitted skfusion module taking one concatenated tensor, as pycox feeds a network."""

    def __init__(self, module, names, dims):
        super().__init__()
        self.module = module
        self.names = names
        self.bounds = np.cumsum([0, *dims])

    def forward(self, x):
        present = torch.ones(len(x), dtype=torch.bool)
        blocks = {
            name: {"x": x[:, lo:hi], "present": present}
            for name, lo, hi in zip(self.names, self.bounds[:-1], self.bounds[1:])
        }
        return self.module(**blocks)


def _concat(blocks):
    return torch.cat([b["x"] for b in blocks.values()], dim=1).numpy()


def _cpu(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _peak(fn):
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-rows", type=int, default=4000)
    parser.add_argument("--fit-epochs", type=int, default=2)
    parser.add_argument("--predict-rows", type=int, default=200_000)
    parser.add_argument("--grid-rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cases", nargs="+", help="time only these cases (default: all)")
    parser.add_argument("--python", nargs="+", help="interpreters to run the measurement under (default: this one)")
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.python:
        argv = [arg for arg in sys.argv[1:] if arg not in args.python and arg != "--python"]
        machines, rows, unique_times = [], [], None
        for python in args.python:
            out = subprocess.run([python, __file__, *argv, "--rows-only"], stdout=subprocess.PIPE, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            machines.append(result["machine"])
            unique_times = result["unique_times"]
            rows += [f"| {result['pandas']} {row}" for row in result["rows"]]
        _write(args, machines, rows, unique_times)
        return
    torch.set_num_threads(1)

    import torchtuples as tt  # noqa: F401  (pycox's dependency, imported before timing)
    from pycox.models import CoxPH

    from skfusion import CoAttentionSurvival, ConcatClassifier, ConcatSurvival

    X_fit, y_fit = _data(args.fit_rows, seed=0)
    settings = {"max_epochs": args.fit_epochs, "batch_size": 256, "early_stopping": False, "random_state": 0}
    model = ConcatSurvival(**settings).fit(X_fit, y_fit)
    co_attention = CoAttentionSurvival(guide="img", **settings).fit(X_fit, y_fit)
    classifier = ConcatClassifier(**settings).fit(*_data(args.fit_rows, seed=0, task="classification"))
    X_pred, _ = _data(args.predict_rows, seed=1)
    X_class, _ = _data(args.predict_rows, seed=1, task="classification")
    class_blocks = _tensors(classifier, X_class)
    class_module = classifier.net_.module_
    co_blocks = _tensors(co_attention, X_pred)
    X_grid = X_pred.iloc[: args.grid_rows]
    module, bs = model.net_.module_, model.batch_size
    pred_blocks = _tensors(model, X_pred)

    names = list(pred_blocks)
    pycox = CoxPH(ConcatInput(module, names, [pred_blocks[n]["x"].shape[1] for n in names]))
    x_train = _concat(_tensors(model, X_fit))
    pycox.compute_baseline_hazards(
        input=x_train, target=(y_fit["time"].astype("float32"), y_fit["event"].astype("float32"))
    )
    x_grid = _concat(_tensors(model, X_grid))
    # The hand passes' input: one row-major tensor (the module's concatenation of the blocks).
    x_pred, x_class = torch.from_numpy(_concat(pred_blocks)), torch.from_numpy(_concat(class_blocks))

    cases = {
        "predict": {
            "skfusion": lambda: model.predict(X_pred),
            "hand forward": lambda: tight_forward(module, x_pred, bs),
        },
        "classifier predict_proba": {
            "skfusion": lambda: classifier.predict_proba(X_class),
            "hand forward": lambda: torch.softmax(tight_forward(class_module, x_class, bs), 1),
        },
        "co-attention predict": {
            "skfusion": lambda: co_attention.predict(X_pred),
            "hand forward": lambda: hand_forward(co_attention.net_.module_, co_blocks, bs),
        },
        "survival": {
            "skfusion": lambda: model.predict_survival_function(X_grid, return_array=True),
            "pycox predict_surv": lambda: pycox.predict_surv(x_grid, batch_size=bs, numpy=True),
        },
        "cumulative hazard": {
            "skfusion": lambda: model.predict_cumulative_hazard_function(X_grid, return_array=True),
            "pycox predict_surv": lambda: pycox.predict_surv(x_grid, batch_size=bs, numpy=True),
        },
    }
    # Sanity: the hand pass and skfusion agree (float32, same batches), and so do the grids.
    hand = tight_forward(module, torch.from_numpy(_concat(_tensors(model, X_grid))), bs)[:, 0].numpy()
    np.testing.assert_allclose(model.predict(X_grid), hand, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        classifier.predict_proba(X_class[: args.grid_rows]),
        torch.softmax(tight_forward(class_module, x_class[: args.grid_rows], bs), 1),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        co_attention.predict(X_grid), hand_forward(co_attention.net_.module_, _tensors(co_attention, X_grid), bs)[:, 0],
        rtol=1e-4, atol=1e-5,
    )

    cases = {case: fns for case, fns in cases.items() if not args.cases or case in args.cases}
    times = {}
    for case, fns in cases.items():
        # Warm-up right before the case's runs: first calls, the allocator's first touch of
        # the output's pages, and what the previous case left in memory (the first grid
        # after the 200,000-row predictions costs 1 s more, whichever method runs it).
        for fn in fns.values():
            fn()
        times[case] = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                times[case][name].append(_cpu(fn)[0])
    peaks = {}
    for case, fns in cases.items():
        for name, fn in fns.items():
            peak, out = _peak(fn)
            peaks[case, name] = (peak, np.asarray(out).nbytes, np.asarray(out).dtype, np.asarray(out).shape)

    import pandas as pd

    n_times = len(model.unique_times_)
    rows = []
    for case, fns in cases.items():
        ref = statistics.median(times[case][list(fns)[1]])
        for name in fns:
            med = statistics.median(times[case][name])
            peak, nbytes, dtype, shape = peaks[case, name]
            runs = ", ".join(f"{t:.3f}" for t in times[case][name])
            rows.append(
                f"| {case} | {shape[0]} | {name} | {med:.3f} | {runs} | {med / ref:.2f} | "
                f"{'x'.join(map(str, shape))} {dtype} | {peak / 2**20:.1f} | {peak / nbytes:.2f} |"
            )
            print(rows[-1], flush=True)
    if args.rows_only:
        print(json.dumps({"machine": _machine(), "pandas": pd.__version__, "rows": rows, "unique_times": n_times}))
        return
    _write(args, [_machine()], [f"| {pd.__version__} {row}" for row in rows], n_times)


def _machine():
    import pandas as pd

    return (
        f"{platform.machine()}, {os.cpu_count()} cores (shared), CPU instruction set "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"pandas {pd.__version__}"
    )


def _write(args, machines, rows, n_times):
    header = [
        "# Prediction: time and memory against the hand-written forward pass and pycox",
        "",
        f"Command: `python {shlex.join(sys.argv)}`",
        "",
        f"Machine: {'; '.join(machines)}; one torch thread. Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        f"Models: ConcatSurvival (Cox loss, default network {sum(DIMS)} -> 256 -> 1), ConcatClassifier "
        "(two classes, the same network with two outputs) and CoAttentionSurvival (its defaults, "
        f"guide='img'), each fitted on {args.fit_rows} rows x ({DIMS[0]} + {DIMS[1]}) features for "
        f"{args.fit_epochs} epochs with early_stopping=False; "
        f"{n_times} unique training times (the grid's width). CPU seconds, median of "
        f"{args.repeats} interleaved runs after one warm-up run each, case by case. `ratio` = median / "
        "the case's reference (second row). "
        "`peak/output` = tracemalloc peak (NumPy and Python allocations; torch's own buffers are not "
        "traced) / the output's size, in a separate run. skfusion is called on the DataFrame (validation "
        "and conversion included); the hand pass and pycox get the ready float32 tensor: for `predict` and "
        "`predict_proba`, one row-major tensor of the standardized inputs, through the fitted network's MLP "
        "and linear path (`mlp(x) + linear(x)`); for co-attention, its module on the ready blocks.",
        "",
        "| pandas | case | rows | method | CPU s (median) | runs | ratio | output | peak MiB | peak/output |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")


if __name__ == "__main__":
    main()
