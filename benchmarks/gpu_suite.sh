#!/usr/bin/env bash
# The GPU benchmarks in one go, for a machine with a CUDA GPU and aptune importable:
#   llama_gpu.py                      LLaMA-2-7B shape, bf16: LoRA vs APT step time and peak memory
#   memory.py --whole                 built-in MiniLM config: memory per phase and the allocated-memory
#                                     curve of a whole run against its LoRA twin (results/memory-gpu-*)
#   overhead.py --shape roberta-base  APT machinery vs LoRA on roberta-base shapes
#                                     (results/overhead-roberta-base-gpu-*)
# Each runs under its own time limit (seconds: GPU_SUITE_LIMIT, default 180, or 240 for memory.py,
# which trains twice) and writes its log to LOG_DIR (default benchmarks/results/logs); one failing
# does not stop the others. About 6 minutes on an H200 (345-360 s in two runs, 2026-12-04).
#   bash benchmarks/gpu_suite.sh [LOG_DIR]
set -u
cd "$(dirname "$0")"
logs=${1:-results/logs}
limit=${GPU_SUITE_LIMIT:-180}
mkdir -p "$logs"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'" || exit 1
status=0
for job in "llama_gpu.py" "memory.py --whole" "overhead.py --shape roberta-base --steps 30"; do
    name=${job%%.py*}
    job_limit=$limit
    [ "$name" = memory ] && job_limit=${GPU_SUITE_LIMIT:-240}
    start=$(date +%s)
    timeout "$job_limit" python3 $job >"$logs/$name.log" 2>&1
    rc=$?
    echo "$job: exit $rc after $(($(date +%s) - start)) s"
    [ "$rc" -eq 0 ] || status=1
done
exit "$status"
