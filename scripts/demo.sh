#!/usr/bin/env bash
# Run the end-to-end demo on the CPU: synthetic and bundled data, fusion models fitted and
# compared, a figure written to demo_output/.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" plot
export MPLBACKEND=Agg
exec python -m skfusion.demo --device cpu --out "${1:-demo_output}"
