"""The five MedMod tasks through the public API: event frames -> discretizer -> fusion model.

Each task of :func:`~skfusion.datasets.make_icu_timeseries` is fitted and predicted by
MedFuse, early and joint fusion (``ConcatClassifier`` settings), late fusion, DAFT and MMTM,
each inside a ``Pipeline`` after :class:`ClinicalTimeSeriesDiscretizer`, on partially
paired rows (half the stays without an image).
"""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from skfusion import ConcatClassifier, LateFusionClassifier
from skfusion.datasets import make_icu_timeseries
from skfusion.encoders.timeseries import ClinicalTimeSeriesDiscretizer
from skfusion.fusion.daft import DAFTClassifier
from skfusion.fusion.medfuse import MedFuseClassifier
from skfusion.fusion.mmtm import MMTMClassifier
from skfusion.metrics import auroc, linear_weighted_kappa, mean_absolute_deviation

COMMON = {"max_epochs": 2, "batch_size": 16, "random_state": 0}
MODELS = {
    "medfuse": MedFuseClassifier(lstm_dim=8, fusion_dim=8, **COMMON),
    "early": ConcatClassifier(missing="learn", pretrain_encoders=True, freeze_encoders=True, lstm_dim=8, **COMMON),
    "joint": ConcatClassifier(missing="learn", lstm_dim=8, **COMMON),
    "late": LateFusionClassifier(pretrain_encoders=True, freeze_encoders=True, lstm_dim=8, **COMMON),
    "daft": DAFTClassifier(missing="learn", lstm_dim=8, **COMMON),
    "mmtm": MMTMClassifier(missing="learn", lstm_dim=8, **COMMON),
}
N = 48


def _fit_all(task, **data):
    X, y = make_icu_timeseries(N, task=task, n_image_features=8, missing_rate=0.5, random_state=0, **data)
    assert X.filter(like="img__").isna().all(axis=1).sum() == N // 2
    train, test = X.iloc[:32], X.iloc[32:]
    fitted = {}
    for name, model in MODELS.items():
        pipe = make_pipeline(ClinicalTimeSeriesDiscretizer(max_hours=48), model).fit(train, y[:32])
        fitted[name] = (pipe, pipe.predict_proba(test), pipe.predict(test))
    return y[32:], fitted


@pytest.mark.parametrize("task", ["in_hospital_mortality", "decompensation"])
def test_binary_tasks(task):
    y_test, fitted = _fit_all(task, prevalence=0.4)
    for name, (pipe, proba, pred) in fitted.items():
        assert proba.shape == (len(y_test), 2), name
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(pred, pipe.classes_[proba.argmax(axis=1)], err_msg=name)
        assert 0 <= auroc(y_test, proba[:, 1]) <= 1


@pytest.mark.parametrize(("task", "n_labels"), [("phenotyping", 25), ("radiology", 14)])
def test_multilabel_tasks(task, n_labels):
    y_test, fitted = _fit_all(task, prevalence=0.3)
    assert y_test.shape == (N - 32, n_labels)
    for name, (pipe, proba, pred) in fitted.items():
        assert pipe[-1].multilabel_, name
        assert proba.shape == (len(y_test), n_labels) and np.all((proba >= 0) & (proba <= 1)), name
        assert pred.shape == y_test.shape and set(np.unique(pred)) <= {0, 1}


def test_length_of_stay_buckets():
    y_test, fitted = _fit_all("length_of_stay")
    buckets = np.arange(10)
    for name, (pipe, proba, pred) in fitted.items():
        classes = pipe[-1].classes_
        assert proba.shape == (len(y_test), len(classes)) and set(pred) <= set(classes), name
        kappa = linear_weighted_kappa(y_test, pred, labels=buckets)
        assert -1 <= kappa <= 1
        # MAD in buckets: each predicted bucket stands for its own index.
        assert mean_absolute_deviation(y_test, pred, bin_values=buckets) == pytest.approx(np.abs(y_test - pred).mean())
