"""Reading CT volumes and 2-D images into arrays, Hounsfield windowing and slice selection.

A CT cell is a DICOM series folder, a single DICOM file (one slice, or an enhanced
multi-frame CT), a NIfTI file, or an ndarray ``(z, y, x)`` already in Hounsfield units (HU).
Every reader returns a float32 ``(z, y, x)`` volume in HU laid out like an axial DICOM
series in standard orientation: ``z`` from feet to head, rows from anterior to posterior,
columns from the patient's right to left.

An image cell is a PNG/JPEG/DICOM file or an ndarray ``(H, W)`` or ``(H, W, C)`` with ``C``
1 or 3, the layout numpy, Pillow, pydicom (``pixel_array``) and scikit-image use:
:func:`read_image` (and :func:`image_from_array`, for arrays, which every image path of the
library goes through) returns the float32 ``(C, H, W)`` array in [0, 1] that a network reads,
with ``C`` 1 (grayscale) or 3 (RGB). A channels-first ``(C, H, W)`` array is refused
(:func:`check_image_shape`).
"""

import os
from pathlib import Path

import numpy as np

from ._cardiac import cardiac_slices_or_all

#: Hounsfield windows of Zhang et al. (2026, section 2.1): PE and MACE soft-tissue windows.
NAMED_WINDOWS = {"pe": (-1350.0, 150.0), "mace": (-125.0, 225.0)}

# Largest relative deviation of one slice gap from the median gap before a series is
# rejected: a larger jump means a missing slice or two series mixed in one folder.
SPACING_RTOL = 0.05
# Direction cosines of two slices of one series agree to this absolute tolerance.
ORIENTATION_ATOL = 1e-3

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def resolve_window(window):
    """Return ``window`` as a ``(low, high)`` pair of floats in HU.

    Parameters
    ----------
    window : {"pe", "mace"} or tuple of (float, float)

    Returns
    -------
    low, high : float
    """
    if isinstance(window, str) and window in NAMED_WINDOWS:
        return NAMED_WINDOWS[window]
    if isinstance(window, (tuple, list)) and len(window) == 2:
        low, high = (float(v) for v in window)
        if np.isfinite(low) and np.isfinite(high) and low < high:
            return low, high
    raise ValueError(
        f"window={window!r}: expected 'pe', 'mace' or a (low, high) pair of finite HU values with low < high."
    )


def apply_window(values, low, high):
    """Clip to ``[low, high]`` and scale linearly to ``[0, 1]`` (works on arrays and tensors)."""
    return (values.clip(low, high) - low) / (high - low)


def select_slices(volume, slices, where):
    """Return the sorted indices of the axial slices of ``volume`` that ``slices`` keeps.

    Parameters
    ----------
    volume : ndarray of shape (z, y, x)
        Volume in HU.
    slices : None, (start, stop), float in (0, 1], "heart" or callable
        ``None`` keeps every slice; ``(start, stop)`` keeps ``volume[start:stop]`` (Python
        slicing rules); a float keeps that fraction of the slices around the centre (at
        least one); ``"heart"`` keeps the cardiac range found by
        :func:`~skfusion.encoders.heart_slices`; a callable gets the HU volume and returns
        slice indices or a boolean mask over ``z``.
    where : str
        How to name the volume in error messages.

    Returns
    -------
    indices : ndarray of int
    """
    n = volume.shape[0]
    if slices is None:
        return np.arange(n)
    if isinstance(slices, str):
        indices = cardiac_slices_or_all(volume, where)
    elif callable(slices):
        indices = _indices_from_selection(slices(volume), n, where)
    elif isinstance(slices, tuple):
        indices = np.arange(n)[slice(*slices)]
    else:
        keep = max(1, int(round(float(slices) * n)))
        start = (n - keep) // 2
        indices = np.arange(start, start + keep)
    if indices.size == 0:
        raise ValueError(f"{where}: slices={slices!r} selects no slice of a volume with {n} slices.")
    return indices


