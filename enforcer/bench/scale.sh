#!/usr/bin/env bash
# Scale benchmark of palisade-enforcer on the local control plane: the synthetic cluster of
# palisade_policy::synthetic (policy/src/synthetic.rs) (10,000 pods in 250 namespaces, 1,000 NetworkPolicies, 100 pods on
# the enforcer's node), written to a real apiserver; the release enforcer runs inside node-1's
# network namespace as it does in the e2e tests. Measures:
#   - iperf3 between two real pods (server ns-0/pod-0 on node-1, client ns-7/pod-0 on node-2,
#     which the monitoring policies allow on 8080) with no policies, then with the 1,000 synced;
#   - apply time of the full ruleset: the first sync of a fresh enforcer on a node without
#     Palisade rules (compile + read the host + ipset restore + iptables-restore);
#   - event-to-rule latency over CHANGES changes (default 100) made with kubectl ~300 ms apart
#     (a peer relabelled, a local pod relabelled, a policy's port edited, a policy added/deleted);
#   - the enforcer's memory (VmHWM, VmRSS).
#   enforcer/bench/scale.sh [CHANGES] [IPERF_SECONDS] [IPERF_RUNS]
# PALISADE_BENCH_NAMESPACES=N: a smaller cluster of the same shape (N namespaces of 40 pods; at
# least 16, the changes edit ns-15).
# PALISADE_BENCH_DUAL_STACK=1: the dual-stack cluster of synthetic::dual_stack_cluster (every pod
# also has an IPv6 address in status.podIPs, the egress policies also allow ::/0 except fd00::/8),
# so the enforcer keeps both families' rulesets; the counts and the tools' timings below then
# cover both families. The real pods' IPv6 addresses are in the API only: iperf3 and the closed
# port probe stay on IPv4.
# PALISADE_BENCH_CLUSTER_POLICIES=N: after the NetworkPolicies, the upstream ClusterNetworkPolicy
# CRD and N ClusterNetworkPolicies (cluster.py cluster-policies; the shape of cluster_policy in
# enforcer/benches/compile.rs), so every figure after that includes the tiers.
# Needs root (network namespaces, iptables), the e2e tools (e2e/tools/install.sh) and iperf3.
set -euo pipefail
cd "$(dirname "$0")/../.."
CHANGES=${1:-100}
IPERF_SECONDS=${2:-10}
IPERF_RUNS=${3:-5}
command -v iperf3 >/dev/null || { echo "iperf3 is needed: e2e/tools/install.sh" >&2; exit 2; }
[ -n "${PALISADE_BENCH_BIN:-}" ] || cargo build --release -q -p palisade-e2e -p palisade-enforcer
. enforcer/bench/lib.sh
bench_up
SERVER_IP=10.$((100 + NET)).1.250 CLIENT_IP=10.$((100 + NET)).2.250

make_pod srv "$NS1" "$SERVER_IP"
make_pod cli "$NS2" "$CLIENT_IP"
SRV=palisade-$NET-pod-bench-srv CLI=palisade-$NET-pod-bench-cli
ip netns exec "$SRV" iperf3 -s -p 8080 >/dev/null 2>&1 &
bench_pids+=($!)

DUAL=${PALISADE_BENCH_DUAL_STACK:-}
echo "cluster up; writing the namespaces and pods with their IPs$([ "$DUAL" = 1 ] && echo " (dual-stack)")..."
t0=$(date +%s.%N)
python3 enforcer/bench/cluster.py "$KUBECONFIG" pods node-1 \
  "ns-0/pod-0=node-1@$SERVER_IP" "ns-7/pod-0=node-2@$CLIENT_IP"
awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "  (%.1f s)\n", e - s }'

