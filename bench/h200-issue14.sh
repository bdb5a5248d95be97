#!/usr/bin/env bash
# One device command for issue 14's targets: GPT-2 124M LoRA and full fine-tuning (lowrank on
# Dawn and PyTorch on the same GPU), the attention microbenchmark beside PyTorch SDPA, and the
# matmul shapes beside torch.matmul. Run from the repo root with the kit in .gpu:
#   bash bench/h200-issue14.sh   (writes into $OUT, or ./out/h200 without it)
set -uo pipefail
out=${OUT:-out/h200}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() { local name=$1 limit=$2; shift 2; echo "== $name" >&2; timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "rc $?" >> "$out/$name.txt"; }
step gpt2 200 bash .gpu/run.sh train-gpt2 --mode both --kprof 25
step torch 100 python3 bench/train_gpt2_torch.py --mode both
step attention 80 bash .gpu/run.sh attention-gpu
step attention-torch 40 python3 bench/attention_torch.py
step matmul 120 bash .gpu/run.sh matmul-sweep --heuristic
if [ -f bench/matmul_torch.py ]; then step matmul-torch 40 python3 bench/matmul_torch.py; fi
