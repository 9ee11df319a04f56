"""The documentation builds with no warning (``sphinx-build -W``), and lists every public name.

The gallery is not executed here (``plot_gallery=0``): tests/test_examples.py runs the examples.
"""

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BUILT_INTO_SOURCES = shutil.ignore_patterns("_build", "generated", "auto_examples", "sg_execution_times.rst")

# Public names documented elsewhere: scikit-survival's metric functions, re-exported unchanged.
NOT_IN_API = {
    "skfusion.metrics": {
        "brier_score", "concordance_index_censored", "concordance_index_ipcw", "cumulative_dynamic_auc",
        "MAX_SKIPPED_FRACTION",
    },
}
PUBLIC_MODULES = [
    "skfusion", "skfusion.datasets", "skfusion.encoders", "skfusion.metrics", "skfusion.model_selection",
    "skfusion.ssl", "skfusion.losses",
]


@pytest.mark.slow
def test_sphinx_build_has_no_warning(tmp_path):
    for requirement in ("sphinx", "numpydoc", "sphinx_gallery", "myst_parser"):
        pytest.importorskip(requirement)
    # A copy of the sources: autosummary and sphinx-gallery write generated pages next to them.
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=BUILT_INTO_SOURCES)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("SKFUSION_DOCS_INTERSPHINX", None)
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-D", "plot_gallery=0",
         str(tmp_path / "docs"), str(tmp_path / "html")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    pages = {p.relative_to(tmp_path / "html").as_posix() for p in (tmp_path / "html").rglob("*.html")}
    expected = {"index.html", "api.html", "design.html", "medmod_mapping.html", "references.html", "auto_examples/index.html"}
    assert expected <= pages
    assert "generated/skfusion.datasets.load_pbcseq_events.html" in pages


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_reference_lists_every_public_name(module):
    # The entries of api.rst's autosummary tables (a name re-exported by skfusion is listed once).
    documented = set(re.findall(r"^   ([A-Za-z_]\w*)$", (ROOT / "docs" / "api.rst").read_text(), flags=re.M))
    public = set(importlib.import_module(module).__all__) - NOT_IN_API.get(module, set())
    assert public - documented == set(), f"add these names of {module} to docs/api.rst"
