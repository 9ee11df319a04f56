"""The catalogue of bad (and unusual but legal) imaging inputs: CT volumes, DICOM series,
NIfTI files, 2-D images and the embedding cache.

Each ``@refused`` case builds one real input on disk (or in memory) and returns the call
that must fail; the test checks the error type and the words its message must contain
(the file, folder or parameter it names, and what is wrong). Each ``@works`` case is an
input that looks odd but is legal, and must give a finite embedding.
"""

import numpy as np
import pandas as pd
import pytest

pydicom = pytest.importorskip("pydicom")
from test_ct import write_series  # noqa: E402

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


# --------------------------------------------------------------------------- slice selection


@refused(ValueError, r"heart_slices needs a non-empty \(z, y, x\) volume; got shape \(64, 64\)")
def heart_slices_of_a_2d_image(tmp_path):
    return lambda: heart_slices(np.zeros((64, 64)))


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


@works
def cache_dir_that_does_not_exist_yet(tmp_path):
    return embed_ct(np.zeros((2, 4, 4)), cache_dir=tmp_path / "new" / "cache")


# --------------------------------------------------------------------------- the catalogue


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

