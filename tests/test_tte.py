"""Time-to-event pretraining: MOTOR's likelihood against its equation, the cohort, the transformer."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from _batch_invariance import assert_float32_close
from skfusion import ConcatSurvival, UnimodalSurvival
from skfusion.datasets import make_imaging_ehr_cohort
from skfusion.encoders import CTVolumeEmbedder
from skfusion.modules.tte import PiecewiseExponentialHead, WholeVolumeEncoder, piecewise_exponential_nll, reads_volumes
from skfusion.modules.volume_input import VolumeGeometry
from skfusion.ssl import TimeToEventPretraining


def _nll_loop(log_hazard, time, event, boundaries):
    """sum_p [h_p e_p - d_p log h_p] per (row, task), averaged, with plain loops."""
    n, n_pieces, n_tasks = len(log_hazard), len(log_hazard[0]), len(log_hazard[0][0])
    total = 0.0
    for i in range(n):
        for k in range(n_tasks):
            t = time[i][k]
            for p in range(n_pieces):
                start, stop = boundaries[p], boundaries[p + 1]
                spent = max(0.0, min(t, stop) - start)
                happened = bool(event[i][k]) and start <= t < stop
                total += math.exp(log_hazard[i][p][k]) * spent - (log_hazard[i][p][k] if happened else 0.0)
    return total / (n * n_tasks)


@pytest.fixture
def example():
    """Three rows, two tasks, three pieces [0, 1), [1, 3), [3, inf); events on and off boundaries."""
    boundaries = [0.0, 1.0, 3.0, math.inf]
    time = [[0.5, 2.0], [3.0, 4.5], [1.0, 0.2]]
    event = [[True, False], [True, True], [False, True]]
    log_hazard = np.random.default_rng(0).normal(size=(3, 3, 2)).tolist()
    return log_hazard, time, event, boundaries


def test_piecewise_exponential_nll_matches_the_loop(example):
    log_hazard, time, event, boundaries = example
    got = piecewise_exponential_nll(
        torch.tensor(log_hazard, dtype=torch.float64),
        torch.tensor(time, dtype=torch.float64),
        torch.tensor(event),
        torch.tensor(boundaries, dtype=torch.float64),
    )
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.item(), _nll_loop(log_hazard, time, event, boundaries), rtol=1e-12)


def test_one_piece_is_the_exponential_likelihood():
    """With one piece [0, inf) the loss is mean(h t - d log h), the exponential model."""
    log_h = torch.tensor([[[0.3]], [[-1.2]]], dtype=torch.float64)
    time = torch.tensor([[2.0], [0.7]], dtype=torch.float64)
    event = torch.tensor([[True], [False]])
    got = piecewise_exponential_nll(log_h, time, event, torch.tensor([0.0, math.inf], dtype=torch.float64))
    expected = ((math.exp(0.3) * 2.0 - 0.3) + math.exp(-1.2) * 0.7) / 2
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)


def test_head_is_a_low_rank_read_out_of_a_per_piece_representation():
    torch.manual_seed(0)
    head = PiecewiseExponentialHead(5, n_pieces=3, n_tasks=4, rank=2, log_rates=torch.log(torch.arange(1.0, 5.0)))
    head.double()
    z = torch.randn(6, 5, dtype=torch.float64)
    out = head(z)
    assert out.shape == (6, 3, 4)
    W, b = head.pieces.weight.detach(), head.pieces.bias.detach()
    beta, c = head.tasks.weight.detach(), head.tasks.bias.detach()
    for i in range(6):
        for p in range(3):
            r = W[p * 2 : p * 2 + 2] @ z[i] + b[p * 2 : p * 2 + 2]
            for k in range(4):
                np.testing.assert_allclose(out[i, p, k].item(), (beta[k] @ r + c[k]).item(), rtol=1e-12)
    np.testing.assert_allclose(c.numpy(), np.log(np.arange(1.0, 5.0)), rtol=1e-6)


# --------------------------------------------------------------------------- the synthetic cohort



def test_cohort_layout_and_truth():
    X, outcomes, truth = make_imaging_ehr_cohort(n_samples=30, n_codes=5, n_driven=2, random_state=0, return_truth=True)
    assert list(X.columns) == ["ct", "ehr", "index_time"]
    assert X["ct"][0].shape == (8, 32, 32) and X["ct"][0].dtype == np.float32
    assert truth.biomarkers.shape == (30, 2) and truth.outcome_risk.shape == (30, 2)
    np.testing.assert_array_equal(truth.code_risk[:, 2:], 0.0)  # undriven codes
    for i in range(30):
        frame, index = X["ehr"][i], X["index_time"][i]
        assert list(frame.columns) == ["time", "code", "numeric_value"]
        assert (frame["time"] < index).sum() >= 3  # history before the scan
        assert frame["code"].iloc[-1] == "VISIT" and frame["time"].iloc[-1] > index  # follow-up ends in a visit
        future = frame[frame["time"] > index]
        assert not future[future["code"] != "VISIT"]["code"].duplicated().any()  # first occurrences
    for y in outcomes.values():
        assert y.dtype.names == ("event", "time") and 0 < y["event"].mean() < 1
    again, _ = make_imaging_ehr_cohort(n_samples=30, n_codes=5, n_driven=2, random_state=0)
    np.testing.assert_array_equal(again["ct"][3], X["ct"][3])


def test_cohort_biomarkers_are_in_the_image_and_drive_the_codes():
    X, _, truth = make_imaging_ehr_cohort(n_samples=300, random_state=1, return_truth=True)
    volumes = np.stack(X["ct"].to_list())
    for j, (z, y, x) in enumerate(truth.biomarker_voxels):  # each nodule brightens with its biomarker
        patch = volumes[:, z, y - 1 : y + 2, x - 1 : x + 2].mean(axis=(1, 2))
        assert np.corrcoef(patch, truth.biomarkers[:, j])[0, 1] > 0.5
    has_code = np.array([(f["code"] == "DX/00").any() and (f["time"][f["code"] == "DX/00"] > t).any()
                         for f, t in zip(X["ehr"], X["index_time"])])
    risk = truth.code_risk[:, 0]
    assert risk[has_code].mean() > risk[~has_code].mean() + 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"n_driven": 20, "n_codes": 5}, "n_driven .* cannot exceed n_codes"),
        ({"volume_shape": (8, 32)}, "volume_shape must be three integers"),
        ({"follow_up": (0, 10)}, "follow_up must be a pair"),
        ({"signal": -1.0}, "signal must be a finite non-negative number"),
    ],
)
def test_cohort_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_imaging_ehr_cohort(**kwargs)


# --------------------------------------------------------------------------- the transformer




TINY = {"window": "pe", "max_epochs": 2, "batch_size": 8, "random_state": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def cohort():
    X, outcomes = make_imaging_ehr_cohort(n_samples=24, volume_shape=(4, 16, 16), random_state=0)
    return X, outcomes


@pytest.fixture(scope="module")
def fitted(cohort):
    return TimeToEventPretraining(**TINY).fit(cohort[0])


def _frame(events, index, images=None):
    images = images if images is not None else [np.zeros((2, 8, 8), np.float32) for _ in events]
    return pd.DataFrame(
        {"ct": pd.Series(images, dtype=object), "ehr": pd.Series(events, dtype=object), "index_time": index}
    )


def _events(*pairs):
    return pd.DataFrame({"time": [float(t) for t, _ in pairs], "code": [c for _, c in pairs]})


def test_tasks_pieces_and_targets_from_the_events():
    X = _frame(
        [
            _events((1, "A"), (5, "B"), (6, "A"), (9, "C")),  # A at the index time: history
            _events((2, "A"), (4, "B"), (7, "B")),
            _events((0, "C"), (3, "A")),
        ],
        [1.0, 2.0, 0.0],
    )
    tte = TimeToEventPretraining(n_tasks=2, n_pieces=2)
    futures, censoring, _ = tte._follow_up(X, [0, 1, 2])
    assert futures == [{"B": 4.0, "A": 5.0, "C": 8.0}, {"B": 2.0}, {"A": 3.0}]
    assert censoring == [8.0, 5.0, 3.0]
    time, event = tte._targets(futures, np.array(censoring))
    assert list(tte.tasks_) == ["A", "B"] and list(tte.task_event_counts_) == [2, 2]  # tie broken by code
    np.testing.assert_array_equal(time, [[5.0, 4.0], [5.0, 2.0], [3.0, 3.0]])
    np.testing.assert_array_equal(event, [[True, True], [False, True], [True, False]])
    np.testing.assert_allclose(tte.piece_boundaries_, [0.0, np.median([5.0, 3.0, 4.0, 2.0]), np.inf])
    np.testing.assert_allclose(tte._log_rates(time, event), np.log([2 / 13, 2 / 9]))


def test_fit_transform_layout(cohort, fitted):
    X, _ = cohort
    assert fitted.n_rows_used_ == 24 and fitted.embedding_dim_ == 64
    assert len(fitted.net_.history) == 2
    assert fitted.net_.history[-1, "train_loss"] < fitted.net_.history[0, "train_loss"] + 1.0
    Xt = fitted.transform(X.assign(age=np.arange(24.0)))
    assert list(Xt.columns[:3]) == ["ehr", "index_time", "age"] and "ct" not in Xt
    assert list(Xt.columns[3:5]) == ["ct__0", "ct__1"] and Xt.shape == (24, 3 + 64)
    only = fitted.transform(X[["ct"]])  # events and index time are not needed
    np.testing.assert_allclose(only.to_numpy(), Xt.iloc[:, 3:].to_numpy(), rtol=1e-5, atol=1e-6)
    assert list(fitted.get_feature_names_out()[:2]) == ["ehr", "index_time"]


def test_rows_without_an_image_are_skipped(cohort, fitted):
    X, _ = cohort
    X = X.copy()
    X.loc[[3, 7], "ct"] = None
    tte = TimeToEventPretraining(**{**TINY, "max_epochs": 1}).fit(X)
    assert tte.n_rows_used_ == 22
    Xt = fitted.transform(X[["ct"]])
    assert Xt.iloc[[3, 7]].isna().all().all() and not Xt.drop(index=[3, 7]).isna().any().any()


def test_rows_without_follow_up_are_left_out_with_a_count(cohort):
    X, _ = cohort
    X = X.copy()
    X.loc[[0, 5], "index_time"] = 1e6  # after every event
    X.loc[2, "ehr"] = None
    with pytest.warns(UserWarning, match=r"3 row\(s\) with an image have no event after their index time"):
        tte = TimeToEventPretraining(**{**TINY, "max_epochs": 0}).fit(X)
    assert tte.n_rows_used_ == 21


def test_max_epochs_zero_is_the_untrained_encoder(cohort):
    X, _ = cohort
    a = TimeToEventPretraining(**{**TINY, "max_epochs": 0}).fit(X)
    b = TimeToEventPretraining(**{**TINY, "max_epochs": 0}).fit(X.iloc[:12])
    assert len(a.net_.history) == 0
    # Same seed, no training: the same initial encoder whatever the rows.
    np.testing.assert_allclose(a.transform(X[["ct"]]), b.transform(X[["ct"]]), rtol=1e-5, atol=1e-6)
    trained = TimeToEventPretraining(**TINY).fit(X)
    assert not np.allclose(a.transform(X[["ct"]]), trained.transform(X[["ct"]]), atol=1e-3)


def test_early_stopping_restores_the_best_held_out_epoch(cohort):
    X, _ = cohort
    tte = TimeToEventPretraining(**{**TINY, "max_epochs": 6}, early_stopping=True, validation_fraction=0.25,
                                 n_iter_no_change=2)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tte.fit(X)
    selection = dict(tte.net_.callbacks_)["epoch_selection"]
    losses = selection.losses_
    assert len(losses) == tte.n_iter_ + 1  # epoch 0, the initial encoder, then each epoch
    np.testing.assert_allclose(losses[1:], tte.net_.history[:, "valid_loss"])
    assert tte.best_epoch_ == int(np.argmin(losses))
    # The restored encoder is that epoch's: its held-out loss is the best one.
    assert tte.net_.dataset_loss(selection.valid) == pytest.approx(min(losses), rel=1e-5)


def test_max_epochs_cutting_the_held_out_descent_warns(cohort):
    X, _ = cohort
    with pytest.warns(ConvergenceWarning, match="stopped at max_epochs=1 while the validation loss"):
        TimeToEventPretraining(**{**TINY, "max_epochs": 1}, early_stopping=True, validation_fraction=0.25).fit(X)


@pytest.mark.parametrize("fraction, holds_out", [(0.25, True), (0.1, False)])
def test_auto_early_stopping_holds_rows_out_from_a_cohort_size(cohort, monkeypatch, fraction, holds_out):
    import skfusion.ssl._tte as tte_module

    # 3 held-out rows instead of 100, so that the 24 rows here cross the threshold at a quarter.
    monkeypatch.setattr(tte_module, "MIN_VALIDATION_ROWS", 3)
    X, _ = cohort
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tte = TimeToEventPretraining(**{**TINY, "batch_size": 4}, early_stopping="auto",
                                     validation_fraction=fraction).fit(X)  # fmt: skip
    assert ("valid_loss" in tte.net_.history[-1]) == holds_out
    assert tte.best_epoch_ <= tte.n_iter_ <= TINY["max_epochs"]


def test_user_backbone_is_copied(cohort):
    X, _ = cohort
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    tte = TimeToEventPretraining(backbone=backbone, **TINY).fit(X)
    assert tte.embedding_dim_ == 4 and tte.backbone_ is not backbone
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_safetensors_round_trip(cohort, fitted, tmp_path):
    X, _ = cohort
    path = tmp_path / "tte.safetensors"
    fitted.save_pretrained(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        assert fh.metadata()["window"] == "[-1350.0, 150.0]"
    loaded = TimeToEventPretraining(**{**TINY, "max_epochs": 0, "random_state": 1}, weights=path).fit(X)
    np.testing.assert_allclose(loaded.transform(X[["ct"]]), fitted.transform(X[["ct"]]), rtol=1e-5, atol=1e-6)
    torch.save({"junk": torch.zeros(1), "pool.x": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not match the encoder"):
        TimeToEventPretraining(**TINY, weights=tmp_path / "bad.pt").fit(X)


def test_pretrained_backbone_in_ct_volume_embedder(cohort, fitted):
    X, _ = cohort
    embedder = CTVolumeEmbedder(backbone=fitted.backbone_, window="pe", pool=None, device="cpu").fit(X[["ct"]])
    tokens = embedder.transform(X[["ct"]])["ct"]
    x = torch.from_numpy(np.stack([fitted._geometry()(torch.from_numpy(v)[None])[0].numpy() for v in X["ct"]]))
    with torch.inference_mode():
        expected, _ = fitted.encoder_.slice_embeddings(x)
    np.testing.assert_allclose(np.stack(tokens.to_list()), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_pretrained_encoder_in_a_fusion_estimator(cohort, fitted):
    X, outcomes = cohort
    y = outcomes["outcome_0"]
    model = UnimodalSurvival(modality="ct", image_encoder=fitted.image_encoder_, max_epochs=1, lr=1e-9,
                             batch_size=8, random_state=0, device="cpu").fit(X[["ct"]], y)
    copied = next(m for m in model.net_.module_.modules() if hasattr(m, "network")).network
    assert copied is not fitted.image_encoder_
    # lr ~ 0: the estimator's encoder starts from (a copy of) the pretrained weights.
    pretrained = dict(fitted.image_encoder_.named_parameters())
    for name, value in copied.named_parameters():
        np.testing.assert_allclose(value.detach().numpy(), pretrained[name].detach().numpy(), atol=1e-6)


def test_datetime_events_and_index_times():
    base = pd.Timestamp("2020-01-01")
    events = [
        pd.DataFrame({"time": base + pd.to_timedelta([0, 10, 30], unit="D"), "code": ["A", "B", "A"]}),
        pd.DataFrame({"time": base + pd.to_timedelta([5, 20], unit="D"), "code": ["B", "A"]}),
    ]
    X = _frame(events, pd.to_datetime([base, base]))
    tte = TimeToEventPretraining(**{**TINY, "max_epochs": 1}).fit(X)
    assert set(tte.tasks_) == {"A", "B"} and tte.piece_boundaries_[-1] == np.inf


def test_cache_reuses_the_preprocessing(cohort, tmp_path, monkeypatch):
    X, _ = cohort
    first = TimeToEventPretraining(**{**TINY, "max_epochs": 0}, cache_dir=tmp_path).fit(X)
    assert len(list(tmp_path.glob("*.emb"))) == 24
    import skfusion.ssl._tte as module

    monkeypatch.setattr(module, "read_ct_volume", lambda *a: pytest.fail("read again despite the cache"))
    again = TimeToEventPretraining(**{**TINY, "max_epochs": 0}, cache_dir=tmp_path).fit(X)
    np.testing.assert_allclose(again.transform(X[["ct"]]), first.transform(X[["ct"]]), rtol=1e-5, atol=1e-6)


def test_sklearn_conventions(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "encoder_")
    assert copy.set_params(n_pieces=4).n_pieces == 4
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        copy.transform(pd.DataFrame({"ct": [np.zeros((2, 8, 8))]}))
    with pytest.raises(ValueError, match="n_pieces"):
        TimeToEventPretraining(n_pieces=0).fit(_frame([_events((1, "A"))], [0.0]))


def _good():
    return _frame([_events((0, "A"), (2, "B")), _events((1, "B"), (3, "A"))], [0.5, 0.5])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda X: X.drop(columns="ehr"), "events column 'ehr' is not in X"),
        (lambda X: X.drop(columns="index_time"), "index_time column 'index_time' is not in X"),
        (lambda X: X.drop(columns="ct"), "column 'ct' is not in X"),
        (lambda X: X.assign(index_time=[0.5, np.nan]), "row 1 of column 'index_time': the index time is missing"),
        (lambda X: X.assign(index_time=[0.5, np.inf]), "row 1 of column 'index_time'.*not finite"),
        (lambda X: X.assign(index_time=["a", "b"]), "index_time column 'index_time' must hold numbers"),
        (lambda X: X.assign(ehr=[_events((0, "A")), _events((np.inf, "B"))]), "row 1 of column 'ehr'.*finite"),
        (
            lambda X: X.assign(ehr=[_events((0, "A")), pd.DataFrame({"time": [pd.NaT], "code": ["B"]})]),
            "row 1 of column 'ehr'.*missing time",
        ),
        (
            lambda X: X.assign(ehr=[_events((0, "A")), pd.DataFrame({"time": [pd.Timestamp(0)], "code": ["B"]})]),
            "row 1 of column 'ehr'.*both be numbers or both datetimes",
        ),
        (lambda X: X.assign(ehr=[_events((0, "A")), _events((0, "B"))]), "at least 2 rows .* follow-up"),
        (
            lambda X: X.assign(ehr=[_events((0, "A"), (2, "B")), _events((1, "B"), (1e39, "A"))]),
            r"row 1 of column 'ehr': an event is more than 2.1e\+37 days after the index time",
        ),
        (lambda X: X.assign(ct=[np.zeros((2, 8, 8)), np.zeros((2, 8, 4))]), r"row 1 of column 'ct'.*image_size"),
        (lambda X: X.assign(ct=[np.zeros((2, 8, 8)), np.full((2, 8, 8), np.nan)]), "row 1 of column 'ct'.*NaN"),
    ],
)
def test_bad_inputs_name_the_row_or_column(edit, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match=match):
            TimeToEventPretraining(**TINY).fit(edit(_good()))


def test_transform_checks_the_slice_size(fitted):
    with pytest.raises(ValueError, match=r"non-missing cell 0 of column 'ct'.*\(16, 16\) slices"):
        fitted.transform(pd.DataFrame({"ct": pd.Series([np.zeros((2, 8, 8))], dtype=object)}))
    with pytest.raises(ValueError, match="needs a pandas DataFrame with the image column 'ct'"):
        fitted.transform(pd.DataFrame({"img": [1.0]}))


def test_two_dimensional_images_and_nifti_paths(tmp_path):
    nib = pytest.importorskip("nibabel")
    from skfusion._volumes import read_ct_volume

    rng = np.random.default_rng(0)
    events = [_events((0, "A"), (2 + i % 3, "B"), (5, "A")) for i in range(6)]
    flat = _frame(events, [1.0] * 6, images=[rng.normal(-500, 200, (8, 8)).astype(np.float32) for _ in range(6)])
    tte = TimeToEventPretraining(**{**TINY, "max_epochs": 1}).fit(flat)
    assert tte.slice_shape_ == (8, 8) and tte.transform(flat[["ct"]]).shape == (6, 64)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(-500, 200, (8, 8, 3)).astype(np.float32), np.eye(4)), str(path))
    by_path = tte.transform(pd.DataFrame({"ct": [str(path)]}))
    by_array = tte.transform(pd.DataFrame({"ct": pd.Series([read_ct_volume(str(path), "x")], dtype=object)}))
    np.testing.assert_allclose(by_path.to_numpy(), by_array.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"window": (100, -100)}, "window=.*low < high"),
        ({"mean": (0.5, 0.5), "std": (0.2, 0.2)}, "mean=.*1 or 3 numbers"),
        ({"mean": None}, "mean and std must be both None"),
        ({"image_size": (8, 0)}, "image_size=.*positive"),
        ({"slices": (1, 2, 3)}, r"slices=.*\(start, stop\)"),
    ],
)
def test_bad_preprocessing_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        TimeToEventPretraining(**{**TINY, **params}).fit(_good())


# --------------------------------------------------------------------------- 3-D encoders


def tiny_3d():
    """A small 3-D network: one convolution, its maps averaged over a 1 x 2 x 2 grid (d = 16)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d((1, 2, 2)), torch.nn.Flatten()
    )


