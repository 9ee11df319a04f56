"""
Saliency beside attention: which CT slices and pixels move the predicted risk
=============================================================================

Attention weights say where a model *looks*; a saliency map says what *moves its score*.
Zhang et al., "Fusion is not one-size-fits-all" (arXiv:2606.15038, 2026) compare saliency
maps of image-only and fused models over the CT (their Fig. 2). :mod:`skfusion.inspection`
computes two such maps for any fitted model with a network: the gradient of the score
(:func:`~skfusion.inspection.gradient_saliency`) and integrated gradients
(:func:`~skfusion.inspection.integrated_gradients`), whose attributions add up to the
change of the score from a baseline input. The score is the Cox risk of a survival model (a
class logit for a classifier).

Two synthetic cohorts with a known answer: (1) per-slice CT embeddings in which three
consecutive "lesion" slices carry the signal (as in the attention example), explained slice
by slice over z; (2) small raw images whose risk comes from one bright square, explained
pixel by pixel with the image encoder trained inside the network.
"""

# %%
# A cohort with per-slice CT embeddings
# -------------------------------------
# The slices live in one object column ``"img"`` holding a ``(T_i, 16)`` array per
# patient; the EHR is the block ``ehr__0 ... ehr__11``.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sksurv.util import Surv

from skfusion import ConcatSurvival
from skfusion.datasets import make_multimodal_survival
from skfusion.fusion.attention import CoAttentionSurvival
from skfusion.inspection import gradient_saliency, integrated_gradients, token_importance
from skfusion.plot import plot_saliency_overlay, plot_slice_importance

X, y = make_multimodal_survival(n_samples=400, n_features=(16, 12), signal=(1.5, 0.5), random_state=0)
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
train, test = np.arange(320), np.arange(320, 400)

# ``linear_path=False``: as in the attention example, the image reaches the risk only through
# attention (the linear model beside the network by default would read the mean of the slices).
model = CoAttentionSurvival(guide="ehr", n_tokens=4, attention_dim=16, linear_path=False, random_state=0)
model.fit(X.iloc[train], y[train])
print(f"test C-index: {model.score(X.iloc[test], y[test]):.3f}")

# %%
# Attention and integrated gradients over the slices
# --------------------------------------------------
# Attention: the EHR queries' weights on each slice (averaged over the query tokens).
# Integrated gradients: each slice's share of the change of the risk from an all-zero scan,
# summed over its 16 features (:func:`~skfusion.inspection.token_importance`); shown as
# magnitudes. The red frames mark the lesion slices.
patients = test[:6]
rows = X.iloc[patients]
weights = model.attention_weights(rows)["ehr<-img"][:, 0].mean(axis=1)
attention = [w[:t] for w, t in zip(weights, n_slices[patients])]
attributions = integrated_gradients(model, rows, "img", n_steps=32)
importance = token_importance(attributions)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
plot_slice_importance(attention, ax=axes[0], labels=patients, colorbar_label="attention weight")
plot_slice_importance(
    [np.abs(v) for v in importance], ax=axes[1], labels=patients, cmap="magma", colorbar_label="|integrated gradients|"
)
for ax in axes:
    for row, patient in enumerate(patients):
        ax.add_patch(plt.Rectangle((lesion_start[patient] - 0.5, row - 0.5), 3, 1, fill=False, ec="red", lw=2))
axes[0].set_title("where the EHR attends")
axes[1].set_title("what moves the risk")
axes[0].set_ylabel("test patient")
fig.tight_layout()

# %%
# Completeness: a patient's attributions add up to the change of its risk when its scan is
# replaced by zeros (the baseline), up to the error of the 32-point quadrature.
zero_scans = rows.assign(img=pd.Series([np.zeros_like(s) for s in rows["img"]], index=rows.index, dtype=object))
change = model.predict(rows) - model.predict(zero_scans)
print("sum of attributions:", np.round([a.sum() for a in attributions], 3))
print("risk(x) - risk(0):  ", np.round(change, 3))
on_lesion = [np.abs(v)[s : s + 3].sum() / np.abs(v).sum() for v, s in zip(importance, lesion_start[patients])]
uniform = np.mean(3 / n_slices[patients])
print(f"share of |attribution| on the lesion slices: {np.mean(on_lesion):.2f} (uniform: {uniform:.2f})")

# %%
# Pixels: the image encoder inside the network
# --------------------------------------------
# Raw ``(16, 16, 1)`` grey images in [0, 1] in a column ``"cxr"`` (channels last, as numpy,
# Pillow and pydicom give images); the risk rises with the brightness of a 4 x 4 square at a
# fixed place. A small CNN (``image_encoder=``) is trained with the model, so the gradient
# reaches the pixels; the saliency comes back in the images' ``(16, 16, 1)`` layout.
n, size = 300, 16
logits = rng.normal(scale=0.5, size=(n, size, size, 1))
brightness = rng.normal(size=n).astype(np.float32)
logits[:, 3:7, 9:13, 0] += brightness[:, None, None]
images = (1 / (1 + np.exp(-logits))).astype(np.float32)
clinical = rng.normal(size=(n, 3)).astype(np.float32)
eta = 1.5 * brightness + 0.5 * clinical[:, 0]
y_img = Surv.from_arrays(rng.random(n) < 0.8, rng.exponential(np.exp(-eta)))
X_img = pd.DataFrame({f"clin__{j}": clinical[:, j] for j in range(3)})
X_img["cxr"] = pd.Series(list(images), dtype=object)

cnn = torch.nn.Sequential(
    torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten()
)
pixel_model = ConcatSurvival(image_encoder=cnn, random_state=0)
pixel_model.fit(X_img.iloc[:250], y_img[:250])
print(f"test C-index: {pixel_model.score(X_img.iloc[250:], y_img[250:]):.3f}")

shown = X_img.iloc[250:254]
saliency = gradient_saliency(pixel_model, shown, "cxr")
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, im, s in zip(axes, shown["cxr"], saliency):
    plot_saliency_overlay(im, s, ax=ax)
    ax.add_patch(plt.Rectangle((8.5, 2.5), 4, 4, fill=False, ec="cyan", lw=1.5))
fig.suptitle("gradient saliency of the risk over the pixels (cyan: the informative square)")
fig.tight_layout()
