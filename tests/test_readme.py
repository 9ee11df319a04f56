"""The README's quick start runs as written."""

import re
from pathlib import Path


def test_readme_quickstart_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Quick start.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["grid"].shape == (5, len(namespace["model"].named_steps["fuse"].unique_times_))
