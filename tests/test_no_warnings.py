"""The happy paths warn nothing; CLMBR's birth warning comes once per fit.

The README's quick start is checked in ``test_readme.py`` and the gallery in
``test_examples.py``, under the same rule.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sksurv.linear_model import CoxPHSurvivalAnalysis

from skfusion import CoAttentionSurvival
from skfusion.datasets import load_pbcseq_events, make_multimodal_survival
from skfusion.encoders import CLMBREmbedder, events_from_long_table
from skfusion.encoders.clmbr import MEDS_BIRTH_CODE

# A small CLMBR (its defaults pretrain for 20 epochs); nothing here is silenced.
SMALL_CLMBR = dict(hidden_dim=8, n_layers=1, n_heads=2, intermediate_dim=16, max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def pbcseq():
    return load_pbcseq_events(landmark=365)


def test_target_line_in_cross_val_score_warns_nothing(pbcseq):
    X, y = pbcseq
    pipe = Pipeline([("emb", CLMBREmbedder(**SMALL_CLMBR)), ("fuse", CoAttentionSurvival(random_state=0))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # error_score="raise": a warning turned error surfaces as itself, not as a failed fold.
        scores = cross_val_score(pipe, X, y, cv=KFold(3, shuffle=True, random_state=0), error_score="raise")
    assert scores.min() > 0.6


@pytest.mark.slow  # compare_fusion at the estimators' defaults: 16 fits
def test_readme_comparison_warns_nothing():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(from skfusion import compare_fusion\n.*?)```", text, re.S).group(1)
    # The README's code, on a smaller cohort than its quick start's 500 rows and with 2 folds
    # for its 5 (a default fit's cost is set by its budget in optimizer steps, not by the rows).
    assert "cv=5" in code
    code = code.replace("cv=5", "cv=2")
    X, y = make_multimodal_survival(n_samples=200, random_state=0)
    namespace = {"X": X, "y": y, "print": lambda *args: None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["table"]) == 8


# --------------------------------------------------------------------- birth events
def long_table(X):
    """pbcseq's event frames as one long table, the birth events as a ``birth`` column."""
    long = pd.concat({pid: frame for pid, frame in X["ehr"].items()}, names=["id", "k"]).reset_index(level=0)
    births = long[long["code"] == MEDS_BIRTH_CODE].set_index("id")["time"]
    long = long[long["code"] != MEDS_BIRTH_CODE].rename(columns={"numeric_value": "value"})
    return long.assign(birth=births.loc[long["id"]].to_numpy()).reset_index(drop=True)


def birth_warnings(caught):
    return [str(w.message) for w in caught if "no birth event" in str(w.message)]


def test_long_table_births_give_back_the_frames(pbcseq):
    X, _ = pbcseq
    events = events_from_long_table(long_table(X), id_column="id", events="ehr", birth_column="birth")
    assert events.index.tolist() == X.index.tolist()
    for rebuilt, original in zip(events["ehr"], X["ehr"]):
        pd.testing.assert_frame_equal(rebuilt[list(original.columns)], original, check_dtype=False)
        assert rebuilt["text_value"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Z = CLMBREmbedder(**SMALL_CLMBR).fit_transform(events)
    np.testing.assert_allclose(Z.to_numpy(), CLMBREmbedder(**SMALL_CLMBR).fit_transform(X[["ehr"]]).to_numpy())


def test_long_table_birth_only_where_known(pbcseq):
    long = long_table(pbcseq[0])
    first, second = long["id"].unique()[:2]
    long.loc[long["id"] == first, "birth"] = np.nan
    events = events_from_long_table(long, id_column="id", birth_column="birth")
    assert MEDS_BIRTH_CODE not in set(events["ts"][first]["code"])
    assert events["ts"][second]["code"].iloc[0] == MEDS_BIRTH_CODE
    assert (events["ts"][second]["code"] == MEDS_BIRTH_CODE).sum() == 1


def test_long_table_datetime_births():
    long = pd.DataFrame(
        {
            "stay": [3, 3, 1],
            "time": pd.to_datetime(["2020-01-02", "2020-01-01", "2020-03-01"]),
            "code": ["Dx/B", "Dx/A", "Dx/A"],
            "value": [np.nan, np.nan, 1.0],
            "born": pd.to_datetime(["1950-06-01", None, "1960-01-01"]),
        }
    )
    events = events_from_long_table(long, id_column="stay", birth_column="born", birth_code="Birth")
    assert events.index.tolist() == [3, 1]
    assert events["ts"][3]["code"].tolist() == ["Birth", "Dx/B", "Dx/A"]
    assert events["ts"][3]["time"].iloc[0] == pd.Timestamp("1950-06-01")


@pytest.mark.parametrize(
    "births, message",
    [
        ([-100.0, -200.0, -300.0], r"id 7 has several values in column 'born' \(\[-100\.0, -200\.0\]\)"),
        ([65.0, 65.0, np.nan], r"id 7 is born at 65\.0 \(column 'born'\), after its first event at 0\.5: .* not ages"),
        (
            pd.to_datetime(["1950-01-01"] * 3),
            r"column 'born' \(datetime64\[\w+\]\) cannot be compared with the times \(float64\)",
        ),
    ],
)
def test_long_table_bad_births_name_the_id_and_column(births, message):
    long = pd.DataFrame({"stay": [7, 7, 9], "time": [0.5, 1.0, 2.0], "code": ["a", "b", "c"], "value": 1.0})
    with pytest.raises(ValueError, match=message):
        events_from_long_table(long.assign(born=births), id_column="stay", birth_column="born")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['born'\]"):
        events_from_long_table(long, id_column="stay", birth_column="born")


def test_missing_births_warn_once_per_fit(pbcseq):
    X, y = pbcseq
    events = events_from_long_table(long_table(X), id_column="id", events="ehr")  # no birth_column
    pipe = Pipeline(
        [
            ("emb", CLMBREmbedder(**SMALL_CLMBR)),
            ("ehr", ColumnTransformer([("ehr", "passthrough", make_column_selector(pattern="^ehr__"))])),
            ("cox", CoxPHSurvivalAnalysis(alpha=10.0)),
        ]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(events.iloc[:200], y[:200])  # the embedder's fit_transform
        pipe.predict(events.iloc[200:])
        pipe.score(events.iloc[200:], y[200:])
        CLMBREmbedder(**SMALL_CLMBR).fit(events.iloc[:50]).transform(events.iloc[:60])
    # Once for each fit; the transforms after a fit that warned are silent.
    assert birth_warnings(caught) == [
        f"CLMBREmbedder: {n} training row(s) of column 'ehr' have no birth event ('SNOMED/184099003'); "
        "their ages are counted from their first event."
        for n in (200, 50)
    ]


def test_missing_births_after_a_fit_with_births_warn_per_call(pbcseq):
    X, _ = pbcseq
    without = events_from_long_table(long_table(X), id_column="id", events="ehr")
    emb = CLMBREmbedder(**SMALL_CLMBR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.fit_transform(X[["ehr"]])
        assert birth_warnings(caught) == []
        emb.transform(without.iloc[:3])
        emb.transform(without.iloc[3:5])
    assert birth_warnings(caught) == [
        "CLMBREmbedder: 3 row(s) of column 'ehr' have no birth event ('SNOMED/184099003'); their ages are "
        "counted from their first event.",
        "CLMBREmbedder: 2 row(s) of column 'ehr' have no birth event ('SNOMED/184099003'); their ages are "
        "counted from their first event.",
    ]
