"""What a 3-D CT encoder costs: per volume, and per epoch of training over NIfTI files.

Three parts, each a section of ``results/volumes.md`` (a part not run keeps its section):

``networks``
    For every name of :data:`skfusion.modules.volumes.VOLUME_NETWORKS` (MONAI's networks,
    built by :func:`~skfusion.modules.volumes.volume_network` with their default
    configurations): parameters and the feature width ``d``; FLOPs of one forward pass on
    one ``(1, 1, s, s, s)`` volume at s = 64, 128 and 224 (Huo et al.'s size), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no arithmetic is done:
    exact counts of the matrix products and convolutions, which is what torch counts;
    element-wise operations are not counted); CPU seconds of one forward pass (inference
    mode) and of one forward and backward pass (training mode, a batch of 2 volumes, per
    volume) at 64^3, one torch thread, best of ``--repeats``.

``training``
    ``ConcatSurvival(image_encoder="densenet121-3d")`` fitted on a column of NIfTI files
    and an EHR block, against the loop a user writes by hand for the same network: a
    :class:`torch.utils.data.DataLoader` over MONAI's transforms (``LoadImage``, ``Resize``,
    ``ScaleIntensity``), MONAI's ``DenseNet121``, the same head, torchsurv's Cox partial
    likelihood and Adam; once reading every file each epoch, once through MONAI's
    ``PersistentDataset`` (the transformed volumes cached on disk after the first epoch, as
    skfusion caches them). The runs are interleaved, ``--rounds`` rounds of the three,
    and timed per epoch, wall and CPU seconds (one torch thread, files read in the main
    process): the first epoch, which decodes the files, and the mean of the later ones.

``memory``
    The peak resident memory of ``fit`` (one epoch) in a fresh process for each number of
    volumes of ``--memory-n``: the column is read batch by batch, so it should not grow
    with the number of volumes.

Usage::

    python benchmarks/bench_volumes.py [--parts networks training memory] [--names densenet121-3d resnet18-3d]
        [--n-volumes 48] [--side 48] [--epochs 4] [--batch-size 8] [--rounds 3] [--out benchmarks/results/volumes.md]
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "volumes.md"
TITLE = "# 3-D CT encoders: cost per volume, and training over NIfTI files"
FLOP_SIDES = (64, 128, 224)
TIMED_SIDE = 64
# The NIfTI files of the training parts: (z, y, x) voxels of a CT-like volume, int16 HU, gzipped.
SOURCE_SHAPE = (64, 128, 128)
N_EHR = 8
LR, WEIGHT_DECAY, DROPOUT = 1e-3, 1e-2, 0.1  # ConcatSurvival's defaults, given to the hand-written loop too
HIDDEN = 512  # ConcatSurvival's default head width for 1024 + N_EHR features: half of them, at most 512
SECTIONS = {
    "networks": "## Networks: cost per volume",
    "training": "## Training over NIfTI files: skfusion against a hand-written loop",
    "memory": "## Peak memory of fit against the number of volumes",
}


def flops(network, side):
    """Forward FLOPs of ``network`` on one ``side``^3 volume, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = network.to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, 1, side, side, side, device="meta"))
    return counter.get_total_flops()


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def row(name, repeats):
    from skfusion.modules.volumes import volume_network

    torch.manual_seed(0)
    network = volume_network(name)
    params = sum(p.numel() for p in network.parameters())
    x = torch.randn(2, 1, TIMED_SIDE, TIMED_SIDE, TIMED_SIDE)
    network.eval()
    with torch.inference_mode():
        d = network(x[:1]).shape[1]
        forward = _best(lambda: network(x[:1]), repeats)
    network.train()

    def step():
        network.zero_grad()
        network(x).sum().backward()

    step()
    backward = _best(step, repeats) / len(x)
    counts = {side: flops(volume_network(name), side) for side in FLOP_SIDES}
    return name, params, d, counts, forward, backward


def _machine():
    model = next(
        (line.split(":", 1)[1].strip() for line in _lscpu().splitlines() if line.startswith("Model name")), "unknown"
    )
    return (
        f"{model} ({platform.machine()}), {os.cpu_count()} cores shared with other jobs, CPU instruction set "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, torch {torch.__version__}, "
        "one torch thread"
    )


