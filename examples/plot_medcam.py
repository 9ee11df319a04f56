"""
MedCAM: adapt an image embedding with the EHR, then classify from the image alone
=================================================================================

MedCAM (under review) aligns a pre-trained image representation with the patient's EHR time
series, globally (a bidirectional InfoNCE between the image and the whole series) and
locally (each image with the ``top_k`` time steps it attends to most). The adapted
encoder then needs no EHR: here it is aligned on a paired cohort (image + EHR, no labels)
and used on a second cohort that has images and labels but no EHR, as the paper does for
NIH, VinDr-CXR and CheXpert.

The data are synthetic (:func:`skfusion.ssl.make_paired_image_ehr`): a few disease factors
drive 14 findings, the EHR and the image; the image embedding also carries larger nuisance
variation that says nothing about the findings.
"""

# %%
# Three cohorts
# -------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skfusion.metrics import auroc
from skfusion.ssl import MedCAMAdapter, MedCAMClassifier
from skfusion.datasets import make_paired_image_ehr

X, Y = make_paired_image_ehr(
    n_samples=2600, n_image_features=128, n_nuisance=16, n_timesteps=(8, 16), random_state=0
)
paired = X.iloc[:1500]  # image + EHR, labels unused
labelled, y_lab = X.iloc[1500:1600].drop(columns="ehr"), Y[1500:1600]  # no EHR
test, y_test = X.iloc[1600:].drop(columns="ehr"), Y[1600:]  # no EHR
paired.iloc[:3, [0, 1, -1]]

# %%
# Align the image with the EHR
# ----------------------------
# The image embedding is frozen; the adapter is an MLP on it, trained with the global +
# local loss (eq. 8). ``transform`` reads the image columns only.
adapter = MedCAMAdapter(projection_dim=32, hidden_dim=128, lstm_dim=32, max_epochs=20, random_state=0)
adapter.fit(paired)
adapter.transform(test).iloc[:3, :4]

# %%
# Image-only classifiers on the labelled cohort
# ---------------------------------------------
# A logistic probe on the raw embedding against MedCAM's linear head on the adapted one
# (the fitted adapter is passed in a ``FrozenEstimator``: it is not re-fitted, and with
# ``freeze_adapter=True`` only the head learns from the 100 labels).
raw = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=1000)))
raw.fit(labelled, y_lab)
medcam = MedCAMClassifier(FrozenEstimator(adapter), freeze_adapter=True, max_epochs=100, batch_size=32, random_state=0)
medcam.fit(labelled, y_lab)
scores = {
    "raw embedding": auroc(y_test, raw.predict_proba(test)),
    "MedCAM-adapted": auroc(y_test, medcam.predict_proba(test)),
}
print(scores)

# %%
# The loss during the alignment, and the test AUROC
# -------------------------------------------------
fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
left.plot(adapter.net_.history[:, "train_loss"], marker="o")
left.set_xlabel("epoch")
left.set_ylabel("global + local loss")
right.bar(list(scores), list(scores.values()), color=["grey", "tab:blue"])
right.set_ylim(0.5, max(scores.values()) + 0.05)
right.set_ylabel("macro AUROC (test, image only)")
fig.tight_layout()
plt.show()
print({name: round(float(value), 3) for name, value in scores.items()}, np.round(adapter.net_.history[-1, "train_loss"], 3))
