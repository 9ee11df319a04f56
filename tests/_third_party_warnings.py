"""The one warning the happy-path tests let through, with its reason.

Every README and gallery path must run without a warning (``test_readme.py``,
``test_examples.py``, ``test_no_warnings.py``), with one exception outside skfusion:
torchsurv (0.2.0) decorates a validator with ``torch.jit.script`` when imported
(``torchsurv/tools/validators.py``), which torch (2.13 here) deprecates. The
DeprecationWarning comes once per process, at the first ``import skfusion`` (which imports
torchsurv's losses); Python does not show it to users (a DeprecationWarning is shown by
default only when triggered in ``__main__``), and only torchsurv can remove it. pyproject.toml
ignores it suite-wide too; these tests reset the filters, so they name it again.
"""

import warnings

THIRD_PARTY_NOISE = [(DeprecationWarning, r"`torch\.jit\.script` is deprecated")]


def ignore_third_party_noise():
    """Inside ``warnings.catch_warnings()``: let ``THIRD_PARTY_NOISE`` through, and nothing else."""
    for category, message in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
