"""skfusion's survival estimators next to scikit-survival and pycox on real data.

The data sets (``benchmarks/real_data.py``, each split into the two modalities of
``benchmarks/real_splits.json``): SurvSet's support2, flchain, whas500 and GBSG2,
scikit-survival's GSE7390 breast cancer, and pbcseq's first-year events vs its baseline
variables. Cross-validation: ``--folds``-fold (default 5) stratified by the event indicator,
``--repeats`` times, the same folds (seed 0) for every model.

Inside each fold, fit on the training rows only: numeric features median-imputed and
standardized, categoricals one-hot encoded (``drop="if_binary"``), and for pbcseq the event
frames encoded by ``OneHotEHREncoder()``. Every model gets these features, as a new user
would prepare them; ``--raw`` gives the skfusion models the imputed but unstandardized
numeric features instead (to test the estimators' own standardization), the peers keep the
standardized ones. ``UnimodalSurvival`` gets all features as one modality.

Rows: each skfusion model at its defaults and at one hand-tuned setting (``TUNED``); the
peers: scikit-survival's ridge ``CoxPHSurvivalAnalysis`` and ``CoxnetSurvivalAnalysis``
(their penalty chosen by a 3-fold inner CV on the C-index), ``RandomSurvivalForest``
(200 trees, ``min_samples_leaf=15``), ``GradientBoostingSurvivalAnalysis`` (200 stages of
depth-3 trees), and pycox's ``CoxPH`` (DeepSurv), ``LogisticHazard`` and ``DeepHitSingle``
with skfusion's default hidden widths and pycox's tutorial recipe (torchtuples
``MLPVanilla`` with batch norm and dropout 0.1, Adam at lr 0.01, batch 256, early stopping
on a 20% validation split of the training fold, 10 discrete times for the discrete models);
Kaplan-Meier as the reference for the integrated Brier score.

Columns: Harrell's C-index (scikit-survival's ``concordance_index_censored``) and the
integrated Brier score (``integrated_brier_score``), mean +- sd over the folds, and the
mean fit seconds per fold. The IBS grid is the 10th, 11th, ..., 90th percentiles of the
data set's event times, restricted within each fold to the test follow-up and to times
below the largest training time.

``pbcseq-target``: the issue's target line, ``Pipeline([("emb", CLMBREmbedder()),
("fuse", CoAttentionSurvival())])`` at its defaults against ``OneHotEHREncoder`` +
``StandardScaler`` + ``CoxPHSurvivalAnalysis(alpha=10)`` on the raw ``load_pbcseq_events``
frame, over 10 stratified 70/30 splits.

The summary at the end checks the targets of issue 11 per data set.

Usage::

    python benchmarks/bench_real.py [--datasets whas500 GBSG2] [--models 'concat*' coxph]
        [--folds 5] [--repeats 1] [--target-splits 10] [--threads 1] [--raw] [--merge] [--out PATH]

``--models`` takes names or shell globs (``python benchmarks/bench_real.py --list`` prints
them) and the groups ``skfusion``, ``defaults``, ``tuned`` and ``peers``. ``--merge`` adds
the new rows to those already in ``--out``'s JSON sidecar instead of starting afresh;
``--report-only`` rewrites ``--out`` from that sidecar.
"""

import argparse
import fnmatch
import json
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, RepeatedStratifiedKFold, StratifiedShuffleSplit
from sklearn.model_selection import train_test_split
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored, integrated_brier_score
from sksurv.nonparametric import kaplan_meier_estimator
from threadpoolctl import threadpool_limits

# This checkout's skfusion (not an installed copy), and real_data beside this file.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

import skfusion  # noqa: E402
from real_data import DATASETS, categorical_columns, load_pbcseq, numeric_columns  # noqa: E402

from skfusion import CoAttentionSurvival, ConcatSurvival, LateFusionSurvival, UnimodalSurvival  # noqa: E402
from skfusion.encoders import CLMBREmbedder, OneHotEHREncoder  # noqa: E402
from skfusion.modules._blocks import default_hidden_dims  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "real.md"
SEED = 0
GRID_PERCENTILES = np.arange(10, 91)
INNER_CV = 3
RIDGE_ALPHAS = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
COXNET_L1_RATIO = 0.9
COXNET_N_ALPHAS = 20
TARGET_SPLITS = 10

