"""The real survival data sets of ``bench_real.py``, each split into two modalities.

Every loader returns ``(X, y, description)``:

- ``X``: a DataFrame in skfusion's data contract, one ``"{modality}__{feature}"`` block per
  modality, with the raw features: numeric columns unscaled, with their missing values left
  as NaN (the benchmark imputes them inside each fold, with the training fold's median);
  categorical columns as strings (one-hot encoded inside each fold). pbcseq also has the raw
  ``"ehr"`` column of per-patient event frames.
- ``y``: scikit-survival's structured array ``(event, time)``.
- ``description``: where the data come from, the two modalities, and what was dropped.

The modality splits and the leaky columns are fixed in ``real_splits.json`` (SurvSet's column
names: ``num_*`` numeric, ``fac_*`` categorical); the feature names keep SurvSet's prefix
(support2 has both ``num_num_co`` and ``fac_num_co``). whas500, GBSG2, flchain and support2
come from SurvSet (Drysdale, "SurvSet: An open-source time-to-event dataset repository",
arXiv 2203.03094, 2022), bundled offline in the ``survset`` package, whose column names the
splits use; SurvSet's whas500 has 461 of the 500 rows of scikit-survival's
``load_whas500`` and the admission year and week, which scikit-survival's lacks. GSE7390 is
scikit-survival's ``load_breast_cancer``; pbcseq is :func:`skfusion.datasets.load_pbcseq_events`.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sksurv.datasets import load_breast_cancer
from sksurv.util import Surv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's skfusion

from skfusion.datasets import load_pbcseq_events  # noqa: E402

SPLITS = Path(__file__).parent / "real_splits.json"


def _splits():
    with open(SPLITS) as f:
        return json.load(f)


def _survset(name, title):
    from SurvSet.data import SurvLoader

    spec = _splits()
    df = SurvLoader().load_dataset(ds_name=name)["df"]
    leaky = spec["leaky_columns"].get(name, [])
    df = df.drop(columns=leaky)
    blocks = {}
    for modality, columns in spec["splits"][name].items():
        for column in columns:
            values = df[column]
            if column.startswith("fac_"):
                if values.isna().any():
                    raise ValueError(f"{name}: categorical column {column!r} has missing values.")
                values = values.astype(str).astype(object)
            else:
                values = values.astype(float)
            blocks[f"{modality}__{column}"] = values.to_numpy()
    X = pd.DataFrame(blocks)
    y = Surv.from_arrays(df["event"].to_numpy().astype(bool), df["time"].to_numpy().astype(float))
    used = {c for columns in spec["splits"][name].values() for c in columns}
    unused = sorted(set(df.columns) - used - {"pid", "event", "time"})
    description = _describe(
        f"{title} (SurvSet `{name}`)", X, y, dropped=leaky, unused=unused
    )
    return X, y, description


def _describe(title, X, y, dropped=(), unused=(), extra=""):
    modalities = {}
    for column in X.columns:
        modality = column.split("__", 1)[0]
        modalities.setdefault(modality, []).append(column.split("__", 1)[1])
    parts = [f"{m} ({len(f)}: {_listing(f)})" for m, f in modalities.items()]
    missing = {c: int(n) for c, n in X.isna().sum().items() if n}
    text = (
        f"{title}: {len(X)} rows, {int(y['event'].sum())} events; modalities "
        + "; ".join(parts)
        + "."
    )
    if dropped:
        text += f" Dropped as leaky: {', '.join(dropped)}."
    if unused:
        text += f" Not used: {', '.join(unused)}."
    if missing:
        text += " Missing numeric values (median-imputed inside each fold): " + ", ".join(
            f"{c.split('__', 1)[1]} {n}" for c, n in missing.items()
        ) + "."
    else:
        text += " No missing values."
    return text + extra


def _listing(features, at_most=20):
    if len(features) <= at_most:
        return ", ".join(features)
    return f"{', '.join(features[:3])}, ..., {features[-1]}"


def load_support2():
    """SUPPORT2 (Knaus et al. 1995): demographics and comorbidities vs day-3 physiology."""
    return _survset("support2", "SUPPORT2")


def load_flchain():
    """Serum free light chains (Dispenzieri et al. 2012): demographics vs labs."""
    return _survset("flchain", "flchain")


def load_gbsg2():
    """German Breast Cancer Study Group 2 (Schumacher et al. 1994): patient vs tumour."""
    return _survset("GBSG2", "GBSG2")


def load_whas500():
    """Worcester Heart Attack Study (Hosmer et al. 2008): history vs acute presentation."""
    return _survset("whas500", "whas500")


def load_gse7390():
    """GSE7390 breast cancer (Desmedt et al. 2007): 76 gene probes vs clinical variables."""
    data, outcome = load_breast_cancer()
    clinical = ["age", "size", "er", "grade"]
    genes = [c for c in data.columns if c.startswith("X")]
    if len(genes) != 76:
        raise ValueError(f"GSE7390: expected 76 probe columns, found {len(genes)}.")
    blocks = {f"genes__{g}": data[g].astype(float).to_numpy() for g in genes}
    for c in clinical:
        values = data[c]
        numeric = pd.api.types.is_numeric_dtype(values)
        blocks[f"clin__{c}"] = values.astype(float).to_numpy() if numeric else values.astype(str).astype(object).to_numpy()
    X = pd.DataFrame(blocks)
    event_field, time_field = outcome.dtype.names
    y = Surv.from_arrays(outcome[event_field].astype(bool), outcome[time_field].astype(float))
    unused = sorted(set(data.columns) - set(genes) - set(clinical))
    description = _describe(
        "GSE7390 breast cancer (scikit-survival `load_breast_cancer`)", X, y, unused=unused
    )
    return X, y, description


def load_pbcseq():
    """pbcseq (Murtaugh et al. 1994): the first year's visits as events vs baseline variables."""
    X, y = load_pbcseq_events()
    X = X.reset_index(drop=True)
    clin = X.drop(columns=["ehr"])
    description = _describe(
        "pbcseq (`skfusion.datasets.load_pbcseq_events()`, landmark 365 d)",
        clin,
        y,
        extra=(
            " Second modality: the raw `ehr` column of event frames (visits up to day 365), "
            "encoded inside each fold by `OneHotEHREncoder()` (fit on the training fold) into "
            "an `ehr__` block for every model."
        ),
    )
    return X, y, description


DATASETS = {
    "support2": load_support2,
    "flchain": load_flchain,
    "whas500": load_whas500,
    "GBSG2": load_gbsg2,
    "GSE7390": load_gse7390,
    "pbcseq": load_pbcseq,
}


def numeric_columns(X):
    """The numeric feature columns of ``X`` (raw object columns and categoricals excluded)."""
    return [c for c in X.columns if "__" in c and pd.api.types.is_numeric_dtype(X[c])]


def categorical_columns(X):
    """The categorical feature columns of ``X`` (object columns inside a modality block)."""
    return [c for c in X.columns if "__" in c and not pd.api.types.is_numeric_dtype(X[c])]


if __name__ == "__main__":
    for name, load in DATASETS.items():
        X, y, description = load()
        assert np.isfinite(y["time"]).all()
        print(f"{name}: {X.shape}\n  {description}\n")
