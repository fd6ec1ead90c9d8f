#!/usr/bin/env bash
# Prints the path of a ptxas binary for the GPU tests, installing NVIDIA's nvidia-cuda-nvcc
# wheel from PyPI into a virtual environment the first time (idempotent). Prints nothing, with
# a warning on stderr, when it cannot (offline): the tests then skip their ptxas check.
set -uo pipefail
venv="${KILN_PTXAS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/ptxas-venv}"
find_ptxas() { find "$venv" -name ptxas -type f -perm -u+x 2>/dev/null | sort | head -n 1; }
ptxas="$(find_ptxas)"
if [ -z "$ptxas" ]; then
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q nvidia-cuda-nvcc; } >&2 \
    || echo "ptxas: cannot install nvidia-cuda-nvcc from PyPI; the GPU tests will skip ptxas" >&2
  ptxas="$(find_ptxas)"
fi
[ -n "$ptxas" ] && echo "$ptxas"
exit 0
