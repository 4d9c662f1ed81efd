#!/usr/bin/env bash
# One-time setup on a fresh machine: a Vulkan driver Dawn accepts (installed only when missing),
# Chromium for the Swagger UI browser test (only when missing and apt is available), the npm
# dependencies, and the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-software-gpu.sh
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || echo "setup: chromium not installed; the browser test will be skipped" >&2
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
npm run build
