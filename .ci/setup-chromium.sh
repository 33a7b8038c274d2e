#!/usr/bin/env bash
# Installs Debian's chromium so test/browser.test.ts can run the library bundle on WebGPU in a
# headless browser (SwiftShader, no GPU needed). Only Debian's package is used: no browser is ever
# downloaded by npm tooling (playwright-core drives /usr/bin/chromium). Idempotent: a re-run that
# finds /usr/bin/chromium only prints the version.
#
# Usage: bash .ci/setup-chromium.sh   (as root, or with sudo available)
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium

log() { echo "setup-chromium: $*"; }

report() {
  # The wrapper script prints e.g. "Chromium 139.0.7258.154 built on Debian GNU/Linux 12 (bookworm)".
  log "$("$CHROMIUM" --version 2>/dev/null || echo "installed, but '$CHROMIUM --version' failed")"
}

if [ -x "$CHROMIUM" ]; then
  log "already installed"
  report
  exit 0
fi

# Run privileged commands directly as root, through sudo otherwise.
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null; then
  as_root() { sudo "$@"; }
else
  log "need root or sudo to install chromium" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null; then
  log "apt-get not found: install Chromium at $CHROMIUM by hand" >&2
  exit 1
fi

# Wait for another apt/dpkg run (e.g. unattended-upgrades) instead of failing on its lock.
apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get -o DPkg::Lock::Timeout=300 "$@"
}

log "apt-get update"
apt_get update -qq
log "installing chromium"
apt_get install -y -qq --no-install-recommends chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
  log "the chromium package did not provide $CHROMIUM" >&2
  exit 1
fi
report
