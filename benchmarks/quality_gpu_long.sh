#!/usr/bin/env bash
# The longer, full-data version's missing cells on one GPU, all at once under MPS: 10 epochs, 3 seeds,
# `memory` twostage and `flops` pareco/slim (18 cells), merged into the committed quality_long.json
# (memory pareco/slim are there). `flops` twostage follows with --all (24 cells).
# Usage: benchmarks/quality_gpu_long.sh DATA_DIR OUT_DIR [SECONDS] [--all] [SIZE_ARGS...]
# OUT_DIR receives only quality_long.json and long.log (the device tool returns few files);
# SIZE_ARGS (e.g. --epochs 1 --train-size 500 ...) override the sizes: a smoke run on the CPU.
# On the lent device (package not installed there, data carried in .data):
#   ln -sfn ../passes pareco_fx/passes && ln -sfn ../cost_models pareco_fx/cost_models &&
#   benchmarks/quality_gpu_long.sh .data "$OUT" 540
set -u
data=$1 out=$2 limit=${3:-3600}
shift $(( $# < 3 ? $# : 3 ))
flops_methods=pareco,slim
if [ "${1:-}" = --all ]; then flops_methods=pareco,slim,twostage; shift; fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"
cp benchmarks/results/quality_long.json "$scratch/quality_long.json"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
device=cuda
python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || device=cpu
common=(--model fashion_resnet,fashion_mobilenet --device "$device" --threads 1 --min-width 0.15 --data "$data"
        --seed 0,1,2 --epochs 10 --out "$scratch/quality_long.json")
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on"
sweep() {  # NAME ARGS...: one quality.py sweep, logged to the scratch folder
    local name=$1; shift
    timeout "$limit" python3 benchmarks/quality.py "${common[@]}" "$@" >"$scratch/$name.log" 2>&1
    echo "$name: exit $?"
}
{
    sweep memory --cost memory --method twostage --jobs 6 "$@" &
    sweep flops --cost flops --method "$flops_methods" --jobs 18 "$@" &
    wait
    tail -n 40 "$scratch"/*.log
} >"$out/long.log" 2>&1
cp "$scratch/quality_long.json" "$out/quality_long.json"
tail -n 3 "$out/long.log"