def _lscpu():
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def _header(args):
    return [
        f"Command: `python {' '.join(['benchmarks/bench_volumes.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {_machine()}. Date: {datetime.date.today().isoformat()}. "
        f"Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
    ]


def networks_section(args):
    rows = []
    for name in args.names:
        rows.append(row(name, args.repeats))
        print(rows[-1], flush=True)
    side = TIMED_SIDE
    lines = [
        SECTIONS["networks"],
        "",
        *_header(args),
        "Networks: `skfusion.modules.volumes.volume_network(name)` with MONAI's default configuration. "
        "GFLOPs: one forward pass on one volume, counted by `FlopCounterMode` on the meta device "
        "(convolutions and matrix products). CPU s: best of "
        f"{args.repeats}, one forward pass on one {side}^3 volume (inference mode), and one forward and "
        f"backward pass on a batch of 2 {side}^3 volumes in training mode, per volume.",
        "",
        "| network | parameters (M) | d | "
        + " | ".join(f"GFLOPs {s}^3" for s in FLOP_SIDES)
        + f" | CPU s forward {side}^3 | CPU s forward + backward {side}^3 |",
        "|---|---|---|" + "---|" * len(FLOP_SIDES) + "---|---|",
    ]
    for name, params, d, counts, forward, backward in rows:
        gflops = " | ".join(f"{counts[s] / 1e9:,.1f}" for s in FLOP_SIDES)
        lines.append(f"| {name} | {params / 1e6:.1f} | {d} | {gflops} | {forward:.2f} | {backward:.2f} |")
    lines += [
        "",
        "- CPU seconds (process time) are quoted, not wall seconds: other jobs share the machine.",
        "- The DenseNets need the fewest FLOPs and train fastest per volume; MONAI's 3-D ResNets keep "
        "the stride-1 7x7x7 stem of Med3D (their first stage runs at full resolution), hence 3-20x "
        "the DenseNets' FLOPs. Huo et al.'s 224^3 costs (224/64)^3 = 43x the 64^3 figures.",
    ]
    return lines


# ----------------------------------------------------------------------------- the cohort on disk


def write_cohort(folder, n):
    """``n`` CT-like volumes of :data:`SOURCE_SHAPE` as int16 ``.nii.gz`` files, an EHR block and survival times.

    Returns ``(paths, ehr, event, time)``.
    """
    import nibabel as nib

    from skfusion.datasets import make_imaging_ehr_cohort

    cohort, _ = make_imaging_ehr_cohort(n_samples=n, volume_shape=SOURCE_SHAPE, random_state=0)
    # An affine of the reader's (L, P, S) axes: the (z, y, x) array written transposed reads back as it was.
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    paths = []
    for i, volume in enumerate(cohort["ct"]):
        voxels = np.ascontiguousarray(np.rint(volume).astype(np.int16).transpose(2, 1, 0))
        paths.append(str(Path(folder) / f"ct{i:04d}.nii.gz"))
        nib.save(nib.Nifti1Image(voxels, affine), paths[-1])
    rng = np.random.default_rng(0)
    ehr = rng.normal(size=(n, N_EHR)).astype(np.float32)
    # 80 % events: a batch of 8 without one (no Cox term) has probability 3e-6.
    event = rng.random(n) < 0.8
    return paths, ehr, event, rng.exponential(365.0, n) + 1.0


def _frame(paths, ehr):
    import pandas as pd

    frame = pd.DataFrame(ehr, columns=[f"ehr__{j}" for j in range(ehr.shape[1])])
    frame.insert(0, "ct", paths)
    return frame


def _estimator(args, epochs, callbacks=None):
    from skfusion import ConcatSurvival

    return ConcatSurvival(
        image_encoder="densenet121-3d", volume_size=(args.side,) * 3, window="minmax", augment=False,
        num_workers=0, linear_path=False, dropout=DROPOUT, lr=LR, weight_decay=WEIGHT_DECAY,
        batch_size=args.batch_size, max_epochs=epochs, early_stopping=False, device="cpu", random_state=0,
        callbacks=callbacks,
    )


