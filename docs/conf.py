"""Sphinx configuration for skfusion's documentation (``sphinx-build -W docs docs/_build``)."""

import os

from docutils import nodes

project = "skfusion"
author = "skfusion developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
# Every documented object's parameters are checked against its signature (numpydoc's PR01:
# one undocumented, PR02: one that does not exist, PR03: the order): a mismatch is a warning,
# which fails the ``-W`` build. The bootstrap results are returned, never built by users:
# their fields are documented as attributes.
numpydoc_validation_checks = {"PR01", "PR02", "PR03"}
numpydoc_validation_exclude = {r"\.BootstrapResult$", r"\.PairedBootstrapResult$"}
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# sphinx-gallery writes sg_execution_times.rst into the sources; it belongs to no toctree.
exclude_patterns = ["_build", "auto_examples/*.ipynb", "sg_execution_times.rst"]

# An unreachable inventory is a warning, which fails the ``-W`` build offline (tests, CI):
# links into the other projects' docs are made only when asked for, on a machine online.
if os.environ.get("SKFUSION_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "sksurv": ("https://scikit-survival.readthedocs.io/en/stable", None),
        "skorch": ("https://skorch.readthedocs.io/en/stable", None),
    }

# Labels of scikit-learn's user guide cited by the docstrings our estimators inherit from it
# (``ClassifierMixin.score``); they resolve to scikit-learn's page without its inventory.
SKLEARN_LABELS = {"accuracy_score": "modules/model_evaluation.html#accuracy-score"}
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
}
html_theme = "alabaster"


def _resolve_sklearn_label(app, env, node, contnode):
    if node.get("reftype") != "ref" or node.get("reftarget") not in SKLEARN_LABELS:
        return None
    uri = "https://scikit-learn.org/stable/" + SKLEARN_LABELS[node["reftarget"]]
    return nodes.reference("", "", contnode, internal=False, refuri=uri)


def setup(app):
    app.connect("missing-reference", _resolve_sklearn_label)
