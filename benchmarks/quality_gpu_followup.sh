#!/usr/bin/env bash
# GPU cells that predate the current code (the final re-score on every recalibration batch), re-run on
# one GPU under MPS (see quality_gpu.sh); the longer version's missing cells are quality_gpu_long.sh's:
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
data=$1 out=$2 limit=${3:-3600}
shift $(( $# < 3 ? $# : 3 ))
deadline=$(( SECONDS + limit ))
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"
cp benchmarks/results/quality.json "$scratch/"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
device=cuda
python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || device=cpu
common=(--model fashion_resnet,fashion_mobilenet --device "$device" --threads 1 --min-width 0.15 --data "$data"
        --seed 0,1,2)
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on"
sweep() {  # NAME ARGS...: one quality.py sweep until the deadline, logged to the scratch folder
    local name=$1 left=$(( deadline - SECONDS )); shift
    (( left > 0 )) || { echo "$name: not started, no time left"; return; }
    timeout "$left" python3 benchmarks/quality.py "${common[@]}" "$@" >"$scratch/$name.log" 2>&1
    echo "$name: exit $? at ${SECONDS} s"
}
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
