#!/usr/bin/env bash
# The prepared device check for a session that is lent a real GPU machine: one call, everything that
# needs a GPU, results under $OUT. Prepare on the development machine first:
#   npm run build && bash ../shared/gpu/make-kit.sh
#   mkdir -p .gpu-models && cp -r ../shared/models/stories260K .gpu-models/   # ../shared does not travel
# then call the device tool with command "bash scripts/gpu-check.sh", carry [".gpu-kit", ".gpu-models"],
# and a timeout that leaves room to rerun (each step is capped by STEP_TIMEOUT seconds).
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
# Tests find the real model at ../shared/models/stories260K, as on developer machines.
if [ -d .gpu-models/stories260K ] && [ ! -d ../shared/models/stories260K ]; then
  mkdir -p ../shared/models && cp -r .gpu-models/stories260K ../shared/models/
fi
step() {
  local name=$1
  shift
  echo "== $name"
  timeout "${STEP_TIMEOUT:-150}" bash .gpu-kit/run.sh "$@" >"$out/$name.log" 2>&1
  echo "rc=$?"
  tail -n 6 "$out/$name.log"
}
step devices node dist/cli.js devices
step gpu-tests node scripts/run-tests.mjs test/gpu
step kernels node --import tsx bench/kernels.ts --json
step decode node --import tsx bench/decode.ts --json
step tp node --import tsx bench/tp.ts --json
