#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the test tools when missing (cached under
# ~/.cache/palisade), then formatting, lints, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - start))"; }

step "tools"
PALISADE_TOOLS=$(e2e/tools/install.sh)
export PALISADE_TOOLS

step "release image (./e2e/image.sh) for the real-node tests"
# Its build directory is cached with the tools, so a fresh clone rebuilds only Palisade's crates.
if command -v mmdebstrap >/dev/null && command -v umoci >/dev/null && command -v skopeo >/dev/null; then
  PALISADE_IMAGE=$(CARGO_TARGET_DIR="$(dirname "$PALISADE_TOOLS")/image-target" e2e/image.sh)
  export PALISADE_IMAGE
else
  echo "no mmdebstrap, umoci or skopeo: the real-node tests will say they are skipped"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "done in $((SECONDS - start))s"
