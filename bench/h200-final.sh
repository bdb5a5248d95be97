#!/usr/bin/env bash
# The closing measurement of issues 14, 15, 17 and 18 in two device commands (each must fit the
# device's 10-minute limit), lowrank on Dawn and PyTorch on the same GPU in the same command.
#   PHASE=1: GPT-2 124M LoRA and full fine-tuning (compiled steps, per-kernel GPU profile,
#            merged-LoRA inference), PyTorch's steps, the attention microbenchmark beside SDPA,
#            the MLP step beside PyTorch, jax-js and tfjs-webgpu, the matmul shapes beside
#            torch.matmul. Kit: bench/bundle.sh KIT bench/train-gpt2.ts bench/attention-gpu.ts
#            bench/matmul-sweep.ts bench/mlp-compile.ts
#   PHASE=2: GPT-2 LoRA with dropout 0.1 (the device RNG) beside PyTorch's, a V8 CPU profile of
#            replayed LoRA steps, the SmolLM2-135M-shaped Llama (f32, f16, NF4 bases) beside
#            PyTorch + PEFT, and the four GPT-2 QLoRA bases. Kit: bench/bundle.sh KIT
#            bench/train-gpt2.ts bench/train-llama.ts bench/qlora-gpt2.ts
# Run from the repo root:  PHASE=1 KIT=.gpu-p1 bash bench/h200-final.sh   (writes into $OUT)
set -uo pipefail
out=${OUT:-out/h200}
kit=${KIT:-.gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() {
  local name=$1 limit=$2; shift 2
  echo "== $name" >&2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "rc $? in $((SECONDS - t0)) s" >> "$out/$name.txt"
}

# bundles may travel xz-compressed (the device's 64 MiB transfer limit)
for f in "$kit"/bundle/*.mjs.xz; do [ -f "$f" ] && [ ! -f "${f%.xz}" ] && xz -dk "$f"; done
if [ "${PHASE:-1}" = 1 ]; then
  step gpt2 200 bash "$kit/run.sh" train-gpt2 --mode both --compile 1 --warmup 5 --kprof 25
  step torch 100 python3 bench/train_gpt2_torch.py --mode both
  step attention 60 bash "$kit/run.sh" attention-gpu --composed 0
  step attention-torch 40 python3 bench/attention_torch.py
  step mlp 100 bash "$kit/run.sh" mlp-compile
  step mlp-torch 40 python3 bench/mlp_torch.py
  step matmul 80 bash "$kit/run.sh" matmul-sweep --heuristic --budget=40
  step matmul-torch 40 python3 bench/matmul_torch.py
else
  step gpt2-dropout 90 bash "$kit/run.sh" train-gpt2 --mode lora --compile 1 --dropout 0.1 --infer 0
  step torch-dropout 60 python3 bench/train_gpt2_torch.py --mode lora --dropout 0.1 --infer 0
  mkdir -p "$out/prof"
  # Node 20 refuses --cpu-prof in NODE_OPTIONS: a copy of the kit's run.sh passes it to node
  sed "s|^exec /tmp/kit-node/node |exec /tmp/kit-node/node --cpu-prof --cpu-prof-dir=$out/prof |" "$kit/run.sh" > "$kit/run-prof.sh"
  step gpt2-cpuprof 90 bash "$kit/run-prof.sh" train-gpt2 --mode lora --compile 1 --steps 30 --infer 0
  python3 bench/cpuprofile_top.py "$(ls -t "$out"/prof/*.cpuprofile | head -1)" --top 30 \
    --inclusive replay,run,dispatch,submit,realizeUsers,read,leased > "$out/gpt2-cpuprof-summary.txt" 2>&1
  rm -rf "$out/prof"
  step llama-f32 100 bash "$kit/run.sh" train-llama --bits f32 --decode 128 --prompt 32 --kprof 25
  step torch-llama-f32 80 python3 bench/train_llama_torch.py --dtype f32 --decode 128 --prompt 32
  step llama-f16 60 bash "$kit/run.sh" train-llama --bits f16
  step llama-nf4 60 bash "$kit/run.sh" train-llama --bits nf4
  step qlora-gpt2 150 bash "$kit/run.sh" qlora-gpt2 --bits f32,f16,nf4,int8 --compile 1
fi
grep -h "^RESULT" "$out"/*.txt > "$out/summary.txt" 2>/dev/null
