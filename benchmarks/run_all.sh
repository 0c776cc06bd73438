#!/usr/bin/env bash
# Every figure in docs/RESULTS.md, in the order it was measured (RESULTS sections 0-12). Speed figures need a quiet
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
# The engine, thresholds, monitoring and edge export (issues 9, 10, 13): quiet machine
python benchmarks/bench_concurrency.py --clips 300 --epochs 5 --repeats 2 --scenarios alone demo twin | tee "$OUT/concurrency.md"
python benchmarks/bench_threshold.py --epochs 50 --per-set        | tee "$OUT/threshold.md"
python benchmarks/bench_onnx.py --threads 1 --train 20 --clips 30 --data "$OUT/onnx-toy" --json "$OUT/onnx.json"
python benchmarks/bench_serve.py --clients 4 --duration 60 --json "$OUT/serve.json"
# The discriminative family and ensembles (issue 12): accuracy grid, then timing and curves alone
AUX="dcase_ae_mse dcase_ae_mahala embedding_knn tldiffgan ensemble_ae_knn aux_mn04_pooled aux_mn04 aux_mn04_lora aux_stgram ensemble_ae_aux ensemble_ae_aux_knn aux_mn04_frozen"
python benchmarks/bench_ablation.py --no-latency --out "$OUT/g12" --data toy $REAL/dcase2020 $REAL/mimii_0db --systems $AUX > /dev/null
python benchmarks/learning_curve.py --sizes 20 --test 40 --out "$OUT/timing" --systems dcase_ae_mse dcase_ae_mahala \
    embedding_knn tldiffgan aux_stgram aux_mn04 aux_mn04_lora ensemble_ae_knn ensemble_ae_aux ensemble_ae_aux_knn
python benchmarks/learning_curve.py --sizes 10 20 50 100 200 --test 40 --out "$OUT/lc2" \
    --systems dcase_ae_mse dcase_ae_mahala embedding_knn aux_stgram aux_mn04
python benchmarks/learning_curve.py --sizes 10 20 50 --sections 00 01 02 --test 20 --out "$OUT/lc3s" \
    --systems dcase_ae_mse dcase_ae_mahala embedding_knn aux_mn04 aux_stgram
python benchmarks/aux_sensitivity.py --out "$OUT/auxsens" --variant frozen='{"finetune": "frozen"}' \
    --variant all_layers='{"finetune": "all"}' --variant no_augmentation='{"mixup": "none", "specaugment": false}' \
    --variant margin_0.2='{"margin": 0.2}' --variant subcluster_adacos='{"loss": "subcluster_adacos", "mixup": "mixup"}' \
    --variant epochs_60='{"epochs": 60}' --variant crop_6s='{"crop_frames": 192}' \
    --variant classes_section='{"classes": "section"}' --variant no_smote='{"smote": false}' \
    --variant backend_gmm='{"backend": "gmm"}' --variant backend_centres='{"backend": "centres"}'
python benchmarks/aux_sensitivity.py --out "$OUT/auxsens2" --reference \
    --variant section_frozen='{"classes": "section", "finetune": "frozen"}' \
    --variant section_frozen_crop6s='{"classes": "section", "finetune": "frozen", "crop_frames": 192}' \
    --variant section_crop6s_adacos='{"classes": "section", "crop_frames": 192, "loss": "subcluster_adacos", "mixup": "mixup"}'
# Fleet scale on Ray (issue 14); one-GPU DDP on a CUDA machine: bash benchmarks/gpu_ddp_check.sh
python benchmarks/bench_fleet.py --clips 10000 --machines 50 --seconds 1 --workers 1 2 --json "$OUT/fleet.json"
# Hostile input (section 13, issue 23)
PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_bombs.py
PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fault_soak.py --minutes 10 --kill-every 15 \
    --json "$OUT/fault_soak.json"  # serve + watch under kill -9, poison, bombs, symlinks (13.1)
# Detection on few real clips (section 14, issue 21): systems side by side with paired intervals,
# mel_stats variants, pseudo vs real AUC, score normalisation, toy, TLDiffGAN + mel_stats, speed
export STETHOSCOPE_WEIGHTS_DIR=${STETHOSCOPE_WEIGHTS_DIR:-../shared/weights}
S=mel_stats,dcase_ae@mahala,embedding_knn,tldiffgan@cpu,aux_classifier@mn04,auto
for d in mimii_0db dcase2020; do
  stethoscope bench --data ../shared/data/real/$d --system $S --out "$OUT/cmp/$d" --quiet --checkpoint-every 0
  stethoscope bench --data ../shared/data/real/$d --system tldiffgan@mel_stats --out "$OUT/abl/$d" --quiet --checkpoint-every 0
done
python benchmarks/mel_stats_variants.py --out "$OUT/msv"
for d in dcase2020 mimii_0db; do  # the variants' real AUCs where pseudo_validation.py reads them
  ln -sfn ../../msv/$d/default_kNN_k_2_ "$OUT/cmp/$d/mel_stats_benchmarks_configs_mel_stats_knn.yaml"
  ln -sfn ../../msv/$d/default_GMM_1_diagonal_component_ "$OUT/cmp/$d/mel_stats_benchmarks_configs_mel_stats_gmm.yaml"
  ln -sfn ../../msv/$d/default_modulation_8_bands_ "$OUT/cmp/$d/mel_stats_benchmarks_configs_mel_stats_modulation.yaml"
done
python benchmarks/pseudo_validation.py --bench "$OUT/cmp" --out "$OUT/pseudo" --systems mel_stats \
    mel_stats@benchmarks/configs/mel_stats_knn.yaml mel_stats@benchmarks/configs/mel_stats_gmm.yaml \
    mel_stats@benchmarks/configs/mel_stats_modulation.yaml dcase_ae@mahala embedding_knn tldiffgan@cpu
python benchmarks/bench_score_norm.py --out "$OUT/score_norm"
python -c "from stethoscope.data.toy_factory import make_toy_dataset; make_toy_dataset('$OUT/toy', n_train=20, n_test=20, seed=0)"
stethoscope bench --data "$OUT/toy" --system mel_stats,dcase_ae@mahala,embedding_knn,tldiffgan@cpu,aux_classifier@mn04 --out "$OUT/cmp/toy" --quiet
stethoscope bench --data "$OUT/toy" --system mel_stats,auto --out "$OUT/cmp/toy_auto" --quiet
python benchmarks/comparison_table.py "$OUT/cmp/dcase2020" "$OUT/cmp/mimii_0db" "$OUT/cmp/toy" "$OUT/cmp/toy_auto"
python benchmarks/learning_curve.py --sizes 20 --test 40 --out "$OUT/timing21" \
    --systems mel_stats dcase_ae_mahala auto embedding_knn tldiffgan aux_mn04
python benchmarks/bench_throughput.py --threads 1 --systems mel_stats dcase_ae --train 20 --batch-clips 100 --latency-clips 30
