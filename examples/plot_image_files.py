"""
Training MedFuse on image files
===============================

MedFuse (Hayat, Geras and Shamout, MLHC 2022) trains its chest X-ray encoder end to end on
hundreds of thousands of radiographs, which do not fit in memory. In skfusion an image
modality can be a column of **file paths** (PNG, JPEG, TIFF, DICOM, 2-D NIfTI): the
estimator reads the images of each batch while it trains, with MedFuse's preprocessing
(resize, random flip, affine and crop at training time; a centre crop at prediction) and
``num_workers`` DataLoader processes reading ahead. A ``None`` cell is a patient without an
image, which MedFuse handles as the shorter modality sequence.

The cohort here is synthetic: 200 patients with an EHR time series, and for 70 % of them
a PNG radiograph-like image in which a bright blob high up or low down carries part of
the label (a vertical position survives MedFuse's horizontal flips). One
real radiograph from ``pydicom-data`` (``RG1_UNCI.dcm``, a 1955 x 1841 DICOM) joins the
folder to show that DICOM files mix with the PNGs.
"""

# %%
# A folder of image files, and a frame of their paths
# ---------------------------------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from pydicom.data import get_testdata_file
from sklearn.metrics import roc_auc_score

from skfusion import MedFuseClassifier

rng = np.random.default_rng(0)
n = 200
folder = Path(tempfile.mkdtemp())
grid = np.linspace(0, 1, 96)
blob_high = rng.random(n) < 0.5
paths = []
for row in range(n):
    centre = (0.25 if blob_high[row] else 0.75) + 0.05 * rng.normal()
    blob = np.exp(-((grid[:, None] - centre) ** 2 + (grid[None, :] - 0.5) ** 2) * 40)
    pixels = np.clip(0.2 + 0.6 * blob + 0.15 * rng.random((96, 96)), 0, 1)
    path = folder / f"patient{row:03d}.png"
    Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
    paths.append(str(path))
paths[0] = get_testdata_file("RG1_UNCI.dcm")
has_image = rng.random(n) < 0.7
has_image[0] = True

lengths = rng.integers(4, 9, size=n)
ehr = [np.cumsum(rng.normal(size=(t, 4)), axis=0).astype(np.float32) / np.sqrt(t) for t in lengths]
latest = np.array([series[-1, 0] for series in ehr])
labels = ((1.2 * latest + 1.5 * np.where(blob_high, 1, -1) + 0.5 * rng.normal(size=n)) > 0).astype(int)

X = pd.DataFrame({"ehr": pd.Series(ehr, dtype=object), "cxr": np.where(has_image, paths, None)})
X.head()

# %%
# Training reads the images batch by batch
# ----------------------------------------
# ``image_size=64`` keeps the example quick on a CPU (MedFuse uses 224, the default); the
# image encoder is a ResNet-18 trained from random weights. Only one batch of images is
# in memory at a time. One validation split with a patience of 3 epochs keeps it quick too
# (on 140 rows, "auto" trains 3 internal folds with a patience of 100 epochs, then a refit).
train, test = np.arange(n) < 140, np.arange(n) >= 140
model = MedFuseClassifier(
    ehr="ehr",
    image="cxr",
    image_encoder="resnet18",
    image_size=64,
    lstm_dim=32,
    fusion_dim=32,
    early_stopping=True,
    n_iter_no_change=3,
    random_state=0,
)
model.fit(X[train], labels[train])
proba = model.predict_proba(X[test])[:, 1]
with_image = has_image[test]
print(f"test AUROC, patients with an image:    {roc_auc_score(labels[test][with_image], proba[with_image]):.2f}")
print(f"test AUROC, patients without an image: {roc_auc_score(labels[test][~with_image], proba[~with_image]):.2f}")

# %%
# Some of the files
# -----------------
# Two synthetic images (blob high: label pushed up; low: down) and the real radiograph.
import pydicom  # noqa: E402

fig, axes = plt.subplots(1, 3, figsize=(7, 2.5))
high, low = np.flatnonzero(blob_high[1:])[0] + 1, np.flatnonzero(~blob_high[1:])[0] + 1
for ax, row in zip(axes[:2], (high, low)):
    ax.imshow(np.asarray(Image.open(paths[row])), cmap="gray")
    ax.set_title(f"patient {row}")
axes[2].imshow(pydicom.dcmread(paths[0]).pixel_array, cmap="gray")
axes[2].set_title("RG1_UNCI.dcm")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
