"""The README's quick start runs as written, without a warning."""

import re
import warnings
from pathlib import Path

from _third_party_warnings import ignore_third_party_noise


def test_readme_quickstart_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Quick start.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_third_party_noise()  # the README's first line may be this process's first import of skfusion
        exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["grid"].shape == (5, len(namespace["model"].named_steps["fuse"].unique_times_))
