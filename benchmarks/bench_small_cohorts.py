"""skfusion's defaults on small synthetic cohorts with a known truth, next to a linear model.

The targets of issue 22, measured. Part one, synthetic cohorts (``benchmarks/small_cohorts_data.py``
gives the generators: ``linear``, ``interaction`` (a linear part plus one image x EHR product),
``sequence`` (an object column of ``(T_i, 12)`` series, the outcome driven by per-stay means,
plus an image block) and ``missing`` (``linear`` with 40% of the image blocks NaN)), each for
survival (Cox-Weibull times, 40% censored) and binary classification:

- ``--sizes`` training rows (default 200, 500, 2000) and one held-out test set of
  ``--test-size`` rows (default 2000) per repeat, shared by the sizes of that repeat; for
  repeat ``r`` the training rows come from the seed ``(--seed, task, generator, n, r)``,
  the test rows from ``(--seed, task, generator, 0, r)`` and every model's
  ``random_state`` is ``--seed + r``, so a cell is the same whichever process runs it.
- Families (``--families``): concat, late, coattention, contrastive, medfuse, daft, mmtm,
  each the survival or classifier twin at its defaults: only ``random_state``,
  ``device`` (``--device``, default ``"cpu"``) and, for MedFuse / DAFT / MMTM, the
  modality roles (``ehr="ehr"``, ``image="img"``) are passed; whatever the estimators'
  defaults are when the benchmark runs is what it measures. Every family runs on
  ``linear``, ``interaction`` and ``sequence`` (a vector block is read by the attention
  families as ``n_tokens`` chunks, by MedFuse / DAFT / MMTM as a length-1 sequence). On
  ``missing`` only the families whose defaults accept rows without an image run: those
  without a ``missing`` parameter (late fusion, MedFuse) or whose default ``missing`` is
  not ``"raise"`` (read from the class when the benchmark runs); the others are listed as
  skipped (at this writing: concat, coattention, contrastive, daft and mmtm, whose
  ``missing="learn"`` is not a default).
- The linear baseline, on the same features (the blocks side by side, standardized on the
  training rows; a sequence as its per-stay means; a missing image block mean-imputed plus
  one missingness indicator): for survival scikit-survival's ridge
  ``CoxPHSurvivalAnalysis`` with alpha in ``bench_real.RIDGE_ALPHAS`` chosen by a 3-fold
  inner CV on the C-index (``bench_real.coxph_ridge``), for classification
  ``LogisticRegressionCV`` (10 Cs, 5 stratified folds, accuracy). The oracle: the true
  linear predictor (its C-index; for classification the accuracy of the Bayes rule
  ``eta > 0``). Kaplan-Meier on the training rows (``bench_real.KaplanMeier``).
- Metrics on the test rows: Harrell's C-index (``concordance_index_censored``) or accuracy;
  for survival the integrated Brier score of the model, the baseline, Kaplan-Meier and the
  true curves on the 10th-90th percentiles of the test event times, kept inside the test
  follow-up and below the last training time (``bench_real.fold_grid``); fit seconds (after
  one throwaway fit in each process, which pays for torch's first calls);
  the number of fits that raised scikit-learn's ``ConvergenceWarning``; ``n_iter_`` and
  ``best_epoch_`` where the estimator has them.
- Intervals: 95% t intervals over the repeats, mean +- t(0.975, r - 1) sd / sqrt(r) (none
  with one repeat); the difference default - baseline is paired within each repeat.
- Targets (issue 22), checked on the means over the repeats: default >= baseline - 0.01
  everywhere; default >= baseline + 0.01 on ``interaction`` at n >= 500; survival IBS of
  the default <= Kaplan-Meier's. A cell with a failed fit misses its target. The summary
  lists every miss and by how much.

Part two, ``--real``: the real-data table of ``benchmarks/results/real.md`` re-run with
``bench_real.py``'s own machinery (``run_dataset``, its preprocessing, folds and models)
for the default ``concat`` and ``late`` rows and all its peers, and the issue's targets for
real sets: C >= best peer C - 0.005 and IBS <= best peer IBS + 0.005 (best of the peers
other than Kaplan-Meier, each taken on its own: the highest mean C, the lowest mean IBS),
IBS <= Kaplan-Meier's, and fit seconds at most 2x those of the same row in
``--real-reference`` (default ``benchmarks/results/real.json``, today's). ``--real-from
PATH`` takes part two from a ``bench_real.py`` JSON sidecar instead of running it (e.g.
after ``python benchmarks/bench_real.py --models defaults peers``). The SurvSet data sets and
the pycox peers need the ``bench`` extra (``pip install -e .[bench]``); a peer that cannot
run is a failed row, listed beside the targets and left out of the best peer.
``benchmarks/results/small_cohorts_real.json`` (the part two of ``small_cohorts.md``) is
``real.json`` with its default ``concat`` and ``late`` rows re-run (the peers' code is
unchanged and their rows reproduce): copy ``real.json`` to it, then ``python
benchmarks/bench_real.py --datasets whas500 GBSG2 GSE7390 pbcseq flchain support2 --models
concat late --merge --out benchmarks/results/small_cohorts_real.md``. ``real.json`` was made on
another machine; ``benchmarks/results/small_cohorts_fit_reference.json`` holds the fit times of
the same two rows before issue 22 (commit 1fc0fd2) on the machine of ``small_cohorts.md``, for
``--real-reference``: ``git worktree add /tmp/before 1fc0fd2``, then ``python
/tmp/before/benchmarks/bench_real.py --datasets whas500 GBSG2 GSE7390 pbcseq flchain support2
--models concat late --threads 1 --out benchmarks/results/small_cohorts_fit_reference.md``
(only its JSON sidecar is kept).

Usage::

    python benchmarks/bench_small_cohorts.py [--families concat late] [--tasks survival]
        [--generators linear interaction] [--sizes 200 500 2000] [--repeats 5] [--test-size 2000]
        [--threads 1] [--jobs 1] [--seed 0] [--merge | --resume] [--out PATH] [--quick]
    python benchmarks/bench_small_cohorts.py --real [--real-datasets whas500 GBSG2] [--real-folds 5]
    python benchmarks/bench_small_cohorts.py --real-from benchmarks/results/real.json
    python benchmarks/bench_small_cohorts.py --report-only

``--quick`` is ``--sizes 200 --repeats 1 --test-size 500`` (a smoke run). ``--jobs`` runs
the cells in that many processes (joblib), each with ``--threads`` torch and BLAS threads.
The JSON sidecar beside ``--out`` keeps every per-repeat number; a run replaces the part it
computes (synthetic cells or the real table) and keeps the other; ``--merge`` keeps the
synthetic cells it does not recompute; ``--resume`` also skips the cells already stored (an
interrupted run, or more repeats or sizes added to a table, picks up where it stopped);
``--report-only`` rewrites ``--out`` from the sidecar.
"""

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sksurv.metrics import concordance_index_censored, integrated_brier_score
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
# This checkout's skfusion (not an installed copy), and bench_real / the generators beside
# this file; PYTHONPATH carries both into the worker processes of --jobs.
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])

