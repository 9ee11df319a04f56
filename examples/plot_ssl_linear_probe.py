"""
Self-supervised image-EHR pretraining and linear probing
========================================================

MedMod (Elsharief et al. 2025) pretrains image and EHR encoders without labels with ConVIRT, VICReg
and ALIGN, and evaluates the representations by linear probing. In skfusion these methods
are transformers, so a probe is a ``Pipeline``: the pretraining step ignores ``y`` and
``transform`` hands the embedding to any scikit-learn (or scikit-survival) model.
"""

# %%
# Paired data
# -----------
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from skfusion.metrics import auroc
from skfusion.ssl import ALIGN, ConVIRT, VICReg
from skfusion.datasets import make_paired_image_ehr

X, Y = make_paired_image_ehr(n_samples=1400, n_image_features=32, n_timesteps=(6, 12), random_state=0)
X_train, Y_train, X_test, Y_test = X.iloc[:1000], Y[:1000], X.iloc[1000:], Y[1000:]

# %%
# One pipeline per method
# -----------------------
# ``output="both"`` concatenates the image and EHR embeddings (``"image"`` or ``"ehr"``
# give one of them; ``transform`` then needs only that modality's columns). The probe is a
# one-vs-rest logistic regression for the 14 findings.
settings = {"projection_dim": 16, "hidden_dim": 64, "lstm_dim": 32, "max_epochs": 10, "random_state": 0}
rows = []
for method in (ConVIRT, ALIGN, VICReg):
    for output in ("image", "both"):
        probe = Pipeline(
            [
                ("ssl", method(output=output, **settings)),
                ("probe", OneVsRestClassifier(LogisticRegression(max_iter=1000))),
            ]
        )
        probe.fit(X_train, Y_train)
        rows.append({"method": method.__name__, "output": output, "AUROC": auroc(Y_test, probe.predict_proba(X_test))})
results = pd.DataFrame(rows).pivot(index="method", columns="output", values="AUROC").round(3)
print(results)

# %%
# Test macro AUROC of the linear probes
# -------------------------------------
ax = results.plot.bar(figsize=(5, 3.2), rot=0)
ax.set_ylim(0.5, 0.85)
ax.set_ylabel("macro AUROC (test)")
plt.tight_layout()
plt.show()
