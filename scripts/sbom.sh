#!/usr/bin/env bash
# A CycloneDX SBOM of kiln (CycloneDX 1.5, JSON), from the dependency tree as Cargo.lock pins it:
# target/sbom/kiln.cdx.json describes the kiln crate (the compiler and the `kiln` CLI) and
# target/sbom/kiln-runtime.cdx.json the runtime that programs link; each lists every crate with
# its version, license, hash and package URL, plus the LLVM/MLIR libraries the compiler links
# (Debian's llvm-22-dev and libmlir-22-dev, by the installed version), which Cargo cannot see.
# Where the network allows it, `cargo deny check advisories` then checks every crate against
# the RustSec advisory database (the test command checks licenses, bans and sources offline).
#   bash scripts/sbom.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-cyclonedx >/dev/null || cargo install cargo-cyclonedx --locked --version 0.5.9
out=target/sbom
mkdir -p "$out"
for pkg in . runtime; do
    cargo cyclonedx -q --manifest-path "$pkg/Cargo.toml" --format json --spec-version 1.5 \
        --target x86_64-unknown-linux-gnu --no-build-deps
done
mv kiln.cdx.json "$out/kiln.cdx.json"
mv runtime/kiln-runtime.cdx.json "$out/kiln-runtime.cdx.json"
# Other workspace members get their own files from cargo-cyclonedx; only these two are shipped.
find . -path ./target -prune -o -name '*.cdx.json' -print | xargs -r rm -f
python3 - "$out/kiln.cdx.json" <<'PY'
import json, subprocess, sys
path = sys.argv[1]
bom = json.load(open(path))
for pkg in ["llvm-22-dev", "libmlir-22-dev"]:
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True).stdout
    bom.setdefault("components", []).append({
        "type": "library", "bom-ref": f"pkg:deb/debian/{pkg}@{version}", "name": pkg, "version": version,
        "purl": f"pkg:deb/debian/{pkg}@{version}",
        "licenses": [{"expression": "Apache-2.0 WITH LLVM-exception"}],
        "description": "linked into the kiln compiler (not into compiled programs or the runtime)",
    })
json.dump(bom, open(path, "w"), indent=2)
PY
for f in "$out"/*.cdx.json; do
    echo "$f: $(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['components']))" "$f") components"
done
if timeout 120 cargo deny --log-level error check advisories; then
    echo "advisories: none affect kiln's dependency tree"
else
    echo "advisories: not checked or failing (see above); the database needs GitHub access" >&2
fi
