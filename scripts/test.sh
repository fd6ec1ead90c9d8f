#!/usr/bin/env bash
# The test command, from a fresh machine: install what kiln needs, then build and run the
# whole test suite (one cargo profile, so nothing is built twice) and the Python package's
# tests, and close with one line that totals every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
KILN_PTXAS="${KILN_PTXAS:-$(bash scripts/ptxas.sh)}"
export KILN_PTXAS
mkdir -p target
status=0
# The dependency policy (deny.toml): licenses, duplicate versions, sources. Advisories need
# the advisory database from GitHub, which CI cannot reach: scripts/sbom.sh checks them.
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked --version 0.20.2
cargo deny --log-level error check licenses bans sources || status=$?
# `cargo test` builds only the test package's own binaries; kiln-gpu-check belongs to
# kiln-runtime and the GPU tests run it, so every binary is built first (same profile).
{ cargo build --workspace --bins && cargo test --workspace --no-fail-fast; } 2>&1 | tee target/test.log || status=$?
# The Python package (python/): its wheel in a virtual environment, then its tests, whose
# closing line is in cargo's form for the total below.
{ bash scripts/python.sh && target/pyenv/bin/python -m pytest python/tests -q -p no:cacheprovider; } 2>&1 \
  | tee -a target/test.log || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' target/test.log
exit "$status"
