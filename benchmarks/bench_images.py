"""Training over image files: skfusion's loader against a hand-written DataLoader loop, and its memory.

Two measurements, written to ``benchmarks/results/images.md``:

1. **Throughput.** ``ConcatClassifier(image_encoder="resnet34")`` trains one epoch over
   ``--images`` PNG files (256 x 256, grayscale) with MedFuse's preprocessing at
   ``image_size=224`` (random flip, affine and crop), ``--workers`` DataLoader workers,
   batches of ``--batch-size``, Adam. The reference is a hand-written loop over the same
   files: a ``torch.utils.data.Dataset`` that opens each PNG with Pillow and applies the same
   operations, a ``DataLoader`` with the same workers and batch size, and the same network
   (skfusion's ResNet-34 and a 512 -> 256 -> 2 head) trained with Adam on the
   cross-entropy. Wall-clock seconds (the workers are other processes), median of
   ``--repeats`` interleaved runs, images per second and the ratio. The FLOPs of one
   training step of the ResNet-34 (forward and backward, counted by
   ``torch.utils.flop_counter``) give the achieved FLOP rate; with ``--peak-tflops`` (the
   device's dense bf16 ceiling) also its fraction.
2. **Memory.** In a fresh process per size, ``ConcatClassifier`` with a small CNN trains one
   epoch over ``--memory-sizes`` PNG files; the growth of the process's peak resident set
   during ``fit`` is compared with the size the images would take as a float32 column.

On a CUDA device (when one is available) everything runs there, the images pinned and
copied asynchronously, training under bfloat16 autocast.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_images.py [--images 128] [--workers 2] [--memory-sizes 250 1000 2500]
    python benchmarks/bench_images.py --peak-tflops 989  # on a CUDA device: its dense bf16 ceiling
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

RESULTS = Path(__file__).parent / "results" / "images.md"
SIDE = 256


def write_pngs(folder, n, seed=0):
    """``n`` grayscale 256 x 256 PNGs (smooth structure plus noise); their paths and labels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, SIDE)
    labels = rng.integers(0, 2, n)
    paths = []
    for row in range(n):
        bump = np.exp(-((grid[:, None] - rng.random()) ** 2 + (grid[None, :] - rng.random()) ** 2) * 8)
        pixels = np.clip(0.5 * bump + 0.2 * labels[row] + 0.2 * rng.random((SIDE, SIDE)), 0, 1)
        path = Path(folder) / f"{row:05d}.png"
        Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths, labels


# --------------------------------------------------------------------------- the hand-written loop


class PngDataset(torch.utils.data.Dataset):
    """What a user writes: open each PNG, MedFuse's training transforms, one image per item."""

    def __init__(self, paths, labels, size, seed):
        self.paths, self.labels, self.size, self.seed = paths, labels, size, seed

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        from skfusion._images import MAX_ROTATION, MAX_TRANSLATION, RESIZE_RATIO, SCALE_RANGE, affine

        generator = torch.Generator().manual_seed(self.seed + i)
        with Image.open(self.paths[i]) as image:
            x = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)
        x = x[None, None].expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=round(self.size * RESIZE_RATIO), mode="bilinear", antialias=True)
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(-1)
        draws = torch.rand(4, generator=generator).tolist()
        angle = MAX_ROTATION * (2 * draws[0] - 1)
        scale = SCALE_RANGE[0] + (SCALE_RANGE[1] - SCALE_RANGE[0]) * draws[1]
        x = affine(x, angle, scale, [MAX_TRANSLATION * (2 * d - 1) for d in draws[2:]])
        top, left = (int(torch.randint(x.shape[-1] - self.size + 1, (), generator=generator)) for _ in range(2))
        x = x[..., top : top + self.size, left : left + self.size]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return ((x - mean) / std)[0], int(self.labels[i])


def hand_network():
    from skfusion.modules.encoders import resnet

    return nn.Sequential(resnet("resnet34"), nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 2))


