"""Metrics for multimodal survival and classification, with bootstrap confidence intervals.

- :func:`bootstrap_ci` and :func:`paired_bootstrap_test`: "mean (95% CI)" and "p < 0.05
  versus the reference model" for any ``metric(y_true, y_score) -> float``;
  :class:`BootstrapDraws` scores many models on the same resamples, and
  :class:`MeanOverSplits` averages a metric over cross-validation test folds.
- Scalar survival metrics over scikit-survival: :func:`concordance_index` (Harrell),
  :func:`concordance_index_ipcw_score` (Uno), :func:`cumulative_dynamic_auc_score`,
  :func:`integrated_brier_score` (also takes StepFunctions, or curves on the estimator's
  ``unique_times_``), :class:`IntegratedBrierScore` (the same, ready for the bootstrap) and
  its no-model reference :func:`kaplan_meier_integrated_brier_score`; :func:`survival_at`
  evaluates predicted survival curves at any times.
- Calibration of survival curves: :func:`d_calibration` (the whole curve), and at one
  horizon :func:`calibration_slope` and :func:`calibration_in_the_large`.
- Classification: :func:`auroc`, :func:`auprc` (macro over labels),
  :func:`expected_calibration_error`, and the length-of-stay scores
  :func:`linear_weighted_kappa` and :func:`mean_absolute_deviation`.
- scikit-survival's own metric functions, re-exported unchanged so that one import serves:
  ``concordance_index_censored``, ``concordance_index_ipcw``, ``brier_score``,
  ``cumulative_dynamic_auc``. Those return tuples; the ``*_score`` adapters above return
  the one number a bootstrap needs. ``integrated_brier_score`` keeps scikit-survival's
  signature and result.
"""

from sksurv.metrics import brier_score, concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc

from ._bootstrap import (
    MAX_SKIPPED_FRACTION,
    BootstrapDraws,
    BootstrapResult,
    MeanOverSplits,
    PairedBootstrapResult,
    bootstrap_ci,
    paired_bootstrap_test,
)
from ._calibration import DCalibrationResult, calibration_in_the_large, calibration_slope, d_calibration
from ._classification import (
    auprc,
    auroc,
    expected_calibration_error,
    linear_weighted_kappa,
    mean_absolute_deviation,
)
from ._survival import (
    IntegratedBrierScore,
    concordance_index,
    concordance_index_ipcw_score,
    cumulative_dynamic_auc_score,
    integrated_brier_score,
    kaplan_meier_integrated_brier_score,
    kaplan_meier_survival,
    survival_at,
)

__all__ = [
    "MAX_SKIPPED_FRACTION",
    "BootstrapDraws",
    "BootstrapResult",
    "DCalibrationResult",
    "IntegratedBrierScore",
    "MeanOverSplits",
    "PairedBootstrapResult",
    "auprc",
    "auroc",
    "bootstrap_ci",
    "brier_score",
    "calibration_in_the_large",
    "calibration_slope",
    "concordance_index",
    "concordance_index_censored",
    "concordance_index_ipcw",
    "concordance_index_ipcw_score",
    "cumulative_dynamic_auc",
    "cumulative_dynamic_auc_score",
    "d_calibration",
    "expected_calibration_error",
    "integrated_brier_score",
    "kaplan_meier_integrated_brier_score",
    "kaplan_meier_survival",
    "linear_weighted_kappa",
    "mean_absolute_deviation",
    "paired_bootstrap_test",
    "survival_at",
]
