"""skfusion's classifiers at their defaults next to scikit-learn's, on small real data sets.

scikit-learn's bundled data, each split into two modalities:

- ``breast_cancer`` (Wisconsin diagnostic, 569 rows): the 10 mean nucleus features against
  their 10 standard errors and 10 worst values;
- ``wine`` (178 rows, 3 classes): the first 6 chemical measurements against the other 7;
- ``digits`` (1,797 8 x 8 images, 10 classes): the left half of each image against the right.

Cross-validation: 5 stratified folds (seed 0), the same for every model; raw features in,
every model standardizes them itself (skfusion inside the estimator, scikit-learn's peers
through a ``StandardScaler`` in a pipeline). Rows: ``ConcatClassifier``,
``LateFusionClassifier``, ``CoAttentionClassifier`` and ``UnimodalClassifier`` (all
features) at their defaults, Concat and LateFusion also with ``batch_size=256`` (the
default before ``batch_size="auto"``) and CoAttention with ``batch_size="auto"`` (its
default stays 256); the peers ``LogisticRegression`` and ``MLPClassifier`` at their
defaults. Columns: log loss and accuracy, mean +- sd over the folds, mean fit seconds.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_classifiers.py [--out benchmarks/results/classifiers.md]
"""

import argparse
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skfusion import CoAttentionClassifier, ConcatClassifier, LateFusionClassifier, UnimodalClassifier

RESULTS = Path(__file__).parent / "results" / "classifiers.md"


def two_modalities(X, first):
    """A frame of blocks ``a__*`` (the columns ``first``) and ``b__*`` (the others)."""
    second = [j for j in range(X.shape[1]) if j not in set(first)]
    columns = {f"a__{k}": X[:, j] for k, j in enumerate(first)}
    columns.update({f"b__{k}": X[:, j] for k, j in enumerate(second)})
    return pd.DataFrame(columns)


def datasets():
    cancer, wine, digits = load_breast_cancer(), load_wine(), load_digits()
    left = [row * 8 + col for row in range(8) for col in range(4)]
    return {
        "breast_cancer": (two_modalities(cancer.data, range(10)), cancer.target, "mean | SE + worst"),
        "wine": (two_modalities(wine.data, range(6)), wine.target, "6 | 7 measurements"),
        "digits": (two_modalities(digits.data, left), digits.target, "left | right half"),
    }


MODELS = {
    "ConcatClassifier()": lambda seed: ConcatClassifier(random_state=seed, device="cpu"),
    "ConcatClassifier(batch_size=256)": lambda seed: ConcatClassifier(batch_size=256, random_state=seed, device="cpu"),
    "LateFusionClassifier()": lambda seed: LateFusionClassifier(random_state=seed, device="cpu"),
    "LateFusionClassifier(batch_size=256)": lambda seed: LateFusionClassifier(
        batch_size=256, random_state=seed, device="cpu"
    ),
    "CoAttentionClassifier()": lambda seed: CoAttentionClassifier(random_state=seed, device="cpu"),
    "CoAttentionClassifier(batch_size='auto')": lambda seed: CoAttentionClassifier(
        batch_size="auto", random_state=seed, device="cpu"
    ),
    "UnimodalClassifier() (all features)": lambda seed: AllFeatures(UnimodalClassifier(random_state=seed, device="cpu")),
    "LogisticRegression()": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
    "MLPClassifier()": lambda seed: make_pipeline(StandardScaler(), MLPClassifier(random_state=seed)),
}


class AllFeatures:
    """A unimodal model on every column, as one modality."""

    def __init__(self, model):
        self.model = model

    def _frame(self, X):
        return pd.DataFrame(X.to_numpy(), columns=[f"all__{j}" for j in range(X.shape[1])])

    def fit(self, X, y):
        self.model.fit(self._frame(X), y)
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(self._frame(X))


def run(name, X, y):
    scores = {model: {"loss": [], "accuracy": [], "fit_s": []} for model in MODELS}
    for fold, (train, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)):
        for model, factory in MODELS.items():
            estimator = factory(fold)
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLPClassifier's ConvergenceWarning
                estimator.fit(X.iloc[train], y[train])
            scores[model]["fit_s"].append(time.perf_counter() - started)
            proba = estimator.predict_proba(X.iloc[test])
            scores[model]["loss"].append(log_loss(y[test], proba, labels=np.unique(y)))
            scores[model]["accuracy"].append(accuracy_score(y[test], proba.argmax(axis=1)))
        print(f"{name} fold {fold + 1} done", flush=True)
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    lines = [
        "# Classifiers at their defaults on small real data",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), CPU.",
        "",
        "5 stratified folds (seed 0); log loss and accuracy mean ± sd over the folds; fit s: mean "
        "seconds per fold. The protocol is in the script's docstring.",
    ]
    for name, (X, y, split) in datasets().items():
        scores = run(name, X, y)
        lines += [
            "",
            f"## {name} ({len(X)} rows, {len(np.unique(y))} classes; modalities: {split})",
            "",
            "| model | log loss | accuracy | fit s |",
            "|---|---|---|---|",
        ]
        for model, s in scores.items():
            lines.append(
                f"| `{model}` | {np.mean(s['loss']):.3f} ± {np.std(s['loss']):.3f} | "
                f"{np.mean(s['accuracy']):.3f} ± {np.std(s['accuracy']):.3f} | {np.mean(s['fit_s']):.2f} |"
            )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
