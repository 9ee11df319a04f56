"""
Saliency down to the CT voxels: an image-only model against cross-attention fusion
==================================================================================

Zhang et al., "Fusion is not one-size-fits-all" (arXiv:2606.15038, 2026), Fig. 2, lay the
gradient saliency of an image-only model beside that of a cross-attention fusion model, on
the same CT slices. In skfusion a CT reaches those models as slice embeddings made by a
frozen :class:`~skfusion.encoders.CTVolumeEmbedder`; given the fitted
:class:`~sklearn.pipeline.Pipeline`, :func:`~skfusion.inspection.gradient_saliency` follows
the gradient of the predicted risk through the model, the z-average or the slice tokens,
the frozen backbone and the embedder's windowing, resizing and normalisation, into each
voxel in Hounsfield units (HU).

**The CT is real, the outcome synthetic.** Every volume is built from the same real chest
CT slice of pydicom's test data (``CT_small.dcm``, read offline): each patient gets six
axial slices, the real slice shifted by a pixel or two with scanner-like noise, and a
soft-tissue nodule planted in the lung on the two middle slices. The survival times are
drawn from a hazard that grows with the nodule's radius and with one EHR feature (the
planted signal); nothing about real patients is learned here.
"""

# %%
# A cohort built on a real CT slice
# ---------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydicom
import torch
from pydicom.data import get_testdata_file
from scipy import ndimage
from sklearn.pipeline import Pipeline
from sksurv.util import Surv

from skfusion import UnimodalSurvival
from skfusion.encoders import CTVolumeEmbedder
from skfusion.fusion.attention import CrossAttentionSurvival
from skfusion.inspection import gradient_saliency, integrated_gradients
from skfusion.plot import plot_slice_saliency

ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
real = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)  # (128, 128) in HU
# Nodule centres: lung voxels at least 7 pixels from anything denser than -500 HU.
lung = ndimage.binary_erosion(real < -500, iterations=7)
lung[:, :8] = lung[:, -8:] = lung[:8] = False  # and away from the cropped image's edges
centres = np.argwhere(lung)

rng = np.random.default_rng(0)
n_patients, n_slices = 240, 6
yy, xx = np.mgrid[: real.shape[0], : real.shape[1]]
radius = rng.uniform(1.5, 6.0, n_patients)
where = centres[rng.integers(len(centres), size=n_patients)]
volumes = []
for r, (cy, cx) in zip(radius, where):
    volume = np.stack([np.roll(real, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1)) for _ in range(n_slices)])
    for z, shrink in ((2, 0.8), (3, 1.0)):  # a nodule seen on two slices, smaller on the lower one
        volume[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= (shrink * r) ** 2] = 30.0
    volumes.append((volume + rng.normal(0, 10, volume.shape)).astype(np.float32))

ehr = rng.normal(size=(n_patients, 4))
risk = 1.2 * (radius - radius.mean()) / radius.std() + 0.8 * ehr[:, 0]
time = rng.exponential(10 * np.exp(-risk))
censor = rng.exponential(20, n_patients)
y = Surv.from_arrays(event=time <= censor, time=np.minimum(time, censor))
X = pd.DataFrame({f"ehr__{j}": ehr[:, j] for j in range(4)})
X["ct"] = pd.Series(volumes, dtype=object)
train, test = np.arange(200), np.arange(200, n_patients)
print(f"{n_patients} volumes of shape {volumes[0].shape}, {y['event'].mean():.0%} events")

# %%
# Two pipelines on the same frozen backbone
# -----------------------------------------
# A small convolutional network with fixed random weights stands in for the paper's
# MedImageInsight (any ``torch.nn.Module`` from ``(B, 3, H, W)`` to ``(B, d)`` will do): it
# reads each windowed slice (``"pe"``, the lung window) resized to 64 x 64, and keeps, for
# each of its 32 filters, the strongest response anywhere on the slice (a global max pool).
# Only the four middle slices are kept (``slices=(1, 5)``). The image-only model reads the
# z-average of the slice embeddings; the cross-attention model of Zhang et al. (Fig. 1d)
# reads the slice embeddings as tokens (``pool=None``) beside the EHR block. Both stop
# after 5 epochs without progress on a held-out tenth of the training rows, to keep the
# page fast.
torch.manual_seed(0)
backbone = torch.nn.Sequential(
    torch.nn.Conv2d(3, 16, 5, stride=2, padding=2),
    torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, padding=1),
    torch.nn.ReLU(),
    torch.nn.AdaptiveMaxPool2d(1),
    torch.nn.Flatten(),
)