def _indices_from_selection(selection, n, where):
    selection = np.asarray(selection)
    if selection.dtype == bool:
        if selection.shape != (n,):
            raise ValueError(
                f"{where}: the slices callable returned a boolean mask of shape "
                f"{selection.shape}; the volume has {n} slices."
            )
        return np.flatnonzero(selection)
    if selection.ndim != 1 or (selection.size and not np.issubdtype(selection.dtype, np.integer)):
        raise ValueError(f"{where}: the slices callable must return integer indices or a boolean mask.")
    if selection.size and (selection.min() < 0 or selection.max() >= n):
        raise ValueError(f"{where}: the slices callable returned indices outside [0, {n}).")
    return np.unique(selection.astype(np.intp))


# --------------------------------------------------------------------------- CT volumes


def read_ct_volume(cell, where):
    """Read one CT cell into a float32 ``(z, y, x)`` volume in HU.

    Parameters
    ----------
    cell : str, os.PathLike or ndarray
        A DICOM series folder, a DICOM file, a NIfTI file (``.nii``/``.nii.gz``), or a 3-D
        array already in HU.
    where : str
        How to name the cell in error messages when it is an array.

    Returns
    -------
    volume : ndarray of shape (z, y, x), float32
    """
    if isinstance(cell, np.ndarray):
        return _check_volume_array(cell, where)
    if not isinstance(cell, (str, os.PathLike)):
        raise ValueError(
            f"{where}: expected a DICOM folder, a DICOM or NIfTI path, or a (z, y, x) array; "
            f"got {type(cell).__name__}."
        )
    path = Path(cell)
    if path.is_dir():
        return read_dicom_series(series_files(path), str(path))
    if not path.is_file():
        raise ValueError(f"{where}: {str(path)!r} is neither a file nor a folder.")
    if path.name.lower().endswith(_NIFTI_SUFFIXES):
        return read_nifti(path)
    return read_dicom_series([path], str(path))


def _check_volume_array(array, where):
    if array.ndim != 3 or min(array.shape) == 0:
        raise ValueError(
            f"{where}: a volume array must be 3-D (z, y, x) and non-empty; got shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{where}: a volume array must be numeric; got dtype {array.dtype}.")
    # Casting to float would drop the imaginary part.
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{where}: a volume array must be real; got dtype {array.dtype}. Complex data not supported.")
    volume = array.astype(np.float32, copy=False)
    if not np.isfinite(volume).all():
        raise ValueError(f"{where}: the volume array holds NaN or infinite values.")
    return volume


def series_files(folder):
    """The files that make up the DICOM series in ``folder``, sorted by name.

    Hidden files and ``DICOMDIR`` are skipped; sub-folders are not searched. The cache
    hashes exactly these files, so the hash and the reader agree on what the series is.
    """
    files = sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR"
    )
    if not files:
        raise ValueError(f"DICOM folder {str(folder)!r} holds no file.")
    return files


def read_dicom_series(files, where):
    """Stack the frames of ``files`` (one series) into a float32 volume in HU.

    Frames are ordered by the projection of ImagePositionPatient on the slice normal (the
    cross product of the row and column direction cosines of ImageOrientationPatient),
    falling back on InstanceNumber (then frame number) when a position is missing. Each
    frame is rescaled with its RescaleSlope and RescaleIntercept; enhanced multi-frame
    files carry these, and the geometry, in the per-frame or shared functional groups.

    Raises
    ------
    ValueError
        Naming the file that is not a readable DICOM image, or naming ``where`` when the
        frames do not form one regular series of one patient (several SeriesInstanceUID or
        PatientID values, different Rows/Columns, different orientations, duplicated
        positions, non-uniform spacing, or no position and no distinct InstanceNumber).
    """
    frames = [frame for path in files for frame in _dicom_frames(path)]
    _check_one_series(frames, where)
    shapes = {f["pixels"].shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"DICOM series {where!r}: slices have different (Rows, Columns): {sorted(shapes)}.")
    order = _slice_order(frames, where)
    volume = np.stack([frames[i]["pixels"] * frames[i]["slope"] + frames[i]["intercept"] for i in order])
    return volume.astype(np.float32, copy=False)


