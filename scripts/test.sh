#!/usr/bin/env bash
# Run skfusion's test suite in the project's virtual environment (created on first use).
# Extra arguments are passed to pytest in every pass: -m "not slow" is the quick loop.
#
# Then the tests marked float32_batch (those comparing float32 network outputs computed in
# different batches, positions, chunks or processes) run twice more, with PyTorch's CPU kernels
# forced to older instruction sets, which round such outputs differently: first all of them
# (ATen's kernels unvectorized, oneDNN's LSTM and convolutions on SSE4.1, MKL's BLAS on its
# SSE2-compatible path), then MKL's alone, each catching tolerances the other misses. MKL_CBWR
# works on Intel and AMD CPUs alike; MKL_ENABLE_INSTRUCTIONS is ignored on AMD. OpenBLAS,
# NumPy's BLAS, is left as it is: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are set on purpose on
# some machines and must not be changed by tests or CI. A failure in any pass fails the script.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh" test
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg
workers=(-n "${SKFUSION_TEST_WORKERS:-2}")

status=0
python -m pytest "${workers[@]}" --durations=15 "$@" || status=$?

# A -m of the caller narrows these passes too (pytest keeps the last -m it is given).
marker=float32_batch
args=()
while (($#)); do
    case "$1" in
        -m) marker="float32_batch and ($2)"; shift 2 ;;
        -m?*) marker="float32_batch and (${1#-m})"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
for kernels in "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE" "MKL_CBWR=COMPATIBLE"; do
    echo "Again: $marker, with $kernels"
    # shellcheck disable=SC2086  # one word per variable
    env $kernels python -m pytest "${workers[@]}" -m "$marker" "${args[@]}" || {
        again=$?
        # 5: the caller's selection holds no float32_batch test.
        [ "$again" -eq 5 ] || status=$again
    }
done
exit "$status"
