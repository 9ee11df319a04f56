"""CT volume columns (DICOM series folders, NIfTI files, (Z, H, W) arrays) trained inside the fusion estimators."""

import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from torch import nn

nib = pytest.importorskip("nibabel")
pytest.importorskip("monai")
pytest.importorskip("pydicom")

from test_ct import write_series  # noqa: E402

import skfusion._images as images  # noqa: E402
from skfusion import ConcatClassifier, ConcatSurvival, UnimodalSurvival  # noqa: E402
from skfusion._data import infer_layout, sized_images, to_blocks  # noqa: E402
from skfusion.datasets import make_imaging_ehr_cohort  # noqa: E402
from skfusion.modules.volume_input import VolumeGeometry, volume_encoder  # noqa: E402
from skfusion.modules.volumes import VolumeEncoder3d  # noqa: E402

# The NIfTI affine whose axes are already the reader's (L, P, S): a (z, y, x) array written
# transposed reads back as it was.
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SIZE = (8, 16, 16)
FAST = {"volume_size": SIZE, "window": (-1000.0, 200.0), "early_stopping": False, "device": "cpu", "random_state": 0}


def write_nifti(path, volume):
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.asarray(volume, np.float32).transpose(2, 1, 0)), LPS), str(path))
    return str(path)


def tiny_network():
    """A small 3-D network: one convolution, its maps averaged over a 2 x 4 x 4 grid (where the blob is), batch norm."""
    # The module is built outside fit, so random_state does not seed it: without a seed its
    # weights came from whatever the tests before it (in that pytest-xdist worker) left in
    # torch's generator, and about one initial state in eight of these 4 channels does not
    # learn the blob in 10 epochs (held-out C 0.47 for the survival model at seed 4).
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d((2, 4, 4)), nn.Flatten(), nn.BatchNorm1d(128)
    )


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """300 patients whose one planted biomarker (a blob's brightness) drives outcome_0, as NIfTI files."""
    X, outcomes = make_imaging_ehr_cohort(
        n_samples=300, volume_shape=(8, 32, 32), n_biomarkers=1, n_nuisance=0, signal=3.0, random_state=1
    )
    folder = tmp_path_factory.mktemp("nifti")
    paths = [write_nifti(folder / f"{i}.nii.gz", v) for i, v in enumerate(X["ct"])]
    return pd.DataFrame({"ct": paths}), X[["ct"]], outcomes["outcome_0"]


def test_volume_columns_are_inferred(tmp_path):
    volume = np.random.default_rng(0).normal(0, 100, (6, 12, 10)).astype(np.float32)
    nifti = write_nifti(tmp_path / "a.nii.gz", volume)
    dicom = tmp_path / "series"
    expected = write_series(dicom)
    X = pd.DataFrame({"ct": [nifti, None, str(dicom)]})
    (spec,) = infer_layout(X)
    assert (spec.kind, spec.files, spec.volume) == ("image", True, True)
    (spec,) = sized_images((spec,), 224, SIZE, "pe")
    assert spec.shape == SIZE and spec.window == "pe"
    block = to_blocks(X, (spec,))["ct"]
    np.testing.assert_array_equal(block["present"].numpy(), [True, False, True])
    x = block["files"].read(torch.arange(3))
    assert x.shape == (3, *SIZE) and not x[1].any()
    resampled = images.resize_volume(torch.from_numpy(expected)[None], SIZE)[0]
    np.testing.assert_allclose(x[2].numpy(), resampled.numpy(), rtol=1e-5, atol=1e-3)  # HU kept
    arrays = pd.DataFrame({"ct": pd.Series([volume, None, volume], dtype=object)})
    (spec,) = infer_layout(arrays)
    assert (spec.files, spec.volume, spec.shape) == (False, True, volume.shape)


