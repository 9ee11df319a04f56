"""The user guide's code runs as written: each page's ```python blocks, in order, in one namespace.

Every page runs in a fresh temporary folder (a block may write files there) with matplotlib's
Agg backend and one torch thread, as the suite's workers run (``OMP_NUM_THREADS=1``).
"""

import re
from pathlib import Path

import matplotlib
import pytest
import torch

GUIDE = Path(__file__).parents[1] / "docs" / "guide"
PAGES = sorted(GUIDE.glob("*.md"))
API = (Path(__file__).parents[1] / "docs" / "api.rst").read_text()


def code_blocks(page):
    """The ```python blocks of a page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.fixture
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_guide_page_runs(page, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"guide_{page.stem}"}
    for number, code in enumerate(code_blocks(page), start=1):
        exec(compile(code, f"{page.name}, block {number}", "exec"), namespace)
    plt.close("all")


def test_guide_has_code_and_uses_public_imports_only():
    blocks = {page.name: code_blocks(page) for page in PAGES}
    assert [name for name, codes in blocks.items() if not codes] == ["index.md"]
    private = [(name, n) for name, codes in blocks.items() for n, code in enumerate(codes, 1) if "skfusion._" in code]
    assert private == [], "guide blocks (page, block number) importing a private module"


def documented_names():
    """Fully qualified names of api.rst's autosummary entries (``skfusion.model_selection.compare_fusion``)."""
    names, module = set(), None
    for line in API.splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
        elif re.fullmatch(r"   [A-Za-z_]\w*", line):
            names.add(f"{module}.{line.strip()}")
    return names


def test_guide_links_only_to_documented_objects():
    # An unresolved Python reference is no warning in the -W build (it silently becomes plain
    # text), so every {class}/{func} role of the guide must name an entry of api.rst.
    roles = r"\{(?:class|func)\}`~?([\w.]+)`"
    targets = {t for page in PAGES for t in re.findall(roles, page.read_text())}
    assert targets, "the guide links into the API reference"
    assert sorted(targets - documented_names()) == []