mem() { memory "$enforcer_pid"; }
# Waits until the installed rule count has not moved for 3 s (the syncs after a burst are done),
# at most 5 min.
settle() {
  local last= same=0 now n=0
  while [ $same -lt 3 ] && [ $((n += 1)) -le 300 ]; do
    sleep 1; now=$(metric palisade_enforcer_rules)
    if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0 last=$now; fi
  done
}
# A port nobody listens on: refused while the pods are open, silently dropped under the policies.
port_closed_reply() {
  if ip netns exec "$CLI" timeout 2 bash -c "</dev/tcp/$SERVER_IP/5201" 2>/dev/null; then echo open
  elif [ $? = 124 ]; then echo "dropped (no answer in 2 s)"; else echo refused; fi
}
iperf() { # LABEL
  local runs=()
  for r in $(seq "$IPERF_RUNS"); do
    runs+=("$(ip netns exec "$CLI" iperf3 -c "$SERVER_IP" -p 8080 --connect-timeout 5000 -t "$IPERF_SECONDS" -J \
      | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')")
    sleep 1
  done
  printf '%s\n' "${runs[@]}" | sort -n >"$work/iperf-$1"
  echo "  iperf3 $1: ${runs[*]} Gbit/s (median $(sed -n "$(((IPERF_RUNS + 1) / 2))p" "$work/iperf-$1"))"
}

echo "starting the enforcer on node-1 (no policies yet)..."
start_enforcer "$work/enforcer-1.log"
echo "  local pods $(metric palisade_enforcer_local_pods), rules $(metric palisade_enforcer_rules); port 5201 of the server: $(port_closed_reply)"
echo "  enforcer: $(mem)"
iperf none

echo "creating the NetworkPolicies..."
python3 enforcer/bench/cluster.py "$KUBECONFIG" policies
settle
CNPS=${PALISADE_BENCH_CLUSTER_POLICIES:-0}
if [ "$CNPS" -gt 0 ]; then
  echo "creating the ClusterNetworkPolicy CRD and $CNPS ClusterNetworkPolicies..."
  k apply -f charts/palisade/files/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml >/dev/null
  k wait --for=condition=Established --timeout=30s crd/clusternetworkpolicies.policy.networking.k8s.io >/dev/null
  python3 enforcer/bench/cluster.py "$KUBECONFIG" cluster-policies "$CNPS"
  # The enforcer's watch finds the CRD on its next retry (at most 30 s).
  until [ "$(k get nodeenforcement node-1 -o jsonpath='{.status.clusterNetworkPolicy.policies}')" = "$CNPS" ]; do sleep 1; done
  settle
fi
echo "  chains $(metric palisade_enforcer_chains), rules $(metric palisade_enforcer_rules), sets $(metric palisade_enforcer_sets), set entries $(metric palisade_enforcer_set_entries), local pods $(metric palisade_enforcer_local_pods); port 5201 of the server: $(port_closed_reply)"
if [ "$DUAL" = 1 ]; then
  echo "  of which IPv6: $(ip netns exec "$NS1" ip6tables-save -t filter | grep -c '^-A') ip6tables rules, $(ip netns exec "$NS1" ipset save | grep -c '^add [^ ]* [0-9a-f]*:') set entries"
fi
iperf policies
awk 'NR == FNR { a[FNR] = $1; next } { b[FNR] = $1 } END { m = int((FNR + 1) / 2); printf "  throughput with 1,000 policies / none (medians): %.1f %%\n", 100 * b[m] / a[m] }' \
  "$work/iperf-none" "$work/iperf-policies"
echo "  enforcer: $(mem)"
stop_enforcer

echo "full apply: Palisade's rules removed from node-1, a fresh enforcer started..."
enforcer_cleanup
start_enforcer "$work/enforcer-2.log"
plain "$work/enforcer-2.log" | grep -m1 'rules synced' | sed 's/^.*rules synced/  first sync: rules synced/'
sleep 2   # events the watches deliver right after the first sync are not the changes measured
before=$(metrics | grep '^palisade_enforcer_event_to_rule_seconds')

echo "making $CHANGES changes ~300 ms apart..."
for i in $(seq 0 $((CHANGES - 1))); do
  on=$(((i / 4) % 2 == 0))
  case $((i % 4)) in
    0) k label pod -n ns-0 pod-1 --overwrite "tier=$([ $on = 1 ] && echo 2 || echo 1)" ;;
    1) k label pod -n ns-5 pod-0 --overwrite "app=$([ $on = 1 ] && echo app-5 || echo app-0)" ;;
    2) k patch networkpolicy -n ns-10 monitoring --type=json \
         -p "[{\"op\":\"replace\",\"path\":\"/spec/ingress/0/ports/0/port\",\"value\":$([ $on = 1 ] && echo 8081 || echo 8080)}]" ;;
    3) if [ $on = 1 ]; then
         printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: extra, namespace: ns-15}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {tier: "2"}}}], ports: [{port: 9000}]}]\n' | k create -f -
       else k delete networkpolicy -n ns-15 extra; fi ;;
  esac >/dev/null
  sleep 0.3
