#!/usr/bin/env bash
# make gpu-check: the CUDA path, tested and measured in at most 8 minutes of one GPU.
# Writes everything under one folder, results/gpu-check/<gpu>/ (or $GPU_CHECK_DIR):
#   nvidia-smi.txt          the device
#   tests.txt, tests.xml    pytest -m gpu (the gpu tests of tests/test_device.py)
#   throughput-{small,large}.md, gpu-ptb-{small,large}-fp32-bf16.json
#                           plain cuDNN reference vs the four variants, fp32 and bf16
#   concurrency.md, concurrency-ptb-small-vd-fp32.json
#                           1, 2, 4, 8 trainings side by side on the GPU (the --jobs sweet spot)
#   campaign.log, campaign/ lmtie reproduce --preset smoke --jobs 4 on the GPU (wall time;
#                           its checkpoints in campaign/checkpoints/, git-ignored)
#   summary.txt             each step's exit status and seconds
# Every step has its own time limit (timeout kills the step's process group), so one failure
# cannot eat the others' time; *.log keeps each step's output.
# Needs the corpora: $LMTIE_DATA_DIR (or ./data with PTB in it) and a CUDA build of torch.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-')
OUT=${GPU_CHECK_DIR:-results/gpu-check/${gpu:-no-gpu}}
mkdir -p "$OUT"
: > "$OUT/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status in $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$BIN/python" -c "import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())" >> "$OUT/nvidia-smi.txt" 2>&1

step tests 100 "$BIN/pytest" -m gpu -q -p no:cacheprovider tests/test_device.py \
    --junitxml "$OUT/tests.xml"
cp "$OUT/tests.log" "$OUT/tests.txt"
step throughput-small 60 "$BIN/python" benchmarks/throughput.py --device cuda --size small \
    --precisions fp32,bf16 --machine gpu --out "$OUT"
step throughput-large 80 "$BIN/python" benchmarks/throughput.py --device cuda --size large \
    --precisions fp32,bf16 --blocks 4 --steps 5 --machine gpu --out "$OUT"
step concurrency 80 "$BIN/python" -m benchmarks.concurrency --device cuda --jobs 1,2,4,8 \
    --steps 100 --out "$OUT"
step campaign 150 "$BIN/lmtie" reproduce --preset smoke --jobs 4 --device cuda \
    --results-dir "$OUT/campaign" --checkpoint-root "$OUT/campaign/checkpoints"
for name in throughput-small throughput-large concurrency; do  # the Markdown tables
    grep '^|' "$OUT/$name.log" > "$OUT/$name.md" || true
done
echo "gpu-check: everything it measured is in $OUT"
