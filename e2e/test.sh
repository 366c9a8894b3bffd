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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "done in $((SECONDS - start))s"
