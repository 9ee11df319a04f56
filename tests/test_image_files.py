"""Image columns of file paths: read batch by batch while training, MedFuse's preprocessing, bad files."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skfusion import ConcatClassifier, ConcatSurvival, MedFuseClassifier
from skfusion._engine import FusionNet
from skfusion._images import ImageFiles, affine, preprocess
from skfusion._images import IMAGENET_MEAN, IMAGENET_STD, center_crop, resize, to_backbone_input
from skfusion._volumes import read_image

N_ROWS = 48


def tiny_cnn():
    torch.manual_seed(0)  # the same starting weights in every model of a test
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, 2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )


@pytest.fixture(scope="module")
def image_frame(tmp_path_factory):
    """PNG files whose brightness carries the label, next to a 3-feature EHR block."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], N_ROWS // 2)
    paths = []
    for row, label in enumerate(y):
        pixels = (rng.random((40 + row % 3, 44)) * 100 + 120 * label).astype(np.uint8)
        path = folder / f"{row}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    X = pd.DataFrame({"img": paths, **{f"ehr__{j}": rng.normal(size=N_ROWS) for j in range(3)}})
    return X, y


def small(estimator, **params):
    settings = {"image_size": 32, "max_epochs": 2, "early_stopping": False, "batch_size": 16, "random_state": 0, **params}
    return estimator(image_encoder=tiny_cnn(), **settings)


@pytest.fixture
def read_calls(monkeypatch):
    """The rows of every ImageFiles.read call, in order."""
    calls = []
    original = ImageFiles.read

    def spy(self, rows, generator=None):
        calls.append(rows.tolist())
        return original(self, rows, generator)

    monkeypatch.setattr(ImageFiles, "read", spy)
    return calls