def test_geometry_resamples_and_windows():
    x = torch.tensor([-1000.0, 0.0, 1000.0]).repeat(2, 4, 4, 1)  # (2, 4, 4, 3)
    out = VolumeGeometry((-500.0, 500.0), (4, 4, 3))(x)
    assert out.shape == (2, 1, 4, 4, 3)
    np.testing.assert_allclose(out[0, 0, 0, 0].numpy(), [0.0, 0.5, 1.0])
    out = VolumeGeometry("minmax", (2, 2, 2))(x * torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
    assert out.shape == (2, 1, 2, 2, 2) and float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("network", ["resnet10-3d", "slices"])
def test_named_encoders_skip_absent_rows(network):
    spec = infer_layout(pd.DataFrame({"ct": pd.Series([np.zeros((8, 20, 20), np.float32)] * 2, dtype=object)}))[0]
    encoder = volume_encoder(spec, network, (32, 32, 32), "minmax")
    assert isinstance(encoder, VolumeEncoder3d)
    out = encoder.eval()({"x": torch.randn(3, 8, 20, 20) * 300, "present": torch.tensor([True, False, True])})
    assert out.shape == (3, encoder.out_dim) and not out[1].any() and out[0].abs().sum() > 0


def test_concat_survival_learns_the_volume_biomarker_from_nifti(cohort):
    # Held-out C of this setting over cohort seeds 1-3: 0.83 to 0.89; 0.7 is far above
    # chance for 100 test rows (a random score's C has a standard deviation of about 0.04).
    # No augmentation: the blob lies on one side, which a left-right flip moves, and the
    # network's 2 x 4 x 4 grid is not symmetric.
    X, _, y = cohort
    model = ConcatSurvival(image_encoder=tiny_network(), lr=1e-2, max_epochs=10, batch_size=32, augment=False, **FAST)
    model.fit(X.iloc[:200], y[:200])
    assert model.score(X.iloc[200:], y[200:]) > 0.7
    first = model.predict(X.iloc[200:])
    np.testing.assert_array_equal(first, model.predict(X.iloc[200:]))  # no augmentation at prediction


def test_classifier_learns_the_volume_biomarker_from_nifti(cohort):
    # Whether the outcome happened within 3 years (among the rows followed that long or with the event).
    X, _, y = cohort
    known = y["event"] | (y["time"] > 1095)
    label = (y["event"] & (y["time"] <= 1095))[known].astype(int)
    X = X[known].reset_index(drop=True)
    n = len(X) * 2 // 3
    model = ConcatClassifier(image_encoder=tiny_network(), lr=1e-2, max_epochs=10, batch_size=32, augment=False, **FAST)
    model.fit(X.iloc[:n], label[:n])
    proba = model.predict_proba(X.iloc[n:])[:, 1]
    # Held-out AUC over cohort seeds 1-3: 0.82 to 0.93.
    assert roc_auc_score(label[n:], proba) > 0.7


def test_each_file_is_decoded_once_per_fit_and_the_cache_is_removed(cohort, monkeypatch):
    X, _, y = cohort
    decoded, read = [], images.read_ct_volume

    def counting_read(path, where):
        decoded.append(path)
        return read(path, where)

    monkeypatch.setattr(images, "read_ct_volume", counting_read)
    created = []
    make_folder = images.tempfile.TemporaryDirectory

    def recording_folder(*args, **kwargs):
        folder = make_folder(*args, **kwargs)
        created.append(folder.name)
        return folder

    monkeypatch.setattr(images.tempfile, "TemporaryDirectory", recording_folder)
    model = UnimodalSurvival(image_encoder=tiny_network(), max_epochs=3, batch_size=16, **FAST)
    model.fit(X.iloc[:40], y[:40])
    assert sorted(decoded) == sorted(X["ct"][:40])  # 3 epochs and the final outputs: one decode per file
    assert len(created) == 1 and not os.path.exists(created[0])
    decoded.clear()
    model.predict(X.iloc[:5])
    assert len(decoded) == 5  # prediction reads the files, without a cache


def test_augmentation_is_seeded_flips_and_shifts_with_the_window_fill():
    volume = torch.arange(4 * 10 * 10, dtype=torch.float32).view(4, 10, 10)
    first = images.augment_volume(volume, -1000.0, torch.Generator().manual_seed(3))
    again = images.augment_volume(volume, -1000.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again)
    kept = first[first != -1000.0]
    assert set(kept.tolist()) <= set(volume.flatten().tolist())
    shifted = [images.augment_volume(volume, -1000.0, torch.Generator().manual_seed(s)) for s in range(20)]
    assert any((v == -1000.0).any() for v in shifted) and any(not torch.equal(v, volume) for v in shifted)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda t, v: [write_nifti(t / "a.nii.gz", v), str(t / "img.png")],
         r"column 'ct', row 1: '.*img\.png' is a 2-D image, but the column holds a 3-D volume"),
        (lambda t, v: [str(t / "img.png"), write_nifti(t / "a.nii.gz", v)],
         r"column 'ct', row 1: '.*a\.nii\.gz' is a 3-D volume .*, but the column holds a 2-D image"),
        (lambda t, v: [str(t / "4d.nii.gz")],
         r"column 'ct', row 0: NIfTI file '.*4d\.nii\.gz' is 4-D with shape \(16, 16, 8, 2\)"),
    ],
    ids=["image-in-volume-column", "volume-in-image-column", "4-D"],
)
def test_bad_volume_cells_are_named(tmp_path, make, match):
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "img.png")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8, 2), np.float32), LPS), str(tmp_path / "4d.nii.gz"))
    cells = make(tmp_path, np.zeros(SIZE, np.float32))
    X = pd.DataFrame({"ct": cells * 2})
    with pytest.raises(ValueError, match=match):
        UnimodalSurvival(image_encoder=tiny_network(), max_epochs=1, **FAST).fit(X, _survival(len(X)))


