"""The catalogue of bad (and unusual but legal) imaging inputs: CT volumes, DICOM series,
NIfTI files, 2-D images and the embedding cache.

Each ``@refused`` case builds one real input on disk (or in memory) and returns the call
that must fail; the test checks the error type and the words its message must contain
(the file, folder or parameter it names, and what is wrong). Each ``@works`` case is an
input that looks odd but is legal, and must give a finite embedding.
"""

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
Image = pytest.importorskip("PIL.Image")
import torch  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from test_ct import CT_SMALL, ChannelMeanLinear, write_series  # noqa: E402
from test_image_files import image_frame, small, with_cell  # noqa: E402, F401 (image_frame: a fixture)
from torch import nn  # noqa: E402

from skfusion import ConcatClassifier, MedFuseClassifier  # noqa: E402
from skfusion._images import check_image_files  # noqa: E402
from skfusion.encoders import heart_slices  # noqa: E402
from skfusion.encoders.ct import CTVolumeEmbedder  # noqa: E402
from skfusion.encoders.image import ImageEmbedder  # noqa: E402

REFUSED, WORKS = [], []


def refused(exception, pattern):
    """Register a case whose call must raise ``exception`` with a message matching ``pattern``."""

    def register(make):
        REFUSED.append(pytest.param(make, exception, pattern, id=make.__name__))
        return make

    return register


def works(make):
    """Register a legal input: ``make(tmp_path)`` returns the call that must give finite output."""
    WORKS.append(pytest.param(make, id=make.__name__))
    return make


def frame(cells, column="ct"):
    return pd.DataFrame({column: pd.Series(cells, dtype=object)})


def embed_ct(cell, **params):
    return lambda: CTVolumeEmbedder(**params).fit_transform(frame([cell]))


def embed_image(cell, **params):
    return lambda: ImageEmbedder(**params).fit_transform(frame([cell], column="img"))


def png_header(path, width, height):
    """A PNG that declares ``width`` x ``height`` grey pixels (no pixel data: Pillow checks the size at open)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def multi_page_tiff(path):
    pages = [Image.fromarray(np.full((40, 44), value, np.uint8)) for value in (10, 200)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def conv_net(channels):
    """A small CNN whose first convolution reads ``channels`` channels."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, 2), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _can_write(folder):
    try:
        fd, path = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(path)
    return True


def unwritable_folder(tmp_path):
    """An existing folder where this process cannot create a file.

    A folder without write permission refuses everyone but root; the suite may run as root,
    for whom sysfs and procfs still refuse new files.
    """
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys"), Path("/proc")):
        if candidate.is_dir() and not _can_write(candidate):
            return candidate
    pytest.skip("no folder on this machine refuses new files to this process")


def edited_series(folder, slice_index, **tags):
    """A 4-slice series in ``folder`` whose slice ``slice_index`` has ``tags`` set."""

    def edit(k, ds):
        if k == slice_index:
            for name, value in tags.items():
                setattr(ds, name, value)

    write_series(folder, n=4, edit=edit)
    return folder


# --------------------------------------------------------------------------- DICOM series


@refused(ValueError, r"two_series.*2 different SeriesInstanceUID values \(1\.2\.3\.1, 1\.2\.3\.2\).*own folder")
def dicom_folder_with_two_interleaved_series(tmp_path):
    # Positions interleave with a uniform gap, so the geometry checks alone would pass.
    def split(k, ds):
        ds.SeriesInstanceUID = f"1.2.3.{1 + k % 2}"

    write_series(tmp_path / "two_series", n=6, spacing=1.25, edit=split)
    return embed_ct(tmp_path / "two_series")


@refused(ValueError, r"two_patients.*2 different PatientID values \(e\.g\. in files slice_\d+\.dcm")
def dicom_folder_with_two_patients(tmp_path):
    def split(k, ds):
        ds.PatientID = "P-A" if k < 2 else "P-B"

    write_series(tmp_path / "two_patients", n=4, edit=split)
    return embed_ct(str(tmp_path / "two_patients"))


@refused(ValueError, r"some_uids.*2 different SeriesInstanceUID values \(.*\(missing\)\)")
def dicom_folder_where_some_slices_lack_the_series_uid(tmp_path):
    def split(k, ds):
        if k == 3:
            del ds.SeriesInstanceUID

    write_series(tmp_path / "some_uids", n=4, edit=split)
    return embed_ct(tmp_path / "some_uids")


