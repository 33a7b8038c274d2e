#!/usr/bin/env bash
# Installs a software Vulkan driver (Mesa lavapipe) so the `webgpu` npm package (Dawn) can get an
# adapter on a GPU-less Debian machine. Dawn rejects bookworm's own Mesa 22, so the drivers come
# from bookworm-backports (Mesa 25). Idempotent: a re-run that finds everything in place only
# prints the version.
#
# Usage: bash .ci/setup-webgpu.sh   (as root, or with sudo available)
# Afterwards set XDG_RUNTIME_DIR (any writable directory) in the environment that runs Dawn, or
# the Vulkan loader complains; src/backends/webgpu/device.ts does this itself when it is unset.
set -euo pipefail

# Dawn needs at least this Mesa; bookworm's 22.3 is refused.
readonly MIN_MESA=25
readonly DEBIAN_MIRROR=http://deb.debian.org/debian
readonly BACKPORTS_FILE=/etc/apt/sources.list.d/bookworm-backports.sources
readonly PACKAGES=(mesa-vulkan-drivers libvulkan1)

log() { echo "setup-webgpu: $*"; }

# Run privileged commands directly as root, through sudo otherwise.
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null; then
  as_root() { sudo "$@"; }
else
  log "need root or sudo to install packages" >&2
  exit 1
fi

# Wait for another apt/dpkg run (e.g. unattended-upgrades) instead of failing on its lock.
apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"
}

installed_version() {
  dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null |
    awk '$1 == "ii" { print $2 }'
}

mesa_is_current() {
  local v
  v=$(installed_version mesa-vulkan-drivers)
  [ -n "$v" ] && [ -n "$(installed_version libvulkan1)" ] &&
    dpkg --compare-versions "$v" ge "$MIN_MESA"
}

report() {
  local icd=missing f
  for f in /usr/share/vulkan/icd.d/lvp_icd*.json; do
    if [ -e "$f" ]; then icd=$f; break; fi
  done
  log "Mesa Vulkan drivers $(installed_version mesa-vulkan-drivers)," \
    "Vulkan loader $(installed_version libvulkan1), lavapipe ICD: $icd"
}

if mesa_is_current; then
  log "already installed"
  report
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  log "apt-get not found: install Mesa >= $MIN_MESA with lavapipe (mesa-vulkan-drivers) by hand" >&2
  exit 1
fi

# shellcheck source=/dev/null
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
target=()
if [ "$codename" = bookworm ]; then
  # apt reads only *.list and *.sources; other files (e.g. "*.disabled") must not count.
  if ! grep -qs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources; then
    log "adding bookworm-backports to apt sources"
    as_root tee "$BACKPORTS_FILE" >/dev/null <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  target=(-t bookworm-backports)
else
  # Later Debian releases ship a new enough Mesa in their main suite.
  log "not bookworm (${codename:-unknown}): installing from the default suites"
fi

log "apt-get update"
apt_get update -qq
log "installing ${PACKAGES[*]} ${target[*]}"
apt_get install -y -qq --no-install-recommends "${target[@]}" "${PACKAGES[@]}" >/dev/null

if ! mesa_is_current; then
  log "mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers) is older than $MIN_MESA" >&2
  exit 1
fi
report
