"""Wall time of bootstrap confidence intervals of Harrell's C-index and of AUROC.

``bootstrap_ci(concordance_index, ...)`` evaluates all resamples at once from row counts;
the baseline calls scikit-survival's ``concordance_index_censored`` once per resample (what
any other metric gets), serially and with ``n_jobs``. Both give the same resamples (checked
here on the first resamples). Slow baselines run ``--baseline-resamples`` resamples and are
scaled to ``--resamples``; the table says so.

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_metrics.py

Writes ``benchmarks/results/metrics.md`` (``--output`` to change).
"""

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
import sksurv
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from skfusion.metrics import bootstrap_ci, concordance_index


def survival_data(n, seed=0):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    event_time = rng.exponential(np.exp(-risk))
    censor_time = rng.exponential(1.5, size=n)
    return Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time)), risk


def harrell_per_resample(y, risk):
    """scikit-survival called on each resample: the path every metric without a fast path takes."""
    return concordance_index_censored(y["event"], y["time"], risk)[0]


def timed(metric, y, score, n_resamples, n_jobs):
    start = time.perf_counter()
    result = bootstrap_ci(metric, y, score, n_resamples=n_resamples, n_jobs=n_jobs, random_state=0)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-resamples", type=int, default=100)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "metrics.md")
    args = parser.parse_args()
    jobs = os.cpu_count()
    # Start joblib's worker processes (and their imports) before timing: steady state.
    # bootstrap_ci needs 39 resamples for a 95% percentile interval.
    timed(harrell_per_resample, *survival_data(50), n_resamples=max(jobs, 39), n_jobs=jobs)
    rows = []
    for n in args.sizes:
        y, risk = survival_data(n)
        seconds, fast = timed(concordance_index, y, risk, args.resamples, None)
        rows.append(("Harrell C, batched (skfusion)", n, args.resamples, 1, seconds, seconds))
        for n_jobs in (1, jobs):
            seconds, slow = timed(harrell_per_resample, y, risk, args.baseline_resamples, n_jobs)
            np.testing.assert_allclose(fast.resamples[: args.baseline_resamples], slow.resamples, rtol=1e-10)
            scaled = seconds * args.resamples / args.baseline_resamples
            rows.append(("Harrell C, sksurv per resample", n, args.baseline_resamples, n_jobs, seconds, scaled))
        labels = (risk > 0).astype(int)
        for n_jobs in (1, jobs):
            seconds, _ = timed(roc_auc_score, labels, risk, args.resamples, n_jobs)
            rows.append(("AUROC, sklearn roc_auc_score per resample", n, args.resamples, n_jobs, seconds, seconds))
        print(rows[-1], flush=True)
    command = "OMP_NUM_THREADS={} PYTHONPATH=. python {}".format(
        os.environ.get("OMP_NUM_THREADS", "unset"), shlex.join(sys.argv)
    )
    lines = [
        "# Bootstrap confidence interval: wall time",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()} {platform.processor() or ''}, {jobs} cores, CPU; numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, scikit-survival {sksurv.__version__}.",
        "",
        f"`bootstrap_ci(metric, y, score, n_resamples=..., n_jobs=..., random_state=0)`, percentile interval; "
        f"exponential survival times, about 58% events. The last column scales the measured time to "
        f"{args.resamples} resamples. joblib's worker processes are started before timing. The machine's cores "
        "are shared with other jobs, so the n_jobs rows are noisy.",
        "",
        f"| metric | n samples | resamples run | n_jobs | seconds | seconds per {args.resamples} resamples |",
        "|---|---|---|---|---|---|",
    ] + [f"| {m} | {n} | {b} | {j} | {s:.2f} | {t:.1f} |" for m, n, b, j, s, t in rows]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