import bench_real  # noqa: E402
import skfusion  # noqa: E402
import small_cohorts_data as data  # noqa: E402
from skfusion import (  # noqa: E402
    CoAttentionClassifier,
    CoAttentionSurvival,
    ConcatClassifier,
    ConcatSurvival,
    ContrastiveClassifier,
    ContrastiveSurvival,
    DAFTClassifier,
    DAFTSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    MedFuseClassifier,
    MedFuseSurvival,
    MMTMClassifier,
    MMTMSurvival,
)

RESULTS = HERE / "results" / "small_cohorts.md"
REAL_REFERENCE = HERE / "results" / "real.json"
SIZES = (200, 500, 2000)
REPEATS = 5
TEST_SIZE = 2000
QUICK = dict(sizes=[200], repeats=1, test_size=500)
LOGISTIC_CS, LOGISTIC_FOLDS = 10, 5
# Issue 22's targets: the synthetic cohorts and the real sets.
BELOW_BASELINE, ABOVE_BASELINE, INTERACTION_FROM = 0.01, 0.01, 500
REAL_C_MARGIN, REAL_IBS_MARGIN, REAL_FIT_RATIO = 0.005, 0.005, 2.0
REAL_DEFAULTS = ("concat", "late")

# family: (survival class, classifier class, modality roles).
EHR_IMAGE_ROLES = {"ehr": "ehr", "image": "img"}
FAMILIES = {
    "concat": (ConcatSurvival, ConcatClassifier, {}),
    "late": (LateFusionSurvival, LateFusionClassifier, {}),
    "coattention": (CoAttentionSurvival, CoAttentionClassifier, {}),
    "contrastive": (ContrastiveSurvival, ContrastiveClassifier, {}),
    "medfuse": (MedFuseSurvival, MedFuseClassifier, EHR_IMAGE_ROLES),
    "daft": (DAFTSurvival, DAFTClassifier, EHR_IMAGE_ROLES),
    "mmtm": (MMTMSurvival, MMTMClassifier, EHR_IMAGE_ROLES),
}
REFERENCES = ("linear", "oracle", "km")
REFERENCE_LABELS = {
    "survival": "ridge `CoxPHSurvivalAnalysis` (alpha by 3-fold inner CV on C)",
    "classification": f"`LogisticRegressionCV` ({LOGISTIC_CS} Cs, {LOGISTIC_FOLDS} stratified folds)",
}


