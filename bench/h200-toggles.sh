#!/usr/bin/env bash
# One device command: do Dawn's safety toggles cost the kernels or the CPU? GPT-2 124M LoRA
# (compiled, kernel profile; with MICRO=1 also the attention microbenchmark and the matmul
# heuristic's shapes), each with Dawn's defaults and with LOWRANK_DAWN_FEATURES=disable_robustness(,skip_validation);
# PyTorch's LoRA step; then a V8 CPU profile of 20 replayed LoRA steps. Kit in .gpu (bench/bundle.sh .gpu
# bench/train-gpt2.ts bench/attention-gpu.ts bench/matmul-sweep.ts):
#   bash bench/h200-toggles.sh   (writes into $OUT, or ./out/h200 without it)
set -uo pipefail
out=${OUT:-out/h200}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() { local name=$1 limit=$2; shift 2; echo "== $name" >&2; timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "rc $?" >> "$out/$name.txt"; }
fast=disable_robustness,skip_validation
step gpt2-default 110 bash .gpu/run.sh train-gpt2 --mode lora --compile 1 --warmup 4 --kprof 12 --infer 0
LOWRANK_DAWN_FEATURES=$fast step gpt2-fast 110 bash .gpu/run.sh train-gpt2 --mode lora --compile 1 --warmup 4 --kprof 12 --infer 0
step torch-lora 60 python3 bench/train_gpt2_torch.py --mode lora
if [ "${MICRO:-0}" = 1 ]; then
  step attention-default 40 bash .gpu/run.sh attention-gpu --composed 0
  LOWRANK_DAWN_FEATURES=disable_robustness step attention-norobust 40 bash .gpu/run.sh attention-gpu --composed 0
  step matmul-default 50 bash .gpu/run.sh matmul-sweep --heuristic --budget=25
  LOWRANK_DAWN_FEATURES=disable_robustness step matmul-norobust 50 bash .gpu/run.sh matmul-sweep --heuristic --budget=25
fi
if [ "${CPUPROF:-1}" = 1 ]; then
  mkdir -p "$out/prof"
  # Node 20 refuses --cpu-prof in NODE_OPTIONS: a copy of the kit's run.sh passes it to node
  sed "s|^exec /tmp/kit-node/node |exec /tmp/kit-node/node --cpu-prof --cpu-prof-dir=$out/prof |" .gpu/run.sh > .gpu/run-prof.sh
  step gpt2-cpuprof 90 bash .gpu/run-prof.sh train-gpt2 --mode lora --compile 1 --steps 20 --infer 0
  python3 bench/cpuprofile_top.py "$(ls -t "$out"/prof/*.cpuprofile | head -1)" --top 30 --inclusive replay,run,dispatch,submit,realizeUsers,read,leased > "$out/gpt2-cpuprof-summary.txt" 2>&1
  rm -rf "$out/prof"
fi
