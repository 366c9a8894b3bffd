#!/usr/bin/env bash
# Side by side: palisade-enforcer and kube-router's NetworkPolicy controller (the iptables + ipset
# peer), one after the other on the same local control plane, the same node-1 network namespace
# (cleaned before each), the same cluster and the same changes, measured the same way from outside:
#   1. the upstream x/y/z model (9 pods on node-1, round one of enforcer/tests/e2e.rs): real TCP
#      and UDP probes between the pods' network namespaces until they equal `palisade reach`;
#   2. the synthetic cluster of enforcer/bench/scale.sh (policy/src/synthetic.rs: 10,000 pods,
#      1,000 NetworkPolicies, 100 pods on node-1), written before either starts; then for each:
#      - first sync: from the process's start until a real probe is refused by the policies
#        (enforcer/bench/probe.py), and the sync time the program logs itself;
#      - event to rule: CHANGES changes one at a time (enforcer/bench/changes.py), each from the
#        apiserver's answer until a real probe shows its verdict: median, p99, and how many were
#        not applied within BOUND seconds;
#      - memory (VmHWM, VmRSS of the process) and the ruleset's size in the kernel.
# Palisade runs with --deny-action reject, as kube-router rejects, so a denied probe is answered
# at once. kube-router is built from its Go module (github.com/cloudnativelabs/kube-router/v2,
# pinned below) into PALISADE_BENCH_CACHE (default ~/.cache/palisade/bench) on the first run; it
# is no dependency of Palisade. It runs with the firewall only (no routing, no service proxy),
# as node-1, with its defaults otherwise (a full sync at least every 5 min).
#   enforcer/bench/compare.sh [CHANGES] [BOUND]        (defaults 8 and 30)
#   PALISADE_BENCH_NAMESPACES=25 enforcer/bench/compare.sh    a cluster a tenth the size
# Needs root (network namespaces, iptables, ipset), the e2e tools (e2e/tools/install.sh) and Go.
set -euo pipefail
cd "$(dirname "$0")/../.."
CHANGES=${1:-8}
BOUND=${2:-30}
LIMIT=300   # no wait is longer
KUBE_ROUTER_VERSION=v2.1.0
peer_dir=${PALISADE_BENCH_CACHE:-$HOME/.cache/palisade/bench}/kube-router-$KUBE_ROUTER_VERSION
KUBE_ROUTER=$peer_dir/kube-router
if [ ! -x "$KUBE_ROUTER" ]; then
  command -v go >/dev/null || { echo "Go is needed to build kube-router" >&2; exit 2; }
  echo "building kube-router $KUBE_ROUTER_VERSION from its Go module into $peer_dir (minutes)..."
  GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN=$peer_dir \
    go install "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
fi
[ -n "${PALISADE_BENCH_BIN:-}" ] || cargo build --release -q -p palisade-e2e -p palisade-enforcer -p palisade-cli
. enforcer/bench/lib.sh
if [ -n "${PALISADE_BENCH_BIN:-}" ]; then build="the binaries in $PALISADE_BENCH_BIN"
else build="$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with local changes')"; fi
echo "$(date -u +%FT%TZ) palisade: $build; kube-router $KUBE_ROUTER_VERSION; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_up

P=10.$((100 + NET))
SERVER_IP=$P.1.250
make_pod srv "$NS1" "$SERVER_IP"; serve_in_pod srv 8080/TCP 9000/TCP
make_pod cli "$NS2" "$P.2.250"
make_pod cli2 "$NS2" "$P.2.251"
CLI=palisade-$NET-pod-bench-cli CLI2=palisade-$NET-pod-bench-cli2
xyz_ips=() xyz_pods=() i=11
for ns in x y z; do
  for p in a b c; do
    make_pod "$ns$p" "$NS1" "$P.1.$i"
    serve_in_pod "$ns$p" 80/TCP 81/TCP 80/UDP 81/UDP
    xyz_ips+=("$ns/$p=$P.1.$i") xyz_pods+=("$ns/$p=palisade-$NET-pod-bench-$ns$p@$P.1.$i")
    i=$((i + 1))
  done
