"""What users of scikit-learn, scikit-survival and pycox expect of every estimator (issue 23, section 4)."""

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.exceptions import DeviceWarning
from sklearn.utils import get_tags
from sksurv.util import Surv

from skfusion import (
    CoAttentionClassifier,
    CoAttentionSurvival,
    ConcatClassifier,
    ConcatSurvival,
    CrossAttentionSurvival,
    LateFusionSurvival,
)
from skfusion._data import ModalityDataset, ModalitySpec
from skfusion.datasets import make_multimodal_survival, make_paired_image_ehr
from skfusion.encoders import (
    CLMBREmbedder,
    ClinicalTimeSeriesDiscretizer,
    CTVolumeEmbedder,
    ImageEmbedder,
    OneHotEHREncoder,
)
from skfusion.ssl import ConVIRT, MedCAMAdapter, MedCAMClassifier, TimeToEventPretraining
from skfusion.modules.attention import INFERENCE_ROWS, CoAttentionFusion, CrossAttentionFusion

TINY_CLMBR = dict(hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=8, min_frequency=1, max_epochs=0, device="cpu")
TINY_TTE = {
    "n_tasks": 2, "n_pieces": 2, "rank": 4, "attention_dim": 4, "max_epochs": 1, "batch_size": 4, "device": "cpu",
    "random_state": 0,
}
ATTENTION = {"attention_dim": 8, "n_tokens": 4, "max_epochs": 5, "lr": 0.05, "random_state": 0}


