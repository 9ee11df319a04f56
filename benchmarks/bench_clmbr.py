"""CLMBR on pbcseq: embedding throughput, pretraining time, and C-index against one-hot and baseline.

1. Throughput (patients/s) of ``CLMBREmbedder.transform`` against a plain torch loop over the
   same module on pre-tokenized, pre-collated batches (the floor): the ratio, and the share of
   ``transform`` spent reading and tokenizing event frames. Three model sizes: the default
   fitted here, a mid-size one, and the CLMBR-T-base shape (768 wide, 12 layers, 141M
   parameters) with random weights, written and read back in femr's checkpoint layout.
2. Fit time of the self-supervised next-code pretraining (default sizes) on pbcseq.
3. 5-fold cross-validated Harrell's C of a ridge Cox model (scikit-survival, alpha=1, features
   standardised) on the CLMBR embedding, on ``OneHotEHREncoder`` features, on the baseline
   variables only, and on baseline + each EHR representation; same folds for all, every
   encoder fitted on the training folds only.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_clmbr.py [--repeats 1]
"""

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import RepeatedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis

from skfusion.datasets._events_real import load_pbcseq_events
from skfusion.encoders.clmbr import CLMBREmbedder
from skfusion.encoders.onehot import OneHotEHREncoder
from skfusion.modules.clmbr import CLMBRModel, complete_config, last_states, save_femr_checkpoint

RESULTS = Path(__file__).parent / "results" / "clmbr.md"
SIZES = {
    "default (64 wide, 2 layers)": dict(hidden_dim=64, n_layers=2, n_heads=4, intermediate_dim=128),
    "mid (256 wide, 4 layers)": dict(hidden_dim=256, n_layers=4, n_heads=8, intermediate_dim=1024),
}
BASE_SHAPE = dict(vocab_size=65536, hidden_dim=768, intermediate_dim=3072, n_heads=12, n_layers=12)


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_loop(embedder, X):
    """The floor: the same module over batches tokenized and collated before the clock starts."""
    cells = embedder._check_frame(X, reset=False)
    tokens = embedder._tokenize_all(embedder._read_all(cells))
    order = np.argsort([-len(t.ids) for t in tokens], kind="stable")
    batches = [
        embedder._collate([tokens[i] for i in order[s : s + embedder.batch_size]])
        for s in range(0, len(order), embedder.batch_size)
    ]
    model = embedder.model_

    def run():
        with torch.inference_mode():
            for inputs, lengths in batches:
                last_states(model(**inputs), lengths).cpu()

    def read():
        embedder._tokenize_all(embedder._read_all(embedder._check_frame(X, reset=False)))

    return run, read


def throughput_row(name, embedder, X, repeats):
    run, read = torch_loop(embedder, X)
    run()
    embedder.transform(X.iloc[:8])
    t_transform = best_of(lambda: embedder.transform(X), repeats)
    t_loop = best_of(run, repeats)
    t_read = best_of(read, repeats)
    n = len(X)
    print(f"{name}: transform {n / t_transform:.0f}/s, loop {n / t_loop:.0f}/s", flush=True)
    return (name, n, n / t_transform, n / t_loop, t_transform / t_loop, t_read / t_transform)


def base_shape_embedder(X, folder):
    """A 141M-parameter CLMBR-T-base-shaped checkpoint with random weights, in femr's layout."""
    fitted = CLMBREmbedder(min_frequency=1, max_epochs=0, random_state=0, device="cpu").fit(X)
    config = complete_config({**BASE_SHAPE, "use_normed_ages": True, "use_bias": False}, "benchmark")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLMBRModel(config, clmbr_vocab_size=8192)
    n_params = sum(p.numel() for p in model.parameters())
    save_femr_checkpoint(folder, model, fitted.dictionary_)
    start = time.perf_counter()
    embedder = CLMBREmbedder(pretrained=folder, batch_size=16).fit(X)
    return embedder, n_params, time.perf_counter() - start


def throughput(repeats):
    X = load_pbcseq_events()[0][["ehr"]]
    many = pd.concat([X] * 4, ignore_index=True)
    rows = []
    for name, size in SIZES.items():
        embedder = CLMBREmbedder(**size, min_frequency=1, max_epochs=0, random_state=0, device="cpu").fit(X)
        rows.append(throughput_row(name, embedder, many, repeats))
    with tempfile.TemporaryDirectory() as folder:
        embedder, n_params, load_s = base_shape_embedder(X, folder)
        rows.append(throughput_row("CLMBR-T-base shape (random weights)", embedder, X.iloc[:128], repeats))
    return rows, n_params, load_s


