#!/usr/bin/env bash
# The CPU benchmark suite on both instruction sets in one run (#20): `kiln bench` for the
# x86-64-v3 default target (numpy and JAX held to AVX2) and for `--target-cpu native` (peers
# use the whole CPU), on 1 and 2 threads, after a line naming the host. Markdown on stdout,
# for docs/performance.md.
#   bash scripts/bench.sh [PYTHON] [RUNS]
# PYTHON (default python3) is the interpreter with numpy and, for the JAX column, jax
# (`python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax==0.10.2`). RUNS: timed runs
# per benchmark, the median reported (default 9).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3}"
runs="${2:-9}"
cargo build -q --release -p kiln
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa=avx2
for f in avx512f avx512_bf16 amx_tile; do
    if [[ " $flags " == *" $f "* ]]; then isa="$isa $f"; fi
done
echo "Host: $model ($(nproc) CPUs; $isa), $(date -u +%Y-%m-%d)."
for cpu in x86-64-v3 native; do
    for threads in 1 2; do
        [ "$threads" -le "$(nproc)" ] || continue
        echo
        echo "### --target-cpu $cpu, $threads thread(s)"
        echo
        ./target/release/kiln bench --target-cpu "$cpu" --threads "$threads" --runs "$runs" --python "$python"
    done
done
