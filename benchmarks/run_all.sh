#!/usr/bin/env bash
# Every figure in docs/RESULTS.md, in the order it was measured. Speed figures need a quiet
# machine (nothing else running). The accuracy grid runs in parallel processes with one torch
# thread each (its "train s/fold" column is then indicative only); seeds fix its results.
# Every step runs the same `python` (and so the same stethoscope package): the demo too, as
# `python -m stethoscope.cli`. Feature caches: the demo and the grid use the CLI's default
# ($STETHOSCOPE_CACHE or ~/.cache/stethoscope); each script documents what it caches.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/results}
REAL=../shared/data/real
mkdir -p "$OUT"
export STETHOSCOPE_WEIGHTS_DIR=${STETHOSCOPE_WEIGHTS_DIR:-../shared/weights}
/usr/bin/time -v python -m stethoscope.cli demo --out "$OUT/demo" 2>&1 | tail -30 > "$OUT/demo.txt"
python benchmarks/bench_logmel.py --n 200                       | tee "$OUT/logmel.md"
python benchmarks/bench_ae.py                                    | tee "$OUT/ae.md"
python benchmarks/bench_encoders.py                              | tee "$OUT/encoders.md"
python benchmarks/bench_ldgan.py                                 | tee "$OUT/ldgan.md"
python benchmarks/bench_ablation.py --data --out "$OUT/latency"  | tee "$OUT/latency.md"
BASELINES="dcase_ae_mse dcase_ae_mahala gamma_vae_mse gamma_vae_mahala embedding_knn ldgan"
TLDIFFGAN="tldiffgan tldiffgan_no_diffusion tldiffgan_no_wave tldiffgan_no_tmixup tldiffgan_random_encoder"
python benchmarks/bench_ablation.py --no-latency --out "$OUT/grid-a" --systems $BASELINES > /dev/null &
python benchmarks/bench_ablation.py --no-latency --out "$OUT/grid-b" --systems $TLDIFFGAN > /dev/null
wait
python benchmarks/bench_ablation.py --collect "$OUT/grid-a" "$OUT/grid-b" | tee "$OUT/grid.md"
# Paper scale (issue 11). The side-by-side run needs the official code and its venv (see
# benchmarks/bench_official.py); the GPU check runs on a CUDA machine: bash benchmarks/gpu_check.sh
python benchmarks/bench_scale.py --data runs/toy-scale           | tee "$OUT/scale.md"
python benchmarks/bench_throughput.py                            | tee "$OUT/throughput.md"
