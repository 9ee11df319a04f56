"""
MedFuse with missing images
===========================

MedFuse (Hayat et al. 2022) reads the sequence of modality vectors ``[v_ehr, v_img]`` with an
LSTM, so a patient without an image is simply the shorter sequence ``[v_ehr]``. Here we
compare it with concatenation fusion, which substitutes a learnable vector for a missing
image (``ConcatClassifier(missing="learn")``, MedFuse's "early/joint" baselines), and late
fusion, which averages the heads of the modalities a row has (``LateFusionClassifier``), as
the share of patients with an image falls.

The data are synthetic: an EHR time series (a ``(T_i, 8)`` array per patient, 6 to 12 time
steps of a random walk) and a 16-d image embedding; the label depends on the latest value
of the first EHR variable and on the image.
"""

# %%
# A cohort with an EHR time series and an image embedding
# -------------------------------------------------------
# The time series lives in one object column ``"ehr"``; the image is the block
# ``img__0 ... img__15``, all-NaN for a patient without an image.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from skfusion import ConcatClassifier, LateFusionClassifier
from skfusion.fusion.medfuse import MedFuseClassifier

rng = np.random.default_rng(0)
n, n_test = 500, 500
lengths = rng.integers(6, 13, size=n + n_test)
ehr = [np.cumsum(rng.normal(size=(t, 8)), axis=0).astype(np.float32) / np.sqrt(t) for t in lengths]
img = rng.normal(size=(n + n_test, 16)).astype(np.float32)
latest = np.array([s[-1, 0] for s in ehr])
eta = 1.5 * latest + 1.5 * img[:, 0] - img[:, 1] + 0.8 * latest * img[:, 2]
labels = (eta + 0.5 * rng.normal(size=n + n_test) > 0).astype(int)


def cohort(image_share, seed):
    """The train and test frames with images kept for ``image_share`` of the patients."""
    keep = np.random.default_rng(seed).random(n + n_test) < image_share
    block = np.where(keep[:, None], img, np.nan)
    X = pd.DataFrame(block, columns=[f"img__{j}" for j in range(16)])
    X["ehr"] = pd.Series(ehr, dtype=object)
    return X.iloc[:n], X.iloc[n:]


X_train, X_test = cohort(0.5, seed=1)
X_train.iloc[:3, [0, 1, -1]]

# %%
# Three ways to fuse, as the images become scarce
# -----------------------------------------------
# Every model reads the series with a two-layer LSTM (here 32 units wide to keep the
# example fast; the papers use 256). MedFuse pre-trains its EHR LSTM alone on the task,
# then trains everything together; concatenation and late fusion train theirs end to end.
# Every model loses the image's share of the signal as images become rare, and the three
# meet near the EHR-only performance. ``n_iter_no_change=10`` (scikit-learn's patience, in
# epochs, against the 500 optimizer steps of "auto"): the internal folds choose nearly the
# same epochs here in a third of the time.
common = {"n_iter_no_change": 10, "random_state": 0}
models = {
    "MedFuse": MedFuseClassifier(lstm_dim=32, fusion_dim=32, **common),
    "Concat (missing='learn')": ConcatClassifier(missing="learn", lstm_dim=32, **common),
    "Late fusion": LateFusionClassifier(lstm_dim=32, **common),
}
shares = [1.0, 0.75, 0.5, 0.25]
auroc = {name: [] for name in models}
for share in shares:
    X_train, X_test = cohort(share, seed=1)
    for name, model in models.items():
        model.fit(X_train, labels[:n])
        auroc[name].append(roc_auc_score(labels[n:], model.predict_proba(X_test)[:, 1]))

pd.DataFrame(auroc, index=pd.Index(shares, name="share with image")).round(3)

# %%
# Test AUROC against the share of patients with an image
# ------------------------------------------------------
fig, ax = plt.subplots(figsize=(5, 3.5))
for name, values in auroc.items():
    ax.plot(shares, values, marker="o", label=name)
ax.set_xlabel("share of patients with an image")
ax.set_ylabel("test AUROC")
ax.invert_xaxis()
ax.legend()
fig.tight_layout()
plt.show()
