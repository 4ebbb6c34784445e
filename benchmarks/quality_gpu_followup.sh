#!/usr/bin/env bash
# GPU cells that predate the current code (the final re-score on every recalibration batch), re-run on
# one GPU under MPS (see quality_gpu.sh; the longer version is quality_gpu_long.sh's):
#   matrix - the matrix's pareco cells (memory and flops, 3 seeds), then its slim cells under memory
#            (the baseline the memory goal is judged against), merged into a copy of quality.json
#   paper  - pareco with the paper's sampler settings (memory, 3 seeds)    -> quality_paper.json
# Usage: benchmarks/quality_gpu_followup.sh DATA_DIR OUT_DIR [SECONDS] [SIZE_ARGS...]
# Everything stops SECONDS (default 3600) after the start; finished cells stay merged. OUT_DIR receives
# the two JSONs and followup.log only (the device tool returns few files). SIZE_ARGS (e.g. --epochs 1
# --train-size 300 --jobs 2 ...) override the sizes: a smoke run on the CPU.
# On the lent device (package not installed there, data carried in .data):
#   ln -sfn ../passes pareco_fx/passes && ln -sfn ../cost_models pareco_fx/cost_models &&
#   benchmarks/quality_gpu_followup.sh .data "$OUT" 530
set -u
source "$(dirname "$0")/_gpu_sweeps.sh"
gpu_setup "$1" "$2" "${3:-3600}"
shift $(( $# < 3 ? $# : 3 ))
cp benchmarks/results/quality.json "$scratch/"
{
    sweep paper --cost memory --method pareco --epochs 5 --width-vectors 300 --pareto-aware --jobs 6 \
        --out "$scratch/quality_paper.json" "$@" &
    sweep matrix --cost memory,flops --method pareco --epochs 5 --jobs 12 --out "$scratch/quality.json" "$@"
    sweep slim --cost memory --method slim --epochs 5 --jobs 6 --out "$scratch/quality.json" "$@"
    wait
    tail -n 20 "$scratch"/*.log
} >"$out/followup.log" 2>&1
cp "$scratch"/quality*.json "$out/"
grep ': exit' "$out/followup.log"