def _check_one_series(frames, where):
    """Refuse frames from several series or patients: stacked, they would alternate."""
    for tag, key, shown in (("SeriesInstanceUID", "series", True), ("PatientID", "patient", False)):
        groups = {}
        for f in frames:
            groups.setdefault(f[key], f["path"])
        if len(groups) > 1:
            # Patient identifiers are not echoed into logs: one file of each group is named.
            values = [
                ("(missing)" if value is None else value) if shown else Path(path).name
                for value, path in groups.items()
            ]
            listed = ", ".join(map(str, values[:4])) + (", ..." if len(values) > 4 else "")
            raise ValueError(
                f"DICOM series {where!r}: the slices carry {len(groups)} different {tag} values "
                f"({'' if shown else 'e.g. in files '}{listed}); a volume must be one series of "
                "one patient: put each series in its own folder."
            )


def _slice_order(frames, where):
    if any(f["position"] is None or f["orientation"] is None for f in frames):
        if any(f["instance"] is None for f in frames):
            raise ValueError(
                f"DICOM series {where!r}: slices lack both ImagePositionPatient and "
                "InstanceNumber, so their order is unknown."
            )
        keys = [(f["instance"], f["frame"]) for f in frames]
        if len(set(keys)) < len(keys):
            raise ValueError(
                f"DICOM series {where!r}: slices lack ImagePositionPatient (or ImageOrientationPatient) "
                f"and their InstanceNumber values repeat ({len(set(keys))} distinct for {len(keys)} "
                "slices), so their order is unknown."
            )
        return sorted(range(len(frames)), key=keys.__getitem__)
    orientations = np.array([f["orientation"] for f in frames])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_ATOL:
        raise ValueError(f"DICOM series {where!r}: slices have different ImageOrientationPatient.")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    depth = np.array([f["position"] for f in frames]) @ normal
    order = np.argsort(depth, kind="stable")
    _check_spacing(np.diff(depth[order]), where)
    return order.tolist()


def _check_spacing(gaps, where):
    if gaps.size == 0:
        return
    median = float(np.median(gaps))
    if gaps.min() <= 1e-6 * max(median, 1.0):
        raise ValueError(
            f"DICOM series {where!r}: two slices share one position (two series in one folder?)."
        )
    worst = float(np.abs(gaps - median).max())
    if worst > SPACING_RTOL * median:
        raise ValueError(
            f"DICOM series {where!r}: non-uniform slice spacing (gaps from {gaps.min():.4g} to "
            f"{gaps.max():.4g} mm; tolerance {SPACING_RTOL:.0%} of the median {median:.4g} mm)."
        )


def _read_dicom(path):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable DICOM file ({exc}).") from exc
    if "PixelData" not in ds:
        raise ValueError(f"DICOM file {str(path)!r} holds no image (no PixelData).")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        # pydicom names the decoding plugins a compressed transfer syntax needs.
        hint = " The imaging extra installs them: pip install 'skfusion[imaging]'." if "plugins" in str(exc) else ""
        raise ValueError(f"DICOM file {str(path)!r}: its pixel data cannot be decoded ({exc}).{hint}") from exc
    return ds, pixels


