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

import contextlib
import hashlib
import math
import os
import tempfile
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ._compat import Interval, SequenceOf, StrOptions
from ._volumes import NAMED_WINDOWS, is_volume_file, read_ct_volume, read_image, resolve_window

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The parameters of an estimator that reads image files (see the estimators' docstrings).
IMAGE_FILE_CONSTRAINTS = {
    "image_size": [Interval(Integral, 32, None, closed="left")],
    "augment": ["boolean"],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
}


class _VolumeSize(SequenceOf):
    """Three positive ints ``(D, H, W)``."""

    def __init__(self):
        super().__init__(lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= 1, "3 positive ints")

    def is_satisfied_by(self, val):
        return super().is_satisfied_by(val) and len(val) == 3


#: Per-volume min-max scaling to [0, 1], the intensity scaling of Huo et al. (MONAI's ``ScaleIntensity``).
MINMAX = "minmax"

# The parameters of an estimator that trains a volume encoder (see the volume_files docstring fragment).
VOLUME_FILE_CONSTRAINTS = {
    "volume_size": [_VolumeSize()],
    "window": [StrOptions({MINMAX, *NAMED_WINDOWS}), tuple, list],
}

# A training volume is shifted by up to this fraction of each side.
MAX_VOLUME_SHIFT = 0.10

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


def resize_volume(x, size):
    """Resample a ``(B, D, H, W)`` batch of volumes to ``size`` ``(D, H, W)``, trilinear (``align_corners=False``)."""
    if tuple(x.shape[1:]) == tuple(size):
        return x
    return F.interpolate(x[:, None], size=tuple(size), mode="trilinear", align_corners=False)[:, 0]


def resolve_volume_window(window):
    """A volume encoder's ``window``: ``"minmax"`` as it is, a HU window resolved to ``(low, high)``."""
    return MINMAX if isinstance(window, str) and window == MINMAX else resolve_window(window)


def window_low(window):
    """The HU that ``window`` maps to 0 (None for ``"minmax"``: each volume's own minimum)."""
    window = resolve_volume_window(window)
    return None if window == MINMAX else window[0]


class VolumeFiles:
    """One column of CT volume files (DICOM series folders, 3-D NIfTI), resampled to ``size``.

    Each volume is read in Hounsfield units (:func:`~skfusion._volumes.read_ct_volume`) and
    resampled trilinearly to ``size``; it stays in HU: the window is applied by the encoder
    (:class:`~skfusion.modules.volume_input.VolumeGeometry`), so that a column of arrays and
    one of files go through the same module and attributions reach HU voxels.

    Decoding a DICOM series or a compressed NIfTI costs far more than reading the resampled
    volume back, and a fit reads every volume once per epoch: with ``cache`` (a folder, set
    by :func:`volume_cache` for the length of a fit) each resampled volume is written there
    once, as one ``.npy`` file named after its path (so the columns of row subsets share it),
    written under a temporary name and renamed (a DataLoader worker never reads a half-written
    file), and read back memory-mapped: epochs after the first decode nothing, and memory
    holds a batch, not the column. Prediction reads each volume once, without a cache.

    Parameters
    ----------
    paths : ndarray of object
        A path (``str``) per row, ``None`` where the row has no volume.
    size : tuple of 3 int
        ``volume_size``: ``(D, H, W)``.
    window : str or tuple of (float, float)
        The encoder's window: its low end (a volume's minimum for ``"minmax"``) fills the
        voxels that augmentation shifts in.
    cache : str, default=None
        The folder of the decoded volumes; None reads every volume from its file.
    """

    def __init__(self, paths, size, window, cache=None):
        self.paths = paths
        self.size = tuple(size)
        self.window = window
        self.cache = cache

    def take(self, rows):
        """The column of the rows ``rows`` only (sharing the cache)."""
        return VolumeFiles(self.paths[rows], self.size, self.window, self.cache)

    def read(self, rows, generator=None):
        """The volumes of ``rows`` as a ``(len(rows), D, H, W)`` float32 tensor in HU (zeros where missing).

        ``generator`` (a seeded :class:`torch.Generator`) draws the training augmentation
        (:func:`augment_volume`); ``None`` reads the volumes as they are.
        """
        out = torch.zeros(len(rows), *self.size)
        for k, row in enumerate(rows.tolist()):
            path = self.paths[row]
            if path is not None:
                out[k].numpy()[...] = self._volume(path, row)
                if generator is not None:
                    out[k] = augment_volume(out[k], window_low(self.window), generator)
        return out

    def raw(self, row):
        """Row ``row``'s volume as its file holds it: ``(z, y, x)`` float32 in HU, before resampling."""
        path = self.paths[row]
        try:
            return read_ct_volume(path, path)
        except ValueError as exc:
            raise ValueError(f"row {row}, volume {path!r}: {exc}") from None

    def _volume(self, path, row):
        """The resampled volume of ``path``: from the cache when it is there (memory-mapped), else decoded."""
        if self.cache is None:
            return self._decode(row)
        name = hashlib.sha1(f"{path}|{self.size}".encode()).hexdigest()
        cached = os.path.join(self.cache, f"{name}.npy")
        if os.path.exists(cached):
            return np.load(cached, mmap_mode="r")
        volume = self._decode(row)
        partial = os.path.join(self.cache, f"{name}.{os.getpid()}.partial.npy")
        np.save(partial, volume)
        os.replace(partial, cached)
        return volume

    def _decode(self, row):
        return resize_volume(torch.from_numpy(self.raw(row))[None], self.size)[0].numpy()


def augment_volume(volume, fill, generator):
    """A training copy of ``volume`` (D, H, W): flipped left-right with probability 1/2, shifted up to 10 % per axis.

    The flip mirrors the columns (the patient's right-left axis of the axial layout); the
    shift is a whole number of voxels along each axis, drawn uniformly within
    ``MAX_VOLUME_SHIFT`` of the side, and the voxels shifted in take ``fill`` (the window's
    low end, so they read as the darkest value; None: the volume's minimum).
    """
    if torch.rand((), generator=generator) < 0.5:
        volume = volume.flip(-1)
    out = torch.full_like(volume, float(volume.min()) if fill is None else fill)
    source, target = [], []
    for side in volume.shape:
        shift = round(_uniform(-MAX_VOLUME_SHIFT, MAX_VOLUME_SHIFT, generator) * side)
        source.append(slice(max(0, -shift), side - max(0, shift)))
        target.append(slice(max(0, shift), side - max(0, -shift)))
    out[tuple(target)] = volume[tuple(source)]
    return out


@contextlib.contextmanager
def volume_cache(blocks):
    """Inside the block, the volume file columns of ``blocks`` cache their decoded volumes in a temporary folder.

    The folder is removed on leaving the block, an exception included (and by
    :class:`tempfile.TemporaryDirectory`'s finalizer if the interpreter exits first).
    """
    columns = [block["files"] for block in blocks.values() if isinstance(block.get("files"), VolumeFiles)]
    if not columns:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="skfusion-volumes-") as folder:
        for column in columns:
            column.cache = folder
        try:
            yield
        finally:
            for column in columns:
                column.cache = None


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


def check_image_files(cells, name, volume=False):
    """The paths of an image (``volume``: CT volume) column, an object array with ``None`` where missing, and where
    they are present.

    Every present cell must be a path to an existing file (a folder, for a DICOM series) of
    the column's kind, checked here, before any training starts (reading happens batch by
    batch, later): a 3-D volume in an image column, or a 2-D image in a volume column, is a
    ValueError naming the column, row and file.
    """
    paths = np.empty(len(cells), dtype=object)
    kinds = {False: "a 2-D image", True: "a 3-D volume (a DICOM series folder or a 3-D NIfTI)"}
    for row, cell in enumerate(cells):
        if is_missing_cell(cell):
            continue
        if not is_path(cell):
            raise ValueError(
                f"column {name!r}, row {row}: expected an image file path (str or os.PathLike) like the other "
                f"cells; got {type(cell).__name__}."
            )
        where = f"column {name!r}, row {row}"
        if not Path(cell).exists():
            raise ValueError(f"{where}: image file {str(cell)!r} does not exist.")
        if is_volume_file(cell, where) != volume:
            raise ValueError(
                f"{where}: {str(cell)!r} is {kinds[not volume]}, but the column holds {kinds[volume]} in its "
                "first present row: give one kind per column."
            )
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