TINY_3D = {**TINY, "volume_size": (4, 8, 8), "window": "minmax"}


@pytest.fixture(scope="module")
def fitted_3d(cohort):
    return TimeToEventPretraining(backbone=tiny_3d(), **TINY_3D).fit(cohort[0])


def test_a_module_is_3d_when_its_first_convolution_is():
    conv2d, conv3d = torch.nn.Conv2d(1, 2, 3), torch.nn.Conv3d(1, 2, 3)
    assert reads_volumes(torch.nn.Sequential(conv3d, torch.nn.Flatten(), conv2d))
    assert not reads_volumes(torch.nn.Sequential(conv2d, conv3d))
    assert not reads_volumes(torch.nn.Linear(2, 2))


def test_3d_fit_transform_layout(cohort, fitted_3d):
    X, _ = cohort
    assert isinstance(fitted_3d.encoder_, WholeVolumeEncoder) and fitted_3d.backbone_ is fitted_3d.encoder_.network
    assert fitted_3d.volume_size_ == (4, 8, 8) and fitted_3d.slice_shape_ == (8, 8) and fitted_3d.window_ == "minmax"
    assert fitted_3d.embedding_dim_ == 16 and len(fitted_3d.net_.history) == 2
    geometry = fitted_3d.image_encoder_[0]
    assert isinstance(geometry, VolumeGeometry) and geometry.volume_size == (4, 8, 8)
    Xt = fitted_3d.transform(X[["ct"]])
    assert Xt.shape == (24, 16) and list(Xt.columns[:2]) == ["ct__0", "ct__1"] and np.isfinite(Xt.to_numpy()).all()
    with torch.inference_mode():  # the HU volumes through image_encoder_: the same embedding
        direct = fitted_3d.image_encoder_(torch.from_numpy(np.stack(X["ct"].to_list())))
    assert_float32_close(direct.numpy(), Xt.to_numpy())


