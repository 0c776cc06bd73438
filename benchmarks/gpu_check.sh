#!/usr/bin/env bash
# GPU check, at most 6 minutes on a CUDA machine: paper-sized TLDiffGAN and the DCASE AE on
# 3,000 toy clips (fp32 and bf16: s/epoch, clips/s, peak GPU memory, GPU utilisation while
# training), CPU-vs-GPU scores of a fixed model, then the system and engine tests (which run
# on CUDA too when it is present). Prints Markdown for docs/RESULTS.md and keeps it in OUT.
#   bash benchmarks/gpu_check.sh [OUT]                    # on the GPU machine (default OUT runs/gpu)
#   bash benchmarks/gpu_check.sh OUT --device cpu --tiny  # dry run of every step on the CPU
# Extra arguments go to benchmarks/gpu_check.py (--clips, --ae-epochs, --gan-epochs, --budget).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
shift $(( $# > 0 ? 1 : 0 ))
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export STETHOSCOPE_WEIGHTS_DIR=${STETHOSCOPE_WEIGHTS_DIR:-../shared/weights}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
START=$SECONDS
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
  | tee "$OUT/gpu.txt"
# the measurements stop starting new steps after --budget seconds (default 270); a hard stop at 300
timeout 300 "$PY" benchmarks/gpu_check.py --out "$OUT" "$@" | tee "$OUT/gpu_check.md"
status=${PIPESTATUS[0]}
echo
echo "### Tests on this machine"
echo
timeout $(( 350 - (SECONDS - START) > 30 ? 350 - (SECONDS - START) : 30 )) \
  "$PY" -m pytest -p no:cacheprovider -q tests/systems/test_every_system.py tests/engine 2>&1 | tail -5 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}
echo
echo "gpu_check.sh: $(( SECONDS - START )) s in all (measurements exit $status, tests exit $tests)"
exit $(( status != 0 ? status : tests ))
