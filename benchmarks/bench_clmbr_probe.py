"""Linear survival probe of the default CLMBR embedding against one-hot features, on pbcseq.

The question (issue 11, item 3): does ``CLMBREmbedder()`` with its defaults and no
checkpoint give an EHR representation on which a linear Cox model is at least as good as on
``OneHotEHREncoder()`` features of the same events, alone and next to the baseline
clinical variables?

Data: ``load_pbcseq_events(landmark=365)`` (290 patients, events up to day 365). Ten
stratified (on the death indicator) 70/30 splits, ``StratifiedShuffleSplit(random_state=0)``;
every encoder is fitted on the training part only, ``CLMBREmbedder(random_state=split)``.
Probe: ``StandardScaler`` + scikit-survival ``CoxPHSurvivalAnalysis(alpha=10)`` (ridge) on
(a) the one-hot features, (b) the CLMBR embedding, (c) each with the ``clin__*`` block;
Harrell's C on the test part, mean +- sd over the splits. Also: whether two fits with the
same ``random_state`` give the same embedding, the fit time, and the target line
``Pipeline([("emb", CLMBREmbedder()), ("fuse", CoAttentionSurvival())])`` with its defaults
(``random_state=split`` for both) on the same splits.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_clmbr_probe.py [--splits 10]
"""

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis

from skfusion import CoAttentionSurvival
from skfusion.datasets._events_real import load_pbcseq_events
from skfusion.encoders.clmbr import CLMBREmbedder
from skfusion.encoders.onehot import OneHotEHREncoder

RESULTS = Path(__file__).parent / "results" / "clmbr_probe.md"
ENCODERS = {
    "OneHotEHREncoder()": lambda split: OneHotEHREncoder(),
    "CLMBREmbedder()": lambda split: CLMBREmbedder(random_state=split),
    "CLMBREmbedder(code_summary=False)": lambda split: CLMBREmbedder(code_summary=False, random_state=split),
}


def probe_c_index(Z_train, y_train, Z_test, y_test, pattern):
    """Harrell's C of a ridge Cox model on the columns matching ``pattern``, standardised."""
    model = make_pipeline(
        ColumnTransformer([("keep", "passthrough", make_column_selector(pattern=pattern))]),
        StandardScaler(),
        CoxPHSurvivalAnalysis(alpha=10),
    )
    return model.fit(Z_train, y_train).score(Z_test, y_test)


def run_splits(X, y, n_splits):
    """C-index per (encoder, block) and split, and the encoders' fit times."""
    splits = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.3, random_state=0).split(X, y["event"])
    scores = {(name, block): [] for name in ENCODERS for block in ("ehr", "ehr + clin")}
    fit_s = {name: [] for name in ENCODERS}
    for split, (train, test) in enumerate(splits):
        for name, make in ENCODERS.items():
            start = time.perf_counter()
            encoder = make(split).fit(X.iloc[train])
            fit_s[name].append(time.perf_counter() - start)
            Z_train, Z_test = encoder.transform(X.iloc[train]), encoder.transform(X.iloc[test])
            for block, pattern in (("ehr", "^ehr__"), ("ehr + clin", "^(ehr|clin)__")):
                c = probe_c_index(Z_train, y[train], Z_test, y[test], pattern)
                scores[name, block].append(c)
        print(f"split {split + 1}/{n_splits}: " + ", ".join(f"{k[0]} {k[1]} {v[-1]:.3f}" for k, v in scores.items()))
    return scores, fit_s


def is_deterministic(X):
    """Whether two fits with the same random_state give bit-identical embeddings."""
    first = CLMBREmbedder(random_state=0).fit(X).transform(X)
    again = CLMBREmbedder(random_state=0).fit(X).transform(X)
    return bool(np.array_equal(first.to_numpy(), again.to_numpy()))


def clinical_only(X, y, n_splits):
    splits = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.3, random_state=0).split(X, y["event"])
    return [probe_c_index(X.iloc[tr], y[tr], X.iloc[te], y[te], "^clin__") for tr, te in splits]


def target_line(X, y, n_splits):
    """C-index of the default CLMBR + co-attention pipeline on each split."""
    splits = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.3, random_state=0).split(X, y["event"])
    scores = []
    for split, (train, test) in enumerate(splits):
        pipe = Pipeline(
            [("emb", CLMBREmbedder(random_state=split)), ("fuse", CoAttentionSurvival(random_state=split))]
        )
        scores.append(pipe.fit(X.iloc[train], y[train]).score(X.iloc[test], y[test]))
    return scores


def report(scores, fit_s, clin, target, deterministic, n_splits, n_patients):
    lines = [
        "# Linear probe of the default CLMBR embedding on pbcseq",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_clmbr_probe.py --splits {n_splits}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} thread), CPU; load average "
        f"{os.getloadavg()[0]:.1f} at the end (shared machine: times are indicative).",
        "",
        f"Data: `load_pbcseq_events(landmark=365)`, {n_patients} patients; {n_splits} stratified 70/30 splits "
        "(`StratifiedShuffleSplit(random_state=0)` on the death indicator); encoders fitted on the training "
        "part, `CLMBREmbedder(random_state=split)`. Probe: `StandardScaler` + "
        "`CoxPHSurvivalAnalysis(alpha=10)`; Harrell's C on the test part.",
        "",
        "| features | C-index mean | sd | encoder fit (s) |",
        "|---|---|---|---|",
        f"| clinical block only (`clin__*`) | {np.mean(clin):.3f} | {np.std(clin):.3f} | - |",
    ]
    for (name, block), values in scores.items():
        lines.append(
            f"| {name}, {block} | {np.mean(values):.3f} | {np.std(values):.3f} | {np.mean(fit_s[name]):.1f} |"
        )
    lines += [
        "",
        "Target line `Pipeline([(\"emb\", CLMBREmbedder()), (\"fuse\", CoAttentionSurvival())])`, defaults, "
        f"same splits: C-index {np.mean(target):.3f} +- {np.std(target):.3f} (the one-hot + clinical ridge Cox "
        "above is the baseline it is to match).",
        "",
        f"Two fits of `CLMBREmbedder(random_state=0)` on all patients give identical embeddings: {deterministic}.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    X, y = load_pbcseq_events(landmark=365)
    scores, fit_s = run_splits(X, y, args.splits)
    clin = clinical_only(X, y, args.splits)
    target = target_line(X, y, args.splits)
    report(scores, fit_s, clin, target, is_deterministic(X), args.splits, len(X))


if __name__ == "__main__":
    main()
