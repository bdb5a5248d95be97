#!/usr/bin/env bash
# One device command for issue 15's targets: GPT-2 124M LoRA and full fine-tuning with eager and
# compiled (lr.compile) steps, PyTorch on the same GPU, and the MLP step (lowrank eager and
# compiled, tfjs-webgpu, jax-js on WebGPU) beside PyTorch's. Run from the repo root with the kit
# in .gpu (bench/bundle.sh .gpu bench/train-gpt2.ts bench/mlp-compile.ts):
#   bash bench/h200-issue15.sh   (writes into $OUT, or ./out/h200 without it)
set -uo pipefail
out=${OUT:-out/h200}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() { local name=$1 limit=$2; shift 2; echo "== $name" >&2; timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "rc $?" >> "$out/$name.txt"; }
step mlp 120 bash .gpu/run.sh mlp-compile
step mlp-torch 40 python3 bench/mlp_torch.py
step gpt2-compiled 200 bash .gpu/run.sh train-gpt2 --mode both --compile 1 --warmup 5 --kprof 12 ${GPT2_ARGS:-}
step gpt2-eager 150 bash .gpu/run.sh train-gpt2 --mode both --compile 0 --infer 0 ${GPT2_ARGS:-}
step torch 100 python3 bench/train_gpt2_torch.py --mode both
if [ "${QLORA:-1}" = 1 ]; then step qlora 200 bash .gpu/run.sh qlora-gpt2 --bits f32,nf4,int8 --compile 1; fi
# the CPU side of a replayed LoRA step: a V8 profile of 40 compiled steps, summarised
if [ "${CPUPROF:-0}" = 1 ]; then
  mkdir -p "$out/prof"
  # Node 20 refuses --cpu-prof in NODE_OPTIONS: a copy of the kit's run.sh passes it to node
  sed "s|^exec /tmp/kit-node/node |exec /tmp/kit-node/node --cpu-prof --cpu-prof-dir=$out/prof |" .gpu/run.sh > .gpu/run-prof.sh
  step gpt2-cpuprof 200 bash .gpu/run-prof.sh train-gpt2 --mode lora --compile 1 --steps 40 --infer 0
  python3 bench/cpuprofile_top.py "$(ls -t "$out"/prof/*.cpuprofile | head -1)" --top 25 --inclusive replay,run,dispatch,submit,realizeUsers,read > "$out/gpt2-cpuprof-summary.txt" 2>&1
  rm -rf "$out/prof"
fi
