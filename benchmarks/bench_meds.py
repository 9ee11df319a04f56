"""MEDS loading benchmark: ``load_meds`` against pyarrow reading the same shards, and what follows it.

Data: a synthetic MEDS dataset per size (``--sizes``, default 1,000 / 10,000 / 100,000
subjects), written here with pyarrow (``make_meds_cohort`` makes about 60 events per subject,
one Python loop per subject): about ``--events`` (300) events per subject, a sex as a static
event (no time), ``MEDS_BIRTH``, visits of several codes at one time each over about five
years (codes drawn from ``--codes`` codes, Zipf-like; the lab codes with a ``numeric_value``),
``MEDS_DEATH`` for one subject in ten. Subjects are split 80/10/10 into ``train``, ``tuning``
and ``held_out`` and written as MEDS ETLs write them: ``data/<split>/<k>.parquet`` shards of
at most 5,000 subjects, each sorted by subject then time (static events first), subject ids
interleaved across shards; ``metadata/subject_splits.parquet``; a label table with one or two
prediction times per subject (a ``boolean_value``). Every table is checked by its ``meds``
schema.

1. **Loading.** ``load_meds(root, labels)`` against ``pyarrow.parquet.read_table`` of the
   columns it needs (``subject_id``, ``time``, ``code``, ``numeric_value``) of every shard,
   concatenated (``pa.concat_tables``). ``--repeats`` fresh processes per method, the two
   methods interleaved; in each, after the imports, a first call gives the peak resident
   memory it adds (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``,
   minus ``VmRSS`` before the call) and its wall time, then a second call gives the wall and
   CPU seconds reported (medians over the processes). Targets: time <= 1.5x and peak memory
   <= 2x the Arrow read's. The log-log slope of ``load_meds``'s wall time against the number
   of subjects is reported (1: linear).
2. **What follows**, in this process on the loaded ``X`` (best of ``--repeats``):
   ``meds_time_to_event(root, X.index, ["MEDS_DEATH"])`` (it reads the shards again) and
   ``OneHotEHREncoder(events="ehr").fit_transform`` on all rows of ``X`` (one run), as label
   rows per second.
3. **CLMBR** (cohorts up to ``--clmbr-max`` subjects, on the first ``--clmbr-rows`` rows of
   ``X``): ``CLMBREmbedder.transform`` (default sizes, ``max_epochs=0``, one torch thread)
   against the plain torch loop of ``bench_clmbr.py`` (the same module over batches
   tokenized and collated before the clock; its ``throughput_row``), patients/s; target
   >= 0.8x.

Usage::

    python benchmarks/bench_meds.py [--sizes 1000 10000 100000] [--repeats 3]
        [--clmbr-max 10000] [--clmbr-rows 1000]
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from skfusion.datasets._meds import US_PER_DAY
from skfusion.encoders._event_store import NO_TIME

RESULTS = Path(__file__).parent / "results" / "meds.md"
COLUMNS = ["subject_id", "time", "code", "numeric_value"]
SUBJECTS_PER_SHARD = 5_000
START = np.datetime64("2005-01-01", "us").astype(np.int64)


# --- data ------------------------------------------------------------------------------------


def _vocabulary(n_codes):
    n_labs = n_codes // 5
    labs = [f"LOINC/{10000 + k}-{k % 10}" for k in range(n_labs)]
    others = [f"ICD10CM/X{k:05d}" for k in range(n_codes - n_labs)]
    return np.array(["Gender/F", "Gender/M", "MEDS_BIRTH", "MEDS_DEATH", *labs, *others], dtype=object), n_labs


def _events(n_subjects, events, n_codes, rng):
    """The cohort's events as columns sorted by subject then time (static events first)."""
    vocabulary, n_labs = _vocabulary(n_codes)
    died = rng.random(n_subjects) < 0.1
    n_timed = np.maximum(rng.poisson(events - 2, n_subjects), 1)
    counts = n_timed + 2 + died  # sex, birth, the timed events, death
    subject = np.repeat(np.arange(n_subjects, dtype=np.int64), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(len(subject)) - first[subject]  # within the subject
    # Visits of about five codes at one time, a visit every 30 days on average.
    new_visit = rng.random(len(subject)) < 0.2
    gaps = np.where(new_visit, rng.exponential(30.0 * US_PER_DAY, len(subject)), 0).astype(np.int64)
    offsets = np.cumsum(gaps)
    offsets -= offsets[first][subject]
    enrolment = START + (rng.uniform(0, 3650, n_subjects) * US_PER_DAY).astype(np.int64)
    time = enrolment[subject] + offsets
    weights = 1.0 / (np.arange(n_codes) + 10.0)
    code = 4 + rng.choice(n_codes, len(subject), p=weights / weights.sum())
    value = np.where(code < 4 + n_labs, rng.standard_normal(len(subject)).astype(np.float32), np.nan)
    # The first two rows of a subject: its sex (static) and its birth; a death closes the record.
    code[first] = rng.integers(0, 2, n_subjects)
    time[first] = NO_TIME
    code[first + 1] = 2
    time[first + 1] = enrolment - (rng.uniform(20, 80, n_subjects) * 365.25 * US_PER_DAY).astype(np.int64)
    last = first + counts - 1
    code[last[died]] = 3
    time[last[died]] = time[last[died] - 1] + US_PER_DAY
    value[position < 2] = np.nan
    value[last[died]] = np.nan
    return vocabulary, subject, time, code, value.astype(np.float32), enrolment, offsets[last - died]


def write_cohort(root, n_subjects, events=300, n_codes=2000, seed=0):
    """Write the synthetic MEDS dataset under ``root``; returns ``(labels path, n_events)``."""
    import meds
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocabulary, subject, time, code, value, enrolment, span = _events(n_subjects, events, n_codes, rng)
    splits = np.array(["train", "tuning", "held_out"])[
        np.searchsorted([0.8, 0.9], rng.permutation(n_subjects) / n_subjects, side="right")
    ]
    dictionary = pa.array(vocabulary, pa.string())
    bounds = np.r_[0, np.cumsum(np.bincount(subject, minlength=n_subjects))]
    for split in ("train", "tuning", "held_out"):
        members = np.flatnonzero(splits == split)
        folder = Path(root) / "data" / split
        folder.mkdir(parents=True, exist_ok=True)
        for k, chunk in enumerate(np.array_split(members, max(1, -(-len(members) // SUBJECTS_PER_SHARD)))):
            rows = np.concatenate([np.arange(bounds[s], bounds[s + 1]) for s in chunk])
            table = pa.table(
                {
                    "subject_id": pa.array(subject[rows]),
                    "time": pa.array(time[rows], pa.timestamp("us"), mask=time[rows] == NO_TIME),
                    "code": pa.DictionaryArray.from_arrays(pa.array(code[rows], pa.int32()), dictionary).cast(
                        pa.string()
                    ),
                    "numeric_value": pa.array(value[rows], pa.float32(), from_pandas=True),
                }
            )
            meds.DataSchema.validate(table)
            pq.write_table(table, folder / f"{k}.parquet")
    metadata = Path(root) / "metadata"
    metadata.mkdir(exist_ok=True)
    split_table = pa.table({"subject_id": np.arange(n_subjects, dtype=np.int64), "split": splits})
    meds.SubjectSplitSchema.validate(split_table)
    pq.write_table(split_table, Path(root) / meds.subject_splits_filepath)
    n_labels = 1 + (rng.random(n_subjects) < 0.5)
    labelled = np.repeat(np.arange(n_subjects), n_labels)
    second = np.r_[False, labelled[1:] == labelled[:-1]]
    fraction = rng.uniform(0.3, 0.6, len(labelled)) + 0.3 * second  # a subject's second time is later
    prediction = enrolment[labelled] + (fraction * span[labelled]).astype(np.int64)
    labels = pa.table(
        {
            "subject_id": pa.array(labelled.astype(np.int64)),
            "prediction_time": pa.array(prediction).cast(pa.timestamp("us")),
            "boolean_value": pa.array(rng.random(len(labelled)) < 0.2),
        }
    )
    labels = meds.LabelSchema.align(labels)
    meds.LabelSchema.validate(labels)
    path = Path(root) / "labels.parquet"
    pq.write_table(labels, path)
    return path, len(subject)


# --- 1. loading, one fresh process per run ---------------------------------------------------


def _status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _child(method, root):
    """One process's measures: the first call's peak MiB added and wall s, then a second call's wall and CPU s."""
    import meds  # noqa: F401  (imports before the memory baseline: load_meds imports them)
    import pyarrow as pa
    import pyarrow.parquet as pq

    import skfusion.encoders._event_store  # noqa: F401
    from skfusion.datasets import load_meds

    shards = sorted((Path(root) / "data").rglob("*.parquet"))

    def call():
        if method == "arrow":
            table = pa.concat_tables([pq.read_table(path, columns=COLUMNS) for path in shards])
            return table.nbytes, table.num_rows
        X, _ = load_meds(root, Path(root) / "labels.parquet")
        store = X.iloc[0, 0].store
        return store.codes.nbytes + store.times.nbytes + store.values.nbytes, len(store)

    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    baseline = _status_kib("VmRSS")
    first = time.perf_counter()
    size, rows = call()
    first = time.perf_counter() - first
    peak = (_status_kib("VmHWM") - baseline) / 1024
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"first": first, "wall": wall, "cpu": cpu, "peak": peak, "size": size / 2**20, "rows": rows}))


def loading(root, repeats):
    """``{method: [run, ...]}``, the two methods interleaved, each run in its own process."""
    runs = {"arrow": [], "load_meds": []}
    for _ in range(repeats):
        for method in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--child", method, str(root)], stdout=subprocess.PIPE, text=True, check=True
            )
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


# --- 2. what follows the loading ---------------------------------------------------------------


def downstream(root, X, repeats):
    """Label rows/s of ``meds_time_to_event`` and of the one-hot encoder, on all rows."""
    from bench_clmbr import best_of

    from skfusion.datasets import meds_time_to_event
    from skfusion.encoders import OneHotEHREncoder

    tte = best_of(lambda: meds_time_to_event(root, X.index, ["MEDS_DEATH"]), repeats)
    onehot = best_of(lambda: OneHotEHREncoder(events="ehr").fit_transform(X), 1)
    return len(X) / tte, len(X) / onehot


# --- 3. CLMBR: transform against the plain torch loop ------------------------------------------


def clmbr(X, repeats):
    """``(patients, transform patients/s, loop patients/s)`` at the default sizes, one torch thread.

    The loop and the timing are ``bench_clmbr.py``'s (``throughput_row``): the same module
    over batches tokenized and collated before the clock.
    """
    import torch
    from bench_clmbr import throughput_row

    from skfusion.encoders import CLMBREmbedder

    torch.set_num_threads(1)
    embedder = CLMBREmbedder(max_epochs=0, random_state=0, device="cpu").fit(X)
    _, n, transform, loop, _, read_share = throughput_row("CLMBR default", embedder, X, repeats)
    return n, transform, loop, read_share


# --- the table -----------------------------------------------------------------------------------


def _machine():
    import pandas as pd
    import pyarrow
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} cores (shared), CPU instruction set "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"pandas {pd.__version__}, pyarrow {pyarrow.__version__}"
    )