def _survival(event, time_):
    from sksurv.util import Surv

    return Surv.from_arrays(event, time_)


# ----------------------------------------------------------------------------- the two training loops


def _cpu_clock():
    """A skorch callback recording each epoch's CPU seconds in the history, as ``cpu`` (skorch's ``dur`` is wall)."""
    from skorch.callbacks import Callback

    class CPUClock(Callback):
        def on_epoch_begin(self, net, **kwargs):
            self.start_ = time.process_time()

        def on_epoch_end(self, net, **kwargs):
            net.history.record("cpu", time.process_time() - self.start_)

    return CPUClock()


def fit_skfusion(args, paths, ehr, event, time_):
    """Epoch wall and CPU seconds of ``ConcatSurvival.fit``, its whole wall time and its parameter count."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    estimator = _estimator(args, args.epochs, [("cpu_clock", _cpu_clock())])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed, short budget
        estimator.fit(_frame(paths, ehr), _survival(event, time_))
    total = time.perf_counter() - start
    history = estimator.net_.history
    params = sum(p.numel() for p in estimator.net_.module_.parameters())
    return list(history[:, "dur"]), list(history[:, "cpu"]), total, params


class HandNetwork(torch.nn.Module):
    """MONAI's DenseNet121 features (its last linear layer removed), concatenated with the EHR, through an MLP."""

    def __init__(self, n_ehr):
        from monai.networks.nets import DenseNet121

        super().__init__()
        self.image = DenseNet121(spatial_dims=3, in_channels=1, out_channels=1)
        self.image.class_layers.out = torch.nn.Identity()
        nn = torch.nn
        self.head = nn.Sequential(nn.Linear(1024 + n_ehr, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, 1))

    def forward(self, volume, ehr):
        return self.head(torch.cat([self.image(volume), ehr], dim=1))


class _Rows(torch.utils.data.Dataset):
    """Row i: its volume (from ``volumes``, a dataset of transformed files), EHR, event and time."""

    def __init__(self, volumes, ehr, event, time_):
        self.volumes = volumes
        self.ehr = torch.as_tensor(ehr)
        self.event = torch.as_tensor(event)
        self.time = torch.as_tensor(time_, dtype=torch.float32)

    def __len__(self):
        return len(self.ehr)

    def __getitem__(self, i):
        return self.volumes[i], self.ehr[i], self.event[i], self.time[i]


