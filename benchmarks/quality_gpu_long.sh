#!/usr/bin/env bash
# The longer, full-data version (results/quality_long.json) on one GPU: every cell, 10 epochs, both
# models and costs, pareco / slim / twostage, 3 seeds, twelve cells at a time under MPS. The committed
# JSON was filled over several leases and two CPU sessions (QUALITY.md, *Twice the training*); this
# script re-runs all of it into a fresh quality_long.json.
# Usage: benchmarks/quality_gpu_long.sh DATA_DIR OUT_DIR [SECONDS] [SIZE_ARGS...]
# Everything stops SECONDS (default 3600) after the start; finished cells stay merged. OUT_DIR receives
# only quality_long.json and long.log (the device tool returns few files); SIZE_ARGS (e.g. --epochs 1
# --train-size 500 ...) override the sizes: a smoke run on the CPU.
# On an H100 twelve cells sharing the card took 340-450 s a ResNet cell and over 565 s a MobileNet
# `twostage` one: an estimated 40 minutes in all, more than one command on this project's lent device
# gets. With the package not installed (the checkout on PYTHONPATH) and the IDX files in .data:
#   ln -sfn ../passes pareco_fx/passes && ln -sfn ../cost_models pareco_fx/cost_models &&
#   benchmarks/quality_gpu_long.sh .data OUT_DIR 3600
set -u
source "$(dirname "$0")/_gpu_sweeps.sh"
gpu_setup "$1" "$2" "${3:-3600}"
shift $(( $# < 3 ? $# : 3 ))
{
    sweep long --cost memory,flops --method pareco,slim,twostage --epochs 10 --jobs 12 \
        --out "$scratch/quality_long.json" "$@"
    tail -n 30 "$scratch"/*.log
} >"$out/long.log" 2>&1
cp "$scratch/quality_long.json" "$out/"
grep ': exit' "$out/long.log"
