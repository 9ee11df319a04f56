"""scikit-learn's sample-weight check that every fusion estimator fails, with its reason.

Shared by the test modules that run ``parametrize_with_checks`` over fusion estimators.
"""

# Integer weights equal repeated rows in every loss, marginal fit and training step
# (tests/test_sample_weight.py, with standardize=False, dropout=0, one batch and no linear start).
WEIGHTS_ARE_NOT_ROWS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "the internal standardization, dropout and the internal folds that choose the linear start's penalty "
        "see rows, not weights, the linear start's float32 L-BFGS stops at round-off (1e-3 apart for the same "
        "loss summed over weights or over repeated rows), and a Cox model's Efron ties treat the copies of an "
        "event as tied deaths"
    ),
}
