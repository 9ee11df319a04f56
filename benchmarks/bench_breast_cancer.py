"""C-index of fusion and unimodal models against scikit-survival on real data (GSE7390).

5-fold cross-validation with the same folds for every model, each fold's C-index kept, on
``load_breast_cancer_multimodal()`` (76 gene-expression probes + clinical variables).
Every pipeline standardises the features inside the fold.

Usage::

    python benchmarks/bench_breast_cancer.py [--repeats 3]
"""

import argparse
import platform
from pathlib import Path

import pandas as pd
from sklearn.model_selection import RepeatedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis

from skfusion import ConcatSurvival, LateFusionSurvival, UnimodalSurvival
from skfusion.datasets import load_breast_cancer_multimodal

RESULTS = Path(__file__).parent / "results" / "breast_cancer.md"


def models():
    common = {"max_epochs": 60, "weight_decay": 1e-2, "dropout": 0.3, "random_state": 0}
    return {
        "UnimodalSurvival (genes)": UnimodalSurvival(modality="genes", **common),
        "UnimodalSurvival (clinical)": UnimodalSurvival(modality="clin", **common),
        "ConcatSurvival": ConcatSurvival(**common),
        "LateFusionSurvival": LateFusionSurvival(**common),
        "sksurv CoxPHSurvivalAnalysis (ridge, alpha=10)": CoxPHSurvivalAnalysis(alpha=10.0),
        "sksurv CoxnetSurvivalAnalysis (l1_ratio=0.5)": CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.1, fit_baseline_model=False),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    X, y = load_breast_cancer_multimodal()
    cv = RepeatedKFold(n_splits=5, n_repeats=args.repeats, random_state=0)
    rows = []
    for name, model in models().items():
        pipe = make_pipeline(StandardScaler().set_output(transform="pandas"), model)
        scores = cross_val_score(pipe, X, y, cv=cv)
        rows.append((name, scores.mean(), scores.std(), len(scores)))
        print(f"{name}: {scores.mean():.3f} +/- {scores.std():.3f}", flush=True)
    import torch

    table = pd.DataFrame(rows, columns=["model", "mean C-index", "std over folds", "folds"])
    lines = [
        "# GSE7390 breast cancer: genes + clinical, 5-fold cross-validated C-index",
        "",
        f"Command: `python benchmarks/bench_breast_cancer.py --repeats {args.repeats}`",
        "",
        f"Machine: {platform.machine()}, {__import__('os').cpu_count()} cores, torch {torch.__version__}, CPU.",
        "",
        "Same folds for every model; features standardised inside each fold.",
        "",
        "| model | mean C-index | std over folds | folds |",
        "|---|---|---|---|",
    ] + [f"| {m} | {c:.3f} | {s:.3f} | {k} |" for m, c, s, k in table.itertuples(index=False)]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
