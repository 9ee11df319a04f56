"""Device placement: CPU by default here, CUDA when present (GPU tests skip without one)."""

import pickle

import numpy as np
import pytest
import torch

from skfusion import ConcatSurvival
from skfusion.datasets import make_multimodal_survival

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(n_samples=200, n_features=(8, 8), random_state=0)


def test_auto_device_is_cpu_without_cuda(data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = ConcatSurvival(max_epochs=2, random_state=0).fit(*data)
    assert model.net_.device == "cpu"
    assert next(model.net_.module_.parameters()).device.type == "cpu"


@pytest.mark.gpu
@cuda
def test_cuda_fit_predicts_like_cpu_and_unpickles(data):
    X, y = data
    gpu = ConcatSurvival(max_epochs=5, device="cuda", random_state=0).fit(X, y)
    assert next(gpu.net_.module_.parameters()).device.type == "cuda"
    restored = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_allclose(restored.predict(X), gpu.predict(X), rtol=1e-6)
    cpu = ConcatSurvival(max_epochs=5, device="cpu", random_state=0).fit(X, y)
    assert np.corrcoef(cpu.predict(X), gpu.predict(X))[0, 1] > 0.99
