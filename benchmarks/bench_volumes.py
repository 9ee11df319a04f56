"""What each 3-D CT encoder costs per volume: parameters, FLOPs counted, CPU seconds.

For every name of :data:`skfusion.modules.volumes.VOLUME_NETWORKS` (MONAI's networks, built
by :func:`~skfusion.modules.volumes.volume_network` with their default configurations):

- parameters and the feature width ``d``;
- FLOPs of one forward pass on one ``(1, 1, s, s, s)`` volume at s = 64, 128 and 224 (Huo
  et al.'s size), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta
  device (no arithmetic is done: exact counts of the matrix products and convolutions, which
  is what torch counts; element-wise operations are not counted);
- CPU seconds of one forward pass (inference mode) and of one forward and backward pass
  (training mode, a batch of 2 volumes, per volume) at 64^3, one torch thread, best of
  ``--repeats``.

Usage::

    python benchmarks/bench_volumes.py [--names densenet121-3d resnet18-3d] [--out benchmarks/results/volumes.md]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "volumes.md"
FLOP_SIDES = (64, 128, 224)
TIMED_SIDE = 64


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
    return (
        f"{platform.machine()}, {os.cpu_count()} cores (shared), CPU instruction set "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, torch {torch.__version__}, "
        "one torch thread"
    )


def main():
    from skfusion.modules.volumes import VOLUME_NETWORKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=list(VOLUME_NETWORKS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.names:
        rows.append(row(name, args.repeats))
        print(rows[-1], flush=True)
    side = TIMED_SIDE
    lines = [
        "# 3-D CT encoders: cost per volume",
        "",
        f"Command: `python {' '.join(['benchmarks/bench_volumes.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {_machine()}. Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
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
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
