#!/usr/bin/env bash
# Builds kiln's Python package into a virtual environment, target/pyenv (made the first time,
# idempotent): the packages of python/requirements-test.txt, then kiln's wheel, built by maturin
# with the test suite's cargo profile and target directory, so that nothing of kiln or LLVM is
# compiled again. Then `target/pyenv/bin/python -c "import kiln"` works.
#
# The wheel links LLVM and MLIR statically and Debian's libffi and libzstd dynamically: it is
# for this machine (auditwheel is skipped), not for PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
env="$PWD/target/pyenv"
[ -x "$env/bin/python" ] || python3 -m venv "$env"
"$env/bin/pip" install -q --disable-pip-version-check -r python/requirements-test.txt
export PYO3_PYTHON="$env/bin/python"
rm -rf target/wheels
"$env/bin/maturin" build --quiet --profile dev -m python/Cargo.toml -i "$env/bin/python" -o target/wheels \
  --auditwheel skip --strip
"$env/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall target/wheels/kiln-*.whl
