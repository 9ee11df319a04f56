"""Quality of the fusion strategies: ``compare_fusion`` on real and synthetic data, beside scikit-survival.

1. **GSE7390 breast cancer** (``load_breast_cancer_multimodal``: 76 gene-expression probes +
   clinical variables, 198 patients): ``compare_fusion`` with the models of Zhang et al. (2026) and
   scikit-survival's CoxPH (ridge), Coxnet (elastic net) and RandomSurvivalForest on the
   concatenated features, all on the same repeated 5-fold splits and the same bootstrap
   resamples (so the peers get intervals and p-values too). Every model standardises the
   features inside the fold.
2. **Synthetic, balanced versus imbalanced signal** (``make_multimodal_survival``, the true
   log hazard known): the same models fitted on a large training set and scored on a large
   held-out set, next to the oracle (the true log hazard) and a linear Cox model (the
   attainable ceiling: E[latent | features] is linear). The finding of Zhang et al. (2026) to check: fusion
   gains most over the best single modality when the modalities contribute comparably.

Usage::

    python benchmarks/bench_compare_fusion.py [--repeats 3] [--n-train 4000] [--n-test 2000]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.ensemble import RandomSurvivalForest
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis

from skfusion.datasets import load_breast_cancer_multimodal, make_multimodal_survival
from skfusion.metrics import bootstrap_ci, concordance_index
from skfusion.model_selection import compare_fusion, format_comparison, fusion_models

BALANCE = (("balanced", (1.0, 1.0)), ("imbalanced", (1.0, 0.25)))
RESULTS = Path(__file__).parent / "results" / "compare_fusion.md"


def _scaled(model):
    return make_pipeline(StandardScaler().set_output(transform="pandas"), model)


def _peers():
    return {
        "sksurv CoxPH (ridge, alpha=10)": _scaled(CoxPHSurvivalAnalysis(alpha=10.0)),
        "sksurv Coxnet (l1_ratio=0.5)": _scaled(
            CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.1, fit_baseline_model=False)
        ),
        "sksurv RandomSurvivalForest (500 trees)": RandomSurvivalForest(
            n_estimators=500, min_samples_leaf=10, max_features="sqrt", random_state=0
        ),
    }


def _markdown(formatted, extra_columns=None):
    columns = list(formatted.columns)
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for model, row in formatted.iterrows():
        lines.append(f"| {model} | " + " | ".join(row[c] for c in columns) + " |")
    return lines


def breast_cancer(repeats, n_resamples):
    X, y = load_breast_cancer_multimodal()
    settings = {"max_epochs": 60, "weight_decay": 1e-2, "dropout": 0.3, "random_state": 0}
    models = {name: _scaled(m) for name, m in fusion_models(X, **settings).items()}
    models.update(_peers())
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0)
    start = time.perf_counter()
    table = compare_fusion(
        X, y, models=models, cv=cv, reference="clin only", n_resamples=n_resamples, random_state=0
    )
    seconds = time.perf_counter() - start
    print(format_comparison(table).to_string(), flush=True)
    lines = [
        f"## GSE7390 breast cancer: genes ({X.filter(like='genes__').shape[1]}) + clinical "
        f"({X.filter(like='clin__').shape[1]}), {len(X)} patients, {int(y[y.dtype.names[0]].sum())} events",
        "",
        f"Harrell's C-index, mean over {5 * repeats} test folds (5-fold CV repeated {repeats} times, "
        f"stratified by event, the same folds for every model), 95% percentile bootstrap interval "
        f"({n_resamples} patient-level resamples shared by all models). `*`: p < 0.05 versus the "
        "clinical-only model (the unimodal reference), `+`: versus concatenation (paired bootstrap, "
        f"two-sided). Bold: best. Fusion models: `max_epochs=60, weight_decay=1e-2, dropout=0.3`, "
        f"otherwise defaults. Wall time of the call: {seconds / 60:.1f} min.",
        "",
        *_markdown(format_comparison(table)),
        "",
    ]
    fusion = table[~table["model"].str.startswith("sksurv") & ~table["model"].str.endswith(" only")]
    peers = table[table["model"].str.startswith("sksurv")]
    best, best_peer = fusion.loc[fusion["estimate"].idxmax()], peers.loc[peers["estimate"].idxmax()]
    lines += [
        f"Best fusion model: {best['model']} {best['estimate']:.3f}; best scikit-survival peer: "
        f"{best_peer['model']} {best_peer['estimate']:.3f} (difference {best['estimate'] - best_peer['estimate']:+.3f}).",
        "",
    ]
    return lines


def synthetic(n_train, n_test, n_resamples):
    lines = [
        f"## Synthetic: balanced versus imbalanced modality signal ({n_train} training, {n_test} test rows)",
        "",
        "`make_multimodal_survival(n_features=(64, 32), n_informative=4, censoring=0.3)`; "
        "`signal` scales each modality's share of the true log hazard, `noise` is the feature noise "
        "(with less noise the features pin down the latents, and the linear ceiling nears the oracle). Models fitted once on the "
        "training rows (`early_stopping=True`, otherwise defaults), Harrell's C on the test rows "
        f"with 95% bootstrap intervals ({n_resamples} resamples). The oracle scores the test rows "
        "with their true log hazard; the linear Cox model (sksurv, ridge alpha=1, on all features) "
        "is the attainable ceiling, since E[latent | features] is linear.",
        "",
    ]
    summary = [
        "| signal (img, ehr) | feature noise | oracle | linear Cox | best unimodal | best fusion | "
        "fusion gain over best unimodal | oracle - best fusion |",
        "|---|---|---|---|---|---|---|---|",
    ]
    settings = [(label, signal, noise) for noise in (1.0, 0.5) for label, signal in BALANCE]
    for label, signal, noise in settings:
        X, y, risk = make_multimodal_survival(
            n_samples=n_train + n_test, signal=signal, noise=noise, return_truth=True, random_state=1
        )
        train, test = np.arange(n_train), np.arange(n_train, n_train + n_test)
        models = fusion_models(X, early_stopping=True, random_state=0)
        models["linear Cox (sksurv, ridge alpha=1)"] = CoxPHSurvivalAnalysis(alpha=1.0)
        start = time.perf_counter()
        table = compare_fusion(
            X.iloc[train], y[train], models=models, cv=None,
            cohorts={"test": (X.iloc[test], y[test])}, n_resamples=n_resamples, random_state=0,
        )
        seconds = time.perf_counter() - start
        oracle = bootstrap_ci(concordance_index, y[test], risk[test], n_resamples=n_resamples, random_state=0)
        print(label, noise, format_comparison(table).to_string(), f"oracle {oracle}", sep="\n", flush=True)
        lines += [
            f"### {label} signal {signal}, feature noise {noise}: {seconds / 60:.1f} min",
            "",
            *_markdown(format_comparison(table)),
        ]
        lines += [f"| oracle (true log hazard) | {oracle} |", ""]
        est = table.set_index("model")["estimate"]
        unimodal = est[[m for m in est.index if m.endswith(" only")]].max()
        fusion = est[[m for m in est.index if not m.endswith(" only") and not m.startswith("linear")]]
        summary.append(
            f"| {label} {signal} | {noise} | {oracle.estimate:.3f} | {est.filter(like='linear Cox').item():.3f} | "
            f"{unimodal:.3f} | {fusion.max():.3f} ({fusion.idxmax()}) | {fusion.max() - unimodal:+.3f} | "
            f"{oracle.estimate - fusion.max():.3f} |"
        )
    return lines + ["### Summary", "", *summary, ""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = [
        "# Fusion strategies compared (Zhang et al., 2026, Table 1) beside scikit-survival",
        "",
        f"Command: `python {' '.join(['benchmarks/bench_compare_fusion.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (torch threads {args.threads}), "
        f"Python {platform.python_version()}, torch {torch.__version__}, CPU; load average "
        f"{os.getloadavg()[0]:.1f} at the start.",
        "",
    ]
    lines = header + breast_cancer(args.repeats, args.n_resamples)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    if not args.skip_synthetic:
        lines += synthetic(args.n_train, args.n_test, args.n_resamples)
        RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
