#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test target.
# Under CI (CI=true) a missing peer program fails its test instead of skipping.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The peers (Kamailio, SIPp, baresip, PulseAudio with a null sink) are started by the
# tests themselves, each on its own loopback ports and private folders, and stopped when
# the test ends; nothing has to run beforehand.

echo "test.sh: cargo test --all-targets --no-fail-fast"
status=0
cargo test --all-targets --no-fail-fast || status=$?
echo "test.sh: cargo test exited with ${status}"
exit "$status"