def test_paths_train_batch_by_batch(image_frame, read_calls):
    X, y = image_frame
    model = small(ConcatClassifier).fit(X, y)
    assert model.layout_[0].files and model.layout_[0].shape == (3, 32, 32)
    # Never more than a batch of images in memory, and every row read in every epoch.
    assert max(len(rows) for rows in read_calls) <= 16
    assert sorted(sum(read_calls[: len(read_calls) // 2], [])) == list(range(N_ROWS))
    assert model.predict_proba(X).shape == (N_ROWS, 2)


def test_worker_processes_give_the_same_model(image_frame):
    X, y = image_frame
    in_process = small(ConcatClassifier).fit(X, y).predict_proba(X)
    with_workers = small(ConcatClassifier, num_workers=2).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(with_workers, in_process, atol=1e-5)


def test_every_epoch_is_shuffled_and_augmented_anew(image_frame, read_calls):
    X, y = image_frame
    small(ConcatClassifier, max_epochs=2, augment=False).fit(X, y)
    per_epoch = len(read_calls) // 2
    assert read_calls[:per_epoch] != read_calls[per_epoch:]


def test_missing_images_in_medfuse(image_frame):
    X, y = image_frame
    X = X.copy()
    X.loc[[1, 6, 9], "img"] = None
    # MedFuse's own widths: "auto" gives 9 units to these 48 rows, which 2 epochs do not train.
    model = small(MedFuseClassifier, ehr="ehr", image="img", lstm_dim=256, fusion_dim=512).fit(X, y)
    assert model.score(X, y) > 0.8  # the brightness of the images gives the label: 1.0 measured
    with pytest.raises(ValueError, match=r"modality 'img' is missing .* rows \[1, 6, 9\]"):
        small(ConcatClassifier).fit(X, y)


def test_survival_model_reads_paths(image_frame):
    X, _ = image_frame
    from sksurv.util import Surv

    rng = np.random.default_rng(1)
    label = np.tile([0, 1], N_ROWS // 2)  # the bright images, which have the higher hazard
    y = Surv.from_arrays(rng.random(N_ROWS) < 0.7, rng.exponential(np.exp(-2.0 * label)) + 0.1)
    model = small(ConcatSurvival, max_epochs=10, lr=0.01).fit(X, y)
    assert model.score(X, y) > 0.65  # 0.73 measured, near the best a binary signal allows


def test_real_radiograph_tiff_nifti_and_jpeg_in_one_column(tmp_path):
    pytest.importorskip("pydicom")
    nib = pytest.importorskip("nibabel")
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(2)
    tiff = tmp_path / "a.tif"
    Image.fromarray((rng.random((50, 60)) * 65535).astype(np.uint16)).save(tiff)
    jpeg = tmp_path / "b.jpg"
    Image.fromarray((rng.random((50, 60, 3)) * 255).astype(np.uint8)).save(jpeg)
    nifti = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((60, 50)).astype(np.float32), np.eye(4)), nifti)
    files = [get_testdata_file("RG1_UNCI.dcm"), get_testdata_file("JPEG-LL.dcm"), tiff, jpeg, nifti]
    X = pd.DataFrame({"img": files * 4, "ehr__0": rng.normal(size=20)})
    y = np.tile([0, 1], 10)
    # Every epoch trained (no labels to learn here: a chosen epoch 0 would be the linear start alone).
    model = small(ConcatClassifier, early_stopping=False).fit(X, y)
    # With the EHR feature held fixed, each of the five files is seen as its own image: a
    # format read as a blank (or as another file) would predict as another one does.
    proba = model.predict_proba(X.iloc[:5].assign(ehr__0=0.0))[:, 1]
    assert len(np.unique(proba.round(4))) == 5, proba  # 6e-4 apart at the closest, measured


def test_prediction_preprocessing_is_image_embedders():
    rng = np.random.default_rng(3)
    image = rng.random((1, 300, 260)).astype(np.float32)
    expected = to_backbone_input(center_crop(resize(torch.from_numpy(image)[None], 256), 224), IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(preprocess(image, 224), expected[0], atol=1e-6)


def test_training_augmentation_is_seeded_and_random():
    image = np.random.default_rng(4).random((3, 70, 80)).astype(np.float32)

    def draw(seed):
        return preprocess(image, 56, torch.Generator().manual_seed(seed))

    assert draw(0).shape == (3, 56, 56)
    torch.testing.assert_close(draw(0), draw(0))
    assert not torch.allclose(draw(0), draw(1))
    assert not torch.allclose(draw(0), preprocess(image, 56))


def test_affine_reference():
    x = torch.arange(24.0).view(1, 1, 4, 6)
    torch.testing.assert_close(affine(x, 0, 1, (0, 0)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(affine(x, 180, 1, (0, 0)), x.flip(-1).flip(-2), atol=1e-4, rtol=0)
    square = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(affine(square, 90, 1, (0, 0)), torch.rot90(square, 1, (2, 3)), atol=1e-4, rtol=0)
    # A shift of a quarter of the width moves the content 1.5 of 6 columns right, zeros entering.
    shifted = affine(torch.ones(1, 1, 4, 8), 0, 1, (0.25, 0))
    torch.testing.assert_close(shifted[0, 0, :, :2], torch.zeros(4, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(shifted[0, 0, :, 2:], torch.ones(4, 6), atol=1e-6, rtol=0)


def test_array_column_keeps_working():
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"img": [rng.random((20, 20, 3)).astype(np.float32) for _ in range(20)], "ehr__0": rng.normal(size=20)})
    model = small(ConcatClassifier).fit(X, np.tile([0, 1], 10))
    assert model.layout_[0].shape == (3, 20, 20) and not model.layout_[0].files


# --------------------------------------------------------------------------- bad files


def with_cell(X, row, value):
    X = X.copy()
    X["img"] = X["img"].astype(object)
    X.at[row, "img"] = value
    return X


@pytest.mark.parametrize("num_workers", [0, 2])
def test_unreadable_file_is_named_at_the_first_batch_holding_it(image_frame, tmp_path, read_calls, num_workers):
    X, y = image_frame
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"'.*bad\.png' is not a readable image file") as error:
        small(ConcatClassifier, num_workers=num_workers).fit(with_cell(X, 5, str(bad)), y)
    assert "DataLoader" not in str(error.value) and "Traceback" not in str(error.value)
    if num_workers == 0:
        assert 5 in read_calls[-1] and not any(5 in rows for rows in read_calls[:-1])


def test_zero_size_file(image_frame, tmp_path):
    X, y = image_frame
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ValueError, match="empty.png' is not a readable image file"):
        small(ConcatClassifier).fit(with_cell(X, 0, empty), y)


def test_wrong_number_of_channels(image_frame, tmp_path):
    nib = pytest.importorskip("nibabel")
    X, y = image_frame
    path = tmp_path / "two.nii"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 2), np.float32), np.eye(4)), path)
    # Three sides above 1: a volume, refused in a column of 2-D images.
    with pytest.raises(ValueError, match=r"column 'img', row 3: .*two\.nii' is a 3-D volume .*but the column holds a 2-D image"):
        small(ConcatClassifier).fit(with_cell(X, 3, path), y)