def pretraining():
    X, _ = load_pbcseq_events()
    embedder = CLMBREmbedder(random_state=0, device="cpu")
    start = time.perf_counter()
    embedder.fit(X)
    seconds = time.perf_counter() - start
    n_tokens = sum(len(t.ids) for t in embedder._tokenize_all(embedder._read_all(embedder._check_frame(X, False))))
    return len(X), n_tokens, embedder.max_epochs, seconds, embedder.loss_curve_


def cox(X_train, y_train, X_test, y_test):
    model = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)).fit(X_train, y_train)
    return model.score(X_test, y_test)


def cross_validated(repeats):
    X, y = load_pbcseq_events()
    clin = [c for c in X.columns if c.startswith("clin__")]
    encoders = {
        "CLMBR (pretrained here, default sizes)": lambda: CLMBREmbedder(random_state=0, device="cpu"),
        "CLMBR (same network, untrained)": lambda: CLMBREmbedder(max_epochs=0, random_state=0, device="cpu"),
        "OneHotEHREncoder (windows 180 d + all, 4 bins)": lambda: OneHotEHREncoder(windows=[180, None]),
    }
    scores = {"baseline variables only": []}
    for name in encoders:
        scores[name] = []
        scores[f"baseline + {name}"] = []
    cv = RepeatedKFold(n_splits=5, n_repeats=repeats, random_state=0)
    for fold, (train, test) in enumerate(cv.split(X)):
        Xa, Xb, ya, yb = X.iloc[train], X.iloc[test], y[train], y[test]
        scores["baseline variables only"].append(cox(Xa[clin], ya, Xb[clin], yb))
        for name, make in encoders.items():
            encoder = make().fit(Xa)
            Ea, Eb = encoder.transform(Xa), encoder.transform(Xb)
            ehr = [c for c in Ea.columns if c.startswith("ehr__")]
            scores[name].append(cox(Ea[ehr], ya, Eb[ehr], yb))
            scores[f"baseline + {name}"].append(cox(Ea[clin + ehr], ya, Eb[clin + ehr], yb))
        print(f"fold {fold + 1} done", flush=True)
    return [(name, np.mean(s), np.std(s), len(s)) for name, s in scores.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the 5-fold cross-validation")
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.simplefilter("ignore", UserWarning)
    rows, n_params, load_s = throughput(repeats=3)
    n_patients, n_tokens, epochs, fit_s, losses = pretraining()
    cv_rows = cross_validated(args.repeats)
    lines = [
        "# CLMBR on pbcseq: throughput, pretraining, C-index",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} "
        f"python benchmarks/bench_clmbr.py --repeats {args.repeats}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} thread(s)), device cpu (no GPU on this machine); "
        f"load average {os.getloadavg()[0]:.1f} at the end (the machine is shared: timings are indicative).",
        "",
        "Data: `load_pbcseq_events(landmark=365)`: 290 patients, events up to day 365 "
        f"({n_tokens} tokens after femr's same-day de-duplication, {n_tokens / n_patients:.1f} per patient).",
        "",
        "## Embedding throughput (`transform`) against a plain torch loop",
        "",
        "Best of 3. The loop runs the same module under `torch.inference_mode()` over batches "
        "tokenized and collated beforehand; `transform` also reads the event frames "
        "(`as_event_frame`), tokenizes and collates. pbcseq patients repeated 4 times "
        "(1160 rows) for the first two models; 128 patients for the base shape.",
        "",
        "| model | patients | transform (patients/s) | torch loop (patients/s) | ratio | share reading + tokenizing |",
        "|---|---|---|---|---|---|",
        *[f"| {m} | {n} | {a:.0f} | {b:.0f} | {r:.2f} | {s:.0%} |" for m, n, a, b, r, s in rows],
        "",
        f"The base-shaped checkpoint ({n_params / 1e6:.1f}M parameters, written with "
        f"`save_femr_checkpoint`) loads with strict key checking in {load_s:.1f} s.",
        "",
        "## Self-supervised pretraining (`fit`, default sizes: 64 wide, 2 layers, batch 32)",
        "",
        "| patients | tokens | epochs | fit (s) | s / epoch | next-code loss first -> last epoch |",
        "|---|---|---|---|---|---|",
        f"| {n_patients} | {n_tokens} | {epochs} | {fit_s:.1f} | {fit_s / epochs:.2f} | "
        f"{losses[0]:.3f} -> {losses[-1]:.3f} |",
        "",
        "## Harrell's C, 5-fold cross-validation (same folds), ridge Cox (alpha=1, standardised)",
        "",
        "Baseline variables: `clin__*` (age at the landmark, sex, arm, enrolment bilirubin, albumin, "
        "prothrombin time, edema). EHR: every event up to day 365. Encoders fitted on the training folds.",
        "",
        "| features | mean C-index | std over folds | folds |",
        "|---|---|---|---|",
        *[f"| {m} | {c:.3f} | {s:.3f} | {k} |" for m, c, s, k in cv_rows],
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
