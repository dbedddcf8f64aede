#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test target.
# Under CI (CI=true) a missing peer program fails its test instead of skipping.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/install-deps.sh

# --- services needed by the tests -------------------------------------------
# (PulseAudio with a null sink will be started here for the audio tests.)
# -----------------------------------------------------------------------------

echo "test.sh: cargo test --all-targets --no-fail-fast"
status=0
cargo test --all-targets --no-fail-fast || status=$?
echo "test.sh: cargo test exited with ${status}"
exit "$status"
