#!/usr/bin/env bash
# The main job, from a fresh machine: install what kiln needs, build kiln, compile
# examples/mlp.kn into an object, link it into the C program examples/c/main.c, run it, and
# check its results against kiln's reference interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet --bin kiln
kiln=target/debug/kiln
out=target/quickstart
rm -rf "$out" && mkdir -p "$out/data"
"$kiln" build examples/mlp.kn -o "$out"
cc -std=c99 -Wall -Werror -O2 -I "$out" examples/c/main.c "$out/mlp.o" -lm -o "$out/mlp_demo"
echo "== running the compiled model =="
"$out/mlp_demo" "$out/data"
echo "== checking against the interpreter =="
d="$out/data"
"$kiln" eval examples/mlp.kn --function loss \
  --input x="$d/x.bin" --input labels="$d/labels.bin" --input w1="$d/w1.bin" --input b1="$d/b1.bin" \
  --input w2="$d/w2.bin" --input b2="$d/b2.bin" --compare out0="$d/loss.bin"
"$kiln" eval examples/mlp.kn --function predict \
  --input x="$d/x.bin" --input w1="$d/w1.bin" --input b1="$d/b1.bin" --input w2="$d/w2.bin" \
  --input b2="$d/b2.bin" --compare out0="$d/probs.bin" --compare out1="$d/best.bin"
