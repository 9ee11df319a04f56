"""pair_images: each row's latest image at or before its prediction time, via merge_asof; bad inputs."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skfusion.datasets import pair_images
from skfusion.encoders import ImageEmbedder

T0 = pd.Timestamp("2020-01-01")
DAY = pd.Timedelta(days=1)
US = pd.Timedelta(microseconds=1)


def _png(folder, name, value):
    path = folder / name
    Image.fromarray(np.full((12, 10), value, dtype=np.uint8)).save(path)
    return str(path)


def _X(subjects, times, split=None):
    arrays, names = [subjects, pd.DatetimeIndex(times)], ["subject_id", "prediction_time"]
    if split is not None:
        arrays, names = arrays + [split], names + ["split"]
    return pd.DataFrame({"age": np.arange(len(subjects), dtype=float)},
                        index=pd.MultiIndex.from_arrays(arrays, names=names))  # fmt: skip


@pytest.fixture
def manifest(tmp_path):
    rows = [(1, T0, "a.png", 10), (1, T0 + 10 * DAY, "b.png", 20), (2, T0 + 5 * DAY, "c.png", 30)]
    return pd.DataFrame(
        {"subject_id": [r[0] for r in rows], "time": [r[1] for r in rows],
         "path": [_png(tmp_path, r[2], r[3]) for r in rows]},
        index=["img-a", "img-b", "img-c"],
    )  # fmt: skip


def _names(paired):
    return [None if p is None else p.rsplit("/", 1)[-1] for p in paired["image"]]


def test_latest_image_at_or_before_each_row_in_the_rows_order(manifest):
    X = _X([1, 2, 1, 1, 3, 2], [T0 + 20 * DAY, T0 + 6 * DAY, T0 - DAY, T0 + 3 * DAY, T0, T0 + DAY],
           split=["train", "held_out", "train", "train", "tuning", "held_out"])  # fmt: skip
    before = manifest.copy()
    paired = pair_images(X, manifest)
    assert _names(paired) == ["b.png", "c.png", None, "a.png", None, None]
    pd.testing.assert_index_equal(paired.index, X.index)
    pd.testing.assert_frame_equal(paired.drop(columns="image"), X)
    assert "image" not in X.columns and paired["image"].dtype == object
    pd.testing.assert_frame_equal(manifest, before)  # the manifest is only read


def test_ties_are_paired_and_a_microsecond_later_is_not(manifest):
    X = _X([1, 1], [T0 + 10 * DAY, T0 + 10 * DAY - US])
    assert _names(pair_images(X, manifest)) == ["b.png", "a.png"]
    later = manifest.assign(time=manifest["time"] + US)
    assert _names(pair_images(_X([1], [T0]), later)) == [None]


def test_max_gap_limits_the_age_of_the_image(manifest):
    X = _X([1, 1, 2], [T0 + 12 * DAY, T0 + 9 * DAY, T0 + 8 * DAY])
    assert _names(pair_images(X, manifest, max_gap=pd.Timedelta(days=3))) == ["b.png", None, "c.png"]
    assert _names(pair_images(X, manifest, max_gap=timedelta(days=2))) == ["b.png", None, None]
    assert _names(pair_images(X, manifest, max_gap=pd.Timedelta(0))) == [None, None, None]
    assert _names(pair_images(X, manifest)) == ["b.png", "a.png", "c.png"]


def test_rows_as_columns_string_times_and_role_names(manifest):
    X = pd.DataFrame({"pid": [1, 2], "when": [T0 + 11 * DAY, T0 + 5 * DAY]})
    renamed = manifest.rename(columns={"subject_id": "pid", "time": "taken", "path": "file"})
    renamed["taken"] = renamed["taken"].dt.strftime("%Y-%m-%d")
    paired = pair_images(X, renamed, subject="pid", time="taken", path="file", index_time="when",
                         image="cxr")  # fmt: skip
    assert [p.rsplit("/", 1)[-1] for p in paired["cxr"]] == ["b.png", "c.png"]


def test_mixed_time_formats_and_time_units(manifest):
    manifest["time"] = ["2020-01-01", "2020-01-11 00:00:00", T0.to_pydatetime() + timedelta(days=5)]
    X = _X([1, 2], pd.DatetimeIndex([T0 + 10 * DAY, T0 + 5 * DAY]).as_unit("ns"))
    assert _names(pair_images(X, manifest)) == ["b.png", "c.png"]


def test_a_folder_path_is_accepted(manifest, tmp_path):
    (tmp_path / "series").mkdir()  # a DICOM series is a folder
    manifest.loc["img-b", "path"] = str(tmp_path / "series")
    assert _names(pair_images(_X([1], [T0 + 10 * DAY]), manifest)) == ["series"]


def test_the_paired_column_feeds_image_embedder(manifest):
    paired = pair_images(_X([1, 2, 3], [T0 + 10 * DAY, T0 + 5 * DAY, T0]), manifest)
    Xt = ImageEmbedder(image="image", resize=16, image_size=8).fit_transform(paired[["image"]])
    assert Xt.shape[0] == 3 and Xt.iloc[2].isna().all()
    assert np.isfinite(Xt.iloc[:2].to_numpy()).all()
    assert not np.allclose(Xt.iloc[0], Xt.iloc[1])  # two different images, two different rows


def test_a_missing_file_is_named_by_its_manifest_row(manifest, tmp_path):
    manifest.loc["img-b", "path"] = str(tmp_path / "gone.png")
    with pytest.raises(ValueError, match=r"manifest row 'img-b'.*gone\.png.*does not exist"):
        pair_images(_X([1], [T0 + 20 * DAY]), manifest)
    pair_images(_X([1], [T0 + DAY]), manifest)  # only the paths used are checked


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.drop(columns="path"), r"manifest lacks column\(s\) \['path'\]"),
        (lambda m: m.drop(columns="subject_id"), r"manifest lacks column\(s\) \['subject_id'\]"),
        (lambda m: m.assign(time=[T0, "not a date", T0]), r"manifest row 'img-b' has an unparseable 'time'"),
        (lambda m: m.assign(time=[T0, None, T0]), r"manifest row 'img-b' has an unparseable 'time'"),
        (lambda m: m.assign(time=[T0, T0, T0 + 5 * DAY]), r"manifest rows \['img-a', 'img-b'\] repeat"),
    ],
    ids=["no-path", "no-subject", "unparseable-time", "missing-time", "duplicates"],
)
def test_bad_manifest(manifest, change, match):
    with pytest.raises(ValueError, match=match):
        pair_images(_X([1], [T0]), change(manifest))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_gap": 30}, r"max_gap must be a duration, not a number \(30\): give e\.g\. pd\.Timedelta\(days=30\)"),
        ({"max_gap": 1.5}, r"not a number"),
        ({"max_gap": "30D"}, r"max_gap must be a pd\.Timedelta"),
        ({"max_gap": pd.NaT}, r"max_gap must be a pd\.Timedelta"),
        ({"max_gap": -DAY}, r"max_gap must not be negative"),
        ({"direction": "forward"}, r"direction must be a str among \{'backward'\}"),
        ({"image": "age"}, r"image must be the name \(str\) of a new column"),
        ({"index_time": "t"}, r"index_time='t': X has no index level or column 't'"),
    ],
)
def test_bad_arguments(manifest, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pair_images(_X([1], [T0]), manifest, **kwargs)


def test_nat_prediction_times_are_refused(manifest):
    with pytest.raises(ValueError, match=r"1 missing or unparseable prediction time"):
        pair_images(_X([1, 2], [T0, pd.NaT]), manifest)
