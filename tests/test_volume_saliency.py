"""Gradient attributions of an estimator that trains its 3-D encoder on a CT volume column (arrays or NIfTI files)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sksurv.util import Surv
from torch import nn

from skfusion import ConcatSurvival
from skfusion._images import resize_volume
from skfusion.inspection import gradient_saliency, integrated_gradients
from skfusion.inspection._attribution import _paths

# Arrays of one shape that volume_size resamples inside the network (VolumeGeometry).
ARRAY_SHAPE = (6, 12, 10)
SIZE = (8, 16, 16)
WINDOW = (-1000.0, 200.0)
N = 24


def tiny_network():
    # Smooth (tanh, no hidden layer in the head): the midpoint rule's error at ReLU kinks would be O(1/n_steps).
    torch.manual_seed(0)  # the module is built outside fit: random_state does not seed it
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool3d((2, 2, 2)), nn.Flatten())


def fit(X, y, window=WINDOW):
    model = ConcatSurvival(
        image_encoder=tiny_network(), volume_size=SIZE, window=window, hidden_dims=[], augment=False,
        early_stopping=False, max_epochs=2, batch_size=8, lr=1e-2, device="cpu", random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 2 epochs are enough here
        return model.fit(X, y)


def volumes(rng, shape, n=N):
    """HU volumes inside the window (-900 to 100): its clipping is flat, and would zero their gradient."""
    return [rng.uniform(-900, 100, shape).astype(np.float32) for _ in range(n)]


def survival(rng, n=N):
    return Surv.from_arrays(rng.random(n) < 0.7, rng.exponential(1.0, n) + 0.1)


@pytest.fixture(scope="module")
def array_model():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"clin__age": rng.normal(size=N), "ct": pd.Series(volumes(rng, ARRAY_SHAPE), dtype=object)})
    return fit(X, survival(rng)), X


def with_ct(X, cells):
    return X.assign(ct=pd.Series(list(cells), index=X.index, dtype=object))


def test_array_column_saliency_is_the_gradient_per_hu_at_each_volumes_shape(array_model):
    model, X = array_model
    rows = X.iloc[:4]
    saliency = gradient_saliency(model, rows, "ct")
    # One map per row, as for every volume column; the arrays' own grid, not volume_size: the
    # resampling is part of the differentiated network.
    assert saliency.dtype == object and saliency.shape == (4,)
    assert all(s.shape == ARRAY_SHAPE and s.dtype == np.float64 for s in saliency)
    saliency = np.stack(list(saliency))
    # Against a central difference of predict along each map (a random direction's derivative would be
    # lost in float32 rounding: the network averages over voxels), moving a voxel by up to h HU.
    direction = saliency / np.abs(saliency).max(axis=(1, 2, 3), keepdims=True)
    h = 20.0
    plus, minus = (
        model.predict(with_ct(rows, [(v + step * d).astype(np.float32) for v, d in zip(rows["ct"], direction)]))
        for step in (h, -h)
    )
    expected = (plus - minus) / (2 * h)
    np.testing.assert_allclose((saliency * direction).sum(axis=(1, 2, 3)), expected, rtol=1e-2)


def sums(attributions):
    return np.array([a.sum() for a in attributions])


@pytest.mark.parametrize("baseline", [None, -500.0])
def test_integrated_gradients_on_an_array_column_are_complete(array_model, baseline):
    model, X = array_model
    rows = X.iloc[:4]
    attributions = integrated_gradients(model, rows, "ct", baseline=baseline, n_steps=256)
    assert [a.shape for a in attributions] == [ARRAY_SHAPE] * 4
    # The reference: the volume filled with the baseline (None: the window's low end, as through a
    # Pipeline), the EHR kept.
    fill = WINDOW[0] if baseline is None else baseline
    reference = with_ct(rows, [np.full(ARRAY_SHAPE, fill, np.float32)] * len(rows))
    difference = model.predict(rows) - model.predict(reference)
    assert np.abs(difference).min() > 1e-3  # the check below is not 0 = 0
    np.testing.assert_allclose(sums(attributions), difference, rtol=1e-3)


@pytest.fixture(scope="module")
def minmax_model():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"clin__age": rng.normal(size=N), "ct": pd.Series(volumes(rng, ARRAY_SHAPE), dtype=object)})
    return fit(X, survival(rng), window="minmax"), X


def test_integrated_gradients_are_complete_under_the_minmax_window(minmax_model):
    # Min-max scaling reads every volume of the straight path from a constant one alike: the path
    # holds the scaling of each row's own volume, from its minimum (which scales to 0, the model's
    # reading of any constant volume), so the attributions add up to the change of predict.
    model, X = minmax_model
    rows = X.iloc[:4]
    attributions = integrated_gradients(model, rows, "ct", n_steps=128)
    reference = with_ct(rows, [np.zeros(ARRAY_SHAPE, np.float32)] * len(rows))
    difference = model.predict(rows) - model.predict(reference)
    assert np.abs(difference).min() > 1e-3
    np.testing.assert_allclose(sums(attributions), difference, rtol=1e-3)


def test_the_minmax_paths_ends_are_the_models_outputs_on_the_volume_and_on_a_constant_volume(minmax_model):
    model, X = minmax_model
    rows = X.iloc[:4]
    paths = _paths(model, rows, "ct", None, integrated=True)
    _, x, start, at = next(paths)  # the 4 rows in one batch; the generator holds their scaling until closed
    with torch.no_grad():
        ends = at(x).numpy(), at(start.expand_as(x)).numpy()
    paths.close()
    # The start is each volume's minimum once resampled to volume_size, as the network scales it.
    resampled = resize_volume(torch.from_numpy(np.stack(list(rows["ct"]))), SIZE)
    assert torch.equal(start.flatten(), resampled.flatten(1).amin(dim=1))
    np.testing.assert_allclose(ends[0], model.predict(rows), rtol=1e-5, atol=1e-6)
    for value in (-700.0, 0.0):
        constant = with_ct(rows, [np.full(ARRAY_SHAPE, value, np.float32)] * len(rows))
        np.testing.assert_allclose(ends[1], model.predict(constant), rtol=1e-5, atol=1e-6)


def test_minmax_completeness_with_two_volume_columns():
    # Each column's geometry holds its own rows' scaling: the column held fixed keeps its volumes' own.
    rng = np.random.default_rng(1)
    X = pd.DataFrame({
        "clin__age": rng.normal(size=N), "ct": pd.Series(volumes(rng, ARRAY_SHAPE), dtype=object),
        "pet": pd.Series(volumes(rng, (5, 9, 9)), dtype=object),
    })
    model = fit(X, survival(rng), window="minmax")
    rows = X.iloc[:4]
    for name, shape in (("ct", ARRAY_SHAPE), ("pet", (5, 9, 9))):
        attributions = integrated_gradients(model, rows, name, n_steps=64)
        constant = rows.assign(**{name: pd.Series([np.zeros(shape, np.float32)] * 4, index=rows.index, dtype=object)})
        difference = model.predict(rows) - model.predict(constant)
        assert np.abs(difference).min() > 1e-3
        np.testing.assert_allclose(sums(attributions), difference, rtol=1e-3)


def test_a_baseline_under_the_minmax_window_is_refused(minmax_model):
    model, X = minmax_model
    with pytest.raises(ValueError, match=r"baseline=-1000\.0 cannot be used with window='minmax'.*baseline=None"):
        integrated_gradients(model, X.iloc[:2], "ct", baseline=-1000.0)
    # The saliency is the model's own gradient, through each volume's min-max scaling.
    saliency = gradient_saliency(model, X.iloc[:2], "ct")
    assert [s.shape for s in saliency] == [ARRAY_SHAPE] * 2 and all(np.isfinite(s).all() for s in saliency)


def write_nifti(nib, path, volume):
    # An affine whose axes are the reader's (L, P, S): the (z, y, x) array written transposed reads back as it was.
    array = np.ascontiguousarray(np.asarray(volume, np.float32).transpose(2, 1, 0))
    nib.save(nib.Nifti1Image(array, np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))
    return str(path)


# Two file shapes, both other than volume_size: each is resampled to it in the network's graph.
FILE_SHAPES = [(6, 12, 10), (7, 20, 18)]


@pytest.fixture(scope="module", params=[WINDOW, "minmax"], ids=["hu-window", "minmax"])
def file_model(request, tmp_path_factory):
    nib = pytest.importorskip("nibabel")
    folder = tmp_path_factory.mktemp("nifti")
    rng = np.random.default_rng(0)
    cells = [volumes(rng, shape, 1)[0] for shape in FILE_SHAPES * (N // 2)]
    paths = [write_nifti(nib, folder / f"{i}.nii.gz", v) for i, v in enumerate(cells)]
    X = pd.DataFrame({"clin__age": rng.normal(size=N), "ct": paths})
    return fit(X, survival(rng), window=request.param), X, cells, folder


def test_file_column_maps_have_each_files_shape(file_model):
    nib = pytest.importorskip("nibabel")
    model, X, cells, folder = file_model
    rows = X.iloc[:4]
    saliency = gradient_saliency(model, rows, "ct")
    assert saliency.dtype == object and [s.shape for s in saliency] == FILE_SHAPES * 2
    assert all(np.isfinite(s).all() and np.abs(s).sum() > 0 for s in saliency)
    # A central difference of predict, moving the voxels of the files along each map by up to h HU: under
    # min-max scaling, little enough that no voxel overtakes a volume's minimum or maximum.
    h = 1.0
    directions = [s / np.abs(s).max() for s in saliency]
    plus, minus = (
        model.predict(rows.assign(ct=[
            write_nifti(nib, folder / f"moved{i}_{step}.nii.gz", cells[i] + step * d) for i, d in enumerate(directions)
        ]))
        for step in (h, -h)
    )
    expected = (plus - minus) / (2 * h)
    np.testing.assert_allclose([(s * d).sum() for s, d in zip(saliency, directions)], expected, rtol=1e-2)


def test_the_file_paths_score_is_predict(file_model):
    model, X, _, _ = file_model
    rows = X.iloc[:4]
    scores = []
    for block, x, start, at in _paths(model, rows, "ct", None):
        assert x.shape[1:] == FILE_SHAPES[len(scores) % 2]  # the file's voxels, one row at a time
        with torch.no_grad():
            scores.append(float(at(x)[0]))
    np.testing.assert_allclose(scores, model.predict(rows), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_on_a_file_column_are_complete(file_model):
    nib = pytest.importorskip("nibabel")
    model, X, cells, folder = file_model
    rows = X.iloc[:4]
    attributions = integrated_gradients(model, rows, "ct", n_steps=128)
    assert [a.shape for a in attributions] == FILE_SHAPES * 2
    # The baseline as files: the window's low end, or any constant (read as zeros) under min-max.
    fill = WINDOW[0] if model.window == WINDOW else -300.0
    reference = rows.assign(ct=[
        write_nifti(nib, folder / f"baseline{i}.nii.gz", np.full(v.shape, fill)) for i, v in enumerate(cells[:4])
    ])
    difference = model.predict(rows) - model.predict(reference)
    assert np.abs(difference).min() > 1e-3
    np.testing.assert_allclose(sums(attributions), difference, rtol=1e-3)