# One hand-tuned setting for every skfusion model: a longer budget stopped early on a
# validation split (best weights restored), smaller batches and a stronger weight decay.
TUNED = dict(
    max_epochs=500,
    early_stopping=True,
    validation_fraction=0.2,
    n_iter_no_change=20,
    batch_size=64,
    lr=1e-3,
    weight_decay=1e-3,
)


# --------------------------------------------------------------------------- evaluation


def step_values(times, values, grid, before=1.0):
    """A right-continuous step function given at ``times`` evaluated on ``grid``.

    ``values`` has shape (n_times, ...) ; before the first time it is ``before`` and after the
    last one its last value (a survival curve is flat past the last observed time).
    """
    index = np.searchsorted(np.asarray(times), grid, side="right") - 1
    out = np.asarray(values, dtype=float)[np.clip(index, 0, None)]
    out[index < 0] = before
    return out


def stepfunctions_on(functions, grid):
    """Survival probabilities (n_samples, n_grid) from scikit-survival StepFunctions."""
    return np.stack([step_values(f.x, f.a * f.y + f.b, grid) for f in functions])


def ibs_grid(y):
    """The 10th..90th percentiles of the data set's event times."""
    return np.unique(np.percentile(y["time"][y["event"]], GRID_PERCENTILES))


def fold_grid(grid, y_train, y_test):
    """The part of ``grid`` inside the test follow-up and below the largest training time."""
    upper = min(y_train["time"].max(), y_test["time"].max())
    return grid[(grid >= y_test["time"].min()) & (grid < upper)]


def evaluate(model, X_train, y_train, X_test, y_test, grid):
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    risk = np.asarray(model.risk(X_test), dtype=float)
    times = fold_grid(grid, y_train, y_test)
    survival = model.survival(X_test, times)
    if not np.isfinite(risk).all():
        raise ValueError(f"{int((~np.isfinite(risk)).sum())} non-finite risk scores")
    if not np.isfinite(survival).all():
        raise ValueError(f"{int((~np.isfinite(survival)).sum())} non-finite survival probabilities")
    c = np.nan if model.constant_risk else concordance_index_censored(y_test["event"], y_test["time"], risk)[0]
    ibs = integrated_brier_score(y_train, within_training_times(y_test, y_train), survival, times)
    return c, ibs, fit_s


def within_training_times(y_test, y_train):
    """``y_test`` with its times past the last training time set to that time.

    The censoring weights come from the training fold's Kaplan-Meier curve, undefined past
    its last time; on a grid below it, a test row followed longer is a control at every grid
    time either way, so the Brier scores are unchanged.
    """
    clipped = y_test.copy()
    clipped["time"] = np.minimum(clipped["time"], y_train["time"].max())
    return clipped


# --------------------------------------------------------------------------- models


class Estimator:
    """A scikit-survival-style estimator: ``predict`` risk, ``predict_survival_function``."""

    constant_risk = False

    def __init__(self, make, all_in_one=False):
        self.make = make
        self.all_in_one = all_in_one

    def _frame(self, X):
        if not self.all_in_one:
            return X
        return X.set_axis(["all__" + c.replace("__", "_", 1) for c in X.columns], axis=1)

    def fit(self, X, y):
        model = self.make(X).fit(self._frame(X), y)
        # A penalty chosen by inner CV: predict with the refitted best model.
        self.model_ = getattr(model, "best_estimator_", model)
        return self

    def risk(self, X):
        return self.model_.predict(self._frame(X))

    def survival(self, X, grid):
        return stepfunctions_on(self.model_.predict_survival_function(self._frame(X)), grid)


class KaplanMeier:
    """The training fold's Kaplan-Meier curve for every test row."""

    constant_risk = True

    def fit(self, X, y):
        self.times_, self.survival_ = kaplan_meier_estimator(y["event"], y["time"])
        return self

    def risk(self, X):
        return np.zeros(len(X))

    def survival(self, X, grid):
        return np.tile(step_values(self.times_, self.survival_, grid), (len(X), 1))