def hand_loop(paths, labels, args, device):
    torch.manual_seed(0)
    network = hand_network().to(device)
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if device.type == "cuda":
        network = network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        PngDataset(paths, labels, args.image_size, 0),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    network.train()
    for x, y in loader:
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format)
        y = y.to(device, non_blocking=True)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = network(x)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def skfusion_fit(paths, labels, args, device):
    from skfusion import ConcatClassifier

    model = ConcatClassifier(
        image_encoder="resnet34",
        image_size=args.image_size,
        num_workers=args.workers,
        batch_size=args.batch_size,
        max_epochs=1,
        early_stopping=False,
        device=str(device),
        random_state=0,
    )
    model.fit(pd.DataFrame({"img": paths}), labels)
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step_flops(image_size, batch_size):
    """FLOPs of one ResNet-34 training step (forward and backward) on the CPU, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    network = hand_network()
    x = torch.randn(batch_size, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(network(x), torch.zeros(batch_size, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch_size


# --------------------------------------------------------------------------- memory


def child_memory(folder, n):
    """Run in a fresh process: one epoch over ``n`` files; print the peak-RSS growth (bytes)."""
    from skfusion import ConcatClassifier

    paths = sorted(str(p) for p in Path(folder).glob("*.png"))[:n]
    labels = np.arange(n) % 2
    cnn = nn.Sequential(nn.Conv2d(3, 8, 7, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = ConcatClassifier(image_encoder=cnn, max_epochs=1, batch_size=32, early_stopping=False, random_state=0)
    X = pd.DataFrame({"img": paths})
    model.fit(X.iloc[:32], labels[:32])  # lazy imports, thread pools and allocator caches are paid here
    before = _resident("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak (VmHWM) restarts from now
    model.fit(X, labels)
    print(_resident("VmHWM") - before)


def _resident(field):
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_memory(folder, sizes):
    rows = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--child-memory", folder, str(n)], capture_output=True, text=True, check=True
        )
        growth = int(out.stdout.strip().splitlines()[-1])
        rows.append((n, growth, n * SIDE * SIDE * 4))
    return rows


# --------------------------------------------------------------------------- report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[250, 1000, 2500])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 ceiling")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child-memory", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        torch.set_num_threads(1)
        return child_memory(args.child_memory[0], int(args.child_memory[1]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        paths, labels = write_pngs(folder, max(args.images, *args.memory_sizes))
        times = {"skfusion": [], "hand loop": []}
        for run in (skfusion_fit, hand_loop):  # warm-up: imports, thread pools, allocator
            run(paths[: args.batch_size], labels[: args.batch_size], args, device)
        for _ in range(args.repeats):
            for name, run in (("skfusion", skfusion_fit), ("hand loop", hand_loop)):
                start = time.perf_counter()
                run(paths[: args.images], labels[: args.images], args, device)
                times[name].append(time.perf_counter() - start)
        memory = measure_memory(folder, args.memory_sizes)
    flops = train_step_flops(args.image_size, 2)
    lines = [
        "# Training over image files: skfusion against a hand-written DataLoader loop",
        "",
        f"Command: `python benchmarks/bench_images.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
        + f". Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        f"## Throughput: one epoch of ResNet-34 over {args.images} PNG files ({SIDE} x {SIDE})",
        "",
        f"image_size={args.image_size} (MedFuse's augmentation), batch {args.batch_size}, {args.workers} DataLoader "
        f"workers, Adam. Wall-clock seconds of the whole `fit` (validation and file checks included) and of the hand "
        f"loop, median of {args.repeats} interleaved runs. One training step of the ResNet-34 costs "
        f"{flops / 1e9:.2f} GFLOP per image (forward and backward, `torch.utils.flop_counter`).",
        "",
        "| method | seconds (median) | runs | images/s | ratio | achieved TFLOP/s"
        + (" | fraction of bf16 ceiling |" if args.peak_tflops else " |"),
        "|---|---|---|---|---|---|" + ("---|" if args.peak_tflops else ""),
    ]
    reference = statistics.median(times["hand loop"])
    for name, runs in times.items():
        median = statistics.median(runs)
        rate = args.images / median
        achieved = rate * flops / 1e12
        line = (
            f"| {name} | {median:.2f} | {', '.join(f'{t:.2f}' for t in runs)} | {rate:.1f} | "
            f"{median / reference:.2f} | {achieved:.3f} |"
        )
        if args.peak_tflops:
            line += f" {achieved / args.peak_tflops:.1%} |"
        lines.append(line)
    lines += [
        "",
        "## Memory: peak resident set growth during `fit`, against the number of images",
        "",
        "A fresh process per size, after a warm-up `fit` on 32 of the images (imports, thread pools); the peak "
        "is Linux's VmHWM, reset just before `fit`. `ConcatClassifier` with a small CNN (the network's memory is not the "
        "question), one epoch, batch 32, no workers. `as float32` is what the images would take held "
        f"in memory as one {SIDE} x {SIDE} channel each.",
        "",
        "| images | peak RSS growth (MB) | as float32 (MB) | growth / float32 |",
        "|---|---|---|---|",
    ]
    for n, growth, dense in memory:
        lines.append(f"| {n} | {growth / 1e6:.1f} | {dense / 1e6:.1f} | {growth / dense:.3f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
