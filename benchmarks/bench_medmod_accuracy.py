"""Accuracy of MedMod's supervised models next to the EHR-only LSTM, with bootstrap CIs.

Two data sets, each split once into training and test rows:

1. Synthetic ICU stays (:func:`skfusion.datasets.make_icu_timeseries`), in-hospital
   mortality and phenotyping (25 labels): the 17 clinical variables of the first 48 hours through
   :class:`ClinicalTimeSeriesDiscretizer` (24 steps x 76 channels) and the data set's image
   embedding, absent in ``--missing-rate`` of the stays. AUROC and AUPRC (macro over
   the labels for phenotyping).
2. pbcseq (:func:`skfusion.datasets.load_pbcseq_timeseries`), a one-year landmark analysis:
   patients still followed at day 365, their lab visits up to day 365 as the series and
   the baseline block (age, sex, treatment) as the second modality, survival counted from
   the landmark (death the event). Harrell's C of the predicted risks.

Models (MedMod's names; ``docs/medmod_mapping.md``): the EHR-only LSTM
(``Unimodal*`` on the series), early fusion (``Concat*(missing="learn",
pretrain_encoders=True, freeze_encoders=True)``), joint fusion (``Concat*(missing="learn")``),
late fusion (``LateFusion*(pretrain_encoders=True, freeze_encoders=True)``), MedFuse, DAFT and
MMTM (``missing="learn"``), all at the papers' sizes (EHR LSTM hidden 256, MedFuse's fusion
LSTM 512). Each metric gets a 95% percentile bootstrap interval
(:func:`skfusion.metrics.bootstrap_ci`) and a two-sided paired bootstrap p-value against
the EHR-only LSTM (:func:`skfusion.metrics.paired_bootstrap_test`), on the test rows.

Usage::

    python benchmarks/bench_medmod_accuracy.py [--n-stays 2000] [--max-epochs 12] [--threads 1]
"""

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from skfusion import (
    ConcatClassifier,
    ConcatSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    UnimodalClassifier,
    UnimodalSurvival,
)
from skfusion.datasets import load_pbcseq_timeseries, make_icu_timeseries
from skfusion.encoders.timeseries import ClinicalTimeSeriesDiscretizer
from skfusion.fusion.daft import DAFTClassifier, DAFTSurvival
from skfusion.fusion.medfuse import MedFuseClassifier, MedFuseSurvival
from skfusion.fusion.mmtm import MMTMClassifier, MMTMSurvival
from skfusion.metrics import auprc, auroc, bootstrap_ci, concordance_index, paired_bootstrap_test

RESULTS = Path(__file__).parent / "results" / "medmod_accuracy.md"
LANDMARK_DAYS = 365
N_RESAMPLES = 1000


def models(classification, ehr, other, training):
    """MedMod's seven models, as skfusion settings; ``ehr`` the series, ``other`` the second modality."""
    kinds = {
        True: (UnimodalClassifier, ConcatClassifier, LateFusionClassifier, MedFuseClassifier, DAFTClassifier,
               MMTMClassifier),
        False: (UnimodalSurvival, ConcatSurvival, LateFusionSurvival, MedFuseSurvival, DAFTSurvival, MMTMSurvival),
    }[classification]
    unimodal, concat, late, medfuse, daft, mmtm = kinds
    roles = {"ehr": ehr, "image": other, "lstm_dim": 256}  # the papers' widths, not "auto"
    lstm = {"lstm_dim": 256, **training}
    return {
        "EHR only (LSTM)": unimodal(modality=ehr, **lstm),
        "Early fusion": concat(missing="learn", pretrain_encoders=True, freeze_encoders=True, **lstm),
        "Joint fusion": concat(missing="learn", **lstm),
        "Late fusion": late(pretrain_encoders=True, freeze_encoders=True, **lstm),
        "MedFuse": medfuse(fusion_dim=512, **roles, **training),
        "DAFT": daft(missing="learn", **roles, **training),
        "MMTM": mmtm(missing="learn", **roles, **training),
    }