def _dicom_frames(path):
    ds, pixels = _read_dicom(path)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ValueError(f"DICOM file {str(path)!r} is a colour image, not a CT slice.")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(n_frames, *pixels.shape[-2:])
    if n_frames > 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        raise ValueError(
            f"DICOM file {str(path)!r} has {n_frames} frames but no per-frame functional groups, "
            "so the frames cannot be placed in space."
        )
    instance = ds.get("InstanceNumber")
    series, patient = (_tag_text(ds, tag) for tag in ("SeriesInstanceUID", "PatientID"))
    return [
        {
            "pixels": pixels[k].astype(np.float32),
            "slope": _rescale(ds, k, "RescaleSlope", 1.0, path),
            "intercept": _rescale(ds, k, "RescaleIntercept", 0.0, path),
            "position": _as_floats(_frame_attribute(ds, k, "PlanePositionSequence", "ImagePositionPatient")),
            "orientation": _as_floats(
                _frame_attribute(ds, k, "PlaneOrientationSequence", "ImageOrientationPatient")
            ),
            "instance": None if instance is None else int(instance),
            "frame": k,
            "series": series,
            "patient": patient,
            "path": path,
        }
        for k in range(n_frames)
    ]


def _frame_attribute(ds, frame, sequence, keyword, default=None):
    """Look ``keyword`` up in frame ``frame``'s functional group, the shared one, then the top level."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        if groups in ds and len(ds[groups].value) > index:
            group = ds[groups].value[index]
            if sequence in group and len(group[sequence].value) and keyword in group[sequence].value[0]:
                return group[sequence].value[0][keyword].value
    value = ds.get(keyword)
    return default if value is None or value == "" else value


def _rescale(ds, frame, keyword, default, path):
    """Frame ``frame``'s RescaleSlope or RescaleIntercept: finite, and a slope other than 0."""
    value = _frame_attribute(ds, frame, "PixelValueTransformationSequence", keyword, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or (keyword == "RescaleSlope" and value == 0):
        raise ValueError(
            f"DICOM file {str(path)!r}: {keyword} is {value:g}; it must be a finite number"
            f"{' other than 0' if keyword == 'RescaleSlope' else ''} (HU = pixel x slope + intercept)."
        )
    return value


def _tag_text(ds, keyword):
    """A text attribute stripped of padding; None when absent or empty (type 2 tags)."""
    value = str(ds.get(keyword) or "").strip()
    return value or None


def _as_floats(value):
    return None if value is None else [float(v) for v in value]


def is_volume_file(path, where):
    """Whether the file or folder ``path`` holds a CT volume (a DICOM series folder, a 3-D NIfTI) rather than a 2-D image.

    A NIfTI is typed from its header alone (nibabel reads no voxel): a volume when its three
    spatial sides all exceed 1. A single DICOM file, and any other file, is an image.

    Raises
    ------
    ValueError
        Naming ``where`` and the file, for a NIfTI with a fourth dimension of more than one
        volume (a time series: one CT volume per cell) or a header nibabel cannot read.
    """
    path = Path(path)
    if path.is_dir():
        return True
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        return False
    import nibabel as nib

    try:
        shape = nib.load(str(path)).shape
    except Exception as exc:
        raise ValueError(f"{where}: {str(path)!r} is not a readable NIfTI image ({exc}).") from exc
    if any(side > 1 for side in shape[3:]):
        raise ValueError(
            f"{where}: NIfTI file {str(path)!r} is 4-D with shape {tuple(shape)}; a cell holds one image or one "
            "3-D CT volume."
        )
    return len(shape) >= 3 and all(side > 1 for side in shape[:3])


def read_nifti(path):
    """Read a 3-D NIfTI file into a float32 ``(z, y, x)`` volume (values taken as HU).

    The image is reoriented (nibabel, from its affine) to LPS axis codes, then transposed,
    so ``z`` runs from feet to head, rows from anterior to posterior and columns from the
    patient's right to left: the layout of an axial DICOM series. The NIfTI scaling
    (``scl_slope``/``scl_inter``) is applied.
    """
    import nibabel as nib

    try:
        image = nib.load(str(path))
        lps = nib.orientations.axcodes2ornt(("L", "P", "S"))
        image = image.as_reoriented(nib.orientations.ornt_transform(nib.io_orientation(image.affine), lps))
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable NIfTI image ({exc}).") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(
            f"NIfTI file {str(path)!r} is {data.ndim}-D with shape {data.shape}; a CT volume is 3-D."
        )
    return _check_volume_array(np.ascontiguousarray(data.transpose(2, 1, 0)), str(path))