def family_class(family, task):
    survival, classifier, _ = FAMILIES[family]
    return survival if task == "survival" else classifier


def accepts(family, generator):
    """Whether ``family`` runs on ``generator`` at its defaults (see the module docstring)."""
    if generator != "missing":
        return True
    return family_class(family, "survival")().get_params().get("missing", "none") != "raise"


# --------------------------------------------------------------------------- cells


def cell_key(task, generator, model, n, repeat):
    return f"{task}/{generator}/{model}/{n}/{repeat}"


def plan(args, stored=()):
    """The cells to run: ``(task, generator, model, n, repeat)``, ``model`` a family or "reference".

    With ``--resume``, those whose results are in ``stored`` (the sidecar's cells) are left out.
    """
    cells = []
    for task in args.tasks:
        for generator in args.generators:
            families = [f for f in args.families if accepts(f, generator)]
            if not families:
                continue
            for n in args.sizes:
                for repeat in range(args.repeats):
                    cells += [(task, generator, model, n, repeat) for model in ["reference", *families]]
    if args.resume:
        # The reference cell stores the linear baseline, the oracle and Kaplan-Meier together.
        stored_as = {"reference": REFERENCES[0]}
        cells = [c for c in cells if cell_key(c[0], c[1], stored_as.get(c[2], c[2]), *c[3:]) not in stored]
    return cells


def draw(task, generator, n, repeat, args):
    """The training and test cohorts of one repeat (see the module docstring for the seeds)."""
    index = (data.TASKS.index(task), data.GENERATORS.index(generator))
    train = data.make_cohort(generator, task, n, [args.seed, *index, n, repeat])
    test = data.make_cohort(generator, task, args.test_size, [args.seed, *index, 0, repeat])
    return train, test


def ibs_grid(y_test):
    """The 10th..90th percentiles of the test event times (``bench_real.fold_grid`` trims them)."""
    return np.unique(np.percentile(y_test["time"][y_test["event"]], bench_real.GRID_PERCENTILES))


