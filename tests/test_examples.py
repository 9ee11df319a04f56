"""Every gallery example runs to the end (matplotlib on the Agg backend), without a warning."""

import runpy
import warnings
from pathlib import Path

import matplotlib
import pytest
from _third_party_warnings import ignore_third_party_noise

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("plot_*.py"))

pytestmark = pytest.mark.slow  # the whole gallery, run end to end


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, monkeypatch, tmp_path):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    # Recorded rather than raised: an example (Dask, DataLoader workers) may catch the error
    # a raised warning would be; every warning of the run is listed on failure.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_third_party_noise()
        runpy.run_path(str(path), run_name="__main__")
    assert not caught, "\n".join(f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in caught)
