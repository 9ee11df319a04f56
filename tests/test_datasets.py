"""Synthetic generators with a known truth, and the bundled real data."""

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from skfusion import ConcatSurvival
from skfusion.datasets import (
    load_breast_cancer_multimodal,
    make_multimodal_classification,
    make_multimodal_survival,
)


def test_survival_generator_truth_and_rates():
    X, y, risk = make_multimodal_survival(n_samples=4000, censoring=0.4, return_truth=True, random_state=0)
    assert X.shape == (4000, 96) and X.dtypes.eq(np.float32).all()
    assert abs((~y["event"]).mean() - 0.4) < 0.03
    oracle = concordance_index_censored(y["event"], y["time"], risk)[0]
    assert oracle > 0.75


def test_survival_generator_signal_controls_modalities():
    X, y, risk = make_multimodal_survival(n_samples=3000, signal=(1.0, 0.0), return_truth=True, random_state=1)
    img = X.filter(like="img__").to_numpy()
    ehr = X.filter(like="ehr__").to_numpy()
    corr = lambda block: np.abs(np.corrcoef(np.column_stack([block, risk]), rowvar=False)[-1, :-1]).max()
    assert corr(img) > 0.3 and corr(ehr) < 0.1


def test_missing_rate_and_external_cohort():
    X, y, X_ext, y_ext = make_multimodal_survival(
        n_samples=2000, missing_rate={"ehr": 0.3}, n_external=500, shift=1.0, random_state=0
    )
    missing = X.filter(like="ehr__").isna().all(axis=1)
    assert abs(missing.mean() - 0.3) < 0.04
    assert X.filter(like="img__").notna().all().all()
    assert X_ext.shape == (500, 96)
    shift = (X_ext.filter(like="img__").mean() - X.filter(like="img__").mean()).abs().mean()
    assert shift > 0.3


def test_missing_rate_as_one_number_applies_to_every_modality():
    X, _ = make_multimodal_survival(n_samples=4000, missing_rate=0.3, random_state=0)
    img = X.filter(like="img__").isna().all(axis=1)
    ehr = X.filter(like="ehr__").isna().all(axis=1)
    # Independent draws: 30 % of the EHR rows; the image is restored where both went
    # missing, so it is missing in 30 % * 70 % = 21 % of the rows and never with the EHR.
    assert abs(ehr.mean() - 0.3) < 0.03 and abs(img.mean() - 0.21) < 0.03
    assert not (img & ehr).any()
    same = make_multimodal_survival(n_samples=4000, missing_rate={"img": 0.3, "ehr": 0.3}, random_state=0)[0]
    pd.testing.assert_frame_equal(X, same)


def test_reproducible_and_validated():
    first = make_multimodal_survival(n_samples=50, random_state=3)
    second = make_multimodal_survival(n_samples=50, random_state=3)
    np.testing.assert_array_equal(first[0].to_numpy(), second[0].to_numpy())
    with pytest.raises(ValueError, match="one entry per modality"):
        make_multimodal_survival(n_features=(3, 3), signal=(1.0,))
    with pytest.raises(ValueError, match=r"n_classes must be an integer >= 2; got 1"):
        make_multimodal_classification(n_classes=1)


def test_classification_generator_probabilities():
    X, y, proba = make_multimodal_classification(n_samples=3000, n_classes=3, return_truth=True, random_state=0)
    assert proba.shape == (3000, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Labels follow the probabilities: the class frequencies match their means.
    np.testing.assert_allclose(np.bincount(y) / 3000, proba.mean(axis=0), atol=0.03)


def test_model_matches_linear_cox_below_oracle():
    # The true risk is linear in the latents, and E[latent | features] is linear in the
    # features, so a linear Cox model on the features is the attainable ceiling; the oracle
    # (true risk) bounds both from above.
    X, y, X_test, y_test, _, risk_test = make_multimodal_survival(
        n_samples=3000, n_features=(16, 8), n_external=1000, shift=0.0, return_truth=True, random_state=0
    )
    ours = ConcatSurvival(max_epochs=30, random_state=0).fit(X, y).score(X_test, y_test)
    linear = CoxPHSurvivalAnalysis(alpha=1e-2).fit(X, y).score(X_test, y_test)
    oracle = concordance_index_censored(y_test["event"], y_test["time"], risk_test)[0]
    assert linear - 0.01 < ours < oracle


def test_breast_cancer_modalities():
    X, y = load_breast_cancer_multimodal()
    assert X.shape == (198, 84) and len(y) == 198
    assert X.filter(like="genes__").shape[1] == 76
    assert {"clin__age", "clin__size", "clin__er_positive"} <= set(X.columns)
    assert not X.isna().any().any()
