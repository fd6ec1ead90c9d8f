#!/usr/bin/env bash
# The random-program differential test at scale, outside CI: COUNT random programs (default
# 10,000), compiled at -O2 and compared with the reference interpreter on random inputs, in
# batches of BATCH (default 250) with seeds 1, 2, ... so that any failure is reproducible with
# `KILN_TEST_SEED=<seed> KILN_RANDOM_PROGRAMS=<batch> cargo test --test differential random_programs`.
# Prints one line per batch and a total; exits 1 if any batch failed.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-10000}"
batch="${2:-250}"
cargo test --test differential --no-run 2>/dev/null
failed=0
done_programs=0
seed=1
started=$(date +%s)
while [ "$done_programs" -lt "$count" ]; do
    n=$((count - done_programs < batch ? count - done_programs : batch))
    if KILN_TEST_SEED="$seed" KILN_RANDOM_PROGRAMS="$n" cargo test -q --test differential \
        random_programs_agree_with_the_interpreter >"target/differential-$seed.log" 2>&1; then
        echo "seed $seed: $n programs agree"
    else
        echo "seed $seed: FAILED, see target/differential-$seed.log"
        failed=$((failed + 1))
    fi
    done_programs=$((done_programs + n))
    seed=$((seed + 1))
done
echo "differential: $done_programs programs in $((seed - 1)) batches, $failed failed batches, $(( $(date +%s) - started )) s"
[ "$failed" -eq 0 ]
