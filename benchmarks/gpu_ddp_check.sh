#!/usr/bin/env bash
# Data-parallel check on a CUDA machine, at most 5 minutes: the DCASE AE trained by two ranks
# sharing GPU 0 vs one process (and, with two or more GPUs, `train --data-parallel 2 --device
# cuda` on Ray Train with NCCL), then tests/engine/test_distributed.py. Agreement only, no
# timings. Prints Markdown for docs/data_parallel.md and keeps it in OUT.
#   bash benchmarks/gpu_ddp_check.sh [OUT]              # on the GPU machine (default OUT runs/gpu-ddp)
#   bash benchmarks/gpu_ddp_check.sh OUT --device cpu   # dry run of the first step on the CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-ddp}
shift $(( $# > 0 ? 1 : 0 ))
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
mkdir -p "$OUT"
START=$SECONDS
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
  | tee "$OUT/gpu.txt"
timeout 200 "$PY" benchmarks/gpu_ddp_check.py --out "$OUT" "$@"
status=$?
echo
echo "### tests/engine/test_distributed.py on this machine"
timeout 100 "$PY" -m pytest -p no:cacheprovider -q tests/engine/test_distributed.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}
echo "gpu_ddp_check.sh: $(( SECONDS - START )) s in all (check exit $status, tests exit $tests)"
exit $(( status != 0 ? status : tests ))
