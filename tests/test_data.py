"""The data contract: modality blocks, token columns, missing modalities and bad input."""

import numpy as np
import pandas as pd
import pytest
import torch
from _batch_invariance import assert_float32_close
from scipy.stats import spearmanr
from sksurv.util import Surv

from skfusion import (
    ConcatClassifier,
    ConcatSurvival,
    LateFusionClassifier,
    LateFusionSurvival,
    UnimodalSurvival,
)
from skfusion._data import fit_standardization, infer_layout, to_blocks
from skfusion.datasets import make_multimodal_classification, make_multimodal_survival

FAST = {"max_epochs": 5, "early_stopping": False, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(n_samples=120, n_features=(6, 4), random_state=0)


def test_layout_from_prefixes_and_tokens():
    X = pd.DataFrame({"img__0": [1.0, 2.0], "img__1": [0.0, 1.0], "ehr__age": [50.0, 60.0]})
    X["ct"] = [np.ones((3, 5)), np.ones((1, 5))]
    layout = infer_layout(X)
    assert [(s.name, s.kind, s.dim) for s in layout] == [("img", "vector", 2), ("ehr", "vector", 1), ("ct", "sequence", 5)]
    assert [s.name for s in infer_layout(X, modalities=["ct", "img"])] == ["ct", "img"]
    blocks = to_blocks(X, layout)
    assert blocks["ct"]["x"].shape == (2, 3, 5)
    assert blocks["ct"]["mask"].tolist() == [[True, True, True], [True, False, False]]


def test_array_split_rules():
    X = np.zeros((3, 5))
    assert [(s.name, s.dim) for s in infer_layout(X)] == [("m0", 3), ("m1", 2)]
    assert [(s.name, s.dim) for s in infer_layout(X, modality_dims=[1, 4])] == [("m0", 1), ("m1", 4)]
    assert [(s.name, s.dim) for s in infer_layout(X, modality_dims={"a": 2, "b": 3})] == [("a", 2), ("b", 3)]
    assert [(s.name, s.dim) for s in infer_layout(np.zeros((3, 1)))] == [("m0", 1)]
    with pytest.raises(ValueError, match="modality_dims sum to 4 but X has 5 features"):
        infer_layout(X, modality_dims=[2, 2])


def test_array_and_frame_give_identical_predictions(data):
    X, y = data
    frame = X.rename(columns=lambda c: c.replace("img__", "m0__").replace("ehr__", "m1__"))
    from_frame = ConcatSurvival(**FAST).fit(frame, y).predict(frame)
    from_array = ConcatSurvival(modality_dims=[6, 4], **FAST).fit(X.to_numpy(), y).predict(X.to_numpy())
    np.testing.assert_allclose(from_array, from_frame, rtol=1e-6)


def test_missing_modality_raises_by_default_and_names_rows():
    X, y, true_risk = make_multimodal_survival(n_samples=120, n_features=(6, 4), random_state=0, return_truth=True)
    X.loc[[3, 7], [c for c in X.columns if c.startswith("ehr__")]] = np.nan
    with pytest.raises(ValueError, match=r"modality 'ehr' is missing .* rows \[3, 7\]"):
        ConcatSurvival(**FAST).fit(X, y)
    # Trained enough to rank the rows by their true risk (rho 0.68 to 0.74 measured; an
    # untrained network, or one fed NaN-derived values, ranks at random).
    trained = {"max_epochs": 20, "lr": 0.01, "random_state": 0}
    # The unimodal image model does not need the EHR block.
    for model in (ConcatSurvival(missing="learn", **trained), LateFusionSurvival(**trained),
                  UnimodalSurvival(modality="img", **trained)):
        assert spearmanr(model.fit(X, y).predict(X), true_risk)[0] > 0.5, model


def test_late_fusion_uses_only_present_modalities(data):
    X, y = data
    model = LateFusionSurvival(**FAST, standardize=False, linear_path=False).fit(X, y)
    row = X.iloc[[0]].copy()
    row.loc[:, [c for c in X.columns if c.startswith("ehr__")]] = np.nan
    module = model.network_
    import torch

    img = torch.tensor(row[[c for c in X.columns if c.startswith("img__")]].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        expected = module.heads["img"](img).numpy()[0, 0]
    assert model.predict(row)[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.float32_batch
def test_token_column_padding_does_not_leak():
    rng = np.random.default_rng(0)
    n = 60
    X = pd.DataFrame({"img__0": rng.normal(size=n), "img__1": rng.normal(size=n)})
    X["ct"] = [rng.normal(size=(rng.integers(1, 6), 3)).astype(np.float32) for _ in range(n)]
    y = (X["img__0"] > 0).astype(int).to_numpy()
    model = ConcatClassifier(**FAST).fit(X, y)
    together = model.predict_proba(X)
    alone = np.vstack([model.predict_proba(X.iloc[[i]]) for i in range(5)])
    assert_float32_close(alone, together[:5])


def test_multilabel_and_multiclass_targets():
    X, y = make_multimodal_classification(n_samples=150, n_classes=3, n_features=(6, 4), random_state=0)
    model = ConcatClassifier(**FAST).fit(X, np.array(["a", "b", "c"])[y])
    assert list(model.classes_) == ["a", "b", "c"] and set(model.predict(X)) <= {"a", "b", "c"}
    labels = np.column_stack([y == 0, y == 1, y != 1]).astype(int)
    model = LateFusionClassifier(**FAST).fit(X, labels)
    assert model.predict_proba(X).shape == (150, 3) and model.predict(X).shape == (150, 3)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda X: X.assign(**{"img__2": np.where(np.arange(len(X)) == 4, np.nan, X["img__2"])}),
         r"modality 'img' has NaN in rows \[4\] .*column 'img__2'"),
        (lambda X: X.assign(**{"ehr__1": np.where(np.arange(len(X)) == 9, np.inf, X["ehr__1"])}),
         r"modality 'ehr' contains inf \(first in row 9, column 'ehr__1'\)"),
        (lambda X: X.assign(ct=["/scans/a.dcm"] * len(X)), r"column 'ct', row 0: image file '/scans/a.dcm' does not exist"),
        (lambda X: X.assign(ct=[b"x"] * len(X)), r"column 'ct' holds raw inputs \(bytes\).*encode it first"),
        (lambda X: X.assign(age=1.0), r"column 'age' is not part of a modality block"),
        (lambda X: X.iloc[:0], r"0 sample"),
        (lambda X: X.assign(ct=None), r"column 'ct' is missing \(None / NaN\) in every row.*drop the column"),
        (lambda X: X.set_axis(pd.MultiIndex.from_tuples([tuple(c.split("__")) for c in X.columns]), axis=1),
         r"MultiIndex columns \(2 levels, e\.g\. \('img', '0'\)\).*flatten them"),
    ],
    ids=["partial-nan", "inf", "missing-file", "raw-column", "ungrouped-column", "empty", "all-missing-column",
         "multiindex"],
)
def test_bad_X(data, mutate, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        ConcatSurvival(**FAST).fit(mutate(X), y[: len(mutate(X))])


def test_a_folder_without_dicom_files_is_named(data):
    # A folder is a CT series (a volume column): one without DICOM files is named when first
    # read. The slice network needs no optional extra (the 3-D networks need MONAI).
    pytest.importorskip("pydicom")  # reads the folder's files (the imaging extra)
    X, y = data
    X = X.assign(ct=[__file__.rpartition("/")[0]] * len(X))
    with pytest.raises(ValueError, match=r"row \d+, volume '.*tests': .* is not a readable DICOM file"):
        ConcatSurvival(image_encoder="slices", volume_size=(4, 32, 32), **FAST).fit(X, y)


@pytest.mark.parametrize(
    ("make_y", "match"),
    [
        (lambda y: Surv.from_arrays(y["event"], -y["time"]), r"negative times in rows \[0, 1"),
        (lambda y: Surv.from_arrays(y["event"], np.where(np.arange(len(y)) == 2, np.nan, y["time"])), r"non-finite times in rows \[2\]"),
        (lambda y: np.rec.fromarrays([y["event"].astype(int), y["time"]], names="event,time"), r"boolean"),
        (lambda y: Surv.from_arrays(np.zeros(len(y), dtype=bool), y["time"]), r"all samples are censored"),
        (lambda y: y[:-3], r"X has 120 samples but y has 117"),
        (lambda y: y["time"], r"structured array"),
    ],
    ids=["negative-time", "nan-time", "int-event", "all-censored", "length", "not-structured"],
)
def test_bad_survival_y(data, make_y, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        ConcatSurvival(**FAST).fit(X, make_y(y))


def test_unknown_modality_name(data):
    X, y = data
    with pytest.raises(ValueError, match=r"unknown modality name\(s\) \['ct'\]; X has modalities \['img', 'ehr'\]"):
        ConcatSurvival(modalities=["img", "ct"], **FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"unknown modality name\(s\) \['ct'\]"):
        UnimodalSurvival(modality="ct", **FAST).fit(X, y)


def test_predict_checks_columns_seen_in_fit(data):
    X, y = data
    model = ConcatSurvival(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="img__0"):
        model.predict(X.drop(columns=["img__0"]))
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(X[list(reversed(X.columns))])
    with pytest.raises(ValueError, match="10 features"):
        ConcatSurvival(**FAST).fit(X.to_numpy(), y).predict(X.to_numpy()[:, :9])


def test_large_finite_values_whose_sum_overflows_float32_are_accepted():
    # The NaN/inf check sums each slice of columns first: an overflowing sum of finite
    # values must not be mistaken for an inf.
    X = pd.DataFrame({"a__0": [3e38, 3e38, np.nan], "a__1": [3e38, -1.0, np.nan], "b__0": [1.0, 2.0, 3.0]})
    blocks = to_blocks(X, infer_layout(X))
    assert blocks["a"]["present"].tolist() == [True, True, False]
    np.testing.assert_array_equal(blocks["a"]["x"].numpy(), np.float32([[3e38, 3e38], [3e38, -1.0], [np.nan, np.nan]]))
    X.loc[1, "a__1"] = np.inf
    with pytest.raises(ValueError, match="modality 'a' contains inf"):
        to_blocks(X, infer_layout(X))


def test_standardization_statistics_match_a_float64_two_pass_computation():
    # Chunked (Chan et al.'s update over row chunks) against NumPy's two-pass float64 mean and
    # std over the rows (tokens) present: a large mean, absent rows, a constant feature, a
    # block of several chunks, and a sequence block's real tokens.
    import torch

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3001, 300)) * 3 + 1e5).astype(np.float32)
    present = rng.random(3001) < 0.8
    x[~present] = 0.0
    x[:, 5] = 7.25
    tokens = (rng.normal(size=(500, 9, 4)) + 2).astype(np.float32)
    mask = rng.random((500, 9)) < 0.5
    stats = fit_standardization(
        {
            "a": {"x": torch.from_numpy(x), "present": torch.from_numpy(present)},
            "s": {"x": torch.from_numpy(tokens), "present": torch.from_numpy(mask.any(1)), "mask": torch.from_numpy(mask)},
        }
    )
    rows = x[present].astype(np.float64)
    expected_scale = rows.std(axis=0)
    expected_scale[5] = 1.0  # zero variance keeps its values
    np.testing.assert_allclose(stats["a"][0], rows.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(stats["a"][1], expected_scale, rtol=1e-10)
    real = tokens[mask].astype(np.float64)
    np.testing.assert_allclose(stats["s"][0], real.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["s"][1], real.std(axis=0), rtol=1e-12)


def test_zero_variance_is_judged_relative_to_the_feature_s_magnitude():
    # A feature in tiny units varies (its standard deviation is its own scale); constant
    # features, zero included, keep scale 1 whatever their magnitude.
    rng = np.random.default_rng(0)
    varying = rng.normal(size=(200, 2)) + 3.0
    x = np.column_stack([varying * 1e-20, varying, np.full(200, 7.25), np.zeros(200), np.full(200, 3e-20)])
    x = x.astype(np.float32)
    stats = fit_standardization({"a": {"x": torch.from_numpy(x), "present": torch.ones(200, dtype=torch.bool)}})
    mean, scale = stats["a"]
    rows = x.astype(np.float64)
    np.testing.assert_allclose(scale[:4], rows[:, :4].std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(scale[4:], 1.0)
    np.testing.assert_allclose(mean, rows.mean(axis=0), rtol=1e-12)


def test_a_block_in_tiny_units_trains_as_in_ordinary_units(data):
    X, y = data
    tiny = X.copy()
    img = [c for c in X.columns if c.startswith("img__")]
    tiny[img] = X[img] * 1e-20
    # Without the linear start, whose L-BFGS stops where the rounding of its inputs leads it
    # (within its tolerance, not within float32's).
    ordinary = ConcatSurvival(**FAST, linear_path=False).fit(X, y).predict(X)
    scaled = ConcatSurvival(**FAST, linear_path=False).fit(tiny, y).predict(tiny)
    # The standardized inputs differ by float32 rounding only.
    np.testing.assert_allclose(scaled, ordinary, rtol=1e-4, atol=1e-5 * np.abs(ordinary).max())
    np.testing.assert_array_equal(np.argsort(scaled), np.argsort(ordinary))


def test_consecutive_rows_are_sliced_and_other_rows_gathered():
    from skfusion._data import ModalityDataset, _consecutive

    assert _consecutive(torch.arange(3, 7)) == slice(3, 7)
    gathered = (torch.tensor([3, 5, 4, 6]), torch.tensor([1, 2, 4]), torch.tensor([2]), torch.tensor([], dtype=torch.long))
    for rows in gathered:
        taken = _consecutive(rows)
        assert isinstance(taken, slice) == (len(rows) == 1)
    x = torch.arange(20.0).view(10, 2)
    dataset = ModalityDataset({"a": {"x": x, "present": torch.ones(10, dtype=torch.bool)}}, torch.arange(10.0)[:, None])
    for positions in (torch.arange(2, 6), torch.tensor([5, 1, 8])):
        blocks, targets = dataset.batch(positions)
        torch.testing.assert_close(blocks["a"]["x"], x[positions])
        torch.testing.assert_close(targets[:, 0], positions.float())
    # A subset view's consecutive positions are rows of the full blocks.
    blocks, _ = dataset.subset([4, 5, 6, 9]).batch(torch.arange(3))
    torch.testing.assert_close(blocks["a"]["x"], x[4:7])


@pytest.fixture
def in_place(monkeypatch):
    """Every vector block read in place from the caller's memory, however small."""
    monkeypatch.setattr("skfusion._data.COPY_LIMIT", 0)


@pytest.mark.float32_batch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_read_in_place_fits_and_predicts_as_its_copy_does(data, dtype, monkeypatch):
    X, y = data
    X = X.astype(dtype)
    X.loc[[3, 7], [c for c in X.columns if c.startswith("ehr__")]] = np.nan
    copied = ConcatSurvival(missing="learn", **FAST).fit(X, y)
    monkeypatch.setattr("skfusion._data.COPY_LIMIT", 0)
    blocks = to_blocks(X, infer_layout(X))
    assert np.shares_memory(blocks["img"]["x"].numpy(), X["img__0"].to_numpy())
    assert blocks["img"]["x"].dtype == torch.from_numpy(np.zeros(0, dtype)).dtype
    in_place = ConcatSurvival(missing="learn", **FAST).fit(X, y)
    # Standardized batch by batch rather than once: float32 rounding apart, the same fit.
    assert_float32_close(in_place.predict(X), copied.predict(X))


def test_a_block_spanning_blocks_of_the_frame_is_copied(data, in_place):
    # pandas copies columns that lie in several of the frame's blocks: that copy is the
    # source of skfusion's float32 copy, not a block "read in place".
    X, y = data
    split = pd.concat([X.iloc[:, :3], X.iloc[:, 3:]], axis=1)
    blocks = to_blocks(split, infer_layout(split))
    assert blocks["img"]["x"].dtype == torch.float32 and blocks["img"]["x"].is_contiguous()
    assert not np.shares_memory(blocks["img"]["x"].numpy(), split["img__0"].to_numpy())
    np.testing.assert_array_equal(blocks["img"]["x"].numpy(), split.filter(like="img__").to_numpy(dtype=np.float32))
    assert np.shares_memory(blocks["ehr"]["x"].numpy(), split["ehr__0"].to_numpy())


def test_an_array_is_read_in_place_in_its_own_float_dtype(in_place):
    X = np.arange(12.0).reshape(4, 3)
    blocks = to_blocks(X, infer_layout(X, modality_dims=[2, 1]))
    assert blocks["m0"]["x"].dtype == torch.float64 and np.shares_memory(blocks["m0"]["x"].numpy(), X)


def test_batches_are_float32_standardized_and_zero_where_there_is_no_value(in_place):
    from skfusion._data import ModalityDataset, standardize_blocks

    X = pd.DataFrame({"a__0": [1.0, np.nan, 3.0, 5.0], "a__1": [2.0, np.nan, 2.0, 8.0]})
    X["s"] = [np.ones((2, 1)), None, np.full((1, 1), 3.0), np.zeros((3, 1))]
    blocks = to_blocks(X, infer_layout(X))
    assert torch.isnan(blocks["s"]["x"][2, 1:]).all()  # the padding after the last token
    stats = {"a": (np.array([3.0, 4.0]), np.array([2.0, 4.0])), "s": (np.array([1.0]), np.array([2.0]))}
    standardize_blocks(blocks, stats)
    batch, _ = ModalityDataset(blocks).batch(torch.tensor([2, 1, 0, 3]))
    assert batch["a"]["x"].dtype == torch.float32
    torch.testing.assert_close(batch["a"]["x"], torch.tensor([[0.0, -0.5], [0.0, 0.0], [-1.0, -0.5], [1.0, 1.0]]))
    tokens = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0], [-0.5, -0.5, -0.5]])
    torch.testing.assert_close(batch["s"]["x"][..., 0], tokens)


