"""
CLMBR embeddings of longitudinal labs, fused with baseline variables
====================================================================

Zhang et al. (2026, arXiv:2606.15038) encode each patient's coded EHR history with CLMBR, a causal transformer trained
to predict the next code, and fuses that embedding with other modalities for time-to-event
prediction. Here the history is real: the Mayo Clinic PBC follow-up visits (R's ``pbcseq``),
turned into coded events (labs with values, findings) up to a one-year landmark. A small
CLMBR-style model is pretrained on the training patients' events (no labels), its
representation at the landmark becomes the ``ehr__*`` block, and a concatenation survival
model fuses it with the baseline ``clin__*`` block. With a local copy of the released
CLMBR-T-base, ``CLMBREmbedder(pretrained="path/to/clmbr-t-base")`` gives the paper's
768-dimensional embedding instead (its vocabulary expects OMOP codes, which pbcseq lacks).
"""

# %%
# One row per patient: an event frame and a baseline block
# --------------------------------------------------------
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skfusion import ConcatSurvival, UnimodalSurvival
from skfusion.datasets import load_pbcseq_events
from skfusion.encoders import CLMBREmbedder, OneHotEHREncoder

X, y = load_pbcseq_events(landmark=365)
print(X.shape, f"{y['event'].mean():.0%} deaths after the landmark")
print(X.loc[1, "ehr"].head(8))

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y["event"], random_state=0)

# %%
# Pretrain CLMBR on the events, then fuse
# ---------------------------------------
# The embedder learns its vocabulary (codes; lab values in per-code quantile bins) and the
# next-code model from the training rows only; ``transform`` replaces the ``ehr`` column by
# the representation at each patient's last event. Both blocks are then standardised.
common = {"random_state": 0}
embedder = CLMBREmbedder(hidden_dim=32, n_layers=2, n_heads=4, intermediate_dim=64, max_epochs=10, random_state=0)
clmbr = Pipeline(
    [("emb", embedder), ("scale", StandardScaler().set_output(transform="pandas")), ("fuse", ConcatSurvival(**common))]
)
clmbr.fit(X_train, y_train)

# %%
# Compare with the curated one-hot features and with the baseline block alone
# ---------------------------------------------------------------------------
onehot = Pipeline(
    [
        ("emb", OneHotEHREncoder(windows=[180, None])),
        ("scale", StandardScaler().set_output(transform="pandas")),
        ("fuse", ConcatSurvival(**common)),
    ]
)
onehot.fit(X_train, y_train)
baseline = make_pipeline(StandardScaler().set_output(transform="pandas"), UnimodalSurvival(modality="clin", **common))
baseline.fit(X_train.drop(columns="ehr"), y_train)

scores = {
    "baseline only": baseline.score(X_test.drop(columns="ehr"), y_test),
    "baseline + one-hot EHR": onehot.score(X_test, y_test),
    "baseline + CLMBR EHR": clmbr.score(X_test, y_test),
}
for name, c in scores.items():
    print(f"{name:>24}: test C-index {c:.3f}")

# %%
# The self-supervised objective and the test C-indices
# ----------------------------------------------------
fig, (ax_loss, ax_c) = plt.subplots(1, 2, figsize=(9, 3.5))
ax_loss.plot(range(1, 11), clmbr.named_steps["emb"].loss_curve_, marker="o")
ax_loss.set(xlabel="epoch", ylabel="next-code cross-entropy", title="CLMBR pretraining")
ax_c.barh(list(scores), list(scores.values()))
ax_c.set(xlim=(0.5, 1.0), xlabel="Harrell's C (test)", title="pbcseq, one-year landmark")
fig.tight_layout()
plt.show()
