#!/usr/bin/env bash
# Installs a Vulkan driver that Dawn accepts on a machine with no GPU: Mesa >= 24 lavapipe.
# Debian bookworm's own Mesa (22.3) lacks features Dawn requires, so it comes from bookworm-backports.
# Idempotent: does nothing when a usable Vulkan driver is already present.
set -euo pipefail

have_usable_driver() {
  local icd
  for icd in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -e "$icd" ] || continue
    case "$icd" in
      *lvp_icd*)
        # lavapipe counts only when Mesa is new enough for Dawn.
        local ver
        ver=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
        dpkg --compare-versions "$ver" ge 24 && return 0 ;;
      *) return 0 ;;
    esac
  done
  return 1
}

if have_usable_driver && ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; then
  echo "install-software-gpu: a usable Vulkan driver is already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install-software-gpu: no apt-get here; install Mesa >= 24 (lavapipe) and libvulkan1 with your package manager" >&2
  exit 1
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
  list=/etc/apt/sources.list.d/bookworm-backports.list
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1
else
  # Newer Debian/Ubuntu releases ship a Mesa that Dawn accepts.
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
have_usable_driver || { echo "install-software-gpu: installed Mesa is still too old for Dawn (need >= 24)" >&2; exit 1; }
echo "install-software-gpu: lavapipe installed ($(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))"