@pytest.mark.parametrize("standardized", [True, False])
def test_batches_of_a_column_major_block_are_row_major(in_place, standardized):
    # A frame read in place is column-major; its batches are written row-major, which the
    # modules' concatenation of the blocks reads fastest, with the same values.
    from skfusion._data import ModalityDataset, standardize_blocks

    X = pd.DataFrame(np.arange(24.0, dtype=np.float32).reshape(6, 4), columns=[f"a__{j}" for j in range(4)])
    blocks = to_blocks(X, infer_layout(X))
    # pandas 3 keeps such a frame column-major, and the block is read in place; pandas 2
    # keeps it row-major. The block is made column-major here, whatever the pandas.
    blocks["a"]["x"] = torch.from_numpy(np.asfortranarray(X.to_numpy()))
    assert blocks["a"]["x"].stride(0) == 1
    mean, scale = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 8.0, 16.0])
    if standardized:
        standardize_blocks(blocks, {"a": (mean, scale)})
    for positions in (torch.arange(1, 5), torch.tensor([4, 0, 2])):
        x = ModalityDataset(blocks).batch(positions)[0]["a"]["x"]
        expected = X.to_numpy()[positions.numpy()]
        assert x.is_contiguous()
        np.testing.assert_array_equal(x.numpy(), (expected - mean.astype(np.float32)) / scale if standardized else expected)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.nan, r"modality 'img' has NaN in rows \[4\] .*column 'img__2'"),
        (np.inf, r"modality 'img' contains inf \(first in row 4, column 'img__2'\)"),
        (1e39, r"modality 'img' has the value 1e\+39 in row 4, column 'img__2', beyond float32's range"),
    ],
    ids=["partial-nan", "inf", "beyond-float32"],
)
def test_a_block_read_in_place_is_checked_as_its_copy_is(data, in_place, value, match):
    X, y = data
    bad = X.astype(np.float64)
    bad.loc[4, "img__2"] = value
    with pytest.raises(ValueError, match=match):
        ConcatSurvival(**FAST).fit(bad, y)
    model = ConcatSurvival(**FAST).fit(X, y)
    extreme = X.iloc[:5].copy()
    extreme.loc[2, "ehr__1"] = 1e30
    with pytest.raises(ValueError, match=r"modality 'ehr', row 2, feature 1: the value lies .* standard deviations"):
        model.predict(extreme)
