"""Training-free, deterministic descriptors of CT slices and 2-D images.

They are what the image encoders compute when no backbone is given: hand-crafted features
with a fixed definition (no weights, no randomness), written as torch modules so that they
run through the same batched extraction loop as a neural backbone, on the GPU when there is
one. They are a useful baseline and a default that carries signal; they are not a
foundation model.

Intensity and texture block (59 features, from a 2-D image ``u`` in [0, 1]):

- 16-bin intensity histogram over [0, 1] (fractions of pixels);
- mean and standard deviation of ``u``;
- 5th, 25th, 50th, 75th and 95th percentiles of ``u`` (centres of a 256-bin histogram);
- gradient magnitude ``|grad u|`` (central differences, in units per pixel): mean, standard
  deviation, fraction of pixels above 0.025 and above 0.1 (edge densities);
- mean of ``u`` and mean of ``|grad u|`` over a fixed 4 x 4 grid of cells (coarse layout).

CT adds a Hounsfield block (18 features, from the slice in HU clipped to [-1024, 3071]):

- fraction of voxels in each of 8 HU bands: air (< -900), lung (-900 to -500), low
  density and partial volume (-500 to -150), fat (-150 to -30), water and fluid (-30 to 20),
  soft tissue (20 to 80), blood with contrast (80 to 400), bone and calcium (>= 400);
- mean HU in each band (the band's midpoint when the band is empty), divided by 1000;
- mean and standard deviation of the slice in HU, divided by 1000.

The CT descriptor's intensity block is computed on the windowed slice, so the window
chosen (e.g. the PE or MACE window of Zhang et al., 2026) shapes it.
"""

import torch
from torch import nn
from torch.nn import functional as F

from .._volumes import apply_window

#: Bumped whenever a descriptor's definition changes, so that cached entries are not reused.
DESCRIPTOR_VERSION = 1

HU_RANGE = (-1024.0, 3071.0)
HU_BAND_EDGES = (-900.0, -500.0, -150.0, -30.0, 20.0, 80.0, 400.0)
HU_BAND_NAMES = ("air", "lung", "low_density", "fat", "fluid", "soft_tissue", "contrast_blood", "bone")
EDGE_THRESHOLDS = (0.025, 0.1)
PERCENTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
GRID = 4
_FINE_BINS = 256
_COARSE_BINS = 16

N_INTENSITY_FEATURES = _COARSE_BINS + 2 + len(PERCENTILES) + 2 + len(EDGE_THRESHOLDS) + 2 * GRID * GRID
N_HU_FEATURES = 2 * (len(HU_BAND_EDGES) + 1) + 2


def _binned_counts(index, n_bins):
    """Per-row counts of integer bin indices ``index`` of shape (B, n).

    Adding ones is exact in float32, so the counts do not depend on the (on CUDA,
    unordered) order of the atomic additions: the descriptor stays deterministic.
    """
    out = torch.zeros(index.shape[0], n_bins, device=index.device)
    return out.scatter_add_(1, index, torch.ones_like(index, dtype=out.dtype))


def _mean_std(flat):
    """Row means and population standard deviations of ``flat`` (B, n), as two (B, 1) columns.

    Two passes: on the CPU this is several times faster than ``Tensor.std``.
    """
    mean = flat.mean(1, keepdim=True)
    return mean, (flat - mean).square().mean(1, keepdim=True).sqrt()


def gradient_magnitude(u):
    """Central-difference gradient magnitude of images ``u`` (B, H, W), edges replicated."""
    padded = F.pad(u[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2
    gy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2
    return torch.sqrt(gx * gx + gy * gy)


def intensity_texture_features(u):
    """The 59 intensity and texture features of images ``u`` of shape (B, H, W) in [0, 1]."""
    flat = u.flatten(1)
    n = flat.shape[1]
    bins = (flat * _FINE_BINS).long().clamp_(0, _FINE_BINS - 1)
    counts = _binned_counts(bins, _FINE_BINS)
    coarse = counts.view(-1, _COARSE_BINS, _FINE_BINS // _COARSE_BINS).sum(-1) / n
    # Counts are exact integers in float32, so the percentile bin is exact too.
    targets = torch.tensor(PERCENTILES, device=u.device).mul(n).expand(len(u), -1).contiguous()
    first_bin = torch.searchsorted(counts.cumsum(1), targets).clamp_(max=_FINE_BINS - 1)
    percentiles = (first_bin.float() + 0.5) / _FINE_BINS
    grad = gradient_magnitude(u)
    grad_flat = grad.flatten(1)
    edges = [(grad_flat > t).sum(1, keepdim=True) / n for t in EDGE_THRESHOLDS]
    layout = F.adaptive_avg_pool2d(torch.stack([u, grad], 1), GRID).flatten(1)
    return torch.cat(
        [
            coarse,
            *_mean_std(flat),
            percentiles,
            *_mean_std(grad_flat),
            *edges,
            layout,
        ],
        1,
    )


def hounsfield_features(hu):
    """The 18 Hounsfield band features of slices ``hu`` of shape (B, H, W)."""
    flat = hu.flatten(1).clamp(*HU_RANGE)
    n = flat.shape[1]
    edges = torch.tensor(HU_BAND_EDGES, device=hu.device, dtype=flat.dtype)
    band = torch.bucketize(flat, edges, right=True)
    n_bands = len(HU_BAND_EDGES) + 1
    counts = _binned_counts(band, n_bands)
    # Summed in float64: CUDA's atomic additions come in any order, and float64 rounding
    # differences vanish when the means are cast back to float32.
    sums = torch.zeros(len(flat), n_bands, dtype=torch.float64, device=hu.device)
    sums = sums.scatter_add_(1, band, flat.double()).float()
    bounds = (HU_RANGE[0], *HU_BAND_EDGES, HU_RANGE[1])
    midpoints = torch.tensor([(a + b) / 2 for a, b in zip(bounds[:-1], bounds[1:])], device=hu.device)
    band_means = torch.where(counts > 0, sums / counts.clamp(min=1), midpoints)
    return torch.cat(
        [
            counts / n,
            band_means / 1000,
            *(v / 1000 for v in _mean_std(flat)),
        ],
        1,
    )


class CTSliceDescriptor(nn.Module):
    """Training-free descriptor of CT slices: Hounsfield bands plus windowed texture.

    Input ``(B, 1, H, W)`` slices in HU; output ``(B, 77)``: the 18 Hounsfield features, then
    the 59 intensity and texture features of the slice windowed to ``window`` (see the
    module docstring for the exact list).
    """

    n_features = N_HU_FEATURES + N_INTENSITY_FEATURES

    def __init__(self, window):
        super().__init__()
        self.window = tuple(float(w) for w in window)

    def forward(self, x):
        hu = x[:, 0]
        return torch.cat(
            [hounsfield_features(hu), intensity_texture_features(apply_window(hu, *self.window))], 1
        )


class ImageDescriptor(nn.Module):
    """Training-free descriptor of 2-D images: intensity histogram and texture on a grid.

    Input ``(B, C, H, W)`` in [0, 1] (colour is averaged to gray); output ``(B, 59)``, the
    intensity and texture features listed in the module docstring.
    """

    n_features = N_INTENSITY_FEATURES

    def forward(self, x):
        return intensity_texture_features(x.mean(1))
