#!/usr/bin/env bash
# The minimum-versions job: the data-contract and estimator-contract tests in a second virtual
# environment (.venv-min) holding the lowest version of every dependency that pyproject.toml
# allows, so that the lower bounds it declares are tested ones. torch is the exception: the
# CPU wheel cached on the project machines (torch==2.13.0), as in scripts/_env.sh; its declared
# lower bound is not tested. Extra arguments are passed to pytest (a -k replaces the one below).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SKFUSION_MIN_VENV:-$ROOT/.venv-min}"
# Contract tests that need no optional extra: modality blocks and pandas inputs, bad input,
# training options, scikit-survival's estimator contract. scikit-learn's own estimator checks
# (test_sklearn_compatible_*) are left out: which checks exist, and so which are expected to
# fail, follows the newest scikit-learn, which the main environment tests.
TESTS=(tests/test_data.py tests/test_bad_inputs.py tests/test_training.py tests/test_survival.py tests/test_common.py)
SELECT="not sklearn_compatible"

# "name>=low" (or "name>=low,<high") in [project] dependencies pinned to "name==low" (torch left out).
pins="$(awk '/^dependencies = \[/ {inside = 1; next} inside && /^\]/ {inside = 0} inside' "$ROOT/pyproject.toml" |
    sed -E 's/^ *"([^"<>=]+)>=([^",<]+)(,<[^"]+)?",?( *#.*)?$/\1==\2/' | grep -v '^torch==')"

if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
    echo "*" > "$VENV/.gitignore"  # as venv writes it itself from Python 3.13 on
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.skfusion-min-$(printf '%s' "$pins" | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    python -m pip install --quiet --upgrade pip
    printf '%s\n' "$pins" > "$VENV/lower-bounds.txt"
    python -m pip install --quiet "torch==2.13.0" -c "$VENV/lower-bounds.txt" pytest pytest-xdist
    python -m pip install --quiet -c "$VENV/lower-bounds.txt" -e "$ROOT"
    touch "$STAMP"
fi
python -m pip list --format=freeze 2>/dev/null | grep -i -E '^(numpy|pandas|scikit-learn|scikit-survival|skorch|torchsurv|scipy|joblib|torch)=='

cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg
python -m pytest -n "${SKFUSION_TEST_WORKERS:-2}" -p no:cacheprovider -k "$SELECT" "${TESTS[@]}" "$@"
