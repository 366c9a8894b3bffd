#!/usr/bin/env bash
# Palisade end to end on this machine: a local control plane with two flannel nodes, the chart
# installed with helm, the classic policy mistakes refused at kubectl apply, a default-deny
# baseline, and connectivity measured with real probes next to palisade's prediction.
#   ./e2e/demo.sh [--keep]      (as root; --keep leaves it running until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "the demo creates network namespaces and runs iptables: run it as root" >&2
  exit 2
fi
echo "Installing the tools (cached after the first run) and building Palisade..."
PALISADE_TOOLS=$(e2e/tools/install.sh)
export PALISADE_TOOLS
cargo build --workspace --bins --locked -q
exec target/debug/palisade-e2e demo "$@"