done

# --- the two implementations: start, stop, remove every trace from node-1 ---
impl_pid=
start_impl() { # palisade|kube-router LOG
  if [ "$1" = palisade ]; then
    start_enforcer "$2" --deny-action reject
    impl_pid=$enforcer_pid
  else
    ip netns exec "$NS1" "$KUBE_ROUTER" --kubeconfig "$work/kubeconfig-node-1" \
      --run-firewall=true --run-router=false --run-service-proxy=false \
      --hostname-override node-1 -v 1 >"$2" 2>&1 &
    impl_pid=$!
  fi
}
stop_impl() { # palisade|kube-router
  if [ "$1" = palisade ]; then
    stop_enforcer; enforcer_cleanup
  else
    stop_pid "$impl_pid"
    # kube-router's chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) and the jumps into
    # them, then its ipsets (KUBE-SRC-*, KUBE-DST-*).
    ip netns exec "$NS1" iptables-save -t filter | grep -v -e KUBE-ROUTER -e KUBE-POD-FW- -e KUBE-NWPLCY- \
      | ip netns exec "$NS1" iptables-restore
    { ip netns exec "$NS1" ipset list -n | grep -E '^(inet6:)?KUBE-' || true; } | sed 's/^/destroy /' \
      | ip netns exec "$NS1" ipset restore
  fi
  impl_pid=
}
current=
cleanup_hooks+=('[ -z "$current" ] || stop_impl "$current"')
# node-1 holds neither's rules: only what the harness put there.
assert_clean() {
  local chains sets
  chains=$(ip netns exec "$NS1" iptables-save | grep -cE '^:(KUBE-ROUTER|KUBE-POD-FW|KUBE-NWPLCY|PALISADE)' || true)
  sets=$(ip netns exec "$NS1" ipset list -n | wc -l)
  [ "$chains" = 0 ] && [ "$sets" = 0 ] || { echo "node-1 is not clean: $chains chains, $sets ipsets" >&2; exit 1; }
}
ruleset_size() {
  local save; save=$(ip netns exec "$NS1" iptables-save -t filter)
  echo "$(grep -c '^:' <<<"$save") chains, $(grep -c '^-A' <<<"$save") rules, $(ip netns exec "$NS1" ipset list -n | wc -l) ipsets, $(ip netns exec "$NS1" ipset save | grep -c '^add') set entries (node-1's filter table and ipsets)"
}
# The sync times each program logs itself, in ms, one a line.
own_syncs() { # palisade|kube-router LOG
  if [ "$1" = palisade ]; then
    plain "$2" | sed -n 's/.*rules synced.*took_ms=\([0-9]*\).*/\1/p'
  else
    # Go durations: 850µs, 512.3ms, 43.2s, 1m5.5s
    sed -n 's/.*sync iptables took \(.*\)$/\1/p' "$2" | awk '
      /ms$/ { sub(/ms$/, ""); print $1 + 0; next }
      /µs$/ { sub(/µs$/, ""); print $1 / 1000; next }
      { v = $1; m = 0; if (index(v, "m")) { split(v, a, "m"); m = a[1]; v = a[2] }
        sub(/s$/, "", v); print (m * 60 + v) * 1000 }'
  fi
}
# Waits (at most LIMIT s) until a sync has completed and no other for QUIET seconds: the syncs
# that the start's burst of events asked for are done.
quiet() { # palisade|kube-router LOG QUIET
  local n last=-1 same=0 t
  for t in $(seq "$LIMIT"); do
    n=$(own_syncs "$1" "$2" | wc -l)
    if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0 last=$n; fi
    [ "$n" -gt 0 ] && [ "$same" -ge "$3" ] && return 0
    sleep 1
  done
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# --- 1. the upstream x/y/z model ---
echo "the upstream x/y/z model on node-1:"
python3 enforcer/bench/cluster.py "$KUBECONFIG" xyz node-1 "${xyz_ips[@]}"
declare -A matrix_result
for impl in palisade kube-router; do
  assert_clean
  current=$impl
  start_impl "$impl" "$work/$impl-xyz.log"
  echo " $impl:"
  if python3 enforcer/bench/probe.py matrix "$KUBECONFIG" "$PALISADE" 120 "${xyz_pods[@]}"; then
    matrix_result[$impl]=equal
  else
    matrix_result[$impl]=differs
  fi
  stop_impl "$impl"; current=; assert_clean
done
python3 enforcer/bench/cluster.py "$KUBECONFIG" xyz-delete

# --- 2. the synthetic cluster ---
echo "writing the synthetic cluster (${PALISADE_BENCH_NAMESPACES:-250} namespaces of 40 pods, 4 policies each)..."
t0=$(date +%s%N)
python3 enforcer/bench/cluster.py "$KUBECONFIG" pods node-1 \
  "ns-0/pod-0=node-1@$SERVER_IP" "ns-7/pod-0=node-2@$P.2.250" "ns-0/pod-1=node-2@$P.2.251"
python3 enforcer/bench/cluster.py "$KUBECONFIG" policies
echo "  ($(ms "$t0" "$(date +%s%N)"))"

declare -A first own_first changes_out mem_first mem_end size load_before load_after
for impl in palisade kube-router; do
  echo "$impl:"
  assert_clean
  python3 enforcer/bench/probe.py wait "$CLI" "$SERVER_IP" 9000 connected 5 >/dev/null \
    || { echo "the server does not answer before $impl starts" >&2; exit 1; }
  load_before[$impl]=$(load)
  log=$work/$impl.log
  current=$impl
  t0=$(date +%s%N)
  start_impl "$impl" "$log"
  # Port 9000 of the server is open until the policies isolate it (default deny in ns-0).
  if ! python3 enforcer/bench/probe.py wait "$CLI" "$SERVER_IP" 9000 refused "$LIMIT" >/dev/null; then
    echo "$impl did not enforce the policies within $LIMIT s:" >&2; tail -20 "$log" >&2; exit 1
  fi
  first[$impl]=$(awk -v s="$t0" -v e="$(date +%s%N)" 'BEGIN { printf "%.2f", (e - s) / 1e9 }')
  mem_first[$impl]=$(memory "$impl_pid")
  quiet "$impl" "$log" 5
  own_first[$impl]=$(own_syncs "$impl" "$log" | head -1)
  size[$impl]=$(ruleset_size)
  echo "  policies in force ${first[$impl]} s after the start; first sync by its own log: ${own_first[$impl]} ms; ${size[$impl]}"
  echo "  ${mem_first[$impl]}"
  python3 enforcer/bench/changes.py "$KUBECONFIG" "$CHANGES" "$BOUND" "$LIMIT" \
    "$SERVER_IP" "$CLI" "$CLI2" | tee "$work/$impl-changes.txt"
  changes_out[$impl]=$(cat "$work/$impl-changes.txt")
  mem_end[$impl]=$(memory "$impl_pid")
  echo "  after the changes: ${mem_end[$impl]}; syncs by its own log: $(own_syncs "$impl" "$log" | wc -l), mean $(own_syncs "$impl" "$log" | awk '{ s += $1 } END { printf "%.0f", s / NR }') ms"
  load_after[$impl]=$(load)
  stop_impl "$impl"; current=; assert_clean
done

echo
echo "summary ($(date -u +%F), CHANGES=$CHANGES, BOUND=$BOUND s):"
for impl in palisade kube-router; do
  echo "$impl: x/y/z matrix ${matrix_result[$impl]}; policies in force after ${first[$impl]} s (own first sync ${own_first[$impl]} ms); ${size[$impl]}"
  echo "  $(grep '^event to rule' <<<"${changes_out[$impl]}")"
  echo "  memory after the first sync: ${mem_first[$impl]}; after the changes: ${mem_end[$impl]}"
  echo "  load before/after: ${load_before[$impl]} / ${load_after[$impl]}"
done