class PycoxModel:
    """pycox's tutorial recipe: MLPVanilla, Adam(lr 0.01), early stopping on 20% of the rows."""

    constant_risk = False

    def __init__(self, kind, seed, epochs):
        self.kind = kind
        self.seed = seed
        self.epochs = epochs

    def fit(self, X, y):
        import torchtuples as tt
        from pycox.models import CoxPH, DeepHitSingle, LogisticHazard

        x = X.to_numpy(dtype="float32")
        train, valid = train_test_split(
            np.arange(len(x)), test_size=0.2, stratify=y["event"], random_state=self.seed
        )
        durations, events = y["time"].astype("float32"), y["event"].astype("float32")
        torch.manual_seed(self.seed)
        hidden = list(default_hidden_dims(x.shape[1]))
        if self.kind == "deepsurv":
            net = tt.practical.MLPVanilla(x.shape[1], hidden, 1, batch_norm=True, dropout=0.1, output_bias=False)
            self.model_ = CoxPH(net, tt.optim.Adam(0.01))
            target = (durations, events)
            target_valid = (durations[valid], events[valid])
            target_train = (durations[train], events[train])
        else:
            cls = LogisticHazard if self.kind == "logistichazard" else DeepHitSingle
            labels = cls.label_transform(10)
            target_train = labels.fit_transform(durations[train], events[train])
            target_valid = labels.transform(durations[valid], events[valid])
            net = tt.practical.MLPVanilla(x.shape[1], hidden, labels.out_features, batch_norm=True, dropout=0.1)
            extra = dict(alpha=0.2, sigma=0.1) if cls is DeepHitSingle else {}
            self.model_ = cls(net, tt.optim.Adam(0.01), duration_index=labels.cuts, **extra)
            target = None
        self.model_.fit(
            x[train],
            target_train,
            batch_size=256,
            epochs=self.epochs,
            callbacks=[tt.callbacks.EarlyStopping()],
            verbose=False,
            val_data=(x[valid], target_valid),
        )
        if target is not None:
            self.model_.compute_baseline_hazards()
        return self

    def _survival_frame(self, X):
        x = X.to_numpy(dtype="float32")
        if self.kind == "deepsurv":
            return self.model_.predict_surv_df(x)
        return self.model_.interpolate(10).predict_surv_df(x)

    def risk(self, X):
        if self.kind == "deepsurv":
            return self.model_.predict(X.to_numpy(dtype="float32")).ravel()
        # Discrete-time models: minus the restricted mean survival time.
        frame = self._survival_frame(X)
        return -np.trapezoid(frame.to_numpy(), frame.index.to_numpy(), axis=0)

    def survival(self, X, grid):
        frame = self._survival_frame(X)
        return step_values(frame.index.to_numpy(), frame.to_numpy(), grid).T


def coxph_ridge(seed):
    def make(X):
        return GridSearchCV(
            CoxPHSurvivalAnalysis(n_iter=200),
            {"alpha": RIDGE_ALPHAS},
            cv=KFold(INNER_CV, shuffle=True, random_state=seed),
            error_score=0.0,
        )

    return Estimator(make)


def coxnet(seed):
    return Estimator(lambda X: _CoxnetCV(seed))


