#!/usr/bin/env bash
# Every figure in docs/RESULTS.md, in the order it was measured. Speed figures need a quiet
# machine (nothing else running); the accuracy grid runs two halves side by side, one torch
# thread each, so its "train s/fold" column is indicative only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/results}
mkdir -p "$OUT"
export STETHOSCOPE_WEIGHTS_DIR=${STETHOSCOPE_WEIGHTS_DIR:-../shared/weights}
python benchmarks/bench_logmel.py --n 200            | tee "$OUT/logmel.md"
python benchmarks/bench_ae.py                         | tee "$OUT/ae.md"
python benchmarks/bench_encoders.py                   | tee "$OUT/encoders.md"
python benchmarks/bench_ldgan.py                      | tee "$OUT/ldgan.md"
python benchmarks/bench_ablation.py --data --out "$OUT/latency" | tee "$OUT/latency.md"
python benchmarks/bench_ablation.py --out "$OUT/grid-a" --no-latency \
  --systems dcase_ae_mse dcase_ae_mahala gamma_vae_mse gamma_vae_mahala embedding_knn ldgan > "$OUT/grid-a.md" &
python benchmarks/bench_ablation.py --out "$OUT/grid-b" --no-latency \
  --systems tldiffgan tldiffgan_no_diffusion tldiffgan_no_wave tldiffgan_no_tmixup tldiffgan_random_encoder \
  > "$OUT/grid-b.md"
wait
