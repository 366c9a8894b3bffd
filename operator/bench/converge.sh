#!/usr/bin/env bash
# Convergence benchmark of palisade-operator on the local control plane: N opted-in namespaces
# (default 1,000) exist when the operator starts; time until every one has its baseline
# policies; then the
# write requests the operator makes during a quiet period (default 300 s), read from the
# apiserver's own apiserver_request_total.
#   operator/bench/converge.sh [NAMESPACES] [QUIET_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
QUIET=${2:-300}
BIN=$(e2e/tools/install.sh --print)
cargo build --release -q -p palisade-operator -p palisade-e2e
work=$(mktemp -d /tmp/palisade-bench-XXXX)
operator_pid=
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null || true
  PALISADE_E2E_STATE=$work target/release/palisade-e2e down >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
PALISADE_E2E_STATE=$work target/release/palisade-e2e up >/dev/null
export KUBECONFIG=$(sed -n 's/^kubeconfig: //p' "$work/state")
k() { "$BIN/kubectl" "$@"; }
k apply -f charts/palisade/crds/palisade.dev.yaml >/dev/null
k wait --for=condition=Established --timeout=30s crd/networkbaselines.palisade.dev >/dev/null
printf 'apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: default}\nspec: {}\n' | k apply -f - >/dev/null
python3 - "$N" >"$work/namespaces.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{i}", "labels": {"palisade.dev/baseline": "default"}}}
    for i in range(n)]}))
PY
# The namespaces exist before the operator starts, so the time measured is the operator's own
# (kubectl creates them one request at a time, which takes minutes on 2 cores).
k create -f "$work/namespaces.json" >/dev/null
echo "created $N labelled namespaces; starting the operator and waiting for $((2 * N)) baseline policies..."
start=$(date +%s.%N)
target/release/palisade-operator --namespace palisade-system --log-format text >"$work/operator.log" 2>&1 &
operator_pid=$!
while :; do
  have=$(k get networkpolicies -A -l app.kubernetes.io/managed-by=palisade --no-headers 2>/dev/null | wc -l)
  [ "$have" -ge $((2 * N)) ] && break
  sleep 0.5
done
end=$(date +%s.%N)
awk -v n="$N" -v have="$have" -v s="$start" -v e="$end" 'BEGIN { printf "converged: %d namespaces, %d policies in %.1f s\n", n, have, e - s }'
writes() {
  k get --raw /metrics | grep '^apiserver_request_total{' | grep -E 'resource="(networkpolicies|networkbaselines)"' \
    | grep -E 'verb="(APPLY|PATCH|POST|PUT|DELETE)"' | awk '{s += $NF} END {print s + 0}'
}
sleep 5
before=$(writes)
echo "quiet for ${QUIET}s..."
sleep "$QUIET"
after=$(writes)
echo "writes to NetworkPolicies/NetworkBaselines at rest over ${QUIET}s: $((after - before))"
echo "operator peak RSS: $(grep VmHWM /proc/$operator_pid/status)"
