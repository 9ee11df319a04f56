"""
Where does co-attention look? Attention weights over CT slices
==============================================================

The attention models of skfusion attend over *tokens*: softmax over a single pooled
embedding is always 1. Here each patient's CT is a sequence of per-slice embeddings (what
``CTVolumeEmbedder(pool=None)`` produces), and only a few consecutive "lesion" slices carry
the image signal (on top of a look shared by every lesion); the other slices are
background. With ``guide="ehr"``, the EHR embedding
(cut into ``n_tokens`` chunks) gives the queries and the CT slices the keys and values, and
the fused vector is ``[h_ehr, A_ehr<-img]``: the image reaches the survival head only
through the slices the EHR attends to. After training, the attention weights
(:meth:`~skfusion.fusion.attention.CoAttentionSurvival.attention_weights`) pick out the
lesion slices.

The data are synthetic: :func:`skfusion.datasets.make_multimodal_survival` draws an image
embedding and an EHR embedding with a known effect on survival; we spread the image
embedding over 3 lesion slices placed at random in a scan of 8 to 16 slices.
"""

# %%
# A cohort with per-slice CT embeddings
# -------------------------------------
# The slices live in one object column ``"img"`` holding a ``(T_i, 16)`` array per
# patient; the EHR is the block ``ehr__0 ... ehr__11``.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from skfusion.datasets import make_multimodal_survival
from skfusion.fusion.attention import CoAttentionSurvival

X, y = make_multimodal_survival(n_samples=600, n_features=(16, 12), signal=(1.5, 0.5), random_state=0)
rng = np.random.default_rng(0)
image = X.filter(like="img__").to_numpy()
n_slices = rng.integers(8, 17, size=len(X))
lesion_start = rng.integers(0, n_slices - 2)
lesion_look = rng.normal(size=image.shape[1])
scans = []
for vector, t, start in zip(image, n_slices, lesion_start):
    slices = rng.normal(size=(t, image.shape[1])).astype(np.float32)
    slices[start : start + 3] = vector + lesion_look + 0.3 * rng.normal(size=(3, image.shape[1]))
    scans.append(slices)
X = X.filter(like="ehr__").assign(img=pd.Series(scans, dtype=object))
train, test = np.arange(500), np.arange(500, 600)

# %%
# EHR-guided co-attention
# -----------------------
# ``linear_path=False``: the linear model that sits beside every network by default would
# read the mean of the slices; without it the image reaches the risk only through attention.
model = CoAttentionSurvival(guide="ehr", n_tokens=4, attention_dim=16, linear_path=False, random_state=0)
model.fit(X.iloc[train], y[train])
print(f"test C-index: {model.score(X.iloc[test], y[test]):.3f}")

# %%
# Attention over the slices of a few test patients
# ------------------------------------------------
# ``attention_weights`` returns one ``(n_samples, n_heads, T_query, T_key)`` array per
# direction. Averaging over the EHR query tokens gives one weight per slice; padded slices
# (beyond a patient's scan) have exactly zero weight and are left blank. The red frame marks
# the lesion slices.
patients = test[:6]
weights = model.attention_weights(X.iloc[patients])["ehr<-img"][:, 0].mean(axis=1)
shown = np.ma.masked_where(np.arange(weights.shape[1])[None, :] >= n_slices[patients][:, None], weights)

fig, ax = plt.subplots(figsize=(7, 3.2))
image_plot = ax.imshow(shown, cmap="viridis", aspect="auto")
for row, patient in enumerate(patients):
    ax.add_patch(plt.Rectangle((lesion_start[patient] - 0.5, row - 0.5), 3, 1, fill=False, ec="red", lw=2))
ax.set_xlabel("CT slice")
ax.set_ylabel("test patient")
ax.set_yticks(range(len(patients)), [str(p) for p in patients])
fig.colorbar(image_plot, ax=ax, label="attention weight")
ax.set_title("EHR-guided attention over CT slices")
fig.tight_layout()

# %%
# How much attention lands on the lesion
# --------------------------------------
# Over all test patients, the share of attention on the 3 lesion slices, against the
# 3 / T_i a uniform (mean-pooling) weighting would give.
all_weights = model.attention_weights(X.iloc[test])["ehr<-img"][:, 0].mean(axis=1)
on_lesion = [all_weights[i, s : s + 3].sum() for i, s in enumerate(lesion_start[test])]
uniform = 3 / n_slices[test]
print(f"attention on the lesion slices: {np.mean(on_lesion):.2f} (uniform weighting: {np.mean(uniform):.2f})")
