#!/usr/bin/env bash
# One device command for issue 17's f32 target after session 7's changes (the second-use rule of
# lazy fusion, split-K from 192 deep, RoPE through rotateHalf's strided view, grouped q/k/v, the
# memory plan's largest-first slots): the SmolLM2-shaped Llama
# on this tree and on the tree before them (4e58c32, bundled as train-llama-old), alternated,
# PyTorch + PEFT in the same command, the f16 base's peak, and GPT-2 LoRA beside PyTorch (the
# fusion rule and the split heuristic reach it too). Kernel times with Dawn's timestamp
# quantization off. Kit: bench/bundle.sh KIT bench/train-llama.ts bench/train-gpt2.ts (+ the old
# tree's train-llama as train-llama-old), bundles xz-compressed.
#   KIT=.gpu-s7 bash bench/h200-s7.sh   (writes into $OUT, or ./out/h200 without it; PACK=dir: one
#   archive of it there)
set -uo pipefail
out=${OUT:-out/h200}
kit=${KIT:-.gpu-s7}
mkdir -p "$out"
for f in "$kit"/bundle/*.xz; do [ -f "${f%.xz}" ] || xz -dk "$f"; done
export LOWRANK_DAWN_DISABLE_FEATURES=timestamp_quantization
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() { local name=$1 limit=$2; shift 2; echo "== $name" >&2; local t0=$SECONDS; timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "rc $? in $((SECONDS - t0)) s" >> "$out/$name.txt"; }
step llama-f32 100 bash "$kit/run.sh" train-llama --bits f32 --decode 128 --prompt 32 --kprof 40
step llama-old 80 bash "$kit/run.sh" train-llama-old --bits f32
step torch-f32 80 python3 bench/train_llama_torch.py --dtype f32 --decode 128 --prompt 32
step llama-f16 70 bash "$kit/run.sh" train-llama --bits f16
step gpt2 120 bash "$kit/run.sh" train-gpt2 --mode lora --compile 1 --infer 0 --kprof 20
step torch-gpt2 80 python3 bench/train_gpt2_torch.py --mode lora --infer 0
{ for r in 2; do
  step "llama-f32-r$r" 80 bash "$kit/run.sh" train-llama --bits f32
  step "llama-old-r$r" 80 bash "$kit/run.sh" train-llama-old --bits f32
  step "torch-f32-r$r" 80 python3 bench/train_llama_torch.py --dtype f32 --decode 0
done; }
grep -h "^RESULT" "$out"/*.txt > "$out/summary.txt" 2>/dev/null
# the device returns at most 8 files: everything in one archive beside the summary
[ -n "${PACK:-}" ] && tar -czf "$PACK/all.tgz" -C "$out" . && cp "$out/summary.txt" "$PACK/"
