"""CT extraction throughput: CTVolumeEmbedder against a plain batched torch loop, and resume cost.

For a small ResNet-18-like CNN (defined here) and for the default training-free descriptor,
the same in-memory HU volumes are embedded (windowing, 3 channels, ImageNet normalisation,
batches, z-average) by ``CTVolumeEmbedder.transform`` and by a hand-written torch loop (the
floor for this work); the table gives slices per second and their ratio. Then, with
``cache_dir``, a full run is timed against a run killed at 50% plus its resume.

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_ct_extraction.py
    PYTHONPATH=. python benchmarks/bench_ct_extraction.py --device cuda --size 512 --n-slices 128 \\
        --peak-tflops 989

Writes ``benchmarks/results/ct_extraction.md`` (``--output`` to change).
"""

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from skfusion._images import IMAGENET_MEAN, IMAGENET_STD
from skfusion.encoders._backbone import autocast_dtype, resolve_device
from skfusion.encoders._descriptors import CTSliceDescriptor
from skfusion.encoders.ct import CTVolumeEmbedder

WINDOW = (-1350.0, 150.0)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class SmallResNet(nn.Module):
    """ResNet-18 layout (stem, 4 stages of 2 basic blocks, global pool) at a quarter width."""

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, c_in = [], widths[0]
        for i, c in enumerate(widths):
            blocks += [BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            c_in = c
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.stem(x)).mean((2, 3))


class Interrupt(Exception):
    pass


class Budget:
    """Forward calls left before a simulated kill; shared by the copies fit makes."""

    def __init__(self, calls):
        self.calls = calls

    def __deepcopy__(self, memo):
        return self


class Killable(nn.Module):
    def __init__(self, inner, budget):
        super().__init__()
        self.inner, self.budget = inner, budget

    def forward(self, x):
        if self.budget.calls == 0:
            raise Interrupt
        self.budget.calls -= 1
        return self.inner(x)


def plain_loop(volumes, model, batch_size, device, amp_dtype, neural):
    """The floor: per volume, window + 3 channels + normalise (neural) in batches, then z-average."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    low, high = WINDOW
    out = []
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
    ):
        for volume in volumes:
            hu = torch.from_numpy(volume).to(device)
            parts = []
            for start in range(0, len(hu), batch_size):
                x = hu[start : start + batch_size, None]
                if neural:
                    x = ((x.clamp(low, high) - low) / (high - low)).expand(-1, 3, -1, -1)
                    x = (x - mean) / std
                parts.append(model(x).float())
            out.append(torch.cat(parts).mean(0).cpu())
    return torch.stack(out).numpy()


def timed(fn, device):
    """Wall-clock and process CPU seconds of one call (CPU time is robust to other load)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def best_of_interleaved(fns, repeats, device):
    """Best wall and best CPU time of each function, alternating them so drifts hit all alike."""
    best = [[np.inf, np.inf, None] for _ in fns]
    for _ in range(repeats):
        for slot, fn in zip(best, fns):
            wall, cpu, result = timed(fn, device)
            slot[0], slot[1], slot[2] = min(slot[0], wall), min(slot[1], cpu), result
    return best


def flops_per_slice(model, size, device):
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, size, size, device=device))
    return counter.get_total_flops()


def throughput_rows(args, volumes, device):
    X = pd.DataFrame({"ct": volumes})
    n_slices = sum(len(v) for v in volumes)
    torch.manual_seed(0)
    cases = [("small ResNet-18-like CNN", SmallResNet().eval().to(device), True)]
    cases.append(("training-free descriptor", CTSliceDescriptor(WINDOW).to(device), False))
    rows = []
    for name, model, neural in cases:
        amp = autocast_dtype(device) if neural else None
        encoder = CTVolumeEmbedder(
            backbone=model if neural else None, window=WINDOW, batch_size=args.batch_size, device=str(device)
        ).fit(X)
        encoder.transform(X.iloc[:1])  # warm-up
        plain_loop(volumes[:1], model, args.batch_size, device, amp, neural)
        (w_ours, c_ours, ours), (w_plain, c_plain, plain) = best_of_interleaved(
            [
                lambda: encoder.transform(X).to_numpy(),  # noqa: B023
                lambda: plain_loop(volumes, model, args.batch_size, device, amp, neural),  # noqa: B023
            ],
            args.repeats,
            device,
        )
        tolerance = 1e-2 if amp is not None else 1e-4
        assert np.allclose(ours, plain, rtol=tolerance, atol=tolerance), f"{name}: outputs differ"
        flops = flops_per_slice(model, args.size, device) if neural else None
        rows.append(
            {
                "backbone": name,
                "ours": n_slices / w_ours,
                "plain": n_slices / w_plain,
                "ours_cpu": n_slices / c_ours,
                "plain_cpu": n_slices / c_plain,
                "flops": flops,
            }
        )
    return rows


