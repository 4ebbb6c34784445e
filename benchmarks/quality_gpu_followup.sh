#!/usr/bin/env bash
# Follow-ups to the quality matrix on one GPU, all at once under MPS (see quality_gpu.sh):
#   long    - the memory matrix of pareco and slim at twice the epochs -> OUT/quality_long.json
#   paper   - pareco with the paper's sampler settings (300 width vectors, Pareto-aware targets),
#             memory, 5 epochs                                           -> OUT/quality_paper.json
#   missing - matrix cells still missing (fashion_mobilenet twostage seed 2) -> OUT/quality.json
# Usage: benchmarks/quality_gpu_followup.sh DATA_DIR OUT_DIR [SECONDS] [SIZE_ARGS...]
# SIZE_ARGS (e.g. --epochs 1 --train-size 500 ...) override the sizes: a smoke run on the CPU.
set -u
data=$1 out=$2 limit=${3:-3600}
shift $(( $# < 3 ? $# : 3 ))
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
device=cuda
python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || device=cpu
common=(--model fashion_resnet,fashion_mobilenet --device "$device" --threads 1 --min-width 0.15 --data "$data")
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 >"$out/gpu.csv" 2>/dev/null &
sweep() {  # NAME ARGS...: one quality.py sweep, logged to OUT/NAME.log
    local name=$1; shift
    timeout "$limit" python3 benchmarks/quality.py "${common[@]}" "$@" >"$out/$name.log" 2>&1
    echo "$name: exit $?"
}
sweep long --cost memory --method pareco,slim --seed 0,1,2 --epochs 10 --jobs 12 \
    --out "$out/quality_long.json" "$@" &
sweep paper --cost memory --method pareco --seed 0,1,2 --epochs 5 --width-vectors 300 --pareto-aware \
    --jobs 6 --out "$out/quality_paper.json" "$@" &
sweep missing --model fashion_mobilenet --cost memory,flops --method twostage --seed 2 --epochs 5 --jobs 2 \
    --out "$out/quality.json" "$@" &
wait %2 %3 %4
kill %1 2>/dev/null
tail -n 3 "$out"/*.log
