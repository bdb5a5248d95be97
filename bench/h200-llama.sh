#!/usr/bin/env bash
# One device command for the Llama targets of issues 17 and 18: LoRA r=8 α=16 on q_proj,v_proj
# of a SmolLM2-135M-shaped model (random init), batch 8 × 512, AdamW, compiled steps, with the
# frozen base in float32, f16 and NF4 (one process each, so no run's memory is in another's
# peak), greedy decode at batch 1 with the KV cache, and PyTorch + PEFT on the same GPU (f32,
# TF32 off; then a bf16 base). Per-kernel GPU profiles of one step come with the lowrank runs;
# last, bench/qlora-gpt2.ts over the four GPT-2 bases (QLORA=0 skips it).
# Run from the repo root with the kit in $KIT (default .gpu-qbench; bench/bundle.sh $KIT bench/train-llama.ts bench/qlora-gpt2.ts):
#   bash bench/h200-llama.sh   (writes into $OUT, or ./out/h200 without it)
set -uo pipefail
out=${OUT:-out/h200}
kit=${KIT:-.gpu-qbench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() { local name=$1 limit=$2; shift 2; echo "== $name" >&2; local t0=$SECONDS; timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "rc $? in $((SECONDS - t0)) s" >> "$out/$name.txt"; }
step llama-f32 100 bash "$kit/run.sh" train-llama --bits f32 --decode 128 --prompt 32 --kprof 25 ${LLAMA_ARGS:-}
step torch-f32 80 python3 bench/train_llama_torch.py --dtype f32 --decode 128 --prompt 32 ${TORCH_ARGS:-}
step llama-f16 60 bash "$kit/run.sh" train-llama --bits f16 --kprof 25 ${LLAMA_ARGS:-}
step llama-nf4 60 bash "$kit/run.sh" train-llama --bits nf4 --kprof 25 ${LLAMA_ARGS:-}
if [ "${BF16:-1}" = 1 ]; then step torch-bf16 45 python3 bench/train_llama_torch.py --dtype bf16 --decode 0 ${TORCH_ARGS:-}; fi
# issue 18's peak after the Conv1D-weight fix: the four GPT-2 bases in one process, as on 2026-12-03
if [ "${QLORA:-1}" = 1 ]; then step qlora-gpt2 75 bash "$kit/run.sh" qlora-gpt2 --bits f32,f16,nf4,int8 --compile 1; fi
grep -h "^RESULT" "$out"/llama-*.txt "$out"/torch-*.txt > "$out/summary.txt" 2>/dev/null