done
sleep 2
after=$(metrics | grep '^palisade_enforcer_event_to_rule_seconds')
python3 - "$before" "$after" <<'PY'
import re, sys
def parse(text):
    buckets, total, count = {}, 0.0, 0
    for line in text.splitlines():
        name, value = line.rsplit(" ", 1)
        if m := re.search(r'le="([^"]+)"', name):
            buckets[float(m.group(1))] = float(value)
        elif name.endswith("_sum"):
            total = float(value)
        elif name.endswith("_count"):
            count = int(float(value))
    return buckets, total, count
(b0, s0, c0), (b1, s1, c1) = parse(sys.argv[1]), parse(sys.argv[2])
n = c1 - c0
delta = {le: b1[le] - b0.get(le, 0) for le in sorted(b1)}
p99 = next(le for le in sorted(delta) if delta[le] >= 0.99 * n)
p50 = next(le for le in sorted(delta) if delta[le] >= 0.5 * n)
print(f"  event-to-rule over {n} observations: mean {1000 * (s1 - s0) / n:.0f} ms, "
      f"p50 <= {p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms (histogram bucket bounds); "
      + ", ".join(f"<= {le:g}s: {int(v)}" for le, v in delta.items() if v and le != float("inf")))
PY
plain "$work/enforcer-2.log" | grep 'rules synced' | tail -n +2 | sed -n 's/.*took_ms=\([0-9]*\).*/\1/p' | sort -n \
  | awk '{ a[NR] = $1; s += $1 } END { if (NR) printf "  syncs that wrote rules during the changes: %d, took_ms mean %.0f, p50 %d, p99 %d, max %d\n", NR, s / NR, a[int(NR * 0.5 + 0.5)], a[int(NR * 0.99 + 0.99)], a[NR] }'
echo "  syncs: $(metrics | grep '^palisade_enforcer_syncs_total' | sed 's/palisade_enforcer_syncs_total//' | tr '\n' ' ')"
echo "  enforcer: $(mem)"
stop_enforcer

echo "the tools alone on the same ruleset (node-1, after a cleanup):"
ip netns exec "$NS1" ipset save >"$work/ipset.save"
ip netns exec "$NS1" iptables-save -t filter >"$work/iptables.save"
if [ "$DUAL" = 1 ]; then ip netns exec "$NS1" ip6tables-save -t filter >"$work/ip6tables.save"; fi
enforcer_cleanup
t0=$(date +%s%N); ip netns exec "$NS1" ipset restore <"$work/ipset.save"
t1=$(date +%s%N); ip netns exec "$NS1" iptables-restore --noflush --wait <"$work/iptables.save"
t2=$(date +%s%N); ip netns exec "$NS1" iptables-save -t filter >/dev/null
t3=$(date +%s%N); ip netns exec "$NS1" ipset save >/dev/null
t4=$(date +%s%N)
echo "  ipset restore ($(grep -c '^add' "$work/ipset.save") entries): $(ms "$t0" "$t1"); iptables-restore --noflush ($(grep -c '^-A' "$work/iptables.save") rules): $(ms "$t1" "$t2"); iptables-save: $(ms "$t2" "$t3"); ipset save: $(ms "$t3" "$t4")"
if [ "$DUAL" = 1 ]; then
  t0=$(date +%s%N); ip netns exec "$NS1" ip6tables-restore --noflush --wait <"$work/ip6tables.save"
  t1=$(date +%s%N); ip netns exec "$NS1" ip6tables-save -t filter >/dev/null
  t2=$(date +%s%N)
  echo "  ip6tables-restore --noflush ($(grep -c '^-A' "$work/ip6tables.save") rules): $(ms "$t0" "$t1"); ip6tables-save: $(ms "$t1" "$t2")"
fi
