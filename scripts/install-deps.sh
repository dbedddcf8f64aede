#!/usr/bin/env bash
# Install what siphon's build and tests need, and only what is missing.
#
# Idempotent: a second run installs nothing and runs no `apt-get update`.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*"; }

# Debian packages:
#   build:  pkg-config, libopus-dev (audiopus links the system libopus),
#           libasound2-dev (cpal / ALSA)
#   peers:  sip-tester (SIPp), kamailio (registrar/proxy, kamcmd),
#           baresip-core (a second softphone)
#   audio:  pulseaudio, pulseaudio-utils (pactl), libasound2-plugins (ALSA's
#           pulse plugin), espeak-ng and sox (make and measure test sound)
#   misc:   procps (`kill`, used by the test harness to stop peers)
#
# `scripts/install-deps.sh build` installs only what building siphon needs.
BUILD_PACKAGES=(
    pkg-config
    libopus-dev
    libasound2-dev
)
PACKAGES=(
    "${BUILD_PACKAGES[@]}"
    libasound2-plugins
    sip-tester
    kamailio
    baresip-core
    pulseaudio
    pulseaudio-utils
    espeak-ng
    sox
    procps
)

if [[ ${1:-all} == build ]]; then
    PACKAGES=("${BUILD_PACKAGES[@]}")
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    log "all ${#PACKAGES[@]} Debian packages already installed"
else
    log "missing Debian packages: ${missing[*]}"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            log "not root and no sudo: cannot install ${missing[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "running apt-get update"
    "${SUDO[@]}" apt-get update -q
    log "running apt-get install -y ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -q "${missing[@]}"
fi

# Rust components used by CI (formatting and lint checks).
if command -v rustup >/dev/null 2>&1; then
    installed_components=$(rustup component list --installed 2>/dev/null || true)
    for component in rustfmt clippy; do
        if grep -q "^${component}" <<<"$installed_components"; then
            log "rust component ${component} already installed"
        else
            log "running rustup component add ${component}"
            if ! rustup component add "$component"; then
                log "warning: could not add rust component ${component}" >&2
            fi
        fi
    done
else
    log "rustup not found: not checking rustfmt/clippy components"
fi

log "done"
