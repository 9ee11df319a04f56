"""ImageEmbedder: reading PNG/JPEG/DICOM/arrays, MedFuse preprocessing, the image descriptor."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from torch import nn

from skfusion._images import center_crop, resize
from skfusion.encoders._descriptors import ImageDescriptor
from skfusion._volumes import read_image
from skfusion.encoders.image import ImageEmbedder

Image = pytest.importorskip("PIL.Image")
pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402


class ChannelMeans(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class ShapeReporter(nn.Module):
    def forward(self, x):
        b, c, h, w = x.shape
        return torch.tensor([h, w, c], dtype=torch.float32).expand(b, -1)


def frame(cells):
    return pd.DataFrame({"img": pd.Series(cells, dtype=object)})


def reference_intensity_features(u32):
    """Slow float64 transcription of the 59 intensity and texture features of one image."""
    u = u32.astype(np.float64)
    flat = u.ravel()
    n = flat.size
    counts = np.bincount(np.minimum((flat * 256).astype(int), 255), minlength=256)
    coarse = counts.reshape(16, 16).sum(1) / n
    cdf = np.cumsum(counts)
    percentiles = [(np.argmax(cdf >= q * n) + 0.5) / 256 for q in (0.05, 0.25, 0.5, 0.75, 0.95)]
    p = np.pad(u, 1, mode="edge")
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) / 2
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) / 2
    g = np.sqrt(gx**2 + gy**2)
    h, w = u.shape
    rows = [(i * h // 4, -(-(i + 1) * h // 4)) for i in range(4)]
    cols = [(j * w // 4, -(-(j + 1) * w // 4)) for j in range(4)]
    grid = [img[r0:r1, c0:c1].mean() for img in (u, g) for r0, r1 in rows for c0, c1 in cols]
    return np.array(
        [
            *coarse,
            flat.mean(),
            flat.std(),
            *percentiles,
            g.mean(),
            g.std(),
            (g > 0.025).mean(),
            (g > 0.1).mean(),
            *grid,
        ]
    )


# --------------------------------------------------------------------------- reading


def test_png_and_jpeg_are_scaled_to_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_image(tmp_path / "g.png", "c"), gray[None] / 255.0, rtol=1e-6)
    deep = rng.integers(0, 65536, (12, 10), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_allclose(read_image(tmp_path / "d.png", "c"), deep[None] / 65535.0, rtol=1e-6)
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100)
    image = read_image(str(tmp_path / "c.jpg"), "c")
    assert image.shape == (3, 16, 16)
    np.testing.assert_allclose(image.mean((1, 2)), [200 / 255, 0, 0], atol=0.02)


def test_float_and_32_bit_images_keep_their_values(tmp_path):
    # Pillow's "F" and "I" modes: once cast to 8 bits, [0, 1] floats became 0 or 1/255.
    unit = np.random.default_rng(0).random((12, 10)).astype(np.float32)
    Image.fromarray(unit, mode="F").save(tmp_path / "f.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff", "c"), unit[None])
    deep = np.random.default_rng(1).integers(0, 65536, (12, 10)).astype(np.int32)
    Image.fromarray(deep, mode="I").save(tmp_path / "i.tiff")
    np.testing.assert_allclose(read_image(tmp_path / "i.tiff", "c"), deep[None] / 65535.0, rtol=1e-6)


def test_grayscale_dicom_goes_through_voi_and_min_max():
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    windowed = np.clip((ds.pixel_array - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    expected = (windowed - windowed.min()) / (windowed.max() - windowed.min())
    np.testing.assert_allclose(read_image(path, "c")[0], expected, atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inverted.dcm")
    np.testing.assert_allclose(
        read_image(tmp_path / "inverted.dcm", "c"),
        1 - read_image(get_testdata_file("MR_small.dcm"), "c"),
        atol=1e-6,
    )


def test_rgb_dicom():
    path = get_testdata_file("SC_rgb.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data's SC_rgb.dcm is not installed")
    image = read_image(path, "c")
    np.testing.assert_allclose(
        image, np.moveaxis(pydicom.dcmread(path).pixel_array, -1, 0) / 255.0, rtol=1e-6
    )


def test_arrays():
    np.testing.assert_array_equal(read_image(np.full((3, 4), 255, np.uint8), "c"), np.ones((1, 3, 4)))
    hwc = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(read_image(hwc, "c"), hwc.transpose(2, 0, 1))


@pytest.mark.parametrize(
    "cell, message",
    [
        (np.full((4, 4), 1.5), "finite values in \\[0, 1\\]"),
        (np.full((4, 4), -3, np.int16), "finite values in \\[0, 1\\]"),
        (np.full((4, 4), "a"), "integer or float dtype"),
        (np.zeros((4, 4, 2)), "must be \\(H, W\\) or \\(H, W, C\\)"),
        (np.zeros((0, 4)), "empty"),
        (3.5 + 2j, "expected an image path or array"),
    ],
)
def test_bad_array_cells_name_the_cell(cell, message):
    X = frame([np.zeros((4, 4)), cell])
    with pytest.raises(ValueError, match=f"column 'img', non-missing cell 1.*{message}"):
        ImageEmbedder().fit(X).transform(X)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt.*not a readable image"):
        read_image(tmp_path / "notes.txt", "c")
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 200)
    with pytest.raises(ValueError, match="fake.dcm.*not a readable DICOM"):
        read_image(tmp_path / "fake.dcm", "c")
    with pytest.raises(ValueError, match="gone.png.*not a file"):
        read_image(tmp_path / "gone.png", "c")
    multi = get_testdata_file("emri_small.dcm", download=False)
    if multi is not None:
        with pytest.raises(ValueError, match="emri_small.dcm.*several frames"):
            read_image(multi, "c")


# --------------------------------------------------------------------------- preprocessing


def test_medfuse_preprocessing_by_default():
    X = frame([np.zeros((300, 260)), np.zeros((200, 400, 3), np.uint8)])
    out = ImageEmbedder(backbone=ShapeReporter()).fit_transform(X)
    np.testing.assert_array_equal(out.to_numpy(), [[224, 224, 3]] * 2)
    uncropped = ImageEmbedder(backbone=ShapeReporter(), image_size=None).fit_transform(X)
    np.testing.assert_array_equal(uncropped.to_numpy(), [[295, 256, 3], [256, 512, 3]])
    square = ImageEmbedder(backbone=ShapeReporter(), resize=(48, 40), image_size=None).fit_transform(X)
    np.testing.assert_array_equal(square.to_numpy(), [[48, 40, 3]] * 2)
    numpy_ints = ImageEmbedder(backbone=ShapeReporter(), resize=np.int64(16), image_size=np.int64(12))
    np.testing.assert_array_equal(numpy_ints.fit_transform(X).to_numpy(), [[12, 12, 3]] * 2)


def test_resize_matches_pillow_bilinear():
    image = np.random.default_rng(0).random((37, 53)).astype(np.float32)
    ours = resize(torch.from_numpy(image)[None, None], 16)[0, 0].numpy()
    pil = np.asarray(Image.fromarray(image, mode="F").resize((22, 16), Image.BILINEAR))
    assert ours.shape == (16, 22)
    np.testing.assert_allclose(ours, pil, atol=1e-5)


def test_center_crop_offsets_follow_torchvision():
    x = torch.arange(7 * 9, dtype=torch.float32).view(1, 1, 7, 9)
    np.testing.assert_array_equal(center_crop(x, 3)[0, 0].numpy(), x[0, 0, 2:5, 3:6].numpy())
    np.testing.assert_array_equal(center_crop(x, (2, 4))[0, 0].numpy(), x[0, 0, 2:4, 2:6].numpy())


def test_crop_larger_than_the_resized_image_is_refused():
    with pytest.raises(ValueError, match="image_size=300 is larger"):
        ImageEmbedder(backbone=ChannelMeans(), image_size=300).fit(frame([np.zeros((20, 20))]))


def test_normalisation_matches_a_hand_transcription():
    image = np.random.default_rng(1).random((6, 6)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out = ImageEmbedder(backbone=ChannelMeans(), resize=None, image_size=4).fit_transform(frame([image]))
    expected = (image[1:5, 1:5].astype(np.float64).mean() - mean) / std
    np.testing.assert_allclose(out.to_numpy()[0], expected, rtol=1e-6)
    raw = ImageEmbedder(
        backbone=ChannelMeans(), resize=None, image_size=None, mean=None, std=None
    ).fit_transform(frame([image]))
    np.testing.assert_allclose(raw.to_numpy()[0], [image.mean()] * 3, rtol=1e-6)


def test_images_of_different_sizes_without_crop_are_batched_by_shape():
    X = frame([np.zeros((8, 8)), np.zeros((6, 10)), np.zeros((8, 8))])
    out = ImageEmbedder(backbone=ShapeReporter(), resize=None, image_size=None, batch_size=8).fit_transform(X)
    np.testing.assert_array_equal(out.to_numpy(), [[8, 8, 3], [6, 10, 3], [8, 8, 3]])


# --------------------------------------------------------------------------- the descriptor


def test_image_descriptor_matches_its_reference_transcription():
    rng = np.random.default_rng(0)
    images = [rng.random((10, 13)).astype(np.float32), np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)]
    for image in images:
        ours = ImageDescriptor()(torch.from_numpy(image)[None, None])[0].numpy()
        np.testing.assert_allclose(ours, reference_intensity_features(image), rtol=1e-5, atol=1e-6)


def test_ct_descriptor_texture_block_is_the_image_descriptor_of_the_windowed_slice():
    from skfusion.encoders._descriptors import CTSliceDescriptor

    hu = torch.from_numpy(np.random.default_rng(0).normal(0, 300, (2, 1, 9, 11)).astype(np.float32))
    windowed = ((hu.clamp(-125, 225) + 125) / 350).numpy()
    ct = CTSliceDescriptor((-125, 225))(hu).numpy()
    for k in range(2):
        np.testing.assert_allclose(
            ct[k, 18:], reference_intensity_features(windowed[k, 0]), rtol=1e-5, atol=1e-6
        )


def test_colour_is_averaged_to_gray():
    rgb = np.random.default_rng(0).random((3, 12, 12)).astype(np.float32)
    ours = ImageDescriptor()(torch.from_numpy(rgb)[None])[0].numpy()
    np.testing.assert_allclose(ours, reference_intensity_features(rgb.mean(0)), rtol=1e-5, atol=1e-6)


def textured(rough, rng, size=48):
    """A smooth gradient image, with fine noise when ``rough``."""
    base = np.linspace(0.2, 0.8, size)[None, :] * np.ones((size, 1))
    noise = rng.normal(0, 0.15 if rough else 0.01, (size, size))
    return np.clip(base + noise, 0, 1).astype(np.float32)


def test_image_descriptor_is_deterministic_and_separates_textures():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(8, int), np.zeros(8, int)]
    X = frame([textured(bool(r), rng) for r in y])
    first = ImageEmbedder(resize=None, image_size=None).fit_transform(X)
    np.testing.assert_array_equal(
        first.to_numpy(), ImageEmbedder(resize=None, image_size=None).fit_transform(X).to_numpy()
    )
    # Mean gradient magnitude (feature 23) is what separates them.
    assert first["img__23"][y == 1].min() > first["img__23"][y == 0].max()
    pipe = Pipeline(
        [("img", ImageEmbedder(resize=None, image_size=None)), ("clf", LogisticRegression(max_iter=2000))]
    )
    assert cross_val_score(pipe, X, y, cv=4).mean() >= 0.9


# --------------------------------------------------------------------------- scikit-learn behaviour


def test_missing_cells_give_nan_rows():
    out = ImageEmbedder().fit_transform(frame([np.zeros((8, 8)), None, np.nan]))
    assert out.shape == (3, 59) and out.iloc[0].notna().all() and out.iloc[1:].isna().all().all()


def test_clone_params_pipeline_and_grid_search():
    enc = ImageEmbedder(backbone=ChannelMeans(), resize=(20, 20), image_size=16, batch_size=5)
    cloned = clone(enc)
    assert cloned.get_params()["resize"] == (20, 20) and cloned.get_params()["batch_size"] == 5
    assert cloned.get_params()["backbone"] is not enc.get_params()["backbone"]
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(6, int), np.zeros(6, int)]
    X = frame([textured(bool(r), rng, size=24) for r in y])
    pipe = Pipeline([("img", ImageEmbedder(image_size=None)), ("clf", LogisticRegression(max_iter=2000))])
    search = GridSearchCV(pipe, {"img__resize": [None, 16]}, cv=2).fit(X, y)
    assert search.best_params_["img__resize"] in (None, 16)


@pytest.mark.parametrize(
    "params, message",
    [({"resize": (0, 3)}, "resize"), ({"image_size": -1}, "image_size"), ({"resize": "big"}, "resize")],
)
def test_invalid_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        ImageEmbedder(**params).fit(frame([np.zeros((8, 8))]))


def test_dicom_png_and_array_cells_together(tmp_path):
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "x.png")
    path = get_testdata_file("MR_small.dcm")
    X = pd.DataFrame({"img": [path, str(tmp_path / "x.png"), np.zeros((30, 30)), None], "age": [1, 2, 3, 4]})
    out = ImageEmbedder(output="cxr").fit_transform(X)
    assert list(out.columns[:2]) == ["age", "cxr__0"] and out.shape == (4, 60)
    # Same pixels at two places in one batch: equal up to float32 rounding.
    np.testing.assert_allclose(
        out.iloc[1, 1:].to_numpy(np.float64), out.iloc[2, 1:].to_numpy(np.float64), rtol=1e-5, atol=1e-6
    )
    assert out.iloc[0, 1:].notna().all() and out.iloc[3, 1:].isna().all()
