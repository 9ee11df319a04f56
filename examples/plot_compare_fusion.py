"""
Compare fusion strategies in one call
=====================================

Table 1 of Zhang et al. (2026, arXiv:2606.15038) for your own data: the unimodal baselines and every fusion strategy
(concatenation, late fusion, 2-step contrastive alignment, cross-attention, co-attention
guided by each modality) fitted on the same cross-validation folds and on the whole training
set for an external cohort, with bootstrap confidence intervals and paired tests against the
image-only model (``*``) and against concatenation (``+``).
"""

# %%
# Data: an internal cohort and a shifted external one
# ---------------------------------------------------
import matplotlib.pyplot as plt

from skfusion import compare_fusion
from skfusion.datasets import make_multimodal_survival
from skfusion.model_selection import format_comparison, fusion_models
from skfusion.plot import plot_comparison

X, y, X_ext, y_ext = make_multimodal_survival(
    n_samples=600, n_features=(48, 24), n_external=300, shift=0.5, random_state=0
)

# %%
# The models of the table
# -----------------------
# :func:`~skfusion.model_selection.fusion_models` names one model per row; the keyword
# arguments go to every model. Any estimator (a scikit-survival model, a ``Pipeline``) can be
# added to the dict. ``n_iter_no_change=10`` (scikit-learn's patience, in epochs, against the 500
# optimizer steps of "auto"): the internal folds choose nearly the same epochs in a third of the time.
models = fusion_models(X, attention_dim=16, n_iter_no_change=10, random_state=0)
print(list(models))

# %%
# One call: 3-fold cross-validation and the external cohort
# ---------------------------------------------------------
# ``n_jobs`` runs the fits through joblib; ``with joblib.parallel_backend("dask"):`` sends
# them to a Dask cluster.
table = compare_fusion(
    X,
    y,
    models=models,
    cv=3,
    cohorts={"external": (X_ext, y_ext)},
    reference="img only",
    n_resamples=300,
    random_state=0,
)
print(format_comparison(table).to_string())

# %%
# The table as a forest plot
# --------------------------
ax = plot_comparison(table, reference=0.5)
ax.figure.set_size_inches(7, 7)
ax.figure.tight_layout()
plt.show()
