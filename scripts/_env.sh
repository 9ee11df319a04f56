# Create or reuse the project's virtual environment and install skfusion with the given extras.
# Sourced by scripts/demo.sh and scripts/test.sh; $1 is the comma-separated list of extras.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SKFUSION_VENV:-$ROOT/.venv}"
EXTRAS="$1"

if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# Reinstall only when pyproject.toml or the extras change.
STAMP="$VENV/.skfusion-$(cat "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)-${EXTRAS//,/-}"
if [ ! -f "$STAMP" ]; then
    python -m pip install --quiet --upgrade pip
    if ! python -c "import torch" 2>/dev/null; then
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
            python -m pip install --quiet torch
        else
            # A CPU build: this pinned wheel is cached on the project machines (no multi-GB download).
            python -m pip install --quiet "torch==2.13.0" || python -m pip install --quiet torch
        fi
    fi
    python -m pip install --quiet -e "$ROOT[$EXTRAS]"
    touch "$STAMP"
fi
cd "$ROOT"