def recording_warnings(fit):
    """``fit()`` and the number of ``ConvergenceWarning`` it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit()
    return out, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


@lru_cache
def warm_up(device):
    """One throwaway fit per process, so that no timed fit pays for torch's first calls."""
    cohort = data.make_cohort("linear", "survival", 32, [0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ConcatSurvival(max_epochs=1, device=device, random_state=0).fit(cohort.X, cohort.y)


def run_cell(task, generator, model, n, repeat, args):
    """One cell: ``{model: metrics}`` (the reference cell gives linear, oracle and Kaplan-Meier)."""
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        warm_up(args.device)
        train, test = draw(task, generator, n, repeat, args)
        if model == "reference":
            return reference_cell(task, train, test, args.seed + repeat)
        return {model: family_cell(task, model, train, test, args.seed + repeat, args.device)}


def _failure(error):
    return {"failed": f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"}


def family_cell(task, family, train, test, seed, device):
    cls = family_class(family, task)
    roles = FAMILIES[family][2]
    try:
        if task == "survival":
            estimator = bench_real.Estimator(lambda X: cls(device=device, random_state=seed, **roles))
            (score, ibs, fit_s), warned = recording_warnings(
                lambda: bench_real.evaluate(estimator, train.X, train.y, test.X, test.y, ibs_grid(test.y))
            )
            fitted = estimator.model_
        else:
            fitted = cls(device=device, random_state=seed, **roles)
            (score, fit_s), warned = recording_warnings(lambda: fit_accuracy(fitted, train.X, train.y, test.X, test.y))
            ibs = None
    except Exception as error:  # a failing model is a result, reported in the table
        return _failure(error)
    return {
        "score": score,
        "ibs": ibs,
        "fit_s": fit_s,
        "convergence_warnings": warned,
        "n_iter": _int_or_none(getattr(fitted, "n_iter_", None)),
        "best_epoch": _int_or_none(getattr(fitted, "best_epoch_", None)),
    }


def _int_or_none(value):
    return None if value is None else int(value)


def fit_accuracy(model, X_train, y_train, X_test, y_test):
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    return float(np.mean(model.predict(X_test) == y_test)), fit_s


def reference_cell(task, train, test, seed):
    """The linear baseline (inner CV folds drawn from ``seed``), the oracle and (survival) Kaplan-Meier."""
    X_train, X_test = data.linear_features(train.X, test.X)
    if task == "classification":
        logistic = LogisticRegressionCV(
            Cs=LOGISTIC_CS, cv=StratifiedKFold(LOGISTIC_FOLDS, shuffle=True, random_state=seed), max_iter=1000
        )
        (score, fit_s), warned = recording_warnings(lambda: fit_accuracy(logistic, X_train, train.y, X_test, test.y))
        oracle = float(np.mean((test.eta > 0) == test.y))
        return {
            "linear": {"score": score, "ibs": None, "fit_s": fit_s, "convergence_warnings": warned},
            "oracle": {"score": oracle, "ibs": None},
        }
    grid = ibs_grid(test.y)
    out = {}
    for name, estimator in (("linear", bench_real.coxph_ridge(seed)), ("km", bench_real.KaplanMeier())):
        try:
            (score, ibs, fit_s), warned = recording_warnings(
                lambda: bench_real.evaluate(estimator, X_train, train.y, X_test, test.y, grid)
            )
        except Exception as error:
            out[name] = _failure(error)
            continue
        score = None if np.isnan(score) else score
        out[name] = {"score": score, "ibs": ibs, "fit_s": fit_s, "convergence_warnings": warned}
    times = bench_real.fold_grid(grid, train.y, test.y)
    curves = data.true_survival(test.eta, times)
    out["oracle"] = {
        "score": concordance_index_censored(test.y["event"], test.y["time"], test.eta)[0],
        "ibs": integrated_brier_score(train.y, bench_real.within_training_times(test.y, train.y), curves, times),
    }
    return out


# --------------------------------------------------------------------------- statistics


def interval(values):
    """``(mean, low, high)`` of a 95% t interval over the repeats; ``low``, ``high`` None for one value."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if len(values) == 0:
        return None
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def fmt(summary, digits=3, sign=False):
    if summary is None:
        return "-"
    mean, low, high = summary
    spec = f"{'+' if sign else ''}.{digits}f"
    if low is None:
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


def repeats_of(cells, task, generator, model, n):
    """The per-repeat metrics of one model, in repeat order."""
    prefix = f"{task}/{generator}/{model}/{n}/"
    found = {int(k[len(prefix) :]): v for k, v in cells.items() if k.startswith(prefix)}
    return [found[r] for r in sorted(found)]


def column(metrics, key):
    return [m.get(key) for m in metrics if "failed" not in m]


def aggregate(cells, task, generator, family, n):
    """The row of one (task, generator, family, n), with its target verdict."""
    runs = repeats_of(cells, task, generator, family, n)
    refs = {r: repeats_of(cells, task, generator, r, n) for r in REFERENCES}
    by_repeat = _align(cells, task, generator, family, n)
    row = {
        "runs": len(runs),
        "failed": [m["failed"] for m in runs if "failed" in m],
        "default": interval(column(runs, "score")),
        "baseline": interval(column(refs["linear"], "score")),
        "oracle": interval(column(refs["oracle"], "score")),
        "difference": interval([d for d in (_diff(f, b, "score") for f, b, _ in by_repeat) if d is not None]),
        "ibs": interval(column(runs, "ibs")),
        "ibs_baseline": interval(column(refs["linear"], "ibs")),
        "ibs_km": interval(column(refs["km"], "ibs")),
        "ibs_oracle": interval(column(refs["oracle"], "ibs")),
        "ibs_over_km": interval([d for d in (_diff(f, k, "ibs") for f, _, k in by_repeat) if d is not None]),
        "fit_s": interval(column(runs, "fit_s")),
        "warned": sum(1 for m in runs if m.get("convergence_warnings")),
        "n_iter": interval(column(runs, "n_iter")),
        "best_epoch": interval(column(runs, "best_epoch")),
    }
    row["misses"] = misses(row, task, generator, n)
    return row


def _align(cells, task, generator, family, n):
    """``(family, linear, km)`` metrics of each repeat the family ran."""
    out = []
    for key, metrics in cells.items():
        t, g, m, size, repeat = key.split("/")
        if (t, g, m, size) == (task, generator, family, str(n)):
            ref = [cells.get(cell_key(task, generator, r, n, repeat), {}) for r in ("linear", "km")]
            out.append((metrics, *ref))
    return out


def _diff(a, b, key):
    if a.get(key) is None or b.get(key) is None:
        return None
    return a[key] - b[key]


def misses(row, task, generator, n):
    """The targets a row misses, each as text with the shortfall."""
    out = []
    if row["failed"]:
        out.append(f"fails in {len(row['failed'])}/{row['runs']} repeats ({row['failed'][0]})")
    if row["difference"] is None:
        return out + ["no paired result"]
    difference = row["difference"][0]
    bound = ABOVE_BASELINE if generator == "interaction" and n >= INTERACTION_FROM else -BELOW_BASELINE
    if difference < bound:
        out.append(f"default - baseline {difference:+.3f} < {bound:+.2f} (short by {bound - difference:.3f})")
    if task == "survival":
        over = row["ibs_over_km"]
        if over is None:
            out.append("no IBS")
        elif over[0] > 0:
            out.append(f"IBS {over[0]:+.3f} above Kaplan-Meier's")
    return out


# --------------------------------------------------------------------------- report


def meta_line(meta):
    return (
        f"Machine: {meta['platform']}, {meta['cpu']}; torch {meta['torch']} with {meta['threads']} thread(s) per "
        f"process, {meta.get('jobs', 1)} process(es). skfusion from `{meta['skfusion']}`, commit {meta['commit']}."
    )


def synthetic_sections(cells, meta):
    keys = [k.split("/") for k in cells]
    tasks = [t for t in data.TASKS if any(k[0] == t for k in keys)]
    lines = []
    rows = {}
    for task in tasks:
        for generator in data.GENERATORS:
            present = [k for k in keys if k[0] == task and k[1] == generator]
            if not present:
                continue
            families = [f for f in FAMILIES if any(k[2] == f for k in present)]
            sizes = sorted({int(k[3]) for k in present})
            lines += section_header(task, generator, families, meta)
            for family in families:
                for n in sizes:
                    if not repeats_of(cells, task, generator, family, n):
                        continue
                    row = aggregate(cells, task, generator, family, n)
                    rows[(task, generator, family, n)] = row
                    lines.append(table_row(task, family, n, row))
            lines.append("")
    return lines, rows


def section_header(task, generator, families, meta):
    skipped = [f for f in FAMILIES if not accepts(f, generator)]
    skip_text = f" Not run here, their defaults refusing rows without an image: {', '.join(skipped)}." if skipped else ""
    metric = "Harrell's C" if task == "survival" else "accuracy"
    head = f"| family | n | default {metric} | linear baseline | oracle | default - baseline |"
    rule = "|---|---|---|---|---|---|"
    if task == "survival":
        head += " IBS default | IBS baseline | IBS Kaplan-Meier | IBS true curves |"
        rule += "---|---|---|---|"
    head += " fit s | ConvergenceWarning | epochs (best) | target |"
    rule += "---|---|---|---|"
    return [
        f"## {task} / {generator}",
        "",
        f"{GENERATOR_TEXT[generator]} Test rows: {meta['test_size']}; baseline: {REFERENCE_LABELS[task]}."
        + skip_text,
        "",
        head,
        rule,
    ]


GENERATOR_TEXT = {
    "linear": "img (12) + ehr (10) blocks, eta = 0.8 img_0 - 0.6 img_1 + 0.7 ehr_0.",
    "interaction": "As linear, plus 0.8 img_2 x ehr_1 in eta.",
    "sequence": "img (12) + an `ehr` column of (T_i, 12) series (T_i in 6..24), eta = 0.8 mean(x_0) - 0.6 mean(x_1) "
    "+ 0.7 img_0.",
    "missing": "As linear, the img block NaN in 40% of the rows.",
}


def table_row(task, family, n, row):
    cells = [
        f"`{family}`",
        str(n),
        fmt(row["default"]),
        fmt(row["baseline"]),
        fmt(row["oracle"]),
        fmt(row["difference"], sign=True),
    ]
    if task == "survival":
        cells += [fmt(row["ibs"]), fmt(row["ibs_baseline"]), fmt(row["ibs_km"]), fmt(row["ibs_oracle"])]
    epochs = "-" if row["n_iter"] is None else f"{row['n_iter'][0]:.0f}"
    if row["best_epoch"] is not None:
        epochs += f" ({row['best_epoch'][0]:.0f})"
    cells += [
        "-" if row["fit_s"] is None else f"{row['fit_s'][0]:.2f}",
        f"{row['warned']}/{row['runs']}",
        epochs,
        "yes" if not row["misses"] else "**NO**: " + "; ".join(row["misses"]),
    ]
    return "| " + " | ".join(cells) + " |"


def synthetic_summary(rows):
    missed = {key: row["misses"] for key, row in rows.items() if row["misses"]}
    lines = [
        "## Targets of issue 22: synthetic cohorts",
        "",
        f"On the means over the repeats: default - baseline >= -{BELOW_BASELINE} everywhere, >= +{ABOVE_BASELINE} on "
        f"`interaction` at n >= {INTERACTION_FROM}; survival IBS(default) <= IBS(Kaplan-Meier). "
        f"{len(rows) - len(missed)} of {len(rows)} cells hold every target.",
        "",
    ]
    for (task, generator, family, n), text in missed.items():
        lines.append(f"- {task} / {generator} / `{family}` / n={n}: " + "; ".join(text))
    return lines + [""]


def _mean(score, key):
    if score is None or score.get("failed") or not score.get(key):
        return None
    values = [v for v in score[key] if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def real_sections(real, reference):
    """bench_real's table of each data set and the issue-22 targets for real sets."""
    lines = []
    for name, result in real["results"].items():
        if name != "pbcseq-target":
            lines += bench_real.dataset_table(name, result)
    lines += [
        "## Targets of issue 22: real sets",
        "",
        f"Default `concat` and `late` against the best peer (Kaplan-Meier excluded; highest mean C and lowest mean "
        f"IBS, each over the peers that ran): dC >= -{REAL_C_MARGIN}, dIBS <= +{REAL_IBS_MARGIN}; IBS minus "
        f"Kaplan-Meier's <= 0; fit seconds / the same row's in `{reference['path']}` <= {REAL_FIT_RATIO}.",
        "",
        "| data | best peer C | best peer IBS | Kaplan-Meier IBS | peers failed | "
        + " | ".join(f"{m} dC | {m} dIBS | {m} IBS - KM | {m} fit x" for m in REAL_DEFAULTS)
        + " | all hold |",
        "|---|---|---|---|---|" + "---|---|---|---|" * len(REAL_DEFAULTS) + "---|",
    ]
    missed = []
    for name, result in real["results"].items():
        if name == "pbcseq-target":
            continue
        cells, holds = real_target_cells(name, result, reference["results"].get(name))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if all(holds) else '**NO**'} |")
        if not all(holds):
            missed.append(name)
    lines += ["", f"Real sets missing a target: {', '.join(missed) if missed else 'none'}.", ""]
    return lines


def real_target_cells(name, result, reference):
    models = result["models"]
    peers = [m for m, (kind, _, _) in bench_real.MODELS.items() if kind == "peer" and m != "km" and m in models]
    ran = {m: (_mean(models[m], "c"), _mean(models[m], "ibs")) for m in peers}
    ran = {m: v for m, v in ran.items() if v[0] is not None}
    failed = [m for m in peers if m not in ran]
    best_c = max(ran.items(), key=lambda kv: kv[1][0], default=None)
    best_ibs = min(ran.items(), key=lambda kv: kv[1][1], default=None)
    km = _mean(models.get("km"), "ibs")
    cells = [
        f"`{best_c[0]}` {best_c[1][0]:.3f}" if best_c else "n/a",
        f"`{best_ibs[0]}` {best_ibs[1][1]:.3f}" if best_ibs else "n/a",
        "n/a" if km is None else f"{km:.3f}",
        ", ".join(failed) or "none",
    ]
    holds = []
    for m in REAL_DEFAULTS:
        score = models.get(m)
        c, ibs = _mean(score, "c"), _mean(score, "ibs")
        checks = [
            (c, best_c and best_c[1][0], lambda v, r: v - r, lambda d: d >= -REAL_C_MARGIN),
            (ibs, best_ibs and best_ibs[1][1], lambda v, r: v - r, lambda d: d <= REAL_IBS_MARGIN),
            (ibs, km, lambda v, r: v - r, lambda d: d <= 0),
        ]
        for value, ref, measure, ok in checks:
            if value is None or ref is None:
                cells.append("n/a **NO**")
                holds.append(False)
                continue
            d = measure(value, ref)
            cells.append(f"{d:+.4f} {'yes' if ok(d) else '**NO**'}")
            holds.append(ok(d))
        fit, before = _mean(score, "fit_s"), _mean((reference or {}).get("models", {}).get(m), "fit_s")
        if fit is None or before is None:
            cells.append("n/a")
        else:
            ratio = fit / before
            cells.append(f"{ratio:.2f} {'yes' if ratio <= REAL_FIT_RATIO else '**NO**'}")
            holds.append(ratio <= REAL_FIT_RATIO)
    return cells, holds


def commands(stored, part):
    return ["Command(s):", "", *[f"    {command}" for command in stored["commands"][part]], ""]


def write_report(stored, out):
    lines = [
        "# Small cohorts: skfusion's defaults next to a linear model and the truth",
        "",
        "Generated by `benchmarks/bench_small_cohorts.py` (its docstring gives the protocol); every per-repeat "
        f"number is in `{out.with_suffix('.json').name}`. Intervals: 95% t intervals over the repeats "
        "(`mean [low, high]`; a mean alone for one repeat). IBS: integrated Brier score (lower is better). "
        "fit s: mean seconds per fit (after one throwaway fit per process). ConvergenceWarning: fits that "
        "raised one / fits. epochs (best): mean `n_iter_` (`best_epoch_`), "
        "'-' where the estimators lack them.",
        "",
    ]
    if stored["cells"]:
        meta = stored["meta"]["synthetic"]
        lines += ["# Synthetic cohorts", "", meta_line(meta), "", *commands(stored, "synthetic")]
        sections, rows = synthetic_sections(stored["cells"], meta)
        lines += sections + synthetic_summary(rows)
    if stored.get("real"):
        meta = stored["meta"]["real"]
        lines += ["# Real sets (bench_real.py's protocol)", "", meta_line(meta), "", *commands(stored, "real")]
        if stored["real"].get("source"):
            lines += [f"Results read from `{stored['real']['source']}`.", ""]
        lines += real_sections(stored["real"], stored["real"]["reference"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


# --------------------------------------------------------------------------- runs


def run_synthetic(args, stored, save):
    cells = plan(args, stored["cells"])
    print(f"{len(cells)} cells on {args.jobs} process(es)", flush=True)
    started = time.perf_counter()
    # The workers import this file as a module: pickled from __main__, the lru_cache'd
    # warm_up would be looked up in the worker's own __main__, which lacks it.
    import bench_small_cohorts as module

    jobs = Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
        delayed(module._labelled)(cell, args) for cell in cells
    )
    for (task, generator, model, n, repeat), results in jobs:
        for name, metrics in results.items():
            stored["cells"][cell_key(task, generator, name, n, repeat)] = metrics
            print(f"  {task} {generator} n={n} repeat {repeat}: {name} {_brief(metrics)}", flush=True)
        save()
    print(f"synthetic cohorts: {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def _labelled(cell, args):
    return cell, run_cell(*cell, args)


def _brief(metrics):
    if "failed" in metrics:
        return f"FAILED {metrics['failed']}"
    parts = [f"score {metrics['score']:.3f}" if metrics.get("score") is not None else "score -"]
    if metrics.get("ibs") is not None:
        parts.append(f"IBS {metrics['ibs']:.3f}")
    if metrics.get("fit_s") is not None:
        parts.append(f"fit {metrics['fit_s']:.1f}s")
    if metrics.get("convergence_warnings"):
        parts.append("ConvergenceWarning")
    return " ".join(parts)


def run_real(args, stored, save):
    models = bench_real.select_models([*REAL_DEFAULTS, "peers"])
    settings = argparse.Namespace(folds=args.real_folds, repeats=1, threads=args.threads, raw=False)
    stored["real"] = {"results": {}, "reference": load_reference(args.real_reference)}
    warnings.simplefilter("ignore")
    with threadpool_limits(args.threads):
        for name in args.real_datasets:
            print(f"{name}:", flush=True)
            stored["real"]["results"][name] = bench_real.run_dataset(name, models, settings)
            save()


def load_reference(path):
    """The fit-time reference: a bench_real sidecar's results (empty when the file is absent)."""
    path = Path(path).resolve()
    results = json.loads(path.read_text())["results"] if path.exists() else {}
    shown = path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path
    return {"path": str(shown), "results": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--tasks", nargs="+", default=list(data.TASKS), choices=data.TASKS)
    parser.add_argument("--generators", nargs="+", default=list(data.GENERATORS), choices=data.GENERATORS)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--test-size", type=int, default=TEST_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="processes over the cells (joblib)")
    parser.add_argument("--device", default="cpu", help="the skfusion models' device")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", action="store_true", help="keep the synthetic cells already in the sidecar")
    parser.add_argument("--resume", action="store_true", help="as --merge, and skip the cells already stored")
    parser.add_argument("--quick", action="store_true", help="smoke run: --sizes 200 --repeats 1 --test-size 500")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--real", action="store_true", help="run part two (bench_real's table) instead of part one")
    mode.add_argument("--real-from", type=Path, help="take part two from a bench_real.py JSON sidecar")
    mode.add_argument("--report-only", action="store_true", help="rewrite --out from its JSON sidecar, run nothing")
    datasets = list(bench_real.DATASETS)
    parser.add_argument("--real-datasets", nargs="+", default=datasets, choices=datasets)
    parser.add_argument("--real-folds", type=int, default=5)
    parser.add_argument("--real-reference", type=Path, default=REAL_REFERENCE, help="bench_real JSON of the fit times")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    sidecar = args.out.with_suffix(".json")
    stored = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    stored = {"cells": {}, "real": None, "commands": {"synthetic": [], "real": []}, "meta": {}, **stored}
    if args.report_only:
        write_report(stored, args.out)
        print(f"wrote {args.out}")
        return
    part = "real" if args.real or args.real_from else "synthetic"
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    args.merge = args.merge or args.resume
    kept = part == "synthetic" and args.merge
    stored["commands"][part] = (stored["commands"][part] if kept else []) + [command]
    torch.set_num_threads(args.threads)
    stored["meta"][part] = {
        "platform": platform.platform(),
        "cpu": bench_real.cpu_name(),
        "torch": torch.__version__,
        "threads": args.threads,
        "jobs": args.jobs if part == "synthetic" else 1,
        "commit": bench_real.git_commit(),
        "skfusion": str(Path(skfusion.__file__).parent),
        "test_size": args.test_size,
    }

    def save():
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps(stored, indent=1))
        write_report(stored, args.out)

    if args.real_from:
        stored["real"] = {
            "results": json.loads(args.real_from.read_text())["results"],
            "reference": load_reference(args.real_reference),
            "source": str(args.real_from),
        }
    elif args.real:
        run_real(args, stored, save)
    else:
        if not args.merge:
            stored["cells"] = {}
        run_synthetic(args, stored, save)
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
