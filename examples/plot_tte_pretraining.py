"""
Time-to-event pretraining of a CT encoder
=========================================

Huo, Fries, Lozano et al. (ICLR 2025) pretrain a 3-D image encoder to predict *when* each of
thousands of EHR codes will next occur after the scan, with MOTOR's piecewise-exponential
head (Steinberg et al., ICLR 2024). No outcome label is needed: the patient's future EHR is
the supervision. In skfusion this is a transformer, :class:`skfusion.ssl.TimeToEventPretraining`,
fitted on a frame holding the volumes, the event frames and the scan (index) times.

Here a synthetic cohort plants two nodule biomarkers in CT-like volumes; they drive the
hazards of half the future codes and of an outcome that never appears in the EHR. Brighter
nuisance blobs carry most of the image variance and drive nothing.
"""

# %%
# A cohort of volumes, event frames and index times
# -------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis

from skfusion import ConcatSurvival
from skfusion.datasets import make_imaging_ehr_cohort
from skfusion.encoders import OneHotEHREncoder
from skfusion.metrics import concordance_index
from skfusion.ssl import TimeToEventPretraining

torch.set_num_threads(1)
X, outcomes, truth = make_imaging_ehr_cohort(n_samples=400, signal=1.5, random_state=0, return_truth=True)
y = outcomes["outcome_0"]
train, test = X.iloc[:300], X.iloc[300:]
y_train, y_test = y[:300], y[300:]
print(X.head(3))

# %%
# Pretraining on the future EHR
# -----------------------------
# The tasks are the codes that follow the scans; ``max_epochs=0`` keeps the randomly
# initialised encoder, the baseline.
settings = {"window": "pe", "lr": 3e-3, "batch_size": 16, "random_state": 0, "device": "cpu"}
untrained = TimeToEventPretraining(max_epochs=0, **settings).fit(train)
pretrained = TimeToEventPretraining(max_epochs=10, **settings).fit(train)
print("tasks:", list(pretrained.tasks_))
print("piece boundaries (days):", np.round(pretrained.piece_boundaries_, 0))

# %%
# Linear probes on the held-out outcome
# -------------------------------------
# ``transform`` needs the image column only and writes the ``ct__i`` block.
scores = {"oracle (true risk)": concordance_index(y_test, truth.outcome_risk[300:, 0])}
for name, model in {"untrained": untrained, "TTE-pretrained": pretrained}.items():
    probe = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0))
    probe.fit(model.transform(train[["ct"]]), y_train)
    scores[name] = concordance_index(y_test, probe.predict(model.transform(test[["ct"]])))

# %%
# Fusion with the EHR history
# ---------------------------
# The pretrained embedding and a one-hot encoding of the history before the scan go into
# ``ConcatSurvival``. (``pretrained.image_encoder_`` can instead be given as the
# ``image_encoder=`` of the fusion estimators, which then fine-tune it on the outcome, and
# ``pretrained.backbone_`` as the ``backbone=`` of ``CTVolumeEmbedder``.)
history = OneHotEHREncoder(index_time="index_time").fit(train)


def fused(frame):
    return pretrained.transform(history.transform(frame)).drop(columns="index_time")


concat = ConcatSurvival(random_state=0, device="cpu").fit(fused(train), y_train)
scores["TTE-pretrained + EHR (ConcatSurvival)"] = concordance_index(y_test, concat.predict(fused(test)))
print(pd.Series(scores).round(3))

# %%
# Harrell's C on the test rows
# ----------------------------
ax = pd.Series(scores).plot.barh(figsize=(6, 2.6))
ax.set_xlim(0.45, 0.85)
ax.set_xlabel("Harrell's C (outcome not among the pretraining tasks)")
plt.tight_layout()
plt.show()