@refused(ValueError, r"same_instance.*lack ImagePositionPatient.*InstanceNumber values repeat \(1 distinct for 4")
def dicom_slices_without_position_and_one_instance_number(tmp_path):
    def same(k, ds):
        del ds.ImagePositionPatient
        ds.InstanceNumber = 7

    write_series(tmp_path / "same_instance", n=4, edit=same)
    return embed_ct(tmp_path / "same_instance")


@refused(ValueError, r"dup_instance.*InstanceNumber values repeat \(3 distinct for 4")
def dicom_slices_without_position_and_a_repeated_instance_number(tmp_path):
    def repeat(k, ds):
        del ds.ImagePositionPatient
        ds.InstanceNumber = [1, 2, 2, 3][k]

    write_series(tmp_path / "dup_instance", n=4, edit=repeat)
    return embed_ct(tmp_path / "dup_instance")


@works
def dicom_series_without_patient_id(tmp_path):
    def anonymise(k, ds):
        del ds.PatientID

    write_series(tmp_path / "anonymous", n=3, edit=anonymise)
    return embed_ct(tmp_path / "anonymous")


@works
def two_series_each_in_its_own_folder(tmp_path):
    for uid in ("1.2.3.1", "1.2.3.2"):
        write_series(tmp_path / uid, n=3, edit=lambda k, ds, uid=uid: setattr(ds, "SeriesInstanceUID", uid))
    return lambda: CTVolumeEmbedder().fit_transform(frame([tmp_path / "1.2.3.1", tmp_path / "1.2.3.2"]))


# --------------------------------------------------------------------------- non-finite and empty pixels


@refused(ValueError, r"nan_slope/slice_\d+\.dcm'?: RescaleSlope is nan; it must be a finite number other than 0")
def dicom_slice_with_a_nan_rescale_slope(tmp_path):
    return embed_ct(edited_series(tmp_path / "nan_slope", 2, RescaleSlope="nan"))


@refused(ValueError, r"zero_slope/slice_\d+\.dcm'?: RescaleSlope is 0; it must be a finite number other than 0")
def dicom_slice_with_a_zero_rescale_slope(tmp_path):
    return embed_ct(edited_series(tmp_path / "zero_slope", 0, RescaleSlope=0))


@refused(ValueError, r"inf_intercept/slice_\d+\.dcm'?: RescaleIntercept is inf; it must be a finite number \(")
def dicom_slice_with_an_infinite_intercept(tmp_path):
    return embed_ct(edited_series(tmp_path / "inf_intercept", 1, RescaleIntercept="inf"))


@refused(ValueError, r"mr_nan\.dcm'?: RescaleSlope is nan")
def image_dicom_with_a_nan_rescale_slope(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = "nan", 0
    ds.save_as(tmp_path / "mr_nan.dcm")
    return embed_image(str(tmp_path / "mr_nan.dcm"))


@refused(ValueError, r"nan_voxels\.nii\.gz'?: the volume array holds NaN or infinite values")
def nifti_with_nan_voxels(tmp_path):
    data = np.zeros((6, 6, 3), np.float32)
    data[2, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan_voxels.nii.gz")
    return embed_ct(str(tmp_path / "nan_voxels.nii.gz"))


@refused(ValueError, r"no_slices\.nii'?: a volume array must be 3-D \(z, y, x\) and non-empty")
def nifti_with_no_slice(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 0), np.float32), np.eye(4)), tmp_path / "no_slices.nii")
    return embed_ct(tmp_path / "no_slices.nii")


@refused(ValueError, r"empty\.nii'? is not a readable NIfTI image")
def zero_byte_nifti(tmp_path):
    (tmp_path / "empty.nii").write_bytes(b"")
    return embed_ct(tmp_path / "empty.nii")


@refused(ValueError, r"with_empty/slice_999\.dcm'? is not a readable DICOM file")
def zero_byte_file_in_a_dicom_folder(tmp_path):
    write_series(tmp_path / "with_empty", n=3)
    (tmp_path / "with_empty" / "slice_999.dcm").write_bytes(b"")
    return embed_ct(tmp_path / "with_empty")


@refused(ValueError, r"cut\.dcm'?: its pixel data cannot be decoded")
def truncated_dicom_slice(tmp_path):
    blob = open(CT_SMALL, "rb").read()
    (tmp_path / "cut.dcm").write_bytes(blob[:-5000])
    return embed_ct(tmp_path / "cut.dcm")


@refused(ValueError, r"empty\.png'? is not a readable image file")
def zero_byte_png(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    return embed_image(tmp_path / "empty.png")


@refused(ValueError, r"cut\.png'? is not a readable image file")
def truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "x.png").read_bytes()[:200])
    return embed_image(tmp_path / "cut.png")


