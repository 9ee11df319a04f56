"""Image columns of file paths, read batch by batch while a model trains.

An image modality given as file paths (PNG, JPEG, TIFF, DICOM, 2-D NIfTI: anything
:func:`~skfusion._volumes.read_image` reads) is never loaded whole: each batch's
images are read and preprocessed when the batch is drawn, by a
:class:`torch.utils.data.DataLoader` whose ``num_workers`` worker processes read ahead of
the training loop. The preprocessing is MedFuse's (Hayat, Geras and Shamout, "MedFuse:
Multi-modal fusion with clinical time-series data and chest X-ray images", MLHC 2022): the
image is scaled to [0, 1] by the reader, replicated to three channels when grayscale,
resized so that its shorter side is ``256 / 224`` of ``image_size``, then

- at training time (``augment=True``): flipped horizontally with probability 1/2, given
  MedFuse's random affine transform (rotation up to 45 degrees, scale 0.85 to 1.15,
  translation up to 15 % of each side, zero fill) and cropped to ``image_size`` at a random
  position;
- at prediction: centre-cropped to ``image_size``;

and normalised with ImageNet's channel means and standard deviations.

A bad file (unreadable, empty, not 1 or 3 channels, several frames, beyond Pillow's
decompression-bomb limit) is a ValueError naming it and its row, raised at the first batch
that holds it, never wrapped by the DataLoader.

The module also holds what every image path shares, the encoders' and the estimators':
what a missing cell is (:func:`is_missing_cell`), resizing, cropping and ImageNet
normalisation. It sits below the data contract, the networks and the encoders, with the
file readers of :mod:`skfusion._volumes`, and imports none of them.
"""

import math
import os
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ._compat import Interval
from ._volumes import read_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The parameters of an estimator that reads image files (see the estimators' docstrings).
IMAGE_FILE_CONSTRAINTS = {
    "image_size": [Interval(Integral, 32, None, closed="left")],
    "augment": ["boolean"],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
}

# MedFuse resizes to 256 and crops 224: the resize is this multiple of the crop side.
RESIZE_RATIO = 256 / 224
MAX_ROTATION = 45.0
SCALE_RANGE = (0.85, 1.15)
MAX_TRANSLATION = 0.15


def is_missing_cell(cell):
    """Whether a raw cell stands for a missing modality: ``None``, a float NaN or ``pd.NA``.

    ``pd.NA`` is how a pandas ``string`` column (e.g. of image paths) holds a missing cell.
    """
    return cell is None or cell is pd.NA or (isinstance(cell, float) and np.isnan(cell))


def resize(x, size):
    """Resize a ``(B, C, H, W)`` batch: an int sets the shorter side (aspect kept), a pair sets (H, W).

    Bilinear with antialiasing, as torchvision's ``Resize`` on tensors.
    """
    if size is None:
        return x
    h, w = x.shape[-2:]
    if isinstance(size, Integral):
        short, long = min(h, w), max(h, w)
        new_long = int(size * long / short)
        size = (size, new_long) if h <= w else (new_long, size)
    if tuple(size) == (h, w):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def center_crop(x, size):
    """Crop the centre ``size`` (int for a square, or (H, W)) of a ``(B, C, H, W)`` batch."""
    if size is None:
        return x
    ch, cw = (size, size) if isinstance(size, Integral) else size
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"image_size={size!r} is larger than the resized image ({h}, {w}).")
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return x[..., top : top + ch, left : left + cw]


def to_backbone_input(x, mean, std):
    """Replicate grayscale to 3 channels and normalise with per-channel ``mean``/``std`` (if given)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if mean is None:
        return x
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def is_path(cell):
    """Whether a cell names a file (``str`` or ``os.PathLike``)."""
    return isinstance(cell, (str, os.PathLike))


class ImageFiles:
    """One image column of file paths, with the side of the square its images are cropped to.

    Parameters
    ----------
    paths : ndarray of object
        A path (``str``) per row, ``None`` where the row has no image (``None``, NaN or
        ``pd.NA`` in the column).
    size : int
        ``image_size``: the side of the preprocessed images.
    """

    def __init__(self, paths, size):
        self.paths = paths
        self.size = size

    def take(self, rows):
        """The column of the rows ``rows`` only."""
        return ImageFiles(self.paths[rows], self.size)

    def read(self, rows, generator=None):
        """The images of ``rows`` as a ``(len(rows), 3, size, size)`` float32 tensor (zeros where missing).

        ``generator`` (a seeded :class:`torch.Generator`) draws the training augmentation;
        ``None`` gives the prediction-time centre crop.
        """
        out = torch.zeros(len(rows), 3, self.size, self.size)
        for k, row in enumerate(rows.tolist()):
            path = self.paths[row]
            if path is not None:
                out[k] = preprocess(read_image(path, f"row {row}"), self.size, generator)
        return out


def preprocess(image, size, generator=None):
    """MedFuse's preprocessing of one ``(C, H, W)`` image in [0, 1] (see the module docstring)."""
    x = torch.from_numpy(image)[None].expand(-1, 3, -1, -1)
    x = resize(x, round(size * RESIZE_RATIO))
    if generator is None:
        x = center_crop(x, size)
    else:
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(-1)
        x = _random_crop(_random_affine(x, generator), size, generator)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std)[0]


