"""CTVolumeEmbedder: reading (DICOM, enhanced CT, NIfTI, arrays), windowing, slice selection,
backbones and weights, the training-free descriptor, and scikit-learn behaviour."""

import copy
import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_float32_close
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from torch import nn

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from skfusion.encoders import _backbone, heart_slices  # noqa: E402
from skfusion.encoders._descriptors import HU_BAND_EDGES, HU_RANGE, ImageDescriptor  # noqa: E402
from skfusion._volumes import apply_window, read_ct_volume, select_slices  # noqa: E402
from skfusion.encoders.ct import CTVolumeEmbedder  # noqa: E402

CT_SMALL = get_testdata_file("CT_small.dcm")
ENHANCED_CT = get_testdata_file("eCT_Supplemental.dcm", download=False)


# --------------------------------------------------------------------------- helpers


def write_series(folder, n=4, spacing=2.5, seed=0, edit=None):
    """Copies of pydicom's CT_small.dcm as an n-slice series, shuffled on disk.

    Slice k has pixels raw + 10 k, RescaleIntercept -1024 + 5 k and its position moved by
    k * spacing along z; ``edit(k, ds)`` may change a slice before it is written. Returns
    the expected HU volume, slices in z order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(CT_SMALL)
    raw = base.pixel_array.astype(np.int16)
    x0, y0, z0 = (float(v) for v in base.ImagePositionPatient)
    names = np.random.default_rng(seed).permutation(n)
    expected = []
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.PixelData = (raw + 10 * k).astype(np.int16).tobytes()
        ds.RescaleIntercept = -1024 + 5 * k
        ds.ImagePositionPatient = [x0, y0, z0 + k * spacing]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        if edit is not None:
            edit(k, ds)
        ds.save_as(folder / f"slice_{names[k]:03d}.dcm")
        expected.append((raw + 10 * k).astype(np.float32) - 1024 + 5 * k)
    return np.stack(expected)


class ChannelMeanLinear(nn.Module):
    """Per-channel spatial mean followed by a fixed linear map: easy to transcribe by hand."""

    def __init__(self, d=4, seed=0):
        super().__init__()
        self.linear = nn.Linear(3, d)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(torch.randn(d, 3, generator=g))
            self.linear.bias.copy_(torch.randn(d, generator=g))

    def forward(self, x):
        return self.linear(x.mean((2, 3)))


class ShapeReporter(nn.Module):
    """Returns (H, W, channels, dtype is float32) of its input, per row."""

    def forward(self, x):
        b, c, h, w = x.shape
        row = torch.tensor([h, w, c, float(x.dtype == torch.float32)], dtype=torch.float32)
        return row.expand(b, -1)


def frame(cells, column="ct"):
    return pd.DataFrame({column: pd.Series(cells, dtype=object)})


def reference_hounsfield_features(hu):
    """Slow float64 transcription of the 18 Hounsfield features of one slice."""
    v = np.clip(hu.astype(np.float64), *HU_RANGE).ravel()
    edges = (-np.inf, *HU_BAND_EDGES, np.inf)
    bounds = (HU_RANGE[0], *HU_BAND_EDGES, HU_RANGE[1])
    fractions, means = [], []
    for b in range(len(edges) - 1):
        inside = (v >= edges[b]) & (v < edges[b + 1])
        fractions.append(inside.mean())
        means.append(v[inside].mean() if inside.any() else (bounds[b] + bounds[b + 1]) / 2)
    return np.array([*fractions, *(m / 1000 for m in means), v.mean() / 1000, v.std() / 1000])


def phantom(fat_fraction, rng, n_slices=3, size=40):
    """Air around a disc of body made of fat (-100 HU) and soft tissue (40 HU) voxels."""
    yy, xx = np.mgrid[:size, :size]
    body = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    volume = np.full((n_slices, size, size), -1000.0)
    fat = rng.random((n_slices, size, size)) < fat_fraction
    tissue = np.where(fat, -100.0, 40.0) + rng.normal(0, 10, (n_slices, size, size))
    volume[:, body] = tissue[:, body]
    return volume.astype(np.float32)


# --------------------------------------------------------------------------- DICOM


def test_dicom_series_is_ordered_and_rescaled(tmp_path):
    expected = write_series(tmp_path / "series", n=5)
    volume = read_ct_volume(str(tmp_path / "series"), "cell")
    np.testing.assert_array_equal(volume, expected)


def test_dicom_order_follows_the_slice_normal(tmp_path):
    # Flipping the row direction makes the normal point to the feet: order reverses.
    def flip(k, ds):
        ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]

    expected = write_series(tmp_path / "s", n=4, edit=flip)
    np.testing.assert_array_equal(read_ct_volume(tmp_path / "s", "cell"), expected[::-1])


def test_dicom_falls_back_on_instance_number(tmp_path):
    def scramble(k, ds):
        del ds.ImagePositionPatient
        ds.InstanceNumber = [3, 1, 4, 2][k]

    expected = write_series(tmp_path / "s", n=4, edit=scramble)
    np.testing.assert_array_equal(read_ct_volume(tmp_path / "s", "cell"), expected[[1, 3, 0, 2]])


def test_single_dicom_file_is_a_one_slice_volume():
    ds = pydicom.dcmread(CT_SMALL)
    volume = read_ct_volume(CT_SMALL, "cell")
    np.testing.assert_array_equal(
        volume[0], ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    )


@pytest.mark.skipif(ENHANCED_CT is None, reason="pydicom-data's enhanced CT is not installed")
def test_enhanced_multiframe_ct_uses_functional_groups():
    ds = pydicom.dcmread(ENHANCED_CT)
    # Orientation (-1, 0, 0, 0, 1, 0) has normal (0, 0, -1): frame 1 (z = -149) comes first.
    positions = [
        float(g.PlanePositionSequence[0].ImagePositionPatient[2]) for g in ds.PerFrameFunctionalGroupsSequence
    ]
    assert positions == [-159.0, -149.0]
    volume = read_ct_volume(ENHANCED_CT, "cell")
    np.testing.assert_array_equal(volume, ds.pixel_array[::-1].astype(np.float32) - 1024.0)


@pytest.mark.skipif(ENHANCED_CT is None, reason="pydicom-data's enhanced CT is not installed")
def test_enhanced_ct_per_frame_rescale_overrides_the_shared_one(tmp_path):
    ds = pydicom.dcmread(ENHANCED_CT)
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        item = Dataset()
        item.RescaleIntercept = -1000 - 7 * k
        item.RescaleSlope = 2
        item.RescaleType = "HU"
        group.PixelValueTransformationSequence = Sequence([item])
    ds.save_as(tmp_path / "ect.dcm")
    volume = read_ct_volume(tmp_path / "ect.dcm", "cell")
    pixels = ds.pixel_array.astype(np.float32)
    np.testing.assert_array_equal(volume[0], 2 * pixels[1] - 1007)
    np.testing.assert_array_equal(volume[1], 2 * pixels[0] - 1000)


def test_non_dicom_file_in_a_series_names_the_file(tmp_path):
    write_series(tmp_path / "s", n=3)
    (tmp_path / "s" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt.*not a readable DICOM"):
        read_ct_volume(tmp_path / "s", "cell")


def test_non_image_file_cell_names_the_file(tmp_path):
    path = tmp_path / "report.bin"
    path.write_bytes(b"\x00" * 300)
    X = frame([str(path)])
    with pytest.raises(ValueError, match="report.bin"):
        CTVolumeEmbedder().fit(X).transform(X)


def test_dicom_without_pixels_names_the_file(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(ValueError, match="nopix.dcm.*no PixelData"):
        read_ct_volume(tmp_path / "nopix.dcm", "cell")


def _resize_slice(k, ds):
    if k == 2:
        ds.Rows, ds.Columns = 64, 64
        ds.PixelData = np.zeros((64, 64), np.int16).tobytes()


def _tilt_slice(k, ds):
    if k == 1:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]


def _skip_a_slice(k, ds):
    if k == 3:
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            ds.ImagePositionPatient[2] + 2.5,
        ]


def _duplicate_position(k, ds):
    if k == 1:
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            ds.ImagePositionPatient[2] - 2.5,
        ]


def _no_order(k, ds):
    del ds.ImagePositionPatient
    del ds.InstanceNumber


@pytest.mark.parametrize(
    "edit, message",
    [
        (_resize_slice, "different \\(Rows, Columns\\)"),
        (_tilt_slice, "different ImageOrientationPatient"),
        (_skip_a_slice, "non-uniform slice spacing"),
        (_duplicate_position, "share one position"),
        (_no_order, "order is unknown"),
    ],
)
def test_inconsistent_series_names_the_folder(tmp_path, edit, message):
    write_series(tmp_path / "bad_series", n=4, edit=edit)
    with pytest.raises(ValueError, match=f"bad_series.*{message}"):
        read_ct_volume(tmp_path / "bad_series", "cell")


def test_empty_folder_and_missing_path_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*holds no file"):
        read_ct_volume(tmp_path / "empty", "cell")
    with pytest.raises(ValueError, match="nowhere.*neither a file nor a folder"):
        read_ct_volume(tmp_path / "nowhere", "row 3")


# --------------------------------------------------------------------------- NIfTI and arrays


def test_nifti_is_reoriented_to_the_dicom_layout(tmp_path):
    nib = pytest.importorskip("nibabel")
    zyx = np.random.default_rng(0).normal(0, 100, (5, 6, 7)).astype(np.float32)
    # Stored in LPS index order: axis 0 toward the left, 1 toward posterior, 2 toward head.
    lps = nib.Nifti1Image(zyx.transpose(2, 1, 0), np.diag([-1.0, -1.0, 2.5, 1.0]))
    nib.save(lps, tmp_path / "lps.nii.gz")
    # The same anatomy stored in RAS index order.
    ras = nib.Nifti1Image(zyx.transpose(2, 1, 0)[::-1, ::-1, :].copy(), np.diag([1.0, 1.0, 2.5, 1.0]))
    nib.save(ras, tmp_path / "ras.nii")
    np.testing.assert_array_equal(read_ct_volume(tmp_path / "lps.nii.gz", "cell"), zyx)
    np.testing.assert_array_equal(read_ct_volume(str(tmp_path / "ras.nii"), "cell"), zyx)


def test_nifti_bad_inputs_name_the_file(tmp_path):
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "four_d.nii")
    with pytest.raises(ValueError, match="four_d.nii.*4-D"):
        read_ct_volume(tmp_path / "four_d.nii", "cell")
    (tmp_path / "broken.nii").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.nii.*not a readable NIfTI"):
        read_ct_volume(tmp_path / "broken.nii", "cell")


@pytest.mark.parametrize(
    "cell, message",
    [
        (np.zeros((4, 4)), "must be 3-D"),
        (np.full((2, 3, 3), np.nan), "NaN or infinite"),
        (np.array([[["a"]]]), "must be numeric"),
        (42, "got int"),
    ],
)
def test_bad_array_cells(cell, message):
    with pytest.raises(ValueError, match=f"column 'ct', non-missing cell 1.*{message}"):
        CTVolumeEmbedder().fit(frame([np.zeros((2, 8, 8)), cell])).transform(
            frame([np.zeros((2, 8, 8)), cell])
        )


def test_missing_cells_give_nan_rows_and_none_tokens():
    X = frame([np.zeros((2, 8, 8)), None, np.nan])
    out = CTVolumeEmbedder().fit_transform(X)
    assert out.iloc[0].notna().all() and out.iloc[1:].isna().all().all()
    tokens = CTVolumeEmbedder(pool=None).fit_transform(X)["ct"]
    assert tokens.iloc[0].shape == (2, 77) and tokens.iloc[1] is None and tokens.iloc[2] is None


# --------------------------------------------------------------------------- windowing, slices


@pytest.mark.parametrize(
    "window, bounds", [("pe", (-1350, 150)), ("mace", (-125, 225)), ((-10, 30), (-10, 30))]
)
def test_window_clips_and_scales(window, bounds):
    low, high = bounds
    hu = np.array([[[low - 50, low, (low + high) / 2, high, high + 50]]], dtype=np.float32)
    seen = {}

    class Spy(nn.Module):
        def forward(self, x):
            seen["x"] = x.clone()
            return x.mean((2, 3))

    CTVolumeEmbedder(window=window, backbone=Spy(), mean=None, std=None).fit_transform(frame([hu]))
    np.testing.assert_allclose(seen["x"][0, 0, 0].numpy(), [0, 0, 0.5, 1, 1], atol=1e-7)


@pytest.mark.parametrize("window", [(5, 5), (1, 2, 3), "lung", (np.nan, 1)])
def test_bad_window(window):
    with pytest.raises(ValueError, match="window"):
        CTVolumeEmbedder(window=window).fit(frame([np.zeros((2, 4, 4))]))


def test_slice_selection_rules():
    volume = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 2), np.float32)
    assert select_slices(volume, None, "v").tolist() == list(range(10))
    assert select_slices(volume, (2, 5), "v").tolist() == [2, 3, 4]
    assert select_slices(volume, (-3, None), "v").tolist() == [7, 8, 9]
    assert select_slices(volume, 0.4, "v").tolist() == [3, 4, 5, 6]
    assert select_slices(volume, 0.01, "v").tolist() == [4]
    assert select_slices(volume, lambda v: v[:, 0, 0] > 6.5, "v").tolist() == [7, 8, 9]
    assert select_slices(volume, lambda v: [5, 1, 5], "v").tolist() == [1, 5]


@pytest.mark.parametrize(
    "slices, message",
    [
        ((8, 20), "selects no slice"),
        (lambda v: np.ones(3, bool), "boolean mask of shape"),
        (lambda v: [0, 12], "outside"),
        (lambda v: [0.5], "integer indices"),
        (lambda v: [], "selects no slice"),
    ],
)
def test_bad_slice_selection_names_the_cell(slices, message):
    with pytest.raises(ValueError, match=f"non-missing cell 0.*{message}"):
        CTVolumeEmbedder(slices=slices).fit(frame([np.zeros((8, 4, 4))])).transform(
            frame([np.zeros((8, 4, 4))])
        )


def test_bad_slices_tuple():
    with pytest.raises(ValueError, match="slices=.*start, stop"):
        CTVolumeEmbedder(slices=(1.5, 3)).fit(frame([np.zeros((4, 4, 4))]))


@pytest.mark.float32_batch
def test_callable_slices_select_what_the_backbone_sees():
    volume = np.stack([np.full((4, 4), hu, np.float32) for hu in (-1000, 0, 100, -1000)])
    out = CTVolumeEmbedder(
        backbone=ChannelMeanLinear(),
        window=(-1000, 200),
        pool=None,
        device="cpu",
        slices=lambda v: v.mean((1, 2)) > -500,
    ).fit_transform(frame([volume]))
    full = CTVolumeEmbedder(
        backbone=ChannelMeanLinear(), window=(-1000, 200), pool=None, device="cpu"
    ).fit_transform(frame([volume]))
    # Two slices in one batch against four: float32 results may differ in the last bits.
    assert_float32_close(out["ct"].iloc[0], full["ct"].iloc[0][[1, 2]])


# --------------------------------------------------------------------------- cardiac slices


def chest_phantom(heart=(14, 32), lungs=(8, 54), n_slices=60, size=96, contrast=False, seed=0):
    """A chest CT phantom in HU whose heart fills slices ``heart[0]`` to ``heart[1] - 1``.

    Room air around an elliptic body of fat inside a muscle wall, lying on a table with a
    hollow core; two lung ellipsoids; a heart ellipsoid between and in front of them; a
    descending aorta and a vertebral column on every slice; a liver under the right lung
    base; bowel gas in the lowest slices. ``contrast`` makes the blood 300-350 HU, as in a
    CT angiogram. Rows run from anterior to posterior.
    """
    z, y, x = np.mgrid[:n_slices, :size, :size].astype(np.float64)
    y, x, c = y / size, x / size, 0.5

    def ellipse(cy, cx, ry, rx):
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2

    def ellipsoid(cy, cx, ry, rx, span):
        if span[1] <= span[0]:
            return np.zeros(z.shape, bool)
        mid, half = (span[0] + span[1] - 1) / 2, (span[1] - span[0]) / 2
        return ellipse(cy, cx, ry, rx) + ((z - mid) / half) ** 2 < 1

    hu = np.full(z.shape, -1000.0)
    body = ellipse(c, c, 0.36, 0.46) < 1
    hu[body] = 50.0  # muscle wall
    hu[ellipse(c, c, 0.31, 0.41) < 1] = -100.0  # fat
    table = (y > c + 0.40) & (y < c + 0.44) & (np.abs(x - c) < 0.45)
    hu[table] = 200.0
    hu[table & (y > c + 0.41) & (y < c + 0.43) & (np.abs(x - c) < 0.42)] = -950.0
    for side in (-1, 1):
        hu[ellipsoid(c, c + side * 0.2, 0.26, 0.14, lungs)] = -850.0
    hu[ellipse(c + 0.16, c + 0.06, 0.04, 0.04) < 1] = 300.0 if contrast else 40.0  # aorta
    hu[ellipse(c + 0.24, c, 0.06, 0.06) < 1] = 250.0  # vertebral body
    hu[ellipsoid(c - 0.06, c + 0.04, 0.17, 0.15, heart)] = 350.0 if contrast else 40.0
    liver = ellipsoid(c, c - 0.12, 0.28, 0.30, (-14, 14)) & (hu > -500) & body
    hu[liver] = 60.0
    for side in (-1, 1):
        hu[(ellipse(c - 0.1, c + side * 0.25, 0.05, 0.05) < 1) & (z < 6)] = -900.0
    hu += np.random.default_rng(seed).normal(0, 15, hu.shape)
    return hu.astype(np.float32)


@pytest.mark.parametrize(
    "heart, lungs, contrast",
    [((14, 32), (8, 54), False), ((14, 32), (8, 54), True), ((25, 41), (5, 58), False), ((3, 15), (0, 40), False)],
)
def test_heart_slices_cover_the_heart_of_a_chest_phantom(heart, lungs, contrast):
    volume = chest_phantom(heart=heart, lungs=lungs, contrast=contrast)
    selected = heart_slices(volume)
    assert selected.tolist() == list(range(selected[0], selected[-1] + 1))  # contiguous
    assert selected[0] <= heart[0] and selected[-1] >= heart[1] - 1
    # Not the whole chest: at most the heart and a margin of a quarter of its length on each side.
    assert len(selected) <= 1.5 * (heart[1] - heart[0])


def test_heart_slices_do_not_depend_on_the_in_plane_resolution_or_the_noise():
    volume = chest_phantom()
    fine = np.repeat(np.repeat(chest_phantom(size=64), 4, axis=1), 4, axis=2)
    assert heart_slices(fine).tolist() == heart_slices(chest_phantom(size=64)).tolist()
    assert heart_slices(volume).tolist() == heart_slices(chest_phantom(seed=1)).tolist()


def test_heart_slices_follow_a_reversed_z_axis():
    volume = chest_phantom()
    n = len(volume)
    assert sorted(n - 1 - heart_slices(volume[::-1])) == heart_slices(volume).tolist()


def test_heart_slices_fall_back_to_every_slice_without_two_lung_fields():
    abdomen = chest_phantom(lungs=(0, 0), heart=(0, 0))  # empty spans: no lung, no heart
    with pytest.warns(UserWarning, match="heart_slices: no axial slice shows two lung fields.*all 60 slices"):
        assert heart_slices(abdomen).tolist() == list(range(60))
    short = chest_phantom(n_slices=2, heart=(0, 2), lungs=(0, 2))
    assert heart_slices(short).tolist() == [0, 1]  # the minimum range, clipped to the volume


def test_slices_heart_encodes_the_cardiac_range():
    volume = chest_phantom(size=48)
    start, stop = (lambda s: (s[0], s[-1] + 1))(heart_slices(volume))
    X = frame([volume, None])
    heart = CTVolumeEmbedder(slices="heart", pool=None).fit_transform(X)["ct"]
    ranged = CTVolumeEmbedder(slices=(int(start), int(stop)), pool=None).fit_transform(X)["ct"]
    assert heart.iloc[0].shape == (stop - start, 77) and heart.iloc[1] is None
    np.testing.assert_allclose(heart.iloc[0], ranged.iloc[0], rtol=1e-5, atol=1e-6)
    with pytest.warns(UserWarning, match="column 'ct', non-missing cell 0: no axial slice shows two lung"):
        out = CTVolumeEmbedder(slices="heart", pool=None).fit_transform(frame([np.zeros((5, 8, 8))]))
    assert out["ct"].iloc[0].shape == (5, 77)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CTVolumeEmbedder(slices="heart").fit_transform(X)


# --------------------------------------------------------------------------- backbones


def test_backbone_output_matches_a_hand_transcription():
    rng = np.random.default_rng(0)
    volumes = [rng.normal(-300, 500, (n, 6, 5)).astype(np.float32) for n in (3, 1, 4)]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    net = ChannelMeanLinear(d=4)
    W, b = net.linear.weight.detach().double().numpy(), net.linear.bias.detach().double().numpy()
    expected = []
    for v in volumes:
        w = np.clip((v.astype(np.float64) + 1350) / 1500, 0, 1)
        channel_means = ((w[:, None] - mean[None, :, None, None]) / std[None, :, None, None]).mean((2, 3))
        expected.append((channel_means @ W.T + b).mean(0))
    out = CTVolumeEmbedder(backbone=net, window="pe", batch_size=2, device="cpu").fit_transform(
        frame(volumes)
    )
    np.testing.assert_allclose(out.to_numpy(), np.array(expected), rtol=1e-5, atol=1e-6)
    assert list(out.columns) == [f"ct__{i}" for i in range(4)]


def test_batching_across_volumes_does_not_change_the_output():
    rng = np.random.default_rng(1)
    X = frame([rng.normal(0, 300, (n, 8, 8)) for n in (5, 2, 7, 1)])
    one = CTVolumeEmbedder(backbone=ChannelMeanLinear(), pool=None, batch_size=1, device="cpu")
    one = one.fit_transform(X)["ct"]
    seven = CTVolumeEmbedder(backbone=ChannelMeanLinear(), pool=None, batch_size=7, device="cpu")
    seven = seven.fit_transform(X)["ct"]
    for a, b in zip(one, seven):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [t.shape for t in seven] == [(5, 4), (2, 4), (7, 4), (1, 4)]


def test_image_size_resizes_and_backbone_gets_three_float_channels():
    X = frame([np.zeros((2, 40, 30)), np.zeros((1, 40, 30))])
    out = CTVolumeEmbedder(backbone=ShapeReporter(), image_size=(16, 12)).fit_transform(X)
    np.testing.assert_array_equal(out.to_numpy(), [[16, 12, 3, 1]] * 2)
    shorter = CTVolumeEmbedder(backbone=ShapeReporter(), image_size=20).fit_transform(X)
    np.testing.assert_array_equal(shorter.to_numpy()[0, :2], [26, 20])


def test_backbone_is_copied_not_modified():
    net = ChannelMeanLinear()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    enc = CTVolumeEmbedder(backbone=net).fit(frame([np.zeros((2, 4, 4))]))
    assert enc.backbone_ is not net and not enc.backbone_.training and net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_backbone_returning_a_bad_shape_is_refused():
    class Spatial(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"must return a \(batch, d\) tensor"):
        CTVolumeEmbedder(backbone=Spatial()).fit(frame([np.zeros((2, 4, 4))]))


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_weights_load_from_a_local_file(tmp_path, fmt):
    trained = ChannelMeanLinear(seed=7)
    path = tmp_path / "w.bin"
    if fmt == "torch":
        torch.save(trained.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(trained.state_dict(), str(path))
    X = frame([np.random.default_rng(0).normal(0, 200, (3, 5, 5))])
    loaded = CTVolumeEmbedder(backbone=ChannelMeanLinear(seed=0), weights=path).fit_transform(X)
    direct = CTVolumeEmbedder(backbone=trained).fit_transform(X)
    np.testing.assert_array_equal(loaded.to_numpy(), direct.to_numpy())


def test_bad_weights_are_named(tmp_path):
    X = frame([np.zeros((2, 4, 4))])
    torch.save({"linear.weight": torch.zeros(4, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt.*missing keys \\['linear.bias'\\]"):
        CTVolumeEmbedder(backbone=ChannelMeanLinear(), weights=tmp_path / "partial.pt").fit(X)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt.*flat state dict"):
        CTVolumeEmbedder(backbone=ChannelMeanLinear(), weights=tmp_path / "list.pt").fit(X)
    (tmp_path / "junk.pt").write_bytes(b"junk" * 10)
    with pytest.raises(ValueError, match="junk.pt.*cannot be read"):
        CTVolumeEmbedder(backbone=ChannelMeanLinear(), weights=tmp_path / "junk.pt").fit(X)
    with pytest.raises(ValueError, match="weights is given but backbone is None"):
        CTVolumeEmbedder(weights=tmp_path / "partial.pt").fit(X)


def test_named_architecture_drops_its_head_and_ignores_head_weights(tmp_path, monkeypatch):
    # Stands in for torchvision (not importable beside this torch build): same contract.
    def tiny_classifier(name):
        assert name == "tinynet"
        return nn.Sequential(
            nn.Flatten(), nn.Linear(48, 6), nn.ReLU(), nn.Sequential(nn.Dropout(), nn.Linear(6, 1000))
        )

    monkeypatch.setattr(_backbone, "_torchvision_model", tiny_classifier)
    torch.manual_seed(0)
    trained = tiny_classifier("tinynet")
    state = trained.state_dict()
    state["3.1.weight"], state["3.1.bias"] = torch.zeros(14, 6), torch.zeros(14)  # a 14-class head
    torch.save(state, tmp_path / "tiny.pt")
    volume = np.random.default_rng(0).normal(0, 300, (1, 4, 4))
    enc = CTVolumeEmbedder(
        backbone="tinynet",
        weights=tmp_path / "tiny.pt",
        window=(-1000, 1000),
        mean=None,
        std=None,
        device="cpu",
    )
    out = enc.fit_transform(frame([volume]))
    assert enc.embedding_dim_ == 6 and isinstance(enc.backbone_[3][1], nn.Identity)
    x = torch.from_numpy(np.clip((volume + 1000) / 2000, 0, 1)).float().expand(3, -1, -1)[None]
    with torch.no_grad():
        expected = trained[:3](x).numpy()
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=1e-5)


def test_torchvision_name_is_imported_lazily():
    # The ResNets are skfusion's own (tests/test_resnet.py): no torchvision needed.
    enc = CTVolumeEmbedder(backbone="resnet18", image_size=32).fit(frame([np.zeros((1, 8, 8))]))
    assert enc.embedding_dim_ == 512
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match="torchvision cannot be imported"):
            CTVolumeEmbedder(backbone="densenet121").fit(frame([np.zeros((1, 8, 8))]))
    else:
        enc = CTVolumeEmbedder(backbone="densenet121", image_size=32).fit(frame([np.zeros((1, 8, 8))]))
        assert enc.embedding_dim_ == 1024


# --------------------------------------------------------------------------- backbones that embed whole volumes


def whole_volume_encoder(volume_size=(4, 8, 8), window=(-1000.0, 200.0)):
    """A 3-D encoder that windows HU volumes itself, as TimeToEventPretraining.image_encoder_ is."""
    from skfusion.modules.volume_input import VolumeGeometry

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d((1, 1, 2)), nn.Flatten())
    return nn.Sequential(VolumeGeometry(window, volume_size), network)


@pytest.mark.float32_batch
def test_a_backbone_that_windows_volumes_embeds_each_volume_whole():
    rng = np.random.default_rng(0)
    volumes = [rng.normal(-300, 400, shape).astype(np.float32) for shape in [(6, 10, 10), (3, 8, 12), (6, 10, 10)]]
    module = whole_volume_encoder().eval()
    with torch.inference_mode():
        expected = np.concatenate([module(torch.from_numpy(v)[None]).numpy() for v in volumes])
    X = frame(volumes)
    # window, mean and std are the module's business: the embedder's are unused.
    embedder = CTVolumeEmbedder(backbone=module, window="mace", mean=None, std=None, batch_size=2, device="cpu")
    out = embedder.fit_transform(X)
    assert embedder.embedding_dim_ == 6 and out.shape == (3, 6)
    assert_float32_close(out.to_numpy(), expected)
    tokens = CTVolumeEmbedder(backbone=module, pool=None, device="cpu").fit_transform(X)["ct"]
    assert [t.shape for t in tokens] == [(1, 6)] * 3  # one token per volume
    kept = CTVolumeEmbedder(backbone=module, slices=(1, 3), device="cpu").fit_transform(X)
    with torch.inference_mode():
        first = module(torch.from_numpy(volumes[0][1:3])[None]).numpy()
    assert_float32_close(kept.to_numpy()[:1], first)


def test_the_cache_key_of_a_whole_volume_backbone_includes_its_geometry(tmp_path):
    X = frame([np.random.default_rng(0).normal(0, 300, (4, 8, 8)).astype(np.float32)])
    fingerprints = {
        CTVolumeEmbedder(backbone=whole_volume_encoder(**params), cache_dir=tmp_path, device="cpu").fit(X).fingerprint_
        for params in [{}, {"volume_size": (4, 8, 4)}, {"window": "minmax"}]
    }
    assert len(fingerprints) == 3
    embedder = CTVolumeEmbedder(backbone=whole_volume_encoder(), cache_dir=tmp_path, device="cpu").fit(X)
    first = embedder.transform(X)
    assert len(list(tmp_path.glob("*.emb"))) == 1
    np.testing.assert_array_equal(embedder.transform(X), first)


# --------------------------------------------------------------------------- the descriptor


def test_descriptor_matches_its_reference_transcription():
    rng = np.random.default_rng(0)
    volume = np.concatenate(
        [phantom(0.6, rng, n_slices=2, size=20), rng.normal(200, 900, (1, 20, 20)).astype(np.float32)]
    )
    volume[2, :3, :3] = 3500  # beyond the clipped HU range
    volume[0, 0, 0] = 400  # exactly on a band edge
    tokens = (
        CTVolumeEmbedder(window="mace", pool=None, device="cpu").fit_transform(frame([volume]))["ct"].iloc[0]
    )
    expected = np.stack([reference_hounsfield_features(s) for s in volume])
    np.testing.assert_allclose(tokens[:, :18], expected, rtol=1e-5, atol=1e-6)
    # The texture block is the image descriptor of the windowed slice (its own reference
    # test is in test_image.py).
    windowed = torch.from_numpy(apply_window(volume, -125.0, 225.0)[:, None])
    np.testing.assert_allclose(tokens[:, 18:], ImageDescriptor()(windowed).numpy(), rtol=1e-6, atol=1e-7)


def test_descriptor_empty_band_mean_is_the_band_midpoint():
    tokens = CTVolumeEmbedder(pool=None).fit_transform(frame([np.full((1, 4, 4), 40.0)]))["ct"].iloc[0][0]
    fractions, means = tokens[:8], tokens[8:16] * 1000
    np.testing.assert_array_equal(fractions, [0, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(means, [-962, -700, -325, -90, -5, 40, 240, 1735.5], rtol=1e-6)


def test_descriptor_is_deterministic_and_separates_tissue_composition():
    rng = np.random.default_rng(0)
    fat = np.r_[rng.uniform(0.55, 0.85, 10), rng.uniform(0.1, 0.4, 10)]
    X = frame([phantom(f, rng) for f in fat])
    y = (fat > 0.5).astype(int)
    first = CTVolumeEmbedder().fit_transform(X)
    second = CTVolumeEmbedder().fit_transform(X)
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())
    fat_band = first["ct__3"].to_numpy()
    assert np.corrcoef(fat_band, fat)[0, 1] > 0.95
    scores = cross_val_score(
        Pipeline([("ct", CTVolumeEmbedder()), ("clf", LogisticRegression(max_iter=2000))]), X, y, cv=4
    )
    assert scores.mean() >= 0.9
    # Control: a constant descriptor would not separate them.
    assert first.std().max() > 0


def test_descriptor_window_changes_the_texture_block_only():
    X = frame([phantom(0.5, np.random.default_rng(0))])
    pe, mace = (CTVolumeEmbedder(window=w).fit_transform(X).to_numpy()[0] for w in ("pe", "mace"))
    np.testing.assert_array_equal(pe[:18], mace[:18])
    assert not np.allclose(pe[18:], mace[18:])


# --------------------------------------------------------------------------- scikit-learn behaviour


def test_columns_passthrough_and_feature_names():
    X = pd.DataFrame({"age": [50.0, 60.0], "ct": [np.zeros((2, 4, 4)), np.ones((1, 4, 4))], "sex": [0, 1]})
    enc = CTVolumeEmbedder(output="img").fit(X)
    out = enc.transform(X)
    assert list(out.columns[:2]) == ["age", "sex"] and out.columns[2] == "img__0"
    assert list(enc.get_feature_names_out()) == list(out.columns)
    tok = CTVolumeEmbedder(pool=None).fit(X)
    assert list(tok.get_feature_names_out()) == ["age", "sex", "ct"]


def test_clone_and_params_round_trip():
    net = ChannelMeanLinear()
    enc = CTVolumeEmbedder(
        window=(-100, 100), slices=0.5, backbone=net, image_size=(8, 8), pool=None, batch_size=3
    )
    params = enc.get_params()
    cloned = clone(enc)
    assert cloned.get_params()["window"] == (-100, 100) and cloned.get_params()["slices"] == 0.5
    assert set(cloned.get_params()) == set(params)
    assert CTVolumeEmbedder(**params).get_params()["batch_size"] == 3
    assert not hasattr(cloned, "backbone_")


def test_fitted_embedder_pickles():
    X = frame([np.random.default_rng(0).normal(0, 300, (3, 6, 6))])
    enc = CTVolumeEmbedder(backbone=ChannelMeanLinear()).fit(X)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(X).to_numpy(), enc.transform(X).to_numpy())


def test_pipeline_and_grid_search():
    rng = np.random.default_rng(2)
    fat = np.r_[rng.uniform(0.6, 0.9, 6), rng.uniform(0.05, 0.3, 6)]
    X = frame([phantom(f, rng, n_slices=2, size=16) for f in fat])
    y = (fat > 0.5).astype(int)
    pipe = Pipeline([("ct", CTVolumeEmbedder()), ("clf", LogisticRegression(max_iter=2000))])
    search = GridSearchCV(pipe, {"ct__window": ["pe", "mace"], "ct__slices": [None, 0.5]}, cv=2).fit(X, y)
    assert search.best_params_["ct__window"] in ("pe", "mace")
    assert search.predict(X).shape == (12,)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"pool": "max"}, "pool"),
        ({"image_size": (0, 4)}, "image_size"),
        ({"mean": (0.5,), "std": None}, "mean and std"),
        ({"std": (1.0, 0.0, 1.0)}, "std="),
        ({"mean": (1.0, 2.0)}, "mean="),
        ({"device": "quantum"}, "device='quantum'"),
        ({"slices": 1.5}, "slices"),
        ({"slices": "lungs"}, "slices"),
    ],
)
def test_invalid_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        CTVolumeEmbedder(**params).fit(frame([np.zeros((2, 4, 4))]))


def test_frame_and_column_are_checked():
    with pytest.raises(ValueError, match="needs a pandas DataFrame"):
        CTVolumeEmbedder().fit(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="column 'ct' is not in X"):
        CTVolumeEmbedder().fit(pd.DataFrame({"img": [np.zeros((2, 4, 4))]}))


@pytest.mark.float32_batch
def test_dicom_series_through_the_embedder(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        write_series(tmp_path / name, n=3, seed=seed)
    shutil.copytree(tmp_path / "a", tmp_path / "a_copy")
    X = frame([str(tmp_path / "a"), tmp_path / "b", None, str(tmp_path / "a_copy")])
    out = CTVolumeEmbedder(pool=None).fit_transform(X)["ct"]
    assert out.iloc[0].shape == (3, 77) and out.iloc[2] is None
    # Same pixels at other places in the batch: equal up to float32 rounding.
    np.testing.assert_allclose(out.iloc[0], out.iloc[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.iloc[0], out.iloc[1], rtol=1e-5, atol=1e-6)  # other file order on disk


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(0)
    X = frame([rng.normal(-200, 400, (5, 32, 32)) for _ in range(3)])
    for params, tolerance in (({"backbone": ChannelMeanLinear()}, 3e-2), ({}, 1e-4)):
        gpu = CTVolumeEmbedder(device="cuda", **params).fit(X)
        assert gpu.device_.type == "cuda" and (gpu.amp_dtype_ is None) == ("backbone" not in params)
        cpu = CTVolumeEmbedder(device="cpu", **params).fit(X)
        np.testing.assert_allclose(gpu.transform(X).to_numpy(), cpu.transform(X).to_numpy(), atol=tolerance)
