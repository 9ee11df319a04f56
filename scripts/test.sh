#!/usr/bin/env bash
# Run skfusion's test suite in the project's virtual environment (created on first use).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" test
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg
exec python -m pytest -n "${SKFUSION_TEST_WORKERS:-2}" "$@"