def _uniform(low, high, generator):
    return low + (high - low) * float(torch.rand((), generator=generator))


def _random_affine(x, generator):
    """MedFuse's random affine transform of ``x`` (1, C, H, W)."""
    angle = _uniform(-MAX_ROTATION, MAX_ROTATION, generator)
    scale = _uniform(*SCALE_RANGE, generator)
    shift = [_uniform(-MAX_TRANSLATION, MAX_TRANSLATION, generator) for _ in range(2)]
    return affine(x, angle, scale, shift)


def affine(x, angle, scale, shift):
    """Rotate ``x`` (1, C, H, W) ``angle`` degrees anticlockwise, scale it and shift it by ``shift`` (fractions of (W, H)).

    The transform is about the image centre (as torchvision's ``RandomAffine``); pixels
    that come from outside the image are zero.
    """
    # affine_grid maps each output position to where it samples the input, in [-1, 1]
    # coordinates: the inverse transform, with the aspect ratio undone around the rotation.
    h, w = x.shape[-2:]
    radians = math.radians(angle)
    cos, sin = math.cos(radians) / scale, math.sin(radians) / scale
    shift_x, shift_y = 2 * shift[0], 2 * shift[1]
    theta = torch.tensor(
        [
            [cos, -sin * h / w, -(cos * shift_x - sin * h / w * shift_y)],
            [sin * w / h, cos, -(sin * w / h * shift_x + cos * shift_y)],
        ],
        dtype=x.dtype,
    )
    grid = F.affine_grid(theta[None], list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_crop(x, size, generator):
    h, w = x.shape[-2:]
    top = int(torch.randint(h - size + 1, (), generator=generator))
    left = int(torch.randint(w - size + 1, (), generator=generator))
    return x[..., top : top + size, left : left + size]


def check_image_files(cells, name):
    """The paths of an image column (an object array, ``None`` where missing) and where they are present.

    Every present cell must be a path to an existing file: a missing file is named here,
    before any training starts (reading happens batch by batch, later).
    """
    paths = np.empty(len(cells), dtype=object)
    for row, cell in enumerate(cells):
        if is_missing_cell(cell):
            continue
        if not is_path(cell):
            raise ValueError(
                f"column {name!r}, row {row}: expected an image file path (str or os.PathLike) like the other "
                f"cells; got {type(cell).__name__}."
            )
        if Path(cell).is_dir():
            raise ValueError(
                f"column {name!r}, row {row}: {str(cell)!r} is a folder, not an image file (a CT series "
                "goes through CTVolumeEmbedder first)."
            )
        if not Path(cell).is_file():
            raise ValueError(f"column {name!r}, row {row}: image file {str(cell)!r} does not exist.")
        paths[row] = os.fspath(cell)
    return paths, np.array([path is not None for path in paths], dtype=bool)


class _BatchReader(torch.utils.data.Dataset):
    """What a DataLoader worker needs: the file columns, read for one ``(rows, seed)`` batch.

    A ValueError (a bad file) is returned rather than raised, so the main process raises it
    as it is instead of the DataLoader's wrapped copy.
    """

    def __init__(self, files, augment):
        self.files = files
        self.augment = augment

    def __getitem__(self, batch):
        rows, seed = batch
        generator = torch.Generator().manual_seed(seed) if self.augment else None
        try:
            return {name: column.read(rows, generator) for name, column in self.files.items()}
        except ValueError as exc:
            return exc


def read_batches(files, batches, augment, num_workers, pin_memory):
    """Yield the images of each batch of ``batches`` (``(rows, seed)`` pairs), in order.

    With ``num_workers > 0`` worker processes read ahead (two batches each), so reading
    overlaps training.
    """
    loader = torch.utils.data.DataLoader(
        _BatchReader(files, augment),
        batch_size=None,
        sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        # Its own generator: the loader's draw of the worker seeds must not move torch's
        # global one (dropout's), or workers would change the model.
        generator=torch.Generator(),
    )
    for images in loader:
        if isinstance(images, ValueError):
            raise ValueError(str(images)) from None
        yield images