def _row(name, metrics, seconds):
    cells = []
    for value, p in metrics:
        ci = f"{value.estimate:.3f} [{value.low:.3f}, {value.high:.3f}]"
        cells += [ci, "-" if p is None else f"{p:.3f}"]
    return f"| {name} | " + " | ".join(cells) + f" | {seconds:.0f} |"


def _evaluate(metric_fns, y_test, scores, baseline, stratify, seed):
    """Per metric: the model's bootstrap interval and the paired p-value against ``baseline``."""
    out = []
    for metric in metric_fns:
        ci = bootstrap_ci(metric, y_test, scores, n_resamples=N_RESAMPLES, stratify=stratify, random_state=seed)
        p = None
        if baseline is not None:
            p = paired_bootstrap_test(
                metric, y_test, scores, baseline, n_resamples=N_RESAMPLES, stratify=stratify, random_state=seed
            ).pvalue
        out.append((ci, p))
    return out


def synthetic_table(n_stays, missing_rate, training, task):
    X, y = make_icu_timeseries(n_stays, task=task, missing_rate=missing_rate, random_state=0)
    binary = y.ndim == 1
    strata = y if binary else None
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=strata, random_state=0)
    # Discretized once (fitted on the training stays); the same as a Pipeline per model.
    discretizer = ClinicalTimeSeriesDiscretizer(max_hours=48).fit(X_train)
    X_train, X_test = discretizer.transform(X_train), discretizer.transform(X_test)
    rows, baseline = [], None
    for name, model in models(True, "ts", "img", training).items():
        start = time.perf_counter()
        proba = model.fit(X_train, y_train).predict_proba(X_test)
        seconds = time.perf_counter() - start
        score = proba[:, 1] if binary else proba
        metrics = _evaluate([auroc, auprc], y_test, score, baseline, y_test if binary else None, 0)
        rows.append(_row(name, metrics, seconds))
        print(rows[-1], flush=True)
        baseline = score if baseline is None else baseline
    return rows, (len(X_train), len(X_test), float(y.mean()))


def pbcseq_data():
    X, y = load_pbcseq_timeseries(max_days=LANDMARK_DAYS)
    alive = y["time"] > LANDMARK_DAYS
    X, y = X[alive], y[alive]
    return X, Surv.from_arrays(y["event"], y["time"] - LANDMARK_DAYS)


def pbcseq_table(training):
    X, y = pbcseq_data()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=1 / 3, stratify=y["event"], random_state=0)
    scale = X_train.filter(like="base__").columns
    rows, baseline = [], None
    for name, model in models(False, "labs", "base", training).items():
        start = time.perf_counter()
        scaler = StandardScaler().set_output(transform="pandas")
        train = X_train.assign(**scaler.fit_transform(X_train[scale]))
        test = X_test.assign(**scaler.transform(X_test[scale]))
        risk = model.fit(train, y_train).predict(test)
        seconds = time.perf_counter() - start
        metrics = _evaluate([concordance_index], y_test, risk, baseline, y_test["event"], 0)
        rows.append(_row(name, metrics, seconds))
        print(rows[-1], flush=True)
        baseline = risk if baseline is None else baseline
    return rows, (len(X_train), len(X_test), int(y["event"].sum()))


