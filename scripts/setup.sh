#!/usr/bin/env bash
# Installs what kiln needs to build and test on Debian 12 (idempotent): LLVM/MLIR 22 from
# Debian's packages, C compilers, cmake for the CMake example, and the aarch64 cross toolchain
# with qemu-user for the cross-compilation test, python3-venv for ptxas (scripts/ptxas.sh), and
# openssl for the signing test (keys made as users make them). Safe to run repeatedly; does
# nothing when everything is present.
set -euo pipefail
pkgs=(gcc g++ libc6-dev cmake gcc-aarch64-linux-gnu qemu-user llvm-22-dev libmlir-22-dev mlir-22-tools libclang-22-dev clang-22 libpolly-22-dev libzstd-dev python3 python3-venv openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
