"""
A MEDS cohort: from event shards to a cross-validated survival score
====================================================================

MEDS (the Medical Event Data Standard) keeps a cohort's coded events in parquet shards,
its subjects' splits under ``metadata/`` and the prediction tasks in label tables. Here the
cohort is real: the Mayo Clinic PBC follow-up visits (R's ``pbcseq``, 312 patients), written
as a MEDS dataset with :func:`~skfusion.datasets.make_pbcseq_meds` (labs with LOINC codes
and values, findings, death or transplant at the end of follow-up). One label per patient
alive at the one-year landmark; :func:`~skfusion.datasets.load_meds` gives one row per
label whose ``ehr`` cell holds the patient's events up to that day (never later), and
:func:`~skfusion.datasets.meds_time_to_event` the time from the landmark to death. A
one-hot encoder and a concatenation survival model are scored on the dataset's own
``held_out`` subjects with the inverse-probability-of-censoring weighted C-index
(Uno et al., Statistics in Medicine 2011).
"""

# %%
# Write the MEDS dataset, read it back as ``(X, y)``
# --------------------------------------------------
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import PredefinedSplit, cross_val_score
from sklearn.pipeline import Pipeline
from sksurv.metrics import as_concordance_index_ipcw_scorer

from skfusion import ConcatSurvival
from skfusion.datasets import load_meds, make_pbcseq_meds, meds_time_to_event
from skfusion.encoders import OneHotEHREncoder

with tempfile.TemporaryDirectory() as root:
    labels = make_pbcseq_meds(root, landmark=365)
    X, died = load_meds(root, labels)
    y, followable = meds_time_to_event(root, X.index, ["MEDS_DEATH"])

X, y = X[followable], y[followable]  # rows with a record after the landmark (here all of them)
print(X.index.names, X.shape, f"{died.mean():.0%} died after the landmark")
print(X["ehr"].iloc[0].to_frame().tail(6))

# %%
# Score on the dataset's splits
# -----------------------------
# ``PredefinedSplit`` holds the ``held_out`` subjects out (fold 0) and trains on all the
# others (-1: always in training), so that the score is the one the MEDS splits define.
split = X.index.get_level_values("split")
cv = PredefinedSplit(np.where(split == "held_out", 0, -1))
# lr=0.01, batches of 64 and early stopping after 5 flat epochs: seconds on a CPU for 260 rows.
pipe = Pipeline(
    [
        ("emb", OneHotEHREncoder(windows=[180, None])),
        ("fuse", ConcatSurvival(lr=0.01, batch_size=64, n_iter_no_change=5, random_state=0)),
    ]
)
tau = float(np.quantile(y["time"][y["event"]], 0.8))  # within the follow-up of the test fold
scorer = as_concordance_index_ipcw_scorer(pipe, tau=tau)
scores = cross_val_score(scorer, X, y, cv=cv)
print(f"{int((split == 'held_out').sum())} held-out patients: IPCW C-index {scores[0]:.3f} (tau {tau:.0f} days)")

# %%
# Follow-up after the landmark, by split
# --------------------------------------
fig, ax = plt.subplots(figsize=(6, 3))
for name in ["train", "tuning", "held_out"]:
    rows = split == name
    ax.hist(y["time"][rows] / 365.25, bins=20, histtype="step", density=True, label=f"{name} ({rows.sum()})")
ax.set(xlabel="years after the landmark", ylabel="density", title="pbcseq as MEDS: follow-up by split")
ax.legend()
fig.tight_layout()
plt.show()
