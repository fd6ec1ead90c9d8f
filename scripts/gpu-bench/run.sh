#!/usr/bin/env bash
# The GPU benchmark (issue #6, docs/performance.md): kiln's bundle of bench.kn against
# PyTorch, on the same GPU, in the same run.
#
#   scripts/gpu-bench/run.sh build   any machine with kiln's toolchain: builds the sm_90
#                                    bundle into target/gpu-bench and kiln-gpu-check
#   scripts/gpu-bench/run.sh run     the GPU machine (CUDA driver, cuBLAS, PyTorch): times
#                                    both and prints figures and ratios
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
    build)
        cargo build -q --bin kiln
        cargo build -q -p kiln-runtime --bins
        target/debug/kiln build scripts/gpu-bench/bench.kn --target nvptx64-nvidia-cuda --gpu sm_90 -o target/gpu-bench
        ;;
    run)
        target/debug/kiln-gpu-check --bench --runs 20 target/gpu-bench/bench.json | tee target/gpu-bench/kiln.txt
        python3 scripts/gpu-bench/torch_bench.py target/gpu-bench/kiln.txt
        ;;
    *)
        echo "usage: $0 build|run" >&2
        exit 2
        ;;
esac
