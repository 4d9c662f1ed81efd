#!/usr/bin/env bash
# One-time setup on a fresh machine: a Vulkan driver Dawn accepts (installed only when missing),
# Chromium for the Swagger UI browser test (only when missing; needs root and apt), the npm
# dependencies, and the build (the only one a CI run makes: .ci/run then runs `npm run test:ci`).
# With CI set, a browser that cannot be installed fails the setup: CI must run the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-software-gpu.sh

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  # A fresh machine may have no package lists yet, or stale ones: update when chromium is unknown
  # or its install fails, then try once more.
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show chromium >/dev/null 2>&1; then apt-get update -qq; fi
  if ! apt-get install -y -qq chromium >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null || true
  fi
fi
if [ ! -x "$chromium" ]; then
  if [ -n "${CI:-}" ]; then
    echo "setup: $chromium could not be installed (apt-get install chromium, as root); CI needs it for test/e2e/docs-browser.test.ts" >&2
    exit 1
  fi
  echo "setup: chromium not installed; the browser test will be reported skipped (apt-get install chromium, as root)" >&2
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
npm run build
