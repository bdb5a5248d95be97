#!/usr/bin/env bash
# Flash attention A/B on the H200 (session 6, 2026-12-03): the committed HEAD bundle's kernels,
# the new ones with each change switched off in turn (bench/attention-gpu.ts --variants) and
# PyTorch's SDPA, in one device command, MHA (GPT-2: B=8, H=12) and GQA (SmolLM2-135M: H=9, HKV=3).
# Kit: bench/bundle.sh KIT bench/attention-gpu.ts, plus the HEAD build as attention-gpu-head.mjs.
# Run from the repo root:  [FINAL=1] KIT=.gpu-s6 bash bench/h200-attn-s6.sh   (writes into $OUT)
set -uo pipefail
out=${OUT:-out/h200}
kit=${KIT:-.gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
step() {
  local name=$1 limit=$2; shift 2
  echo "== $name" >&2
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$out/$name.txt" 2>&1
  echo "rc $? in $((SECONDS - t0)) s" >> "$out/$name.txt"
}
for f in "$kit"/bundle/*.mjs.xz; do [ -f "$f" ] && [ ! -f "${f%.xz}" ] && xz -dk "$f"; done
# the kernels before this session: no subgroups, ds in p's tile (the dq kernel and the GQA loop stay the defaults)
OLD='subgroups=off,dsTile=shared'
# kernel times at the timer's resolution: Dawn quantizes timestamps (to 65.5 µs here) unless told not to
export LOWRANK_DAWN_DISABLE_FEATURES=timestamp_quantization
# FINAL=1: the closing A/B, old and new interleaved twice; unset: the sweep of tiles and layouts
if [ "${FINAL:-0}" = 1 ]; then
  step attention-head 60 bash "$kit/run.sh" attention-gpu-head --composed 0
  step attention-mha 150 bash "$kit/run.sh" attention-gpu --decode 0 --variants "$OLD;default;$OLD;default;forwardTile=1"
  step attention-gqa 150 bash "$kit/run.sh" attention-gpu --h 9 --hkv 3 --decode 0 --variants "$OLD;default;$OLD;default"
  step torch 60 python3 bench/attention_torch.py
  step torch 60 python3 bench/attention_torch.py --h 9 --hkv 3
else
  B1='backwardShape=32x32x8x8'
  B2='backwardShape=64x16x8x8'
  B3='backwardShape=64x16x16x4'
  F1='forwardShape=64x32x8x8'
  F2='forwardShape=64x32x16x4'
  step attention-head 60 bash "$kit/run.sh" attention-gpu-head --composed 0
  step attention-mha 200 bash "$kit/run.sh" attention-gpu --decode 0 --variants "$OLD;default;$B1;$B2;$B3;$F1;$F2;dq=fused;$OLD;default"
  step attention-gqa 150 bash "$kit/run.sh" attention-gpu --h 9 --hkv 3 --decode 0 --variants "$OLD;default;gqa=split;dq=fused,gqa=split;$B1;$B2;$F1;$OLD;default"
  step attention-d128 60 bash "$kit/run.sh" attention-gpu --d 128 --t 512 --decode 0 --variants "dsTile=shared;default;dsTile=shared;default"
  step attention-norobust 60 env LOWRANK_DAWN_FEATURES=disable_robustness bash "$kit/run.sh" attention-gpu --t 512,1024 --composed 0 --decode 0 --variants "$OLD;default;$OLD;default"
  step torch 60 python3 bench/attention_torch.py
  step torch 60 python3 bench/attention_torch.py --h 9 --hkv 3
  step torch 60 python3 bench/attention_torch.py --d 128 --t 512
fi
grep -h "^RESULT\|^CHECK\|^device" "$out"/*.txt > "$out/summary.txt" 2>/dev/null
