#!/usr/bin/env bash
# siphon's main job on its built-in default: installs what building needs, builds, and runs
# `siphon demo` (a real SIP + RTP call to an echo line inside the process, on loopback).
# Extra arguments go to `siphon demo`, e.g. `scripts/demo.sh --codec pcmu`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cargo build --release --quiet
exec target/release/siphon demo "$@"
