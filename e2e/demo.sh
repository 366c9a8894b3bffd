#!/usr/bin/env bash
# Palisade end to end on this machine: two real nodes (kubelet, containerd, kube-proxy, a CNI
# that ignores NetworkPolicy), the release image installed with `helm install`, the classic
# policy mistakes refused at kubectl apply, a default-deny baseline, and connectivity measured
# with real connections next to palisade's prediction.
#   ./e2e/demo.sh [--keep]      (as root; --keep leaves it running until Ctrl-C)
# Ctrl-C at any moment stops it and removes what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "the demo creates nodes, network namespaces and iptables rules: run it as root" >&2
  exit 2
fi
start=$SECONDS
step() { printf '==> %s (%ss)\n' "$*" "$((SECONDS - start))"; }
step "tools: kube-apiserver, etcd, kubectl, helm, kubelet, kube-proxy, controller-manager, scheduler (built once, then cached)"
PALISADE_TOOLS=$(e2e/tools/install.sh)
export PALISADE_TOOLS
step "the release image (./e2e/image.sh; the first build takes minutes)"
PALISADE_IMAGE=$(e2e/image.sh)
export PALISADE_IMAGE
# The release profile the image was just built with: its dependencies and the palisade CLI are
# compiled already, so only the harness is (a debug build would compile everything again).
step "the demo harness (cargo build --release, next to the image's palisade CLI)"
cargo build --release --locked -p palisade-e2e -p palisade-cli --bins
step "the demo"
exec "${CARGO_TARGET_DIR:-target}/release/palisade-e2e" demo "$@"
