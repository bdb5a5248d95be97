#!/usr/bin/env bash
# Bundles bench entries (sources through the `source` condition; tfjs as ESM so its gradient
# registrations and kernels share one engine) into DIR/bundle/NAME.mjs, next to a kit made by
# ../shared/gpu/pack.sh (whose own bundles use the built dist/ and tfjs's CommonJS build).
#   bash bench/bundle.sh DIR bench/train-gpt2.ts bench/mlp-compile.ts ...
set -euo pipefail
dir=${1:?usage: bundle.sh DIR ENTRY.ts...}; shift
mkdir -p "$dir/bundle"
npx --no-install esbuild "$@" --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --conditions=source --main-fields=module,main --outdir="$dir/bundle" \
  --out-extension:.js=.mjs --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