# --------------------------------------------------------------------------- 2-D images


def read_image(cell, where):
    """Read one image cell into a float32 ``(C, H, W)`` array in [0, 1].

    Parameters
    ----------
    cell : str, os.PathLike or ndarray
        A PNG/JPEG/TIFF (anything Pillow opens), DICOM (recognised by a ``.dcm`` or
        ``.dicom`` suffix or by the ``DICM`` preamble) or 2-D NIfTI (``.nii``, ``.nii.gz``)
        file, or an array ``(H, W)`` or
        ``(H, W, C)`` with ``C`` 1 or 3. Integer arrays are divided by their dtype's
        maximum; float arrays must already lie in [0, 1]. Files: 8-bit images are divided
        by 255, integer ("I" mode) images by 65535 and must lie in [0, 65535],
        floating-point ("F" mode) images must lie in [0, 1]; an alpha channel is dropped.
        A file of several frames (a multi-page TIFF, an animation; MPO excepted) and an
        image larger than Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` guard allows are refused.
    where : str
        How to name the cell in error messages (before the file's name for a file).

    Returns
    -------
    image : ndarray of shape (C, H, W), float32
        ``C`` is 1 for grayscale and 3 for colour. A grayscale DICOM goes through its
        modality and VOI LUTs, is inverted when MONOCHROME1, then min-max scaled; a NIfTI
        image (its scaling applied) is min-max scaled.
    """
    if isinstance(cell, np.ndarray):
        return image_from_array(cell, where)
    if not isinstance(cell, (str, os.PathLike)):
        raise ValueError(f"{where}: expected an image path or array; got {type(cell).__name__}.")
    path = Path(cell)
    if not path.is_file():
        raise ValueError(f"{where}: {str(path)!r} is not a file.")
    try:
        return _image_from_file(path)
    except ValueError as exc:
        if where == str(path):
            raise
        # The file readers name the file; the caller's row or cell is said in front.
        raise ValueError(f"{where}: {exc}") from exc


def _image_from_file(path):
    if path.suffix.lower() in (".dcm", ".dicom") or _has_dicom_preamble(path):
        return _image_from_dicom(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return _image_from_nifti(path)
    return _image_from_pillow(path)


def _has_dicom_preamble(path):
    with open(path, "rb") as fh:
        return fh.read(132)[128:] == b"DICM"


def looks_channels_first(shape):
    """Whether ``shape`` is that of a channels-first ``(C, H, W)`` image: first axis 1 or 3, the last not."""
    return len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3)