class _CoxnetCV:
    """Coxnet's own alpha path on the training fold, one alpha of it chosen by inner CV."""

    def __init__(self, seed):
        self.seed = seed

    def fit(self, X, y):
        path = CoxnetSurvivalAnalysis(l1_ratio=COXNET_L1_RATIO, alpha_min_ratio=0.01, n_alphas=100).fit(X, y)
        alphas = path.alphas_[:: max(1, len(path.alphas_) // COXNET_N_ALPHAS)]
        search = GridSearchCV(
            CoxnetSurvivalAnalysis(l1_ratio=COXNET_L1_RATIO, fit_baseline_model=True),
            {"alphas": [[a] for a in alphas]},
            cv=KFold(INNER_CV, shuffle=True, random_state=self.seed),
            error_score=0.0,
        ).fit(X, y)
        self.best_estimator_ = search.best_estimator_
        return self


def skfusion_model(cls, all_in_one=False, **params):
    def factory(seed, threads):
        return Estimator(lambda X: cls(device="cpu", random_state=seed, **params), all_in_one=all_in_one)

    return factory


def _label(cls, params, suffix=""):
    args = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{cls.__name__}({args}){suffix}"


def _skfusion_rows():
    rows = {}
    for name, cls, extra, suffix in [
        ("unimodal", UnimodalSurvival, {}, " (all features)"),
        ("concat", ConcatSurvival, {}, ""),
        ("late", LateFusionSurvival, {}, ""),
        ("coattention", CoAttentionSurvival, {}, ""),
        ("concat-weibull", ConcatSurvival, {"loss": "weibull"}, ""),
        ("concat-discrete", ConcatSurvival, {"loss": "discrete"}, ""),
    ]:
        one = cls is UnimodalSurvival
        rows[name] = ("skfusion", _label(cls, extra, suffix), skfusion_model(cls, one, **extra))
        tuned = {**extra, **TUNED}
        rows[f"{name}-tuned"] = ("skfusion", _label(cls, {**extra, "TUNED": True}, suffix), skfusion_model(cls, one, **tuned))
    return rows


MODELS = {
    **_skfusion_rows(),
    "coxph": (
        "peer",
        f"CoxPHSurvivalAnalysis (ridge, alpha in {RIDGE_ALPHAS} by {INNER_CV}-fold inner CV)",
        lambda seed, threads: coxph_ridge(seed),
    ),
    "coxnet": (
        "peer",
        f"CoxnetSurvivalAnalysis (l1_ratio={COXNET_L1_RATIO}, {COXNET_N_ALPHAS} alphas of its path by "
        f"{INNER_CV}-fold inner CV)",
        lambda seed, threads: coxnet(seed),
    ),
    "rsf": (
        "peer",
        "RandomSurvivalForest(n_estimators=200, min_samples_leaf=15)",
        lambda seed, threads: Estimator(
            lambda X: RandomSurvivalForest(
                n_estimators=200, min_samples_leaf=15, n_jobs=threads, random_state=seed
            )
        ),
    ),
    "gbsa": (
        "peer",
        "GradientBoostingSurvivalAnalysis(n_estimators=200, max_depth=3)",
        lambda seed, threads: Estimator(
            lambda X: GradientBoostingSurvivalAnalysis(n_estimators=200, max_depth=3, random_state=seed)
        ),
    ),
    "deepsurv": ("peer", "pycox CoxPH (DeepSurv), tutorial recipe", lambda seed, threads: PycoxModel("deepsurv", seed, 512)),
    "logistichazard": (
        "peer",
        "pycox LogisticHazard (10 times), tutorial recipe",
        lambda seed, threads: PycoxModel("logistichazard", seed, 100),
    ),
    "deephit": (
        "peer",
        "pycox DeepHitSingle (10 times, alpha 0.2, sigma 0.1), tutorial recipe",
        lambda seed, threads: PycoxModel("deephit", seed, 100),
    ),
    "km": ("peer", "Kaplan-Meier (reference)", lambda seed, threads: KaplanMeier()),
}

GROUPS = {
    "skfusion": [m for m, (kind, _, _) in MODELS.items() if kind == "skfusion"],
    "defaults": [m for m, (kind, _, _) in MODELS.items() if kind == "skfusion" and not m.endswith("-tuned")],
    "tuned": [m for m in MODELS if m.endswith("-tuned")],
    "peers": [m for m, (kind, _, _) in MODELS.items() if kind == "peer"],
}


def select_models(patterns):
    chosen = []
    for pattern in patterns:
        names = GROUPS.get(pattern) or fnmatch.filter(MODELS, pattern)
        if not names:
            raise SystemExit(f"--models: {pattern!r} matches none of {', '.join(list(MODELS) + list(GROUPS))}.")
        chosen += [n for n in names if n not in chosen]
    return [m for m in MODELS if m in chosen]


# --------------------------------------------------------------------------- preprocessing


def preprocess(X_train, X_test, scale):
    """Fit the fold's encoders on the training rows; numeric standardized when ``scale``."""
    if "ehr" in X_train.columns:
        encoder = OneHotEHREncoder().fit(X_train)
        X_train, X_test = encoder.transform(X_train), encoder.transform(X_test)
    numeric = make_pipeline(SimpleImputer(strategy="median"), *([StandardScaler()] if scale else []))
    columns = ColumnTransformer(
        [
            ("num", numeric, numeric_columns(X_train)),
            ("cat", OneHotEncoder(drop="if_binary", handle_unknown="ignore", sparse_output=False), categorical_columns(X_train)),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    train = columns.fit_transform(X_train).astype(float)
    return train, columns.transform(X_test).astype(float)


# --------------------------------------------------------------------------- runs


def run_dataset(name, models, args):
    X, y, description = DATASETS[name]()
    grid = ibs_grid(y)
    cv = RepeatedStratifiedKFold(n_splits=args.folds, n_repeats=args.repeats, random_state=SEED)
    scores = {m: {"c": [], "ibs": [], "fit_s": [], "failed": []} for m in models}
    started = time.perf_counter()
    for fold, (train, test) in enumerate(cv.split(X, y["event"])):
        X_train, X_test = X.iloc[train], X.iloc[test]
        scaled = preprocess(X_train, X_test, scale=True)
        raw = preprocess(X_train, X_test, scale=False) if args.raw else scaled
        for m in models:
            kind, _, factory = MODELS[m]
            Xa, Xb = raw if kind == "skfusion" else scaled
            try:
                c, ibs, fit_s = evaluate(factory(SEED + fold, args.threads), Xa, y[train], Xb, y[test], grid)
            except Exception as error:  # a failing model is a result, reported in the table
                scores[m]["failed"].append(f"{type(error).__name__}: {str(error).splitlines()[0][:120]}")
                print(f"  {name} fold {fold + 1} {m}: FAILED {scores[m]['failed'][-1]}", flush=True)
                continue
            scores[m]["c"].append(c)
            scores[m]["ibs"].append(ibs)
            scores[m]["fit_s"].append(fit_s)
            print(f"  {name} fold {fold + 1} {m}: C {c:.3f} IBS {ibs:.3f} fit {fit_s:.1f}s", flush=True)
    n_features = len(scaled[0].columns)
    return {
        "description": description,
        "n_features": n_features,
        "n_folds": args.folds * args.repeats,
        "skfusion_features": "raw (imputed, unstandardized)" if args.raw else "standardized",
        "seconds": time.perf_counter() - started,
        "models": scores,
    }


def run_target(args):
    """The issue's target line on pbcseq: CLMBR + CoAttention vs one-hot + ridge Cox."""
    X, y, _ = load_pbcseq()
    grid = ibs_grid(y)
    rows = {
        "target-clmbr-coattention": (
            "`Pipeline([CLMBREmbedder(), CoAttentionSurvival()])` (defaults)",
            lambda seed: Estimator(
                lambda X: Pipeline(
                    [
                        ("emb", CLMBREmbedder(device="cpu", random_state=seed)),
                        ("fuse", CoAttentionSurvival(device="cpu", random_state=seed)),
                    ]
                )
            ),
        ),
        "target-onehot-cox": (
            "`OneHotEHREncoder()` + `StandardScaler()` + `CoxPHSurvivalAnalysis(alpha=10)`",
            lambda seed: Estimator(
                lambda X: Pipeline(
                    [("onehot", OneHotEHREncoder()), ("scale", StandardScaler()), ("cox", CoxPHSurvivalAnalysis(alpha=10))]
                )
            ),
        ),
    }
    scores = {m: {"label": label, "c": [], "ibs": [], "fit_s": [], "failed": []} for m, (label, _) in rows.items()}
    splits = StratifiedShuffleSplit(n_splits=args.target_splits, test_size=0.3, random_state=SEED)
    started = time.perf_counter()
    for split, (train, test) in enumerate(splits.split(X, y["event"])):
        for m, (_, make) in rows.items():
            try:
                c, ibs, fit_s = evaluate(make(SEED + split), X.iloc[train], y[train], X.iloc[test], y[test], grid)
            except Exception as error:
                scores[m]["failed"].append(f"{type(error).__name__}: {str(error).splitlines()[0][:120]}")
                print(f"  pbcseq-target split {split + 1} {m}: FAILED {scores[m]['failed'][-1]}", flush=True)
                continue
            for key, value in zip(("c", "ibs", "fit_s"), (c, ibs, fit_s)):
                scores[m][key].append(value)
            print(f"  pbcseq-target split {split + 1} {m}: C {c:.3f} IBS {ibs:.3f} fit {fit_s:.1f}s", flush=True)
    return {"seconds": time.perf_counter() - started, "n_splits": args.target_splits, "models": scores}


# --------------------------------------------------------------------------- report


def cpu_name():
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} ({len(names)} logical CPUs)" if names else platform.processor()


def git_commit():
    where = dict(capture_output=True, text=True, cwd=Path(skfusion.__file__).parent)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=True, **where)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **where)
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def mean_sd(values, digits=3):
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def model_cells(score, n_folds):
    c, ibs = mean_sd(score["c"]), mean_sd(score["ibs"])
    fit = f"{np.mean(score['fit_s']):.2f}" if score["fit_s"] else "-"
    note = ""
    if score["failed"]:
        note = f"fails in {len(score['failed'])}/{n_folds} folds: {score['failed'][0]}"
    return c, ibs, fit, note


def dataset_table(name, result):
    lines = [
        f"## {name}",
        "",
        result["description"]
        + f" {result['n_features']} features after encoding; skfusion models given {result['skfusion_features']} "
        f"features; {result['n_folds']} folds; {result['seconds'] / 60:.1f} min in all.",
        "",
        "| model | C-index | IBS | fit s | note |",
        "|---|---|---|---|---|",
    ]
    for m in MODELS:
        if m in result["models"]:
            c, ibs, fit, note = model_cells(result["models"][m], result["n_folds"])
            lines.append(f"| `{m}`: {MODELS[m][1]} | {c} | {ibs} | {fit} | {note} |")
    return lines + [""]


def target_table(result):
    lines = [
        "## pbcseq target line",
        "",
        f"The raw `load_pbcseq_events()` frame (events + clin__ block), {result['n_splits']} stratified 70/30 "
        f"splits (seed {SEED}); the skfusion pipeline at its defaults (`device='cpu'`, `random_state` = split "
        f"seed); {result['seconds'] / 60:.1f} min in all.",
        "",
        "| model | C-index | IBS | fit s | note |",
        "|---|---|---|---|---|",
    ]
    for score in result["models"].values():
        c, ibs, fit, note = model_cells(score, result["n_splits"])
        lines.append(f"| {score['label']} | {c} | {ibs} | {fit} | {note} |")
    return lines + [""]


def _mean(score, key):
    if score is None or score["failed"] or not score[key]:
        return None
    return float(np.mean(score[key]))


def _margin(score, reference, key, bound, higher_is_better):
    if score is not None and score["failed"]:
        return f"fails in {len(score['failed'])} folds **NO**", False
    value, reference = _mean(score, key), _mean(reference, key)
    if value is None or reference is None:
        return "n/a", False
    delta = value - reference
    holds = delta >= -bound if higher_is_better else delta <= bound
    return f"{delta:+.3f} {'yes' if holds else '**NO**'}", holds


def summary(results):
    lines = [
        "## Targets of issue 11",
        "",
        "Per data set: default `concat` and `late` against the best Cox peer (`coxph` or `coxnet`, the higher "
        "mean C): C difference (target >= -0.005) and IBS difference (target <= +0.005); `concat-weibull` and "
        "`concat-discrete` against `concat` (loss cox): C difference (target >= -0.01, and no failed fold). "
        "A model with a failed fold fails its target.",
        "",
        "| data | best Cox peer | Kaplan-Meier IBS | concat dC | concat dIBS | late dC | late dIBS | weibull dC "
        "| discrete dC | all hold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if name == "pbcseq-target":
            continue
        models = result["models"]
        peers = [(p, _mean(models.get(p), "c")) for p in ("coxph", "coxnet") if models.get(p)]
        peers = [(p, c) for p, c in peers if c is not None]
        best = max(peers, key=lambda pc: pc[1])[0] if peers else None
        peer = models.get(best) if best else None
        cells, holds = [], []
        for m in ("concat", "late"):
            for key, bound, higher in (("c", 0.005, True), ("ibs", 0.005, False)):
                text, ok = _margin(models.get(m), peer, key, bound, higher)
                cells.append(text)
                holds.append(ok)
        for m in ("concat-weibull", "concat-discrete"):
            text, ok = _margin(models.get(m), models.get("concat"), "c", 0.01, True)
            cells.append(text)
            holds.append(ok)
        peer_text = f"`{best}` C {_mean(peer, 'c'):.3f}, IBS {_mean(peer, 'ibs'):.3f}" if peer else "n/a"
        km = _mean(models.get("km"), "ibs")
        km_text = "n/a" if km is None else f"{km:.3f}"
        verdict = "yes" if all(holds) else "**NO**"
        lines.append(f"| {name} | {peer_text} | {km_text} | " + " | ".join(cells) + f" | {verdict} |")
    if "pbcseq-target" in results:
        models = results["pbcseq-target"]["models"]
        text, _ = _margin(models["target-clmbr-coattention"], models["target-onehot-cox"], "c", 0.0, True)
        lines += [
            "",
            f"pbcseq target line: mean C of CLMBR + CoAttention minus one-hot + ridge Cox: {text} (target >= 0).",
        ]
    return lines + [""]


def write_report(results, meta, out):
    lines = [
        "# Real survival data: skfusion next to scikit-survival and pycox",
        "",
        f"Machine: {meta['platform']}, {meta['cpu']}; torch {meta['torch']} with {meta['threads']} thread(s). "
        f"skfusion from `{meta['skfusion']}`, commit {meta['commit']}.",
        "",
        "Command(s):",
        "",
        *[f"    {command}" for command in meta["commands"]],
        "",
        "Generated by `benchmarks/bench_real.py` (its docstring gives the protocol). C-index: Harrell's; IBS: "
        "integrated Brier score on the 10th-90th percentiles of the event times (lower is better); fit s: mean "
        "seconds per fold. `TUNED` = " + ", ".join(f"{k}={v!r}" for k, v in TUNED.items()) + ".",
        "",
    ]
    for name, result in results.items():
        lines += target_table(result) if name == "pbcseq-target" else dataset_table(name, result)
    lines += summary(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=[*DATASETS, "pbcseq-target"], choices=[*DATASETS, "pbcseq-target"])
    parser.add_argument("--models", nargs="+", default=["*"], help="names, globs or groups (see --list)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target-splits", type=int, default=TARGET_SPLITS, help="70/30 splits of pbcseq-target")
    parser.add_argument("--raw", action="store_true", help="skfusion models get unstandardized numeric features")
    parser.add_argument("--merge", action="store_true", help="keep the rows already in --out's JSON sidecar")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true", help="print the model names and groups, then exit")
    parser.add_argument("--report-only", action="store_true", help="rewrite --out from its JSON sidecar, run nothing")
    args = parser.parse_args()
    if args.list:
        for m, (kind, label, _) in MODELS.items():
            print(f"{m:24s} {kind:9s} {label}")
        for group, names in GROUPS.items():
            print(f"group {group}: {' '.join(names)}")
        return
    models = select_models(args.models)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    sidecar = args.out.with_suffix(".json")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    keep = (args.merge or args.report_only) and sidecar.exists()
    stored = json.loads(sidecar.read_text()) if keep else {"results": {}, "commands": []}
    results = stored["results"]
    meta = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": git_commit(),
        "skfusion": str(Path(skfusion.__file__).parent),
        "commands": stored["commands"] + [command],
    }
    if args.report_only:
        meta["commands"] = stored["commands"]
        write_report(results, {**stored.get("meta", meta), "commands": stored["commands"]}, args.out)
        print(f"wrote {args.out}")
        return
    with threadpool_limits(args.threads):
        for name in args.datasets:
            print(f"{name}:", flush=True)
            if name == "pbcseq-target":
                results[name] = run_target(args)
            else:
                result = run_dataset(name, models, args)
                if name in results and args.merge:
                    result["models"] = {**results[name]["models"], **result["models"]}
                results[name] = result
            print(f"{name}: {results[name]['seconds'] / 60:.1f} min", flush=True)
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            sidecar.write_text(json.dumps({"results": results, "commands": meta["commands"], "meta": meta}, indent=1))
            write_report(results, meta, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
