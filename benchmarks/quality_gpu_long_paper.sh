#!/usr/bin/env bash
# The judged configuration's longer version (results/quality_long_paper.json) on one GPU: memory,
# 10 epochs, 3 seeds, pareco with the paper's sampler (300 width vectors, Pareto-aware targets,
# re-scoring every third period): ResNet at base widths 12/24/48 (pareco, slim, twostage) and
# MobileNet (pareco; its 10-epoch slim and twostage runs are quality_long.json's, whose settings are
# the same). Twelve cells at a time under MPS (see quality_gpu_long.sh).
# Usage: benchmarks/quality_gpu_long_paper.sh DATA_DIR OUT_DIR [SECONDS] [SIZE_ARGS...]
# Everything stops SECONDS (default 3600) after the start; finished cells stay merged. OUT_DIR receives
# quality_long_paper.json and long_paper.log only; SIZE_ARGS override the sizes (a CPU smoke run).
# On the lent device (package not installed there, the IDX files carried in .data):
#   benchmarks/quality_gpu_long_paper.sh .data "$OUT" 500
set -u
source "$(dirname "$0")/_gpu_sweeps.sh"
gpu_setup "$1" "$2" "${3:-3600}"
shift $(( $# < 3 ? $# : 3 ))
json=$scratch/quality_long_paper.json
paper=(--method pareco --width-vectors 300 --pareto-aware --rescore-every 3)
resnet=(--model fashion_resnet --width-mult 0.75)
cell=(--cost memory --epochs 10 --jobs 3 --out "$json")
{
    sweep resnet_pareco "${resnet[@]}" "${paper[@]}" "${cell[@]}" "$@" &
    sweep resnet_slim "${resnet[@]}" --method slim "${cell[@]}" "$@" &
    sweep resnet_twostage "${resnet[@]}" --method twostage "${cell[@]}" "$@" &
    sweep mobilenet_pareco --model fashion_mobilenet "${paper[@]}" "${cell[@]}" "$@" &
    wait
    tail -n 12 "$scratch"/*.log
} >"$out/long_paper.log" 2>&1
cp "$json" "$out/"
grep ': exit' "$out/long_paper.log"