def test_a_bad_file_names_its_row(cohort, tmp_path):
    X, _, y = cohort
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file at all" * 20)
    X = X.iloc[:8].copy()
    # The header is typed at fit from the first cells; a file that nibabel cannot read is named with its row.
    X.iloc[5, 0] = str(broken)
    with pytest.raises(ValueError, match=r"column 'ct', row 5: .*broken\.nii\.gz.* not a readable NIfTI"):
        UnimodalSurvival(image_encoder=tiny_network(), max_epochs=1, **FAST).fit(X, y[:8])


def test_too_small_a_volume_and_a_2d_network_are_refused(cohort):
    X, _, y = cohort
    with pytest.raises(ValueError, match=r"fails on volumes of volume_size=\(8, 16, 16\)"):
        UnimodalSurvival(image_encoder="densenet121-3d", max_epochs=1, **FAST).fit(X.iloc[:8], y[:8])
    with pytest.raises(ValueError, match=r"column 'ct' holds 3-D CT volumes, but image_encoder='resnet34' is a 2-D"):
        UnimodalSurvival(image_encoder="resnet34", max_epochs=1, **FAST).fit(X.iloc[:8], y[:8])
    with pytest.raises(ValueError, match="volume_size"):
        UnimodalSurvival(volume_size=(8, 16), max_epochs=1).fit(X.iloc[:8], y[:8])


def test_array_volumes_with_a_named_network_are_resampled(cohort):
    _, arrays, y = cohort
    model = UnimodalSurvival(image_encoder="resnet10-3d", max_epochs=1, batch_size=8, **{**FAST, "volume_size": (16,) * 3})
    model.fit(arrays.iloc[:16], y[:16])
    assert model.predict(arrays.iloc[:4]).shape == (4,)


def test_new_parameters_clone_and_round_trip():
    model = ConcatSurvival(volume_size=(32, 64, 64), window="mace", image_encoder="swinunetr")
    params = clone(model).get_params()
    assert (params["volume_size"], params["window"], params["image_encoder"]) == ((32, 64, 64), "mace", "swinunetr")
    assert ConcatSurvival().get_params()["image_encoder"] == "auto"


def _survival(n):
    from sksurv.util import Surv

    return Surv.from_arrays(np.arange(n) % 2 == 0, np.arange(1.0, n + 1))