@refused(ValueError, r"hu\.tiff'? is a floating-point image whose values are not all finite and in \[0, 1\]")
def float_tiff_in_hounsfield_units(tmp_path):
    hu = np.random.default_rng(0).normal(0, 400, (16, 16)).astype(np.float32)
    Image.fromarray(hu, mode="F").save(tmp_path / "hu.tiff")
    return embed_image(tmp_path / "hu.tiff")


@refused(ValueError, r"nan\.tiff'? is a floating-point image whose values are not all finite")
def float_tiff_with_nan(tmp_path):
    image = np.full((16, 16), 0.5, np.float32)
    image[3, 3] = np.nan
    Image.fromarray(image, mode="F").save(tmp_path / "nan.tiff")
    return embed_image(tmp_path / "nan.tiff")


@refused(ValueError, r"wide\.tiff'? \(I mode\) holds values from 0 to 6\.3e\+06; integer images must lie in \[0, 65535\]")
def int32_tiff_beyond_16_bits(tmp_path):
    Image.fromarray((np.arange(64).reshape(8, 8) * 100000).astype(np.int32), mode="I").save(tmp_path / "wide.tiff")
    return embed_image(tmp_path / "wide.tiff")


@refused(ValueError, r"non-missing cell 0: the image array of shape \(3, 32, 32\) is channels-first .*np.moveaxis")
def channels_first_image_array(tmp_path):
    return embed_image(np.zeros((3, 32, 32), np.float32))


@refused(ValueError, r"non-missing cell 0: an image array must be \(H, W\) or \(H, W, C\) .*\(32, 32, 4\)")
def four_channel_image_array(tmp_path):
    return embed_image(np.zeros((32, 32, 4), np.float32))


@refused(ValueError, r"non-missing cell 0: image file '[^']*pages\.tiff' holds 2 frames \(TIFF\); an image cell is one 2-D image")
def multi_page_tiff_image(tmp_path):
    return embed_image(multi_page_tiff(tmp_path / "pages.tiff"))


@refused(
    ValueError,
    r"non-missing cell 0: image file '[^']*huge\.png' is too large to read safely \(Image size \(225000000 pixels\)"
    r".*downscale it first .* raise PIL\.Image\.MAX_IMAGE_PIXELS yourself",
)
def image_of_15000_by_15000_pixels(tmp_path):
    return embed_image(png_header(tmp_path / "huge.png", 15000, 15000))


@works
def float_tiff_in_unit_range(tmp_path):
    Image.fromarray(np.random.default_rng(0).random((16, 16)).astype(np.float32), mode="F").save(tmp_path / "u.tiff")
    return embed_image(tmp_path / "u.tiff")


@works
def rgba_png(tmp_path):
    Image.fromarray(np.full((16, 16, 4), 128, np.uint8), mode="RGBA").save(tmp_path / "rgba.png")
    return embed_image(tmp_path / "rgba.png")


