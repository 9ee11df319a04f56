"""Co-attention forward+backward: ``F.scaled_dot_product_attention`` against the explicit softmax.

``CoAttentionFusion`` at a realistic shape (two token modalities of ``--tokens`` tokens, some
rows padded, ``--width`` wide, ``--heads`` heads, a batch of ``--batch`` rows): one training
step's forward and backward, on the path training and prediction take
(``need_weights=False``, SDPA) and on the path ``attention_weights`` takes
(``need_weights=True``, explicit softmax that also returns the weights). One CPU thread;
median of ``--repeats`` timed steps after one warm-up step each.

Usage::

    PYTHONPATH=. python benchmarks/bench_attention.py [--repeats 5]

Writes ``benchmarks/results/attention.md`` (``--out`` to change).
"""

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from skfusion._data import ModalitySpec
from skfusion.modules.attention import CoAttentionFusion


def token_blocks(batch, tokens, dim, generator):
    """Two sequence blocks ``a`` and ``b`` of ``tokens`` tokens; a quarter of rows keep half of them."""
    lengths = torch.full((batch,), tokens)
    lengths[: batch // 4] = tokens // 2
    mask = torch.arange(tokens)[None, :] < lengths[:, None]
    present = torch.ones(batch, dtype=torch.bool)
    x = {name: torch.randn(batch, tokens, dim, generator=generator) * mask[..., None] for name in ("a", "b")}
    return {name: {"x": x[name], "mask": mask, "present": present} for name in x}


def step_seconds(module, blocks, need_weights):
    start = time.perf_counter()
    fused, _ = module.fuse(blocks, need_weights=need_weights)
    module.head(fused).sum().backward()
    seconds = time.perf_counter() - start
    module.zero_grad()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attention.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    specs = [ModalitySpec(name, "sequence", (name,), args.width) for name in ("a", "b")]
    module = CoAttentionFusion(specs, "a", 8, args.width, args.heads, (args.width,), 1, dropout=0.0)
    blocks = token_blocks(args.batch, args.tokens, args.width, torch.Generator().manual_seed(0))
    medians = {}
    for need_weights in (False, True):
        step_seconds(module, blocks, need_weights)
        medians[need_weights] = statistics.median(
            step_seconds(module, blocks, need_weights) for _ in range(args.repeats)
        )
    lines = [
        "# Co-attention: F.scaled_dot_product_attention against the explicit softmax",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
        f"{torch.__version__} (1 thread), CPU. Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        f"One `CoAttentionFusion` training step (forward and backward): batch {args.batch}, two token modalities "
        f"of {args.tokens} tokens (a quarter of the rows padded to half), width {args.width}, {args.heads} heads; "
        f"median of {args.repeats} steps after a warm-up.",
        "",
        "| path | ms per step | ratio |",
        "|---|---|---|",
        f"| SDPA (training and prediction, `need_weights=False`) | {medians[False] * 1e3:.1f} | 1.00 |",
        f"| explicit softmax (`attention_weights`, `need_weights=True`) | {medians[True] * 1e3:.1f} | "
        f"{medians[True] / medians[False]:.2f} |",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