def test_3d_named_network_is_deterministic(cohort):
    pytest.importorskip("monai")
    X = cohort[0].iloc[:8]
    params = {**TINY, "backbone": "resnet10-3d", "volume_size": (4, 16, 16), "max_epochs": 1}
    a = TimeToEventPretraining(**params).fit(X)
    b = TimeToEventPretraining(**params).fit(X)
    assert a.embedding_dim_ == 512
    np.testing.assert_array_equal(a.transform(X[["ct"]]), b.transform(X[["ct"]]))
    other = TimeToEventPretraining(**{**params, "random_state": 1}).fit(X)
    assert not np.allclose(a.transform(X[["ct"]]), other.transform(X[["ct"]]), atol=1e-3)


@pytest.mark.float32_batch
@pytest.mark.parametrize("kind", ["3-D", "2-D"])
def test_image_encoder_in_ct_volume_embedder_embeds_whole_volumes(cohort, fitted, fitted_3d, kind):
    X, _ = cohort
    tte = fitted_3d if kind == "3-D" else fitted
    expected = tte.transform(X[["ct"]]).to_numpy()
    embedder = CTVolumeEmbedder(backbone=tte.image_encoder_, batch_size=5, device="cpu").fit(X[["ct"]])
    assert_float32_close(embedder.transform(X[["ct"]]).to_numpy(), expected)
    tokens = CTVolumeEmbedder(backbone=tte.image_encoder_, pool=None, device="cpu").fit_transform(X[["ct"]])["ct"]
    assert tokens.iloc[0].shape == (1, tte.embedding_dim_)  # one token per volume: nothing pooled over z


