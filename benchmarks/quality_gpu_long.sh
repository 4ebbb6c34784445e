#!/usr/bin/env bash
# The longer, full-data version's last missing cells on one GPU, all at once under MPS: MobileNet
# `twostage` under FLOPs, 10 epochs, 3 seeds, merged into a copy of the committed quality_long.json
# (every other cell is there: ResNet `twostage` from an H100 in session 16, MobileNet `twostage`
# under memory from two CPU processes in session 16).
# Usage: benchmarks/quality_gpu_long.sh DATA_DIR OUT_DIR [SECONDS] [SIZE_ARGS...]
# Everything stops SECONDS (default 3600) after the start; finished cells stay merged. OUT_DIR receives
# only quality_long.json and long.log (the device tool returns few files); SIZE_ARGS (e.g. --epochs 1
# --train-size 500 ...) override the sizes: a smoke run on the CPU.
# On the lent device (package not installed there, data carried in .data; 12 cells sharing an H100
# took 433-448 s a ResNet cell, more than 565 s a MobileNet one):
#   ln -sfn ../passes pareco_fx/passes && ln -sfn ../cost_models pareco_fx/cost_models &&
#   benchmarks/quality_gpu_long.sh .data "$OUT" 540
set -u
source "$(dirname "$0")/_gpu_sweeps.sh"
gpu_setup "$1" "$2" "${3:-3600}"
shift $(( $# < 3 ? $# : 3 ))
cp benchmarks/results/quality_long.json "$scratch/"
{
    sweep twostage --model fashion_mobilenet --cost flops --method twostage --epochs 10 --jobs 3 \
        --out "$scratch/quality_long.json" "$@"
    tail -n 30 "$scratch"/*.log
} >"$out/long.log" 2>&1
cp "$scratch/quality_long.json" "$out/"
grep ': exit' "$out/long.log"
