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
# Needs root (network namespaces, iptables), the e2e tools (e2e/tools/install.sh) and iperf3.
set -euo pipefail
cd "$(dirname "$0")/../.."
CHANGES=${1:-100}
IPERF_SECONDS=${2:-10}
IPERF_RUNS=${3:-5}
command -v iperf3 >/dev/null || { echo "iperf3 is needed: e2e/tools/install.sh" >&2; exit 2; }
BIN=$(e2e/tools/install.sh --print)
cargo build --release -q -p palisade-e2e -p palisade-enforcer
ENFORCER=$PWD/target/release/palisade-enforcer
ADMIN_PORT=19102

work=$(mktemp -d /tmp/palisade-bench-XXXX)
enforcer_pid= iperf_pid= pod_netns=() pod_links=()
stop_enforcer() {
  [ -n "$enforcer_pid" ] || return 0
  kill "$enforcer_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$enforcer_pid" 2>/dev/null || break; sleep 0.1; done
  enforcer_pid=
}
cleanup() {
  stop_enforcer
  [ -n "$iperf_pid" ] && kill "$iperf_pid" 2>/dev/null || true
  for l in "${pod_links[@]}"; do ip -n "${l%%/*}" link del "${l#*/}" 2>/dev/null || true; done
  for n in "${pod_netns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  PALISADE_E2E_STATE=$work target/release/palisade-e2e down >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

PALISADE_E2E_STATE=$work target/release/palisade-e2e up >/dev/null
export KUBECONFIG=$(sed -n 's/^kubeconfig: //p' "$work/state")
k() { "$BIN/kubectl" "$@"; }
node_field() { sed -n "s/^  $1: .*$2 \([^,]*\).*/\1/p" "$work/state"; }
NS1=$(node_field node-1 netns) ADDR1=$(node_field node-1 address) GW1=$(node_field node-1 gateway)
NS2=$(node_field node-2 netns)
[ -n "$NS1" ] && [ -n "$GW1" ] && [ -n "$NS2" ] || { cat "$work/state" >&2; exit 1; }
net=$(echo "$NS1" | cut -d- -f2)   # the harness's network id k: pods on node i are 10.(100+k).i.x
SERVER_IP=10.$((100 + net)).1.250 CLIENT_IP=10.$((100 + net)).2.250
ADMIN=http://$ADDR1:$ADMIN_PORT

# The enforcer reaches the apiserver through node-1's gateway, as the admin (fine for a bench).
sed "s#server: \"https://127.0.0.1:\([0-9]*\)\"#server: \"https://$GW1:\1\", tls-server-name: kubernetes#" \
  "$KUBECONFIG" >"$work/kubeconfig-node-1"
mkdir -p "$work/cni"
echo '{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel"},{"type":"portmap"}]}' \
  >"$work/cni/10-flannel.conflist"

# A pod as e2e/src/network.rs makes them: a namespace with a /32 on eth0, a veth into the node's
# namespace with proxy ARP and a /32 route there, so its traffic crosses the node's FORWARD chain.
make_pod() { # NAME NODE_NETNS IP
  local pod="palisade-$net-pod-bench-$1" link="palb$1"
  ip netns add "$pod"; pod_netns+=("$pod")
  ip -n "$pod" link set lo up
  ip -n "$2" link add "$link" type veth peer name eth0 netns "$pod"; pod_links+=("$2/$link")
  ip -n "$2" link set "$link" up
  ip netns exec "$2" sysctl -qw "net.ipv4.conf.$link.proxy_arp=1" "net.ipv4.neigh.$link.proxy_delay=0"
  ip -n "$2" route add "$3/32" dev "$link"
  ip -n "$pod" addr add "$3/32" dev eth0
  ip -n "$pod" link set eth0 up
  ip -n "$pod" route add 169.254.1.1 dev eth0
  ip -n "$pod" route add default via 169.254.1.1
}
make_pod srv "$NS1" "$SERVER_IP"
make_pod cli "$NS2" "$CLIENT_IP"
SRV=palisade-$net-pod-bench-srv CLI=palisade-$net-pod-bench-cli
ip netns exec "$SRV" iperf3 -s -p 8080 >/dev/null 2>&1 &
iperf_pid=$!

k apply -f charts/palisade/crds/palisade.dev.yaml >/dev/null
k wait --for=condition=Established --timeout=30s crd/nodeenforcements.palisade.dev >/dev/null
printf 'apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-2}\n' \
  | k apply -f - >/dev/null
echo "cluster up; writing 250 namespaces and 10,000 pods with their IPs..."
t0=$(date +%s.%N)
python3 enforcer/bench/cluster.py "$KUBECONFIG" pods node-1 \
  "ns-0/pod-0=node-1@$SERVER_IP" "ns-7/pod-0=node-2@$CLIENT_IP"
awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "  (%.1f s)\n", e - s }'

