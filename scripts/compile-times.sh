#!/usr/bin/env bash
# Compares the compile times of two kiln binaries on the examples and the GPU benchmark program,
# run alternately in the same session: median of RUNS builds each, for the CPU at -O2 (default
# x86-64-v3) and for sm_80. Usage: scripts/compile-times.sh OLD_KILN NEW_KILN [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 runs=${3:-5}
programs=(examples/mlp.kn examples/train/train.kn examples/cnn/cnn.kn scripts/gpu-bench/bench.kn)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 - "$old" "$new" "$runs" "$out" "${programs[@]}" <<'PY'
import statistics, subprocess, sys, time
old, new, runs, out, programs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
print(f"| program | target | before (s) | after (s) | after / before |\n|---|---|---|---|---|")
for program in programs:
    for target, flags in [("x86-64-v3", []), ("sm_80", ["--target", "nvptx64-nvidia-cuda"])]:
        times = {old: [], new: []}
        for _ in range(runs):
            for kiln in (old, new):
                start = time.perf_counter()
                subprocess.run([kiln, "build", program, *flags, "-o", out], check=True, capture_output=True)
                times[kiln].append(time.perf_counter() - start)
        a, b = statistics.median(times[old]), statistics.median(times[new])
        print(f"| {program} | {target} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
PY
