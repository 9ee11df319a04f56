"""Cardiac slice selection: the axial slices of a chest CT that show the heart (a heuristic)."""

import warnings

import numpy as np
from scipy import ndimage

#: Voxels below this HU are air or lung.
LUNG_HU = -500.0
#: HU band counted as heart: myocardium and blood, unenhanced or contrast-enhanced (CT
#: angiography reaches 300-400 HU); fat (below -30 HU) and cortical bone are left out.
TISSUE_HU = (-30.0, 400.0)
#: An inner air body smaller than this fraction of the largest one is not a lung (bowel gas).
MIN_LUNG_FRACTION = 0.25
#: A slice is in the cardiac range while its score exceeds the baseline by this fraction of
#: the peak's excess over the baseline.
RANGE_FRACTION = 0.25
#: The range is then widened on each side by this fraction of its length, for the thin ends
#: of the heart (apex, base) whose small cross-sections lie below the threshold.
RANGE_MARGIN = 0.15
#: Fewest slices returned (the whole volume when it is shorter).
MIN_SLICES = 3
#: Part of the embedders' cache keys: change it with the rule.
HEART_SLICES_VERSION = 1

# Slices are subsampled in-plane to about this many pixels per side: the rule reads areas of
# centimetres, and it keeps the 3-D labelling cheap on 512 x 512 slices.
_WORKING_SIDE = 128


def heart_slices(volume_hu):
    """Indices of the contiguous range of axial slices that show the heart.

    A deterministic, training-free **heuristic**, not the method of Zhang et al. [1]_,
    who keep "the axial slices with cardiac structures" without publishing how they find
    them. The rule, on a chest CT in Hounsfield units:

    1. Air is every voxel below ``LUNG_HU`` (-500 HU). Air connected to the border of a
       slice (the room) is dropped; of the inner air bodies (3-D connected components)
       the lung fields are the largest and every other at least ``MIN_LUNG_FRACTION`` of
       its size, which leaves bowel gas out. The midline is the mean column of the lungs.
    2. In each image row of a slice where lung lies on both sides of the midline, the
       pixels strictly between the innermost right and left lung pixels are the
       mediastinum. A slice's score is the number of its mediastinal pixels in the heart
       band ``TISSUE_HU`` (-30 to 400 HU: myocardium and blood, enhanced or not; no fat,
       no cortical bone). The heart is the largest such mass between the lungs, so the
       score peaks at its level.
    3. Among slices with two lung fields, the baseline is the 10th percentile of the
       score (the vessels, oesophagus and spine that every level has). The range is the
       contiguous run of slices around the peak whose score exceeds the baseline by at
       least ``RANGE_FRACTION`` (25 %) of the peak's excess, widened by ``RANGE_MARGIN``
       (15 %) of its length on each side to reach the heart's thin apex and base, and
       to at least ``MIN_SLICES`` (3) slices.

    **Fallback.** When no slice shows two lung fields with tissue between them (a scan of
    the abdomen, a heart-only crop, a phantom), the rule cannot apply: every slice is
    kept and a UserWarning says so.

    Parameters
    ----------
    volume_hu : array-like of shape (z, y, x)
        The volume in HU, laid out as skfusion reads CT volumes: axial slices along
        ``z``, rows from anterior to posterior, columns across the patient (the rule is
        symmetric in rows and in columns, so only the axial layout matters).

    Returns
    -------
    indices : ndarray of int
        Sorted, contiguous slice indices.

    Raises
    ------
    ValueError
        If the volume is not 3-D and non-empty, or holds NaN or infinite voxels (the
        volume readers of :class:`CTVolumeEmbedder` refuse them too).

    See Also
    --------
    CTVolumeEmbedder : ``slices="heart"`` applies this selector to every volume.

    References
    ----------
    .. [1] Zhang et al. (2026). Fusion is not one-size-fits-all: cross-modal
           representation alignment for time-to-event modeling. arXiv:2606.15038,
           section 2.1.

    Examples
    --------
    >>> import numpy as np
    >>> from skfusion.encoders import heart_slices
    >>> z, y, x = np.mgrid[:30, :64, :64]
    >>> volume = np.full((30, 64, 64), -1000.0)                     # room air
    >>> volume[((y - 32) / 28) ** 2 + ((x - 32) / 30) ** 2 < 1] = -100  # body (fat)
    >>> for cx in (18, 46):                                          # two lungs
    ...     volume[((y - 30) / 18) ** 2 + ((x - cx) / 10) ** 2 + ((z - 15) / 14) ** 2 < 1] = -850
    >>> volume[((y - 28) / 9) ** 2 + ((x - 32) / 7) ** 2 + ((z - 10) / 5) ** 2 < 1] = 40  # heart
    >>> sel = heart_slices(volume)
    >>> bool(sel[0] <= 6 and sel[-1] >= 14 and len(sel) < 20)
    True
    """
    volume = np.asarray(volume_hu, dtype=np.float32)
    if volume.ndim != 3 or 0 in volume.shape:
        raise ValueError(f"heart_slices needs a non-empty (z, y, x) volume; got shape {volume.shape}.")
    bad = ~np.isfinite(volume)
    if bad.any():
        # A NaN voxel compares as neither air nor tissue: the lungs and the heart band would
        # silently lose it. Only the caller knows what it stands for.
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"heart_slices: the volume holds {int(bad.sum())} NaN or infinite voxel(s), the first at "
            f"(z, y, x) = {first}; fill them with the HU of what they stand for (e.g. -1000 for air "
            "outside the field of view) first."
        )
    return cardiac_slices_or_all(volume, "heart_slices")