def fit_by_hand(args, paths, ehr, event, time_, cache_dir=None):
    """Epoch wall and CPU seconds of the hand-written loop, its whole wall time and its parameter count.

    ``cache_dir``: MONAI's ``PersistentDataset`` there; None: every file read each epoch.
    """
    from monai.data import Dataset, PersistentDataset
    from monai.transforms import Compose, EnsureType, LoadImage, Resize, ScaleIntensity
    from torchsurv.loss.cox import neg_partial_log_likelihood

    start = time.perf_counter()
    transform = Compose([
        LoadImage(image_only=True, ensure_channel_first=True),
        Resize((args.side,) * 3, mode="trilinear"),
        ScaleIntensity(),
        EnsureType(track_meta=False),  # a plain tensor: MetaTensor's bookkeeping would slow every layer
    ])
    if cache_dir is None:
        volumes = Dataset(paths, transform)
    else:
        volumes = PersistentDataset(paths, transform, cache_dir=cache_dir)
    standardized = (ehr - ehr.mean(axis=0)) / ehr.std(axis=0)
    loader = torch.utils.data.DataLoader(
        _Rows(volumes, standardized, event, time_), batch_size=args.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    torch.manual_seed(0)
    model = HandNetwork(ehr.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    walls, cpus = [], []
    for _ in range(args.epochs):
        wall, cpu = time.perf_counter(), time.process_time()
        model.train()
        for volume, features, happened, when in loader:
            optimizer.zero_grad()
            risk = model(volume, features)
            loss = neg_partial_log_likelihood(risk, happened, when)
            loss.backward()
            optimizer.step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    params = sum(p.numel() for p in model.parameters())
    return walls, cpus, time.perf_counter() - start, params


def train_flops(args):
    """Forward and backward FLOPs per volume of the network of both loops, in training mode, at ``side``^3."""
    from torch.utils.flop_counter import FlopCounterMode

    model = HandNetwork(N_EHR).to("meta").train()
    batch = 2  # batch norm in training mode needs 2 values a channel (the last block is 1x1x1 at 32^3)
    volume = torch.empty(batch, 1, *(args.side,) * 3, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(volume, torch.empty(batch, N_EHR, device="meta")).sum().backward()
    return counter.get_total_flops() / batch


LOOPS = ("hand, no cache", "hand, PersistentDataset", "skfusion")


def training_section(args):
    torch.set_num_threads(1)
    runs = {name: [] for name in LOOPS}
    with tempfile.TemporaryDirectory(prefix="bench-volumes-") as folder:
        paths, ehr, event, time_ = write_cohort(folder, args.n_volumes)
        for repeat in range(args.rounds):
            order = LOOPS[repeat % len(LOOPS):] + LOOPS[: repeat % len(LOOPS)]
            for name in order:
                if name == "skfusion":
                    result = fit_skfusion(args, paths, ehr, event, time_)
                else:
                    with tempfile.TemporaryDirectory(prefix="persistent-", dir=folder) as cache:
                        result = fit_by_hand(args, paths, ehr, event, time_, cache if "Persistent" in name else None)
                runs[name].append((*result, os.getloadavg()[0]))
                print(repeat, name, [f"{t:.2f}" for t in result[0]], f"total {result[2]:.1f}", result[3], flush=True)
    params = {name: runs[name][0][3] for name in LOOPS}
    if len(set(params.values())) != 1:
        raise RuntimeError(f"the loops train networks of different sizes: {params}")
    flops_per_volume = train_flops(args)
    lines = [
        SECTIONS["training"],
        "",
        *_header(args),
        f"{args.n_volumes} NIfTI files (`.nii.gz`, int16 HU, {'x'.join(map(str, SOURCE_SHAPE))} voxels, the CT-like "
        f"volumes of `make_imaging_ehr_cohort`) and an EHR block of {N_EHR} features; {args.epochs} epochs of "
        f"batches of {args.batch_size}, volumes resampled to {args.side}^3, min-max scaled, no augmentation, "
        f"files read in the main process (`num_workers=0`), {args.rounds} interleaved rounds "
        "(each a rotation of the order of the three loops). The same network in all three: MONAI's "
        f"DenseNet121 (3-D, its last linear layer removed, 1024 features) concatenated with the EHR, "
        f"then Linear({1024 + N_EHR}, {HIDDEN}), ReLU, Dropout({DROPOUT}), Linear(., 1): "
        f"{params['skfusion']:,} parameters each (counted in both); Adam, lr {LR}, weight decay {WEIGHT_DECAY}; "
        f"Cox partial likelihood with Efron's ties. Training FLOPs (forward and backward, counted by "
        f"`FlopCounterMode`): {flops_per_volume / 1e9:.1f} GFLOPs per volume.",
        "",
        "- **skfusion**: `ConcatSurvival(image_encoder=\"densenet121-3d\", volume_size=(s, s, s), window=\"minmax\", "
        "augment=False, linear_path=False, early_stopping=False, device=\"cpu\")` `.fit(X, y)`, `X` a frame of the "
        "path column and the EHR block. Epoch seconds: skorch's `dur` (wall) and a callback's process time. The first "
        "epoch decodes each file (nibabel, reoriented to LPS), resamples it (trilinear) and writes it to the fit's "
        "`.npy` cache; later epochs read the cache memory-mapped. Outside the epochs, `fit` also checks the files, "
        "standardizes the EHR and runs the network once more over the training rows (inference) for the Breslow "
        "baseline: the `fit` column.",
        "- **hand**: a `DataLoader(shuffle=True)` over a dataset of MONAI's `LoadImage(ensure_channel_first=True)`, "
        "`Resize(mode=\"trilinear\")`, `ScaleIntensity()`, `EnsureType(track_meta=False)`, the EHR standardized "
        "once; the network above, torchsurv's `neg_partial_log_likelihood`, `Adam`. *no cache*: `monai.data.Dataset`, "
        "every file decoded every epoch; *PersistentDataset*: `monai.data.PersistentDataset`, the transformed "
        "volumes written (`torch.save`) to a folder in the first epoch and loaded from it later. The `fit` column "
        "is the whole loop, network built.",
        "",
        "| round | loop | epoch 1 s (CPU s) | later epochs s, mean (CPU s) | later epochs s / volume | "
        "GFLOP/s, later epochs | fit s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for repeat in range(args.rounds):
        for name in LOOPS:
            walls, cpus, total, _, load = runs[name][repeat]
            later = np.mean(walls[1:])
            lines.append(
                f"| {repeat + 1} | {name} | {walls[0]:.1f} ({cpus[0]:.1f}) | {later:.1f} ({np.mean(cpus[1:]):.1f}) | "
                f"{later / args.n_volumes:.3f} | {flops_per_volume * args.n_volumes / later / 1e9:.0f} | {total:.1f} | "
                f"{load:.1f} |"
            )

    def ratios(position, summary, against="hand, PersistentDataset"):
        ours, theirs = runs["skfusion"], runs[against]
        return [summary(ours[r][position]) / summary(theirs[r][position]) for r in range(args.rounds)]

    def later(values):
        return np.mean(values[1:])

    def listed(values):
        return ", ".join(f"{v:.2f}" for v in values) + f" (median {np.median(values):.2f})"

    extra = [runs["skfusion"][r][2] - sum(runs["skfusion"][r][0]) for r in range(args.rounds)]
    lines += [
        "",
        "skfusion's later epochs against the PersistentDataset loop's, round by round (issue 21's target: at most "
        f"1.10): {listed(ratios(1, later))} in CPU seconds, {listed(ratios(0, later))} in wall seconds. Both loops "
        "run in one process on one thread, so CPU seconds are the work each does; wall seconds add the waits for a "
        "core that the machine's other jobs cause (the load column: the 1-minute load average at the end of the "
        f"run, on 2 cores). Whole fit: {listed(ratios(2, float))} (wall); "
        f"{min(extra):.1f} to {max(extra):.1f} s of skfusion's fit lie outside its epochs, mostly the inference "
        "pass over the training rows that the Breslow baseline of `predict_survival_function` needs (the hand "
        "loop has no baseline hazard).",
    ]
    lines += ["", "Ratios skfusion / hand in the same round (wall seconds; CPU seconds in brackets):", ""]
    lines += ["| round | against | epoch 1 | later epochs | fit |", "|---|---|---|---|---|"]
    for repeat in range(args.rounds):
        ours = runs["skfusion"][repeat]
        for name in LOOPS[:2]:
            theirs = runs[name][repeat]
            lines.append(
                f"| {repeat + 1} | {name} | {ours[0][0] / theirs[0][0]:.2f} ({ours[1][0] / theirs[1][0]:.2f}) | "
                f"{np.mean(ours[0][1:]) / np.mean(theirs[0][1:]):.2f} "
                f"({np.mean(ours[1][1:]) / np.mean(theirs[1][1:]):.2f}) | {ours[2] / theirs[2]:.2f} |"
            )
    return lines


# ----------------------------------------------------------------------------- peak memory


def _memory_kib():
    """``(VmRSS, VmHWM)`` of this process in KiB: its resident memory now and at its peak.

    Read from ``/proc/self/status``, not ``getrusage``: Linux keeps ``ru_maxrss`` across
    ``execve``, so a child started by a large parent would report the parent's peak.
    """
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM"))


def _memory_child(args):
    """In a fresh process: fit one epoch on the first ``--child-n`` files of ``--child-folder``; print its memory."""
    torch.set_num_threads(1)
    import skfusion.fusion  # noqa: F401  (the imports' memory counts before fit, not in it)
    from monai.networks.nets import DenseNet121  # noqa: F401

    spec = json.loads(Path(args.child_folder, "cohort.json").read_text())
    n = args.child_n
    paths, ehr = spec["paths"][:n], np.asarray(spec["ehr"], dtype=np.float32)[:n]
    X, y = _frame(paths, ehr), _survival(np.asarray(spec["event"][:n]), np.asarray(spec["time"][:n]))
    before, _ = _memory_kib()
    start = time.perf_counter()
    _estimator(args, 1).fit(X, y)
    seconds = time.perf_counter() - start
    print(json.dumps({"before": before, "peak": _memory_kib()[1], "s": seconds}))


def memory_section(args):
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-volumes-memory-") as folder:
        paths, ehr, event, time_ = write_cohort(folder, max(args.memory_n))
        Path(folder, "cohort.json").write_text(
            json.dumps({"paths": paths, "ehr": ehr.tolist(), "event": event.tolist(), "time": time_.tolist()})
        )
        for n in args.memory_n:
            command = [
                sys.executable, __file__, "--child-folder", folder, "--child-n", str(n), "--side", str(args.side),
                "--batch-size", str(args.batch_size),
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[n] = json.loads(out.strip().splitlines()[-1])
            print(n, results[n], flush=True)
    source_mb = np.prod(SOURCE_SHAPE) * 4 / 2**20
    resampled_mb = args.side**3 * 4 / 2**20
    lines = [
        SECTIONS["memory"],
        "",
        *_header(args),
        f"`fit` of the estimator of the training comparison (one epoch, batches of {args.batch_size}, "
        f"{args.side}^3) on the first n of the same NIfTI files, each n in a fresh process (`python "
        "benchmarks/bench_volumes.py --child-n n ...`). RSS before fit: `VmRSS` of `/proc/self/status` once "
        "skfusion and MONAI are imported and the frame built; peak: its `VmHWM` (the high-water mark of the "
        "process's resident memory) at the end of `fit`. "
        f"For scale, the decoded files would take {source_mb:.1f} MiB each in memory (float32 HU), "
        f"the resampled volumes {resampled_mb:.2f} MiB.",
        "",
        "| volumes | RSS before fit (MiB) | peak RSS (MiB) | peak - before (MiB) | all decoded files (MiB) | fit s |",
        "|---|---|---|---|---|---|",
    ]
    peaks = [r["peak"] / 1024 for r in results.values()]
    for n, r in results.items():
        lines.append(
            f"| {n} | {r['before'] / 1024:.0f} | {r['peak'] / 1024:.0f} | {(r['peak'] - r['before']) / 1024:.0f} | "
            f"{n * source_mb:.0f} | {r['s']:.1f} |"
        )
    lines += [
        "",
        f"From {min(args.memory_n)} to {max(args.memory_n)} volumes the peak spans {min(peaks):.0f} to "
        f"{max(peaks):.0f} MiB, while the decoded files alone would take {max(args.memory_n) * source_mb:.0f} MiB: "
        "the peak is the network's training step (the activations of a batch), not the column.",
    ]
    return lines


# ----------------------------------------------------------------------------- the results file


def _sections(text):
    """The ``## `` sections of a results file, by heading."""
    parts = re.split(r"(?m)^(?=## )", text)
    return {part.splitlines()[0]: part.rstrip("\n") for part in parts[1:]}


GPU_NOTE = [
    "## GPU",
    "",
    "Not measured: no GPU was lent to the tasks that ran this benchmark. The GPU columns (the training "
    "comparison on CUDA, bf16 autocast and channels-last-3d, and the time per volume of each network) are to be "
    "filled the first time a device is lent.",
]


def main():
    from skfusion.modules.volumes import VOLUME_NETWORKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--names", nargs="+", default=list(VOLUME_NETWORKS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the training comparison")
    parser.add_argument("--n-volumes", type=int, default=48)
    parser.add_argument("--side", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--memory-n", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child-folder", help=argparse.SUPPRESS)
    parser.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_folder is not None:
        _memory_child(args)
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch and the later ones).")
    torch.set_num_threads(1)
    builders = {"networks": networks_section, "training": training_section, "memory": memory_section}
    kept = _sections(args.out.read_text()) if args.out.exists() else {}
    written = {}
    for part, heading in SECTIONS.items():
        if part in args.parts:
            written[heading] = "\n".join(builders[part](args))
        elif heading in kept:
            written[heading] = kept[heading]
    text = "\n\n".join([TITLE, *(written[h] for h in SECTIONS.values() if h in written), "\n".join(GPU_NOTE)])
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