def _cpu_name():
    cpuinfo = Path("/proc/cpuinfo")
    if platform.processor() or not cpuinfo.exists():
        return platform.processor()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stays", type=int, default=2000)
    parser.add_argument("--missing-rate", type=float, default=0.5)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    icu_training = {
        "batch_size": 64, "max_epochs": args.max_epochs, "early_stopping": True, "n_iter_no_change": 3,
        "random_state": 0,
    }
    pbc_training = {
        "batch_size": 64, "max_epochs": 4 * args.max_epochs, "early_stopping": True, "validation_fraction": 0.2,
        "n_iter_no_change": 8, "random_state": 0,
    }
    icu_rows, (n_train, n_test, prevalence) = synthetic_table(
        args.n_stays, args.missing_rate, icu_training, "in_hospital_mortality"
    )
    pheno_rows, (_, _, pheno_prevalence) = synthetic_table(
        args.n_stays, args.missing_rate, icu_training, "phenotyping"
    )
    pbc_rows, (p_train, p_test, p_events) = pbcseq_table(pbc_training)
    total = time.perf_counter() - start
    command = (
        f"python benchmarks/bench_medmod_accuracy.py --n-stays {args.n_stays} --missing-rate "
        f"{args.missing_rate} --max-epochs {args.max_epochs} --threads {args.threads}"
    )
    lines = [
        "# MedMod's supervised models against the EHR-only LSTM: accuracy with bootstrap CIs",
        "",
        f"Command: `{command}` (total {total / 60:.1f} min)",
        "",
        f"Machine: {platform.machine()} {_cpu_name()}, {os.cpu_count()} cores (torch threads {args.threads}), "
        f"Python {platform.python_version()}, torch {torch.__version__}, device cpu; load average {load:.1f} "
        "when the run started (shared machine: the fit times are noisy).",
        "",
        "Every cell: estimate on the test rows [95% percentile bootstrap CI, "
        f"{N_RESAMPLES} stratified resamples]; p: two-sided paired bootstrap p-value of the difference "
        "to the EHR-only LSTM on the same resamples (0.002 is the smallest value 1000 resamples give). Papers' sizes: EHR LSTM 2 layers x 256 "
        "(`lstm_dim`), MedFuse fusion LSTM 512; Adam lr 1e-3, batch 64, "
        "early stopping on a held-out 10% (20% for pbcseq) of the training rows, "
        "also in the pre-training stage. Fit time includes pre-training; the synthetic stays are "
        "discretized once, with the discretizer fitted on the training stays.",
        "",
        f"## Synthetic ICU stays, in-hospital mortality ({n_train} train / {n_test} test stays, "
        f"prevalence {prevalence:.3f}, image missing in {args.missing_rate:.0%})",
        "",
        "Series: the first 48 h of the 17 variables, 2-hour bins (24 x 76). Image: the data set's 32-d "
        "embedding, which carries the severity and radiographic latents (the label depends on severity).",
        "",
        "| model | AUROC | p vs EHR | AUPRC | p vs EHR | fit (s) |",
        "|---|---|---|---|---|---|",
        *icu_rows,
        "",
        f"## Synthetic ICU stays, phenotyping: 25 clinical conditions ({n_train} train / {n_test} test stays, "
        f"mean prevalence {pheno_prevalence:.3f}, image missing in {args.missing_rate:.0%})",
        "",
        "Stays from the same generator and the same inputs; multi-label targets (MedFuse's Table 4 "
        "phenotypes). The radiographic "
        "latent, seen only by the image, weighs 1.0 in the logits of the thoracic conditions and 0.2 in "
        "the others. Macro AUROC and AUPRC over the 25 labels (bootstrap not stratified).",
        "",
        "| model | macro AUROC | p vs EHR | macro AUPRC | p vs EHR | fit (s) |",
        "|---|---|---|---|---|---|",
        *pheno_rows,
        "",
        f"## pbcseq, one-year landmark ({p_train} train / {p_test} test patients, {p_events} deaths)",
        "",
        f"Patients followed beyond day {LANDMARK_DAYS}; series: their visits up to day {LANDMARK_DAYS} "
        "(1 to 3 visits x 12 channels); second modality: the standardised baseline block (age, sex, "
        "treatment), in the image role for MedFuse, DAFT and MMTM; Cox loss. Harrell's C "
        "(sksurv's `concordance_index_censored` on the test risks).",
        "",
        "| model | Harrell's C | p vs EHR | fit (s) |",
        "|---|---|---|---|",
        *pbc_rows,
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
