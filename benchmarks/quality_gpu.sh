#!/usr/bin/env bash
# The quality matrix (benchmarks/quality.py, the CPU-sized settings of the README) on one GPU:
# twelve cells at a time share the card, seed by seed. Usage: benchmarks/quality_gpu.sh DATA_DIR OUT_DIR [SECONDS]
# DATA_DIR holds the four Fashion-MNIST IDX files; results merge into OUT_DIR/quality.json.
# Cells still training after SECONDS (default 3600) are stopped; finished cells stay merged.
set -u
data=$1 out=$2 limit=${3:-3600}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import pareco_fx" 2>/dev/null || {
    echo "pareco_fx is not importable: install the checkout first (python3 -m pip install --no-deps -e .)" >&2; exit 2; }
matrix=(--model fashion_resnet,fashion_mobilenet --method pareco,slim,twostage --device cuda --threads 1 --data "$data")
smoke() {  # every code path on the device, tiny: one epoch on 1,000 images
    timeout 150 python3 benchmarks/quality.py "${matrix[@]}" --cost memory --seed 0 --epochs 1 --train-size 1000 \
        --val-size 500 --test-size 500 --width-vectors 6 --twostage-evals 10 --eval-points 5 --jobs 6 \
        --out "$out/smoke.json" >"$out/smoke.log" 2>&1
}
# MPS lets the small kernels of concurrent processes overlap on the card; without it they take turns.
if nvidia-cuda-mps-control -d 2>/dev/null && smoke; then
    echo "MPS on; smoke passed"
else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    smoke || { tail -30 "$out/smoke.log"; exit 1; }
    echo "MPS off; smoke passed"
fi
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 >"$out/gpu.csv" 2>&1 &
timeout "$limit" python3 benchmarks/quality.py "${matrix[@]}" --cost memory,flops --seed 0,1,2 --epochs 5 \
    --min-width 0.15 --jobs 12 --out "$out/quality.json" 2>&1 | tee "$out/matrix.log"
