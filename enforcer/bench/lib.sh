# The parts enforcer/bench/scale.sh and enforcer/bench/compare.sh share, sourced by both from the
# repository's root: the local control plane with two network-namespace nodes (palisade-e2e up),
# the Node objects, pods with real network namespaces, the release enforcer in node-1's namespace,
# and one cleanup on exit for all of it. Nothing here reaches beyond loopback and the namespaces
# the bench makes.

BIN=$(e2e/tools/install.sh --print)
# The release binaries: those the script just built, or PALISADE_BENCH_BIN's (a build to measure).
RELEASE=${PALISADE_BENCH_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
ENFORCER=$RELEASE/palisade-enforcer
PALISADE=$RELEASE/palisade
ADMIN_PORT=19102

work=$(mktemp -d /tmp/palisade-bench-XXXX)
enforcer_pid= pod_netns=() pod_links=() bench_pids=() cleanup_hooks=()

k() { "$BIN/kubectl" "$@"; }
ms() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.0f ms", (e - s) / 1e6 }'; }
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }   # the enforcer's text log is coloured
# VmHWM (peak) and VmRSS of a process, in MiB.
memory() { awk '/^Vm(HWM|RSS)/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$1/status"; echo; }

# Stops a process the bench started: TERM, then KILL after 10 s.
stop_pid() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
stop_enforcer() { stop_pid "$enforcer_pid"; enforcer_pid=; }
bench_cleanup() {
  local i
  for ((i = ${#cleanup_hooks[@]} - 1; i >= 0; i--)); do eval "${cleanup_hooks[$i]}" || true; done
  stop_enforcer
  for p in "${bench_pids[@]}"; do stop_pid "$p"; done
  for l in "${pod_links[@]}"; do ip -n "${l%%/*}" link del "${l#*/}" 2>/dev/null || true; done
  for n in "${pod_netns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  PALISADE_E2E_STATE=$work "$RELEASE/palisade-e2e" down >/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

# The control plane and the two nodes; NS1/ADDR1/GW1 (node-1, the measured node), NS2/ADDR2
# (node-2), NET (the harness's network id k: pods on node i are 10.(100+k).i.x), the Node objects
# with their InternalIP, the chart's CRDs, a kubeconfig for node-1 through its gateway, and a
# flannel CNI config (a CNI that does not enforce NetworkPolicy).
bench_up() {
  PALISADE_E2E_STATE=$work "$RELEASE/palisade-e2e" up >/dev/null
  export KUBECONFIG
  KUBECONFIG=$(sed -n 's/^kubeconfig: //p' "$work/state")
  node_field() { sed -n "s/^  $1: .*$2 \([^,]*\).*/\1/p" "$work/state"; }
  NS1=$(node_field node-1 netns) ADDR1=$(node_field node-1 address) GW1=$(node_field node-1 gateway)
  NS2=$(node_field node-2 netns) ADDR2=$(node_field node-2 address)
  [ -n "$NS1" ] && [ -n "$GW1" ] && [ -n "$NS2" ] && [ -n "$ADDR2" ] || { cat "$work/state" >&2; exit 1; }
  NET=$(echo "$NS1" | cut -d- -f2)
  k apply -f charts/palisade/crds/palisade.dev.yaml >/dev/null
  k wait --for=condition=Established --timeout=30s crd/nodeenforcements.palisade.dev >/dev/null
  python3 enforcer/bench/cluster.py "$KUBECONFIG" nodes "node-1=$ADDR1" "node-2=$ADDR2"
  # Node-1's programs reach the apiserver through its gateway, as the admin (fine for a bench).
  sed "s#server: \"https://127.0.0.1:\([0-9]*\)\"#server: \"https://$GW1:\1\", tls-server-name: kubernetes#" \
    "$KUBECONFIG" >"$work/kubeconfig-node-1"
  mkdir -p "$work/cni"
  echo '{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel"},{"type":"portmap"}]}' \
    >"$work/cni/10-flannel.conflist"
}

# A pod as e2e/src/network.rs makes them: a namespace with a /32 on eth0, a veth into the node's
# namespace with proxy ARP and a /32 route there, so its traffic crosses the node's FORWARD chain.
# Its namespace is palisade-$NET-pod-bench-NAME.
make_pod() { # NAME NODE_NETNS IP
  local pod="palisade-$NET-pod-bench-$1" link="palb$1"
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

# Servers in a pod's namespace (TCP accepts, UDP echoes) until the bench ends.
serve_in_pod() { # NAME PORT/PROTO...
  local pod=palisade-$NET-pod-bench-$1; shift
  ip netns exec "$pod" python3 enforcer/bench/probe.py serve "$@" &
  bench_pids+=($!)
}

ADMIN=
metrics() { curl -sf "$ADMIN/metrics"; }
metric() { metrics | awk -v m="$1" '$1 == m { print $2 }'; }
# The release enforcer on node-1, as the e2e tests run it; returns when it is ready.
start_enforcer() { # LOG [EXTRA ARGS...]
  local log=$1; shift
  ADMIN=http://$ADDR1:$ADMIN_PORT
  KUBECONFIG=$work/kubeconfig-node-1 ip netns exec "$NS1" "$ENFORCER" --node-name node-1 \
    --cni-dir "$work/cni" --admin-listen "0.0.0.0:$ADMIN_PORT" --log-format text "$@" >"$log" 2>&1 &
  enforcer_pid=$!
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/readyz")" = 200 ] && return 0
    kill -0 "$enforcer_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "the enforcer did not become ready:" >&2; cat "$log" >&2; exit 1
}
# Removes Palisade's chains and sets from node-1.
enforcer_cleanup() { ip netns exec "$NS1" "$ENFORCER" cleanup --log-format text >/dev/null 2>&1; }