def token_frame(n=40, seed=0):
    """An ``img`` column of (T_i, 4) token arrays (T_i from 1 to 6) and an ``ehr__0..5`` block."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, size=n)
    X = pd.DataFrame(rng.normal(size=(n, 6)).astype(np.float32), columns=[f"ehr__{j}" for j in range(6)])
    X["img"] = pd.Series([rng.normal(size=(t, 4)).astype(np.float32) for t in lengths], dtype=object)
    eta = X["ehr__0"].to_numpy() + np.array([s[:, 0].mean() for s in X["img"]])
    return X, Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta)))


# --- attention: a row's output does not depend on the rows predicted with it ----------------


@pytest.fixture(scope="module")
def attention_models():
    X, y = token_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [CrossAttentionSurvival(**ATTENTION), CoAttentionSurvival(guide="img", **ATTENTION)]
        return X, [model.fit(X, y) for model in models]


def _float64_outputs(model, X, rows):
    """The fitted network, in float64, on ``rows`` of ``X`` as one batch (sequences padded to the batch's longest)."""
    module = copy.deepcopy(model.net_.module_).double().eval()
    dataset = ModalityDataset(model._blocks(X, reset=False)[0])
    batch, _ = dataset.batch(torch.as_tensor(rows))
    batch = {name: {k: v.double() if v.is_floating_point() else v for k, v in b.items()} for name, b in batch.items()}
    with torch.inference_mode():
        return module(**batch).numpy()


def test_attention_outputs_differ_across_batches_by_rounding_only(attention_models):
    """In float64 a row's output alone and among rows with longer sequences agree to 1e-12.

    So the differences seen in float32 (kernels chosen by the shape, sums over padded tokens
    in another order) are rounding: padding changes nothing else in the computation.
    """
    X, models = attention_models
    for model in models:
        full = _float64_outputs(model, X, np.arange(len(X)))
        alone = np.concatenate([_float64_outputs(model, X, [i]) for i in range(len(X))])
        np.testing.assert_allclose(alone, full, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            np.concatenate([model.predict(X.iloc[[i]]) for i in range(len(X))]), model.predict(X), rtol=1e-5, atol=1e-6
        )


def _token_blocks(n, seed=0):
    """A vector block ``v`` (n, 10) and a sequence block ``s`` of lengths 1 to 5, float32."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, size=n)
    mask = torch.from_numpy(np.arange(5)[None, :] < lengths[:, None])
    present = torch.ones(n, dtype=torch.bool)
    return {
        "v": {"x": torch.from_numpy(rng.normal(size=(n, 10)).astype(np.float32)), "present": present},
        "s": {
            "x": torch.from_numpy(rng.normal(size=(n, 5, 3)).astype(np.float32)) * mask[..., None],
            "present": present,
            "mask": mask,
        },
    }


def _attention_modules():
    torch.manual_seed(0)
    specs = [ModalitySpec("v", "vector", (), 10), ModalitySpec("s", "sequence", ("s",), 3)]
    settings = {"n_tokens": 4, "width": 8, "n_heads": 2, "hidden_dims": (8,), "n_outputs": 1, "dropout": 0.0}
    return [CrossAttentionFusion(specs, **settings), CoAttentionFusion(specs, "v", **settings)]


@pytest.mark.parametrize("module", _attention_modules(), ids=lambda m: type(m).__name__)
def test_fixed_shape_inference_cuts_and_pads_the_batch(module):
    n = INFERENCE_ROWS + 44  # a full block and a padded one
    blocks = _token_blocks(n)
    module.eval()
    with torch.inference_mode():
        outputs = module(**blocks)
        rows = [{name: {key: v[[i]] for key, v in block.items()} for name, block in blocks.items()} for i in range(n)]
        per_row = torch.cat([module._forward(row) for row in rows])
    assert outputs.shape == (n, 1)
    np.testing.assert_allclose(outputs.numpy(), per_row.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module", _attention_modules(), ids=lambda m: type(m).__name__)
def test_the_network_sees_whole_blocks_outside_training_only(module, monkeypatch):
    seen = []
    forward = module._forward
    monkeypatch.setattr(module, "_forward", lambda blocks: seen.append(len(blocks["v"]["present"])) or forward(blocks))
    blocks = _token_blocks(3)
    module.train()
    module(**blocks)
    module.eval()
    module(**blocks)
    assert seen == [3, INFERENCE_ROWS]


# --- complex numbers are refused, not cut to their real part -------------------------------


@pytest.mark.parametrize("column", ["time", "numeric_value"])
@pytest.mark.parametrize("make", [OneHotEHREncoder, ClinicalTimeSeriesDiscretizer, lambda: CLMBREmbedder(**TINY_CLMBR)])
def test_complex_event_times_and_values_are_refused(make, column):
    encoder = make()
    events = pd.DataFrame({"time": [1.0, 2.0], "code": ["Heart Rate", "Heart Rate"], "numeric_value": [80.0, 90.0]})
    events[column] = events[column].to_numpy() + np.array([0, 1j])
    X = pd.DataFrame({encoder.events: [events, events]}, index=["s1", "s2"])
    # A complex column is complex data from its first entry on.
    with pytest.raises(ValueError, match=rf"row 's1' of column '{encoder.events}': event frame row 0 \(position\), "
                       rf"column '{column}': \(\d+\+0j\) is a complex number. Complex data not supported"):
        encoder.fit(X)


def test_a_complex_value_among_numbers_is_refused():
    values = pd.Series([1.0, 2j], dtype=object)
    events = pd.DataFrame({"time": [1.0, 2.0], "code": ["Lab/A", "Lab/A"], "numeric_value": values})
    with pytest.raises(ValueError, match=r"row 1 \(position\), column 'numeric_value': 2j is a complex number"):
        OneHotEHREncoder().fit(pd.DataFrame({"ehr": [events]}))


def test_complex_volumes_are_refused():
    X = pd.DataFrame({"ct": pd.Series([np.full((2, 8, 8), 40.0), np.full((2, 8, 8), 40 + 1j)], dtype=object)})
    match = "non-missing cell 1: a volume array must be real; got dtype complex128. Complex data not supported"
    with pytest.raises(ValueError, match=match):
        CTVolumeEmbedder(device="cpu").fit_transform(X)


# --- tags say what the estimators accept ---------------------------------------------------


def test_classifiers_fit_a_label_indicator_matrix_and_say_so():
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(60, 4)), columns=["img__0", "img__1", "ehr__0", "ehr__1"])
    Y = np.column_stack([X["img__0"] > 0, X["ehr__0"] > 0, X["ehr__1"] > 0]).astype(int)
    for model in (ConcatClassifier(max_epochs=2), CoAttentionClassifier(guide="img", max_epochs=2)):
        assert get_tags(model).classifier_tags.multi_label
        assert model.fit(X, Y).predict(X).shape == Y.shape


@pytest.mark.parametrize(
    "model, allow_nan",
    [
        (LateFusionSurvival(max_epochs=2), True),
        (ConcatSurvival(missing="learn", max_epochs=2), True),
        (ConcatSurvival(max_epochs=2), False),
    ],
    ids=repr,
)
def test_allow_nan_says_whether_a_block_may_be_all_nan(model, allow_nan):
    X, y = token_frame()
    X = X.drop(columns="img").assign(img__0=np.arange(len(X), dtype=float), img__1=1.0)
    X.loc[:4, ["img__0", "img__1"]] = np.nan
    assert get_tags(model).input_tags.allow_nan is allow_nan
    if allow_nan:
        # The first five rows lack the image: they are predicted from the EHR alone.
        assert model.fit(X, y).predict(X.iloc[:5]).shape == (5,)
    else:
        with pytest.raises(ValueError, match="'img'"):
            model.fit(X, y)


# --- what users of scikit-survival, pycox and lifelines expect ------------------------------


def _median_by_hand(functions, times):
    """The first time where a row's StepFunction is at most 0.5, inf where it never is."""
    medians = []
    for function in functions:
        below = [t for t in times if function(t) <= 0.5]
        medians.append(below[0] if below else np.inf)
    return np.array(medians)


@pytest.fixture(scope="module")
def short_follow_up():
    X, y = make_multimodal_survival(n_samples=200, n_features=(6, 4), random_state=0)
    # Censoring the last 40% of follow-up keeps the low-risk rows' survival above 0.5 to the end.
    late = y["time"] > np.quantile(y["time"], 0.6)
    return X, Surv.from_arrays(y["event"] & ~late, y["time"])


@pytest.mark.parametrize("loss", ["cox", "weibull", "discrete"])
def test_predict_median_is_where_the_survival_function_crosses_a_half(loss, short_follow_up):
    X, y = short_follow_up
    model = ConcatSurvival(loss=loss, max_epochs=10, random_state=0).fit(X, y)
    median = model.predict_median(X)
    np.testing.assert_array_equal(median, _median_by_hand(model.predict_survival_function(X), model.unique_times_))
    # The same from the survival function as a DataFrame indexed by time (the docstring's one-liner).
    frame = pd.DataFrame(model.predict_survival_function(X, return_array=True).T, index=model.unique_times_)
    np.testing.assert_array_equal(frame.le(0.5).idxmax().where(frame.le(0.5).any(), np.inf), median)


def test_predict_median_is_inf_where_survival_stays_above_a_half(short_follow_up):
    X, y = short_follow_up
    model = ConcatSurvival(max_epochs=10, random_state=0).fit(X, y)
    median = model.predict_median(X)
    stays_above = model.predict_survival_function(X, return_array=True)[:, -1] > 0.5
    assert stays_above.any() and not stays_above.all()
    assert np.isinf(median[stays_above]).all() and np.isfinite(median[~stays_above]).all()


# --- a model fitted on a GPU loads and predicts on a machine without one --------------------


def _as_if_fitted_on_cuda(model):
    """Set the devices a model fitted on CUDA records (its tensors are tagged by :func:`_pickled_on_cuda`)."""
    for owner in (model, getattr(model, "adapter_", None)):
        if hasattr(owner, "net_"):
            owner.net_.device = "cuda"
        if hasattr(owner, "device_"):
            owner.device_ = "cuda"
    return model


def _pickled_on_cuda(model, monkeypatch):
    """The pickle of ``model`` as written on a GPU: torch records every tensor's device as 'cuda:0'."""
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        return pickle.dumps(_as_if_fitted_on_cuda(model))


def _fitted(case):
    """``(model, X, method)``: ``case`` fitted on CPU, the data it predicts and its prediction method."""
    rng = np.random.default_rng(0)
    X, y = make_multimodal_survival(n_samples=80, n_features=(4, 3), random_state=0)
    P, Y = make_paired_image_ehr(n_samples=40, random_state=0)
    small = {"projection_dim": 4, "hidden_dim": 8, "lstm_dim": 8, "max_epochs": 1, "random_state": 0}
    if case == "ImageEmbedder":
        images = pd.DataFrame({"img": pd.Series([rng.random((8, 8)) for _ in range(6)], dtype=object)})
        backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        embedder = ImageEmbedder(backbone=backbone, mean=None, std=None, resize=8, image_size=8, device="cpu")
        return embedder.fit(images), images, "transform"
    if case == "CLMBREmbedder":
        events = pd.DataFrame({"ehr": [pd.DataFrame({"time": [0.0, 1.0, 2.0], "code": ["A", "B", "A"]})] * 4})
        return CLMBREmbedder(**TINY_CLMBR, random_state=0).fit(events), events, "transform"
    if case == "TimeToEventPretraining":
        volumes = pd.DataFrame({
            "ct": pd.Series([100 * rng.normal(size=(2, 16, 16)) for _ in range(8)], dtype=object),
            "ehr": [pd.DataFrame({"time": [1.0, 2.0 + i], "code": ["A", "B"]}) for i in range(8)],
            "index_time": 0.0,
        })
        return TimeToEventPretraining(**TINY_TTE).fit(volumes), volumes[["ct"]], "transform"
    return {
        "ConcatSurvival": lambda: (ConcatSurvival(max_epochs=2, random_state=0).fit(X, y), X, "predict"),
        # EarlyStopping keeps the best weights in the callbacks.
        "ConcatSurvival-early-stopping": lambda: (
            ConcatSurvival(max_epochs=2, early_stopping=True, random_state=0).fit(X, y), X, "predict"
        ),
        "CoAttentionClassifier": lambda: (
            CoAttentionClassifier(guide="img", max_epochs=2, random_state=0).fit(X, y["event"]), X, "predict_proba"
        ),
        "ConVIRT": lambda: (ConVIRT(**small).fit(P), P, "transform"),
        "MedCAMClassifier": lambda: (
            MedCAMClassifier(MedCAMAdapter(**small), max_epochs=2, random_state=0).fit(P, Y), P, "predict_proba"
        ),
    }[case]()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "case",
    [
        "ConcatSurvival",
        "ConcatSurvival-early-stopping",
        "CoAttentionClassifier",
        "ConVIRT",
        "MedCAMClassifier",
        "ImageEmbedder",
        "CLMBREmbedder",
        "TimeToEventPretraining",
    ],
)
def test_a_model_fitted_on_cuda_loads_and_predicts_without_cuda(case, monkeypatch):
    model, X, method = _fitted(case)
    expected = np.asarray(getattr(model, method)(X))
    with pytest.warns(DeviceWarning, match="no CUDA devices are available"):
        restored = pickle.loads(_pickled_on_cuda(copy.deepcopy(model), monkeypatch))
    np.testing.assert_array_equal(np.asarray(getattr(restored, method)(X)), expected)
    net = getattr(restored, "net_", None)
    if net is not None:
        assert torch.device(net.device).type == "cpu" and net.module is net.module_
    assert getattr(restored, "device_", "cpu") == "cpu"


def test_safetensors_files_hold_no_device(tmp_path):
    """A checkpoint written by save_pretrained is read onto the device of the reader (the CPU here)."""
    from safetensors import safe_open

    events = pd.DataFrame({"ehr": [pd.DataFrame({"time": [0.0, 1.0, 2.0], "code": ["A", "B", "A"]})] * 4})
    clmbr = CLMBREmbedder(**TINY_CLMBR, random_state=0).fit(events)
    clmbr.save_pretrained(tmp_path / "clmbr")
    with safe_open(tmp_path / "clmbr" / "model.safetensors", framework="pt") as f:
        assert all(f.get_tensor(key).device.type == "cpu" for key in f.keys())
    reloaded = CLMBREmbedder(pretrained=tmp_path / "clmbr", device="auto").fit(events)
    hidden = slice(0, TINY_CLMBR["hidden_dim"])  # the transformer's embedding (the summary columns come from fit)
    got, expected = reloaded.transform(events).to_numpy()[:, hidden], clmbr.transform(events).to_numpy()[:, hidden]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
