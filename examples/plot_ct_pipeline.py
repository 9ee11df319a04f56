"""
CT volumes to a survival model: windowing, slice embeddings and z-averaging
===========================================================================

Zhang et al. (2026, arXiv:2606.15038) turn each CT volume into one vector before fusing it
with the EHR: they keep
the axial slices, clips them to a Hounsfield window ([-1350, 150] HU for pulmonary
embolism, [-125, 225] HU for cardiovascular events), encodes every slice with a 2-D
foundation model and averages the slice embeddings over z.
:class:`~skfusion.encoders.CTVolumeEmbedder` does exactly that, as a scikit-learn
transformer that reads DICOM series straight from disk.

This example writes a small synthetic cohort of DICOM series, looks at the two windows,
embeds the volumes with the default training-free descriptor (pass ``backbone=`` a local
MedImageInsight module to reproduce the paper) and fits a survival model on the embeddings.
"""

# %%
# A synthetic cohort of DICOM series
# ----------------------------------
# Each patient gets an 8-slice volume: air around a body of fat and soft tissue, with a
# contrast-filled "heart" whose wall carries calcified spots. The amount of fat and of
# calcium drive the hazard. Slices are written as real DICOM files (pydicom's ``CT_small``
# as the template), stored as ``HU + 1024`` with ``RescaleIntercept = -1024``.
import copy
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydicom
from pydicom.data import get_testdata_file
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sksurv.util import Surv

from skfusion import UnimodalSurvival
from skfusion.encoders import CTVolumeEmbedder

rng = np.random.default_rng(0)
n_patients, n_slices, size = 80, 8, 64
template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def phantom(fat, calcium):
    yy, xx = np.mgrid[:size, :size] - size / 2
    body = yy**2 / 0.8 + xx**2 < (0.42 * size) ** 2
    heart = (yy + 4) ** 2 + (xx - 3) ** 2 < (0.15 * size) ** 2
    volume = np.full((n_slices, size, size), -1000.0)
    is_fat = rng.random((n_slices, size, size)) < fat
    volume[:, body] = np.where(is_fat, -100.0, 40.0)[:, body]
    volume[:, heart] = 250.0
    spots = heart & (rng.random((n_slices, size, size)) < calcium)
    volume[spots] = 900.0
    return volume + rng.normal(0, 15, volume.shape)


def write_series(folder, volume, spacing=2.5):
    folder.mkdir(parents=True)
    series = pydicom.uid.generate_uid()
    for k, hu in enumerate(volume):
        ds = copy.deepcopy(template)
        ds.Rows, ds.Columns = hu.shape
        ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.ImagePositionPatient = [0.0, 0.0, k * spacing]
        ds.InstanceNumber = k + 1
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, pydicom.uid.generate_uid()
        ds.save_as(folder / f"{rng.integers(1 << 30):010d}.dcm")  # on-disk order is random


workdir = Path(tempfile.mkdtemp(prefix="skfusion-ct-"))
fat = rng.uniform(0.1, 0.8, n_patients)
calcium = rng.uniform(0.0, 0.3, n_patients)
paths = []
for i in range(n_patients):
    write_series(workdir / f"patient_{i:03d}", phantom(fat[i], calcium[i]))
    paths.append(str(workdir / f"patient_{i:03d}"))

risk = 2.5 * (fat - fat.mean()) / fat.std() + 1.5 * (calcium - calcium.mean()) / calcium.std()
time = rng.exponential(10 * np.exp(-0.5 * risk))
censor = rng.exponential(15, n_patients)
y = Surv.from_arrays(event=time <= censor, time=np.minimum(time, censor))
X = pd.DataFrame({"ct": paths})
print(f"{n_patients} series in {workdir}, {y['event'].mean():.0%} events")

# %%
# The two windows of Zhang et al. (2026)
# --------------------------------------
# The embedder clips each slice to the window and scales it to [0, 1]. The wide PE
# window keeps lung and soft tissue apart; the narrow MACE window spends its contrast on
# fat, muscle, blood and calcium.
files = sorted(Path(paths[0]).iterdir())
slices = sorted((pydicom.dcmread(f) for f in files), key=lambda ds: float(ds.ImagePositionPatient[2]))
hu = slices[n_slices // 2].pixel_array * 1.0 + float(slices[0].RescaleIntercept)
fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
for ax, (name, (low, high)) in zip(axes, {"pe": (-1350, 150), "mace": (-125, 225)}.items()):
    ax.imshow(np.clip((hu - low) / (high - low), 0, 1), cmap="gray")
    ax.set_title(f'window="{name}": [{low}, {high}] HU')
    ax.axis("off")
fig.tight_layout()

# %%
# Embedding the volumes
# ---------------------
# With no backbone, each slice is described by 77 training-free features (HU band
# fractions and means, windowed intensity histogram, edge statistics, a coarse grid), then
# averaged over z. ``cache_dir`` makes the extraction resumable: a second run, or one
# restarted after a crash, only computes the volumes not yet on disk.
embedder = CTVolumeEmbedder(window="mace", cache_dir=workdir / "cache")
embeddings = embedder.fit_transform(X)
print(embeddings.shape)
embeddings.iloc[:3, :8]

# %%
# A survival model on the embeddings
# ----------------------------------
# The embedder is an ordinary transformer, so it goes in a Pipeline with the survival
# model (and in ``GridSearchCV``: ``ct__window`` is a parameter like any other).
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
model = Pipeline(
    [
        ("ct", CTVolumeEmbedder(window="mace", cache_dir=workdir / "cache")),
        ("survival", UnimodalSurvival(modality="ct", random_state=0)),
    ]
)
model.fit(X_train, y_train)
print(f"test C-index: {model.score(X_test, y_test):.3f}")

# %%
# The DICOM files and the cache were only for this example.
shutil.rmtree(workdir)
