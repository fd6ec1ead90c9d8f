#!/usr/bin/env bash
# Coverage-guided fuzzing of kiln under libFuzzer, with the address sanitizer: each target of
# fuzz-targets/ (source, ir_text, manifest, call, onnx) runs for SECONDS (default 60) on 2 jobs,
# starting from the seeds (examples, filetests, fixture bundles) and fuzz/regressions/.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
# Crashes land in fuzz/artifacts/<target>/; copy one into fuzz/regressions/<target>/ once it
# is fixed, and the test command replays it. Prints the inputs run per target; exits 1 if
# any target found a failure. The test command runs the same targets briefly without
# libFuzzer (fuzz-targets/tests/replay.rs), in its one cargo profile.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(source ir_text manifest call onnx)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run -q -p kiln-fuzz-targets --bin kiln-fuzz-seeds -- fuzz/corpus
# cargo-fuzz passes unstable flags (-Zsanitizer=address); the one toolchain here is stable.
# Only the fuzz workspace sees RUSTC_BOOTSTRAP, which cargo counts in every fingerprint.
export -n RUSTC_BOOTSTRAP 2>/dev/null || true
fuzz() { (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz "$@"); }
fuzz build --debug-assertions
status=0
mkdir -p target
for t in "${targets[@]}"; do
    dirs=("corpus/$t")
    [ -d "fuzz/regressions/$t" ] && dirs+=("regressions/$t")
    log="target/fuzz-$t.log"
    if fuzz run --debug-assertions "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -jobs=2 -workers=2 \
        -print_final_stats=1 >"$log" 2>&1; then
        verdict=ok
    else
        verdict="FAILED (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    runs=$(cat fuzz/fuzz-*.log 2>/dev/null | awk '/stat::number_of_executed_units/ { n += $2 } END { print n + 0 }')
    rm -f fuzz/fuzz-*.log
    echo "$t: $runs inputs in $seconds s, $verdict"
done
exit "$status"