def ct_embedder(pool):
    return CTVolumeEmbedder(backbone=backbone, window="pe", slices=(1, 5), image_size=64, pool=pool)


training = {"early_stopping": True, "n_iter_no_change": 5, "random_state": 0}
image_only = Pipeline([("ct", ct_embedder("mean")), ("survival", UnimodalSurvival(modality="ct", **training))])
fusion = Pipeline([("ct", ct_embedder(None)), ("survival", CrossAttentionSurvival(attention_dim=16, **training))])
for name, model in (("image only", image_only), ("cross-attention", fusion)):
    model.fit(X.iloc[train], y[train])
    print(f"{name:>15}: test C-index {model.score(X.iloc[test], y[test]):.3f}")

# %%
# Saliency on the same slices (the layout of Fig. 2)
# --------------------------------------------------
# One row per model, one panel per kept slice of two test patients: the CT in the lung
# window with the magnitude of the gradient of the risk over each voxel (one colour scale
# per patient and model). The cyan circle marks the planted nodule; slices 0 and 5, which
# ``slices`` drops, have zero saliency and are not shown.
patients = test[:2]
rows = X.iloc[patients]
models = {"image only": image_only, "cross-attention": fusion}
maps = {name: gradient_saliency(model, rows, "ct") for name, model in models.items()}
kept = [1, 2, 3, 4]
fig, axes = plt.subplots(2, 2 * len(kept), figsize=(16, 4.6))
for p, patient in enumerate(patients):
    for m, (name, saliency) in enumerate(maps.items()):
        panels = axes[m, p * len(kept) : (p + 1) * len(kept)]
        plot_slice_saliency(volumes[patient], saliency[p], kept, window="pe", ax=panels)
        for z, panel in zip(kept, panels):
            panel.set_title(f"patient {patient}, z = {z}", fontsize=8)
            if z in (2, 3):
                panel.add_patch(plt.Circle(where[patient][::-1], radius[patient] + 3, fill=False, ec="cyan", lw=1))
        panels[0].text(-0.08, 0.5, name, transform=panels[0].transAxes, rotation=90, va="center", ha="right")
fig.suptitle("|d risk / d HU| over the voxels: image-only model (top) against cross-attention fusion (bottom)")
fig.tight_layout()

# %%
# How much more of each map lies on the nodule (and a pixel around it) than its share of
# the voxels of the two slices that show it:
for name, saliency in maps.items():
    enrichment = []
    for p, patient in enumerate(patients):
        disk = (yy - where[patient][0]) ** 2 + (xx - where[patient][1]) ** 2 <= (radius[patient] + 1) ** 2
        magnitude = np.abs(saliency[p][2:4])
        enrichment.append(magnitude[:, disk].sum() / magnitude.sum() / disk.mean())
    print(f"{name:>15}: {np.round(enrichment, 1)} times the nodule's share of the voxels")

# %%
# The backbone's weights are random, so the maps say where its features respond to a change
# of the voxels, as each model reads them: in the lung, whose contrast the window keeps, and
# most on the nodule; bone, above the window's top (150 HU), gets none, the window's
# clipping being flat there. A trained foundation model in its place gives maps worth
# reading for what they show of the anatomy.

# %%
# Integrated gradients add up to the change of the risk
# ------------------------------------------------------
# From a volume at the window's low end (black once windowed: the default baseline), the
# attributions of a volume's voxels sum to its risk minus the baseline's, up to the error of
# the quadrature (here 128 steps).
one = X.iloc[patients[:1]]
attributions = integrated_gradients(fusion, one, "ct", n_steps=128)
low = fusion.named_steps["ct"].window_[0]  # -1350 HU
black = one.assign(ct=pd.Series([np.full_like(volumes[patients[0]], low)], index=one.index, dtype=object))
print(f"sum of voxel attributions: {attributions[0].sum():.4f}")
print(f"risk(x) - risk(baseline):  {(fusion.predict(one) - fusion.predict(black))[0]:.4f}")