def test_3d_encoder_in_concat_survival(cohort, fitted_3d):
    X, outcomes = cohort
    X = X[["ct"]].assign(clin__age=np.random.default_rng(0).normal(60, 10, len(X)))
    model = ConcatSurvival(image_encoder=fitted_3d.image_encoder_, max_epochs=1, lr=1e-9, batch_size=8,
                           augment=False, random_state=0, device="cpu").fit(X, outcomes["outcome_0"])
    assert model.predict(X).shape == (24,)
    copied = next(m for m in model.net_.module_.modules() if hasattr(m, "network")).network
    assert copied is not fitted_3d.image_encoder_
    # lr ~ 0: the estimator's encoder starts from (a copy of) the pretrained weights.
    pretrained = dict(fitted_3d.image_encoder_.named_parameters())
    for name, value in copied.named_parameters():
        np.testing.assert_allclose(value.detach().numpy(), pretrained[name].detach().numpy(), atol=1e-6)


def test_3d_save_pretrained_round_trip(cohort, fitted_3d, tmp_path):
    X, _ = cohort
    path = tmp_path / "tte3d.safetensors"
    fitted_3d.save_pretrained(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        assert fh.metadata()["volume_size"] == "[4, 8, 8]" and fh.metadata()["window"] == '"minmax"'
        assert set(fh.keys()) == set(fitted_3d.backbone_.state_dict())  # the network's own keys
    params = {**TINY_3D, "max_epochs": 0, "random_state": 1}
    loaded = TimeToEventPretraining(backbone=torch.nn.Conv3d(1, 1, 1), **params)  # another network
    with pytest.raises(ValueError, match="do not match the backbone"):
        loaded.set_params(weights=path).fit(X)
    loaded = TimeToEventPretraining(backbone=tiny_3d(), weights=path, **params).fit(X)
    np.testing.assert_allclose(loaded.transform(X[["ct"]]), fitted_3d.transform(X[["ct"]]), rtol=1e-5, atol=1e-6)


def test_3d_released_checkpoint_of_huo_et_al(cohort, tmp_path):
    pytest.importorskip("monai")
    from skfusion.encoders import load_tte_encoder
    from skfusion.modules.volumes import volume_network

    X = cohort[0].iloc[:4]
    torch.manual_seed(3)
    weights = volume_network("densenet121-3d").state_dict()
    state = {f"module.{k}": v for k, v in weights.items()}  # their DistributedDataParallel layout, with a head
    state |= {"module.final_layer.weight": torch.zeros(16, 1024), "module.task_layer.weight": torch.zeros(3, 2)}
    path = tmp_path / "densenet_tte.pth"
    torch.save(state, path)
    params = {**TINY, "batch_size": 4, "max_epochs": 0, "volume_size": (32, 32, 32), "window": "minmax"}
    by_name = TimeToEventPretraining(backbone="densenet121-3d", weights=path, **params).fit(X)
    for key, value in by_name.backbone_.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
    loaded = TimeToEventPretraining(backbone=load_tte_encoder(path, "densenet121"), **params).fit(X)
    np.testing.assert_allclose(loaded.transform(X[["ct"]]), by_name.transform(X[["ct"]]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"window": "minmax"}, "window='minmax'.*3-D backbone"),
        ({"backbone": torch.nn.Conv3d(1, 2, 3), "volume_size": (4, 8)}, "volume_size"),
        (
            {"backbone": torch.nn.Conv3d(1, 2, 3), "volume_size": (4, 8, 8)},
            r"backbone \(Conv3d\) must map volumes \(n, 1, D, H, W\) to features",
        ),
        ({"backbone": torch.nn.Conv3d(1, 2, 5), "volume_size": (2, 8, 8)}, r"volume_size=\(2, 8, 8\).*too small"),
    ],
)
def test_bad_3d_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        TimeToEventPretraining(**{**TINY, **params}).fit(_good())


def test_3d_volume_too_small_for_a_named_network():
    pytest.importorskip("monai")
    with pytest.raises(ValueError, match=r"backbone \(DenseNet121\) fails on volumes of volume_size=\(8, 8, 8\)"):
        TimeToEventPretraining(**{**TINY, "backbone": "densenet121-3d", "volume_size": (8, 8, 8)}).fit(_good())
