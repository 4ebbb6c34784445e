# Sourced by quality_gpu_followup.sh and quality_gpu_long.sh: their shared set-up for quality.py
# sweeps on one lent GPU (package not installed there: the checkout on PYTHONPATH).
# gpu_setup DATA_DIR OUT_DIR SECONDS: a scratch folder (removed on exit), the environment, the device
# (cuda; cpu for a smoke run here), MPS where the card has it, and a deadline SECONDS from now.
gpu_setup() {
    data=$1 out=$2 deadline=$(( SECONDS + $3 ))
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    device=cuda
    python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || device=cpu
    common=(--model fashion_resnet,fashion_mobilenet --device "$device" --threads 1 --min-width 0.15
            --data "$data" --seed 0,1,2)
    # MPS lets the small kernels of concurrent processes overlap on the card; without it they take turns.
    nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on"
}

sweep() {  # NAME ARGS...: one quality.py sweep until the deadline, logged to the scratch folder
    local name=$1 left=$(( deadline - SECONDS )); shift
    (( left > 0 )) || { echo "$name: not started, no time left"; return; }
    timeout "$left" python3 benchmarks/quality.py "${common[@]}" "$@" >"$scratch/$name.log" 2>&1
    echo "$name: exit $? at ${SECONDS} s"
}