def test_missing_file_is_named_before_training(image_frame, read_calls):
    X, y = image_frame
    with pytest.raises(ValueError, match=r"column 'img', row 7: image file '/no/such\.png' does not exist"):
        small(ConcatClassifier).fit(with_cell(X, 7, "/no/such.png"), y)
    assert read_calls == []


def test_missing_file_at_prediction(image_frame):
    X, y = image_frame
    model = small(ConcatClassifier, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="row 2: image file '/gone.png' does not exist"):
        model.predict(with_cell(X, 2, "/gone.png"))


def test_mixed_paths_and_other_cells(image_frame):
    X, y = image_frame
    with pytest.raises(ValueError, match=r"column 'img', row 4: expected an image file path .* got int"):
        small(ConcatClassifier).fit(with_cell(X, 4, 3), y)
    rng = np.random.default_rng(6)
    arrays = pd.DataFrame({"img": [rng.random((8, 8, 3)) for _ in range(N_ROWS)], "ehr__0": rng.normal(size=N_ROWS)})
    with pytest.raises(ValueError, match="row 2: holds a file path where the column's first image is an array"):
        small(ConcatClassifier).fit(with_cell(arrays, 2, X["img"][0]), y)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"image_size": 16}, "image_size"), ({"num_workers": -1}, "num_workers"), ({"augment": "yes"}, "augment")],
)
def test_bad_loader_parameters(image_frame, params, match):
    X, y = image_frame
    with pytest.raises(ValueError, match=match):
        small(ConcatClassifier, **params).fit(X, y)


def test_pretraining_reads_paths_with_the_estimators_settings(image_frame, read_calls):
    X, y = image_frame
    small(ConcatClassifier, pretrain_encoders=True).fit(X, y)
    assert read_calls and max(len(rows) for rows in read_calls) <= 16


def test_bfloat16_autocast_path(image_frame, monkeypatch):
    """The CUDA mixed-precision path, exercised on the CPU's bfloat16 autocast."""
    import skfusion._base as base

    X, y = image_frame
    monkeypatch.setattr(base, "training_precision", lambda device, layout: torch.bfloat16)
    model = small(ConcatClassifier, lr=0.01).fit(X, y)
    assert isinstance(model.net_, FusionNet) and model.net_.amp_dtype is torch.bfloat16
    proba = model.predict_proba(X)
    assert proba.dtype == np.float64
    # bfloat16 forward passes train the float32 model to 1e-3 (measured), where training moves
    # the probabilities across 0.24 to 0.83.
    monkeypatch.undo()
    np.testing.assert_allclose(proba, small(ConcatClassifier, lr=0.01).fit(X, y).predict_proba(X), atol=0.01)


def test_read_image_matches_the_file(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(pixels).save(tmp_path / "p.png")
    np.testing.assert_allclose(read_image(tmp_path / "p.png", "x")[0], pixels / 255.0, atol=1e-7)


def test_ssl_backbone_reads_paths(image_frame):
    from skfusion.ssl import ConVIRT

    X, _ = image_frame
    rng = np.random.default_rng(7)
    ehr = pd.Series([rng.normal(size=(4, 3)).astype(np.float32) for _ in range(N_ROWS)], dtype=object)
    X = X[["img"]].assign(ehr=ehr)
    X.loc[2, "img"] = None
    network = {"projection_dim": 4, "hidden_dim": 8, "lstm_dim": 8}
    model = ConVIRT(
        image="img", ehr="ehr", output="image", backbone=tiny_cnn(), image_size=32, max_epochs=2, batch_size=16,
        random_state=0, num_workers=2, **network,
    ).fit(X)
    assert model.image_spec_.shape == (3, 32, 32)
    Z = model.transform(X[["img"]])
    assert Z.shape == (N_ROWS, 4) and Z.iloc[2].isna().all() and np.isfinite(Z.drop(index=2)).all().all()


def test_compressed_dicom_without_its_plugin_names_file_and_plugin(monkeypatch):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder

    monkeypatch.setattr(JPEGLosslessSV1Decoder, "_available", {})
    monkeypatch.setattr(JPEGLosslessSV1Decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1")})
    with pytest.raises(ValueError, match=r"(?s)JPEG-LL\.dcm': its pixel data cannot be decoded .*pylibjpeg-libjpeg.*skfusion\[imaging\]"):
        read_image(get_testdata_file("JPEG-LL.dcm"), "x")