metrics() { curl -sf "$ADMIN/metrics"; }
metric() { metrics | awk -v m="$1" '$1 == m { print $2 }'; }
start_enforcer() { # LOG
  KUBECONFIG=$work/kubeconfig-node-1 ip netns exec "$NS1" "$ENFORCER" --node-name node-1 \
    --cni-dir "$work/cni" --admin-listen "0.0.0.0:$ADMIN_PORT" --log-format text >"$1" 2>&1 &
  enforcer_pid=$!
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/readyz")" = 200 ] && return 0
    kill -0 "$enforcer_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "the enforcer did not become ready:" >&2; cat "$1" >&2; exit 1
}
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }   # the text log is coloured
memory() { awk '/^Vm(HWM|RSS)/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$enforcer_pid/status"; echo; }
# Waits until the installed rule count has not moved for 3 s (the syncs after a burst are done).
settle() {
  local last= same=0 now
  while [ $same -lt 3 ]; do
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
echo "  enforcer: $(memory)"
iperf none

echo "creating the 1,000 NetworkPolicies..."
python3 enforcer/bench/cluster.py "$KUBECONFIG" policies
settle
echo "  chains $(metric palisade_enforcer_chains), rules $(metric palisade_enforcer_rules), sets $(metric palisade_enforcer_sets), set entries $(metric palisade_enforcer_set_entries), local pods $(metric palisade_enforcer_local_pods); port 5201 of the server: $(port_closed_reply)"
iperf policies
awk 'NR == FNR { a[FNR] = $1; next } { b[FNR] = $1 } END { m = int((FNR + 1) / 2); printf "  throughput with 1,000 policies / none (medians): %.1f %%\n", 100 * b[m] / a[m] }' \
  "$work/iperf-none" "$work/iperf-policies"
echo "  enforcer: $(memory)"
stop_enforcer

echo "full apply: Palisade's rules removed from node-1, a fresh enforcer started..."
ip netns exec "$NS1" "$ENFORCER" cleanup --log-format text >/dev/null 2>&1
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
echo "  enforcer: $(memory)"
stop_enforcer

echo "the tools alone on the same ruleset (node-1, after a cleanup):"
ip netns exec "$NS1" ipset save >"$work/ipset.save"
ip netns exec "$NS1" iptables-save -t filter >"$work/iptables.save"
ip netns exec "$NS1" "$ENFORCER" cleanup --log-format text >/dev/null 2>&1
ms() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.0f ms", (e - s) / 1e6 }'; }
t0=$(date +%s%N); ip netns exec "$NS1" ipset restore <"$work/ipset.save"
t1=$(date +%s%N); ip netns exec "$NS1" iptables-restore --noflush --wait <"$work/iptables.save"
t2=$(date +%s%N); ip netns exec "$NS1" iptables-save -t filter >/dev/null
t3=$(date +%s%N); ip netns exec "$NS1" ipset save >/dev/null
t4=$(date +%s%N)
echo "  ipset restore ($(grep -c '^add' "$work/ipset.save") entries): $(ms "$t0" "$t1"); iptables-restore --noflush ($(grep -c '^-A' "$work/iptables.save") rules): $(ms "$t1" "$t2"); iptables-save: $(ms "$t2" "$t3"); ipset save: $(ms "$t3" "$t4")"