@works
def single_dicom_slice_without_position(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.ImagePositionPatient
    ds.save_as(tmp_path / "one.dcm")
    return embed_ct(tmp_path / "one.dcm")


# --------------------------------------------------------------------------- backbones


class NaNAbove(nn.Module):
    """Finite embeddings, except NaN for inputs brighter than a threshold (one bad volume)."""

    def forward(self, x):
        means = x.mean((1, 2, 3))
        return torch.where(means[:, None] > 0.5, torch.nan, means[:, None]).expand(-1, 2)


@refused(ValueError, r"nan_weights\.pt'?: tensor 'linear\.weight' holds NaN or infinite values")
def weights_file_with_nan(tmp_path):
    state = ChannelMeanLinear().state_dict()
    state["linear.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan_weights.pt")
    return embed_ct(np.zeros((2, 4, 4)), backbone=ChannelMeanLinear(), weights=tmp_path / "nan_weights.pt")


@refused(ValueError, r"column 'ct', non-missing cell 0: the backbone returned NaN or infinite embeddings")
def backbone_with_infinite_parameters(tmp_path):
    net = ChannelMeanLinear()
    with torch.no_grad():
        net.linear.bias.fill_(float("inf"))
    return embed_ct(np.zeros((2, 4, 4)), backbone=net)


@refused(ValueError, r"column 'ct', non-missing cell 1: the backbone returned NaN or infinite embeddings")
def backbone_returning_nan_for_one_volume(tmp_path):
    cells = [np.full((2, 4, 4), -1000.0), np.full((3, 4, 4), 100.0)]
    return lambda: CTVolumeEmbedder(backbone=NaNAbove(), mean=None, std=None, batch_size=4).fit_transform(
        frame(cells)
    )


@refused(ValueError, r"backbone: its first convolution \('0'\) reads 1 channel\(s\), but ImageEmbedder gives it 3 \(column 'img'")
def one_channel_backbone_for_grey_images(tmp_path):
    return embed_image(np.zeros((32, 32)), backbone=conv_net(1), mean=None, std=None)


@refused(ValueError, r"backbone: its first convolution \('0'\) reads 1 channel\(s\), but CTVolumeEmbedder gives it 3 \(column 'ct'")
def one_channel_backbone_for_ct_slices(tmp_path):
    return embed_ct(np.zeros((2, 16, 16)), backbone=conv_net(1))


@refused(ValueError, r"backbone: its first convolution \('0'\) reads 4 channel\(s\), but ImageEmbedder gives it 3")
def four_channel_backbone_for_rgb_images(tmp_path):
    return embed_image(np.zeros((32, 32, 3)), backbone=conv_net(4))


@works
def grey_image_with_a_three_channel_backbone(tmp_path):
    return embed_image(np.random.default_rng(0).random((32, 32)), backbone=conv_net(3))


# --------------------------------------------------------------------------- slice selection


@refused(ValueError, r"heart_slices needs a non-empty \(z, y, x\) volume; got shape \(64, 64\)")
def heart_slices_of_a_2d_image(tmp_path):
    return lambda: heart_slices(np.zeros((64, 64)))


@refused(ValueError, r"heart_slices: the volume holds 1 NaN or infinite voxel\(s\), the first at \(z, y, x\) = \(2, 3, 4\)")
def heart_slices_of_a_volume_with_a_nan_voxel(tmp_path):
    volume = np.full((6, 16, 16), -1000.0)
    volume[2, 3, 4] = np.nan
    return lambda: heart_slices(volume)


@refused(ValueError, r"slices.*'lungs'")
def unknown_named_slice_selector(tmp_path):
    return embed_ct(np.zeros((2, 4, 4)), slices="lungs")


# --------------------------------------------------------------------------- the cache


@refused(ValueError, r"cache_dir='[^']*not_a_folder\.txt' is a file .*name a folder")
def ct_cache_dir_that_is_a_file(tmp_path):
    (tmp_path / "not_a_folder.txt").write_text("notes")
    return lambda: CTVolumeEmbedder(cache_dir=tmp_path / "not_a_folder.txt").fit(frame([np.zeros((2, 4, 4))]))


@refused(ValueError, r"cache_dir='[^']*notes\.txt/cache' is a file \(or lies under one\)")
def image_cache_dir_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("notes")
    cache_dir = str(tmp_path / "notes.txt" / "cache")
    return lambda: ImageEmbedder(cache_dir=cache_dir).fit(frame([np.zeros((8, 8))], column="img"))


@refused(ValueError, r"cache_dir='[^']*' exists but cannot be written to \(.*\); give a folder this process may write")
def image_cache_dir_that_cannot_be_written(tmp_path):
    cache_dir = unwritable_folder(tmp_path)
    return lambda: ImageEmbedder(cache_dir=cache_dir).fit(frame([np.zeros((8, 8))], column="img"))


@refused(ValueError, r"cache_dir='[^']*' exists but cannot be written to")
def ct_cache_dir_that_cannot_be_written_with_two_jobs(tmp_path):
    cache_dir = unwritable_folder(tmp_path)
    return embed_ct(np.zeros((2, 4, 4)), cache_dir=cache_dir, n_jobs=2)


@works
def cache_dir_that_does_not_exist_yet(tmp_path):
    return embed_ct(np.zeros((2, 4, 4)), cache_dir=tmp_path / "new" / "cache")


# --------------------------------------------------------------------------- the catalogue


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom, on the NaN slopes we write
@pytest.mark.parametrize("make, exception, pattern", REFUSED)
def test_bad_imaging_input_is_refused_by_name(tmp_path, make, exception, pattern):
    call = make(tmp_path)
    with pytest.raises(exception, match=pattern):
        call()


@pytest.mark.parametrize("make", WORKS)
def test_unusual_imaging_input_works(tmp_path, make):
    out = make(tmp_path)()
    values = out.to_numpy(dtype=np.float64)
    assert values.size and np.isfinite(values).all()



# --------------------------------------------------------------------------- beyond the catalogue


def test_cache_dir_made_read_only_after_fit_is_named_before_the_workers_start(tmp_path):
    # A folder remounted read-only between fit and transform: the check runs at transform too,
    # in this process, before any chunk goes to a worker.
    cells = frame([np.full((2, 4, 4), v) for v in (0.0, 50.0, 100.0)])
    encoder = CTVolumeEmbedder(cache_dir=tmp_path / "cache", n_jobs=2).fit(cells)
    encoder.set_params(cache_dir=unwritable_folder(tmp_path))
    with pytest.raises(ValueError, match=r"cache_dir='[^']*' exists but cannot be written to"):
        encoder.transform(cells)


def test_bomb_refusal_leaves_pillows_limit_alone(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match="too large to read safely"):
        embed_image(png_header(tmp_path / "huge.png", 15000, 15000))()
    assert Image.MAX_IMAGE_PIXELS == limit


def test_multi_page_tiff_in_a_training_column_names_the_file_and_row(image_frame, tmp_path):  # noqa: F811
    X, y = image_frame
    path = multi_page_tiff(tmp_path / "pages.tiff")
    with pytest.raises(ValueError, match=r"row 5: image file '[^']*pages\.tiff' holds 2 frames \(TIFF\)"):
        small(ConcatClassifier, max_epochs=1).fit(with_cell(X, 5, str(path)), y)


def test_huge_image_in_a_training_column_names_the_file_and_row(image_frame, tmp_path):  # noqa: F811
    X, y = image_frame
    path = png_header(tmp_path / "huge.png", 15000, 15000)
    with pytest.raises(ValueError, match=r"row 9: image file '[^']*huge\.png' is too large to read safely"):
        small(ConcatClassifier, max_epochs=1).fit(with_cell(X, 9, str(path)), y)


def test_pd_na_in_an_image_column_is_a_missing_image(image_frame, tmp_path):  # noqa: F811
    X, y = image_frame
    paths = pd.array(X["img"].tolist(), dtype="string")
    paths[[1, 6, 9]] = pd.NA
    assert check_image_files(list(paths), "img")[1].tolist() == [i not in (1, 6, 9) for i in range(len(X))]
    with_none = X.assign(img=pd.Series([None if pd.isna(p) else p for p in paths], dtype=object))
    expected = small(MedFuseClassifier, ehr="ehr", image="img").fit(with_none, y).predict_proba(with_none)
    with_na = X.assign(img=pd.Series(paths))
    got = small(MedFuseClassifier, ehr="ehr", image="img").fit(with_na, y).predict_proba(with_na)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The embedders read pd.NA as a missing image too: a NaN row.
    embedded = ImageEmbedder().fit_transform(frame([np.full((16, 16), 0.5), pd.NA], column="img"))
    assert np.isfinite(embedded.iloc[0]).all() and embedded.iloc[1].isna().all()


def _grey_frame(n=24, size=12, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    images = rng.random((n, size, size, channels)).astype(np.float32) * 0.5 + 0.5 * y[:, None, None, None]
    X = pd.DataFrame({"cxr": pd.Series(list(images), dtype=object), "ehr__0": rng.normal(size=n)})
    return X, y


def test_grey_arrays_are_replicated_for_a_three_channel_image_encoder():
    X, y = _grey_frame()
    rgb = X.assign(cxr=pd.Series([np.repeat(image, 3, axis=-1) for image in X["cxr"]], dtype=object))
    params = {"max_epochs": 2, "batch_size": 8, "random_state": 0}
    grey_model = ConcatClassifier(image_encoder=conv_net(3), **params).fit(X, y)
    rgb_model = ConcatClassifier(image_encoder=conv_net(3), **params).fit(rgb, y)
    np.testing.assert_allclose(grey_model.predict_proba(X), rgb_model.predict_proba(rgb), rtol=1e-5, atol=1e-6)


def test_rgb_arrays_for_a_one_channel_image_encoder_are_refused():
    X, y = _grey_frame(channels=3)
    match = r"column 'cxr' holds 3-channel images, but the first convolution \('0'\) of image_encoder reads 1 channel"
    with pytest.raises(ValueError, match=match):
        ConcatClassifier(image_encoder=conv_net(1), max_epochs=1).fit(X, y)


def test_image_files_for_a_one_channel_image_encoder_are_refused(image_frame):  # noqa: F811
    X, y = image_frame
    match = r"column 'img' holds 3-channel images \(image files are read as RGB, grey replicated\), but .* reads 1"
    with pytest.raises(ValueError, match=match):
        ConcatClassifier(image_encoder=conv_net(1), image_size=32, max_epochs=1).fit(X, y)


def test_image_encoder_that_fails_on_the_images_is_named():
    X, y = _grey_frame()
    network = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))
    match = r"image_encoder fails on the images of column 'cxr', read as \(1, 12, 12\) \(C, H, W\) tensors \(mat1"
    with pytest.raises(ValueError, match=match):
        ConcatClassifier(image_encoder=network, max_epochs=1).fit(X, y)