def cardiac_slices_or_all(volume, where):
    """:func:`heart_slices` on a checked volume; the fallback warning names ``where``."""
    found = _cardiac_range(volume)
    if found is None:
        warnings.warn(
            f"{where}: no axial slice shows two lung fields (below {LUNG_HU:g} HU) with tissue "
            f"between them, so the heart cannot be located; all {len(volume)} slices are kept.",
            UserWarning,
            stacklevel=3,
        )
        return np.arange(len(volume))
    return np.arange(*found)


def _cardiac_range(volume):
    """``(start, stop)`` of the cardiac slices, or None when the rule does not apply."""
    step = max(1, -(-min(volume.shape[1:]) // _WORKING_SIDE))
    hu = volume[:, ::step, ::step]
    lungs = _lung_fields(hu < LUNG_HU)
    score = _mediastinal_tissue(hu, lungs)
    has_lungs = score >= 0
    if not has_lungs.any() or score.max() <= 0:
        return None
    baseline = np.percentile(score[has_lungs], 10)
    peak = int(np.argmax(score))
    inside = score >= baseline + RANGE_FRACTION * (score[peak] - baseline)
    start, stop = _run_around(inside, peak)
    margin = int(np.ceil(RANGE_MARGIN * (stop - start)))
    start, stop = max(0, start - margin), min(len(hu), stop + margin)
    return _widen(start, stop, len(hu))


def _lung_fields(air):
    """The inner air bodies large enough to be lungs (3-D, 6-connected)."""
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros_like(air)
    border = np.unique(np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()]))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[border] = 0
    if sizes.max() == 0:
        return np.zeros_like(air)
    return (sizes >= MIN_LUNG_FRACTION * sizes.max())[labels]


def _mediastinal_tissue(hu, lungs):
    """Per slice: heart-band pixels between the two lung fields; -1 where there are not two."""
    if not lungs.any():
        return np.full(len(hu), -1)
    cols = np.arange(hu.shape[2])
    midline = np.nonzero(lungs)[2].mean()
    right = lungs & (cols < midline)
    left = lungs & (cols >= midline)
    inner_right = np.where(right, cols, -1).max(axis=2)  # (z, y): innermost right-lung column
    inner_left = np.where(left, cols, hu.shape[2]).min(axis=2)
    rows = right.any(axis=2) & left.any(axis=2)
    between = (cols > inner_right[..., None]) & (cols < inner_left[..., None]) & rows[..., None]
    tissue = (hu >= TISSUE_HU[0]) & (hu <= TISSUE_HU[1])
    score = (between & tissue).sum(axis=(1, 2))
    return np.where(rows.any(axis=1), score, -1)


def _run_around(inside, peak):
    """The maximal run of True in ``inside`` that contains ``peak``, as ``(start, stop)``."""
    start, stop = peak, peak + 1
    while start > 0 and inside[start - 1]:
        start -= 1
    while stop < len(inside) and inside[stop]:
        stop += 1
    return start, stop


def _widen(start, stop, n):
    """Grow ``[start, stop)`` evenly to at least ``MIN_SLICES`` slices, inside ``[0, n)``."""
    want = min(MIN_SLICES, n)
    while stop - start < want:
        if start > 0:
            start -= 1
        if stop - start < want and stop < n:
            stop += 1
    return start, stop