def check_image_shape(shape, where):
    """Raise a ValueError naming ``where`` unless ``shape`` is ``(H, W)`` or ``(H, W, C)`` with ``C`` 1 or 3.

    A channels-first shape gets its own message: it is the layout torch uses, and the one
    the estimators read before images took numpy's layout.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3)):
        return
    if looks_channels_first(shape):
        raise ValueError(
            f"{where}: the image array of shape {shape} is channels-first (C, H, W); image arrays are (H, W) or "
            "(H, W, C) with C in (1, 3), as numpy, Pillow and pydicom give them: pass np.moveaxis(image, 0, -1)."
        )
    raise ValueError(f"{where}: an image array must be (H, W) or (H, W, C) with C in (1, 3); got shape {shape}.")


def image_from_array(array, where):
    """One image array ``(H, W)`` or ``(H, W, C)`` as the float32 ``(C, H, W)`` array in [0, 1] a network reads.

    Integer arrays are divided by their dtype's maximum; float arrays must already lie in
    [0, 1]. A ValueError names ``where`` for any other shape (:func:`check_image_shape`),
    dtype or value.
    """
    check_image_shape(array.shape, where)
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    if min(array.shape[1:]) == 0:
        raise ValueError(f"{where}: the image array is empty.")
    if np.issubdtype(array.dtype, np.integer):
        array = array / np.iinfo(array.dtype).max
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{where}: an image array must be of integer or float dtype; got {array.dtype}.")
    image = array.astype(np.float32)
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError(
            f"{where}: an image array must hold finite values in [0, 1] (integers: in [0, dtype max])."
        )
    return image


def _image_from_pillow(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            _check_one_frame(image, path)
            image.load()
            mode = image.mode
            if mode == "F" or mode.startswith("I"):
                pixels = np.asarray(image, dtype=np.float64)
            elif mode in ("1", "L", "P", "LA", "La"):
                pixels = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
            else:
                pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable image file ({exc}).") from exc
    except Image.DecompressionBombError as exc:
        # Pillow's limit stays the user's to raise: a process-wide setting is not ours to change.
        raise ValueError(
            f"image file {str(path)!r} is too large to read safely ({exc}); downscale it first (the "
            "encoders resize images to a few hundred pixels anyway) or, if you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS yourself."
        ) from exc
    if mode.startswith("I"):
        # 16-bit images open as "I;16*" or "I"; 32-bit values beyond 16 bits have no scale.
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ValueError(
                f"image file {str(path)!r} ({mode} mode) holds values from {pixels.min():g} to "
                f"{pixels.max():g}; integer images must lie in [0, 65535]."
            )
        pixels = pixels / 65535.0
    elif mode == "F" and not (np.isfinite(pixels).all() and 0 <= pixels.min() <= pixels.max() <= 1):
        raise ValueError(
            f"image file {str(path)!r} is a floating-point image whose values are not all finite and "
            "in [0, 1]; scale it to [0, 1] (or save it as 8- or 16-bit)."
        )
    return image_from_array(pixels.astype(np.float32), str(path))


def _check_one_frame(image, path):
    """Refuse a file of several frames (multi-page TIFF, animated GIF/PNG): which one is the image is unknown.

    An MPO file (a camera JPEG with previews or a second view) is read as its first frame,
    which the format defines as the primary image.
    """
    n_frames = getattr(image, "n_frames", 1)
    if n_frames > 1 and image.format != "MPO":
        raise ValueError(
            f"image file {str(path)!r} holds {n_frames} frames ({image.format}); an image cell is one 2-D "
            "image: save the frame you mean as a file of its own."
        )


def _min_max(values):
    """``values`` scaled to [0, 1] (all zeros when constant)."""
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _image_from_nifti(path):
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable NIfTI image ({exc}).") from exc
    data = data.reshape([n for n in data.shape if n != 1] if data.size else data.shape)
    if data.ndim != 2:
        raise ValueError(
            f"NIfTI file {str(path)!r} has shape {data.shape}; an image cell is one 2-D image (a volume "
            "goes to CTVolumeEmbedder)."
        )
    if not np.isfinite(data).all():
        raise ValueError(f"NIfTI file {str(path)!r} holds NaN or infinite values.")
    # NIfTI stores (x, y): the transpose gives (rows, columns) as a DICOM image has them.
    return image_from_array(_min_max(data.T.astype(np.float64)).astype(np.float32), str(path))


def _image_from_dicom(path):
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds, pixels = _read_dicom(path)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ValueError(f"DICOM file {str(path)!r} has several frames; an image cell is one 2-D image.")
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        return image_from_array(pixels.astype(np.float32) / float(2 ** int(ds.BitsStored) - 1), str(path))
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        _rescale(ds, 0, keyword, default, path)
    values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        values = -values
    return image_from_array(_min_max(values).astype(np.float32), str(path))
