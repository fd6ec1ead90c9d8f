#!/usr/bin/env bash
# The test command, from a fresh machine: install what kiln needs, then build and run the
# whole test suite (one cargo profile, so nothing is built twice).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --no-fail-fast