def resume_rows(args, volumes, device):
    X = pd.DataFrame({"ct": volumes})
    torch.manual_seed(0)
    inner = SmallResNet().eval()
    batches_per_volume = -(-args.n_slices // args.batch_size)
    budget = Budget(calls=-1)
    encoder = CTVolumeEmbedder(
        backbone=Killable(inner, budget), window=WINDOW, batch_size=args.batch_size, device=str(device)
    )
    timings = {}
    root = Path(tempfile.mkdtemp(prefix="skfusion-bench-"))
    try:
        fitted = encoder.fit(X)
        timings["no cache"] = timed(lambda: fitted.transform(X), device)[:2]
        full = encoder.set_params(cache_dir=root / "full").fit(X)
        timings["full run, empty cache"] = timed(lambda: full.transform(X), device)[:2]
        timings["rerun, every volume cached"] = timed(lambda: full.transform(X), device)[:2]
        killed = encoder.set_params(cache_dir=root / "resume").fit(X)
        budget.calls = batches_per_volume * (len(volumes) // 2)
        timings["run killed at 50%"] = timed(lambda: _until_interrupted(killed, X), device)[:2]
        budget.calls = -1
        timings["resume after the kill"] = timed(lambda: killed.transform(X), device)[:2]
    finally:
        shutil.rmtree(root)
    return timings


def _until_interrupted(encoder, X):
    try:
        encoder.transform(X)
    except Interrupt:
        return
    raise AssertionError("the simulated kill did not happen")


def machine(device):
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(torch threads {torch.get_num_threads()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, device {device} (GPU: {gpu})"
    )


def report(args, device, rows, timings):
    n_slices = args.n_volumes * args.n_slices
    lines = [
        "# CT extraction throughput",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} PYTHONPATH=. python "
        f"{' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        f"Machine: {machine(device)}",
        "",
        f"Data: {args.n_volumes} in-memory volumes x {args.n_slices} slices of {args.size} x {args.size} HU, "
        f"batch size {args.batch_size}, window [-1350, 150] HU, z-average; best of {args.repeats} runs.",
        "",
        "## Throughput against a plain torch loop",
        "",
        "| backbone | CTVolumeEmbedder (slices/s) | plain torch loop (slices/s) | ratio (ours / plain) "
        "| ratio on CPU time | GFLOP per slice | achieved GFLOP/s (ours) | FLOP ceiling (slices/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        flops = r["flops"]
        ceiling = f"{args.peak_tflops * 1e12 / flops:,.0f}" if flops and args.peak_tflops else "n/a"
        lines.append(
            f"| {r['backbone']} | {r['ours']:,.1f} | {r['plain']:,.1f} | {r['ours'] / r['plain']:.2f} | "
            f"{r['ours_cpu'] / r['plain_cpu']:.2f} | "
            + (f"{flops / 1e9:.3f} | {flops * r['ours'] / 1e9:,.1f} | " if flops else "n/a | n/a | ")
            + f"{ceiling} |"
        )
    lines += [
        "",
        "Slices per second are wall-clock, best of the interleaved runs. The CPU-time ratio uses",
        "process CPU seconds (all threads) instead, which other jobs sharing the machine do not",
        "inflate. The FLOP ceiling is `--peak-tflops` (the device's peak) divided by the FLOPs of",
        "one slice (torch.utils.flop_counter: convolutions and matmuls); n/a without it.",
        "On a machine shared with other jobs, repeated runs of this script move the ratios by",
        "up to about 10% either way; a ratio near 1 means no measurable overhead.",
        "",
        "## Resume after an interruption (small CNN, `cache_dir`)",
        "",
        "| run | slices encoded | wall seconds | CPU seconds | encoded slices/s (wall) |",
        "|---|---:|---:|---:|---:|",
    ]
    encoded = {
        "rerun, every volume cached": 0,
        "run killed at 50%": n_slices // 2,
        "resume after the kill": n_slices // 2,
    }
    for name, (wall, cpu) in timings.items():
        done = encoded.get(name, n_slices)
        rate = f"{done / wall:,.1f}" if done else "n/a"
        lines.append(f"| {name} | {done} | {wall:.3f} | {cpu:.3f} | {rate} |")
    killed = [a + b for a, b in zip(timings["run killed at 50%"], timings["resume after the kill"])]
    full = timings["full run, empty cache"]
    lines += [
        "",
        f"Killed run + resume: {killed[0]:.3f} s wall ({killed[1]:.3f} s CPU) against {full[0]:.3f} s "
        f"({full[1]:.3f} s CPU) for one uninterrupted run: finished volumes are not recomputed.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, or 'auto'")
    parser.add_argument("--n-volumes", type=int, default=8)
    parser.add_argument("--n-slices", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak, for the FLOP ceiling")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "ct_extraction.md"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    volumes = [
        rng.normal(-300, 500, (args.n_slices, args.size, args.size)).astype(np.float32)
        for _ in range(args.n_volumes)
    ]
    rows = throughput_rows(args, volumes, device)
    timings = resume_rows(args, volumes, device)
    text = report(args, device, rows, timings)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
