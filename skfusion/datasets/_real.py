"""Loaders for real multimodal data that ship with the installed dependencies (no download)."""

import numpy as np
import pandas as pd
from sksurv.datasets import load_breast_cancer


def load_breast_cancer_multimodal():
    """GSE7390 breast cancer survival data as two real modalities.

    scikit-survival's bundled ``load_breast_cancer`` (198 patients, distant metastasis as the
    event, 26% events): 76 gene-expression probes become the ``genes__<probe>`` block, and
    the clinical variables (age, tumour size, estrogen receptor status, grade one-hot) the
    ``clin__<variable>`` block.

    Returns
    -------
    X : pandas.DataFrame of shape (198, 84)
    y : structured ndarray
        ``(e.tdm, t.tdm)``: distant-metastasis event indicator and time.

    References
    ----------
    Desmedt et al. Strong time dependence of the 76-gene prognostic signature for node-negative
    breast cancer patients in the TRANSBIG multicenter independent validation series. Clinical
    Cancer Research 13(11), 2007.

    Examples
    --------
    >>> from skfusion.datasets import load_breast_cancer_multimodal
    >>> X, y = load_breast_cancer_multimodal()
    >>> X.shape
    (198, 84)
    """
    data, y = load_breast_cancer()
    genes = [c for c in data.columns if c.startswith("X")]
    clinical = pd.get_dummies(data[["age", "size", "er", "grade"]], columns=["er", "grade"], dtype=np.float64)
    clinical.columns = [c.replace(" ", "_") for c in clinical.columns]
    X = pd.concat(
        [data[genes].add_prefix("genes__"), clinical.add_prefix("clin__")],
        axis=1,
    ).astype(np.float64)
    return X, y