def _median(runs, key):
    return statistics.median(run[key] for run in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--events", type=int, default=300, help="events per subject (mean)")
    parser.add_argument("--codes", type=int, default=2000, help="distinct codes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clmbr-max", type=int, default=10_000, help="largest cohort CLMBR is timed on")
    parser.add_argument("--clmbr-rows", type=int, default=1000, help="rows given to CLMBR")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    warnings.simplefilter("ignore", UserWarning)
    from skfusion.datasets import load_meds

    load_rows, follow_rows, clmbr_rows, walls = [], [], [], []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as root:
            _, n_events = write_cohort(root, n, args.events, args.codes)
            n_shards = len(list((Path(root) / "data").rglob("*.parquet")))
            runs = loading(root, args.repeats)
            arrow, meds_runs = runs["arrow"], runs["load_meds"]
            walls.append(_median(meds_runs, "wall"))
            for method, label in ((meds_runs, "load_meds"), (arrow, "pyarrow read_table + concat")):
                each = ", ".join(f"{run['wall']:.2f}" for run in method)
                load_rows.append(
                    f"| {n} | {n_events} | {n_shards} | {label} | {_median(method, 'wall'):.2f} "
                    f"({each}) | {_median(method, 'cpu'):.2f} | {_median(method, 'first'):.2f} | "
                    f"{_median(method, 'wall') / _median(arrow, 'wall'):.2f} | {_median(method, 'peak'):.0f} | "
                    f"{_median(method, 'peak') / _median(arrow, 'peak'):.2f} | {_median(method, 'size'):.0f} |"
                )
            print(load_rows[-2], load_rows[-1], sep="\n", flush=True)
            X, _ = load_meds(root, Path(root) / "labels.parquet")
            tte, onehot = downstream(root, X, args.repeats)
            follow_rows.append(f"| {n} | {len(X)} | {tte:,.0f} | {onehot:,.0f} |")
            print(follow_rows[-1], flush=True)
            if n <= args.clmbr_max:
                k, transform, loop, read_share = clmbr(X.iloc[: args.clmbr_rows], max(1, args.repeats - 1))
                clmbr_rows.append(
                    f"| {n} | {k} | {transform:.0f} | {loop:.0f} | {transform / loop:.2f} | {read_share:.0%} |"
                )
                print(clmbr_rows[-1], flush=True)
            del X
    slope = np.polyfit(np.log(args.sizes), np.log(walls), 1)[0] if len(args.sizes) > 1 else float("nan")
    _write(args, load_rows, follow_rows, clmbr_rows, slope)


def _write(args, load_rows, follow_rows, clmbr_rows, slope):
    lines = [
        "# MEDS: loading time and memory against pyarrow, and what follows it",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {_machine()}. Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        f"Data: synthetic MEDS datasets written by the benchmark (about {args.events} events per subject, "
        f"{args.codes} codes, 20% of them labs with a value; shards `data/<split>/<k>.parquet` of at most "
        f"{SUBJECTS_PER_SHARD} subjects, subject ids interleaved across shards; one or two prediction times "
        "per subject). See the module docstring for the protocol.",
        "",
        "## 1. `load_meds(root, labels)` against `pyarrow.parquet.read_table` of the same columns, concatenated",
        "",
        f"{args.repeats} fresh processes per method, interleaved; in each, after the imports, a first call "
        "measures the peak (resident memory added by the call: VmHWM after `/proc/self/clear_refs`, minus "
        "VmRSS before) and its wall time (`first call`), then a second call gives the wall and CPU seconds. "
        "Medians over the processes (the wall seconds of each in brackets); CPU can exceed wall (pyarrow "
        "reads with two threads). `ratio`: to pyarrow's median. Output: the Arrow table's `nbytes`; for "
        "`load_meds`, the store's codes, times and values. Targets: wall ratio <= 1.5, peak ratio <= 2.",
        "",
        "| subjects | events | shards | method | wall s (runs) | CPU s | first call s | wall ratio | peak MiB | "
        "peak ratio | output MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *load_rows,
        "",
        f"Log-log slope of `load_meds`'s median wall time against the number of subjects: {slope:.2f} "
        "(1 is linear).",
        "",
        "## 2. What follows the loading (label rows/s)",
        "",
        f"`meds_time_to_event(root, X.index, ['MEDS_DEATH'])` on all rows (it reads the shards again), best of "
        f"{args.repeats}; `OneHotEHREncoder(events='ehr').fit_transform` on all rows, one run.",
        "",
        "| subjects | label rows | meds_time_to_event rows/s | one-hot fit_transform rows/s |",
        "|---|---|---|---|",
        *follow_rows,
        "",
        "## 3. `CLMBREmbedder.transform` against a plain torch loop (default sizes, one torch thread)",
        "",
        f"On the first {args.clmbr_rows} rows of `X`, up to {args.clmbr_max} subjects; `bench_clmbr.py`'s "
        f"`throughput_row` (best of {max(1, args.repeats - 1)}): the loop runs the same module over batches "
        "tokenized and collated before the clock. Target: ratio >= 0.8.",
        "",
        "| subjects | patients | transform patients/s | torch loop patients/s | ratio | share reading + tokenizing |",
        "|---|---|---|---|---|---|",
        *clmbr_rows,
    ]
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
