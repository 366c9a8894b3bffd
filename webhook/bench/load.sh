#!/usr/bin/env bash
# Load benchmark of palisade-webhook: wrk over TLS with keep-alive against the release binary,
# with 10,000 pods (100 namespaces x 100) in its caches, on the local control plane.
#   webhook/bench/load.sh [DURATION_SECONDS] [CONNECTIONS]
# Needs root (the local cluster), the e2e tools, and wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-20}
CONNECTIONS=${2:-32}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
BIN=$(e2e/tools/install.sh --print)
cargo build --release -q -p palisade-webhook -p palisade-e2e

work=$(mktemp -d /tmp/palisade-bench-XXXX)
webhook_pid=
cleanup() {
  [ -n "$webhook_pid" ] && kill "$webhook_pid" 2>/dev/null || true
  PALISADE_E2E_STATE=$work target/release/palisade-e2e down >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

PALISADE_E2E_STATE=$work target/release/palisade-e2e up >/dev/null
export KUBECONFIG=$(sed -n 's/^kubeconfig: //p' "$work/state")
echo "cluster up; creating 10,000 pods in 100 namespaces..."
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for chunk in range(10):
    items = []
    for n in range(chunk * 10, chunk * 10 + 10):
        ns = f"ns-{n}"
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": f"t{n % 7}"}}})
        for p in range(100):
            items.append({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"pod-{p}", "namespace": ns, "labels": {"app": f"app-{p % 10}", "tier": str(p % 3)}},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]}})
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(f"{work}/pods-{chunk}.json", "w"))
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "bench", "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
    "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
    "namespace": "ns-42", "name": "api", "operation": "CREATE", "userInfo": {"username": "bench"},
    "object": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "api", "namespace": "ns-42"},
        "spec": {"podSelector": {"matchLabels": {"app": "app-1"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "1"}}}], "ports": [{"port": "http"}]}]}}}}
body = json.dumps(review).replace("\\", "\\\\").replace('"', '\\"')
open(f"{work}/post.lua", "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = "' + body + '"\n')
PY
for f in "$work"/pods-*.json; do "$BIN/kubectl" create -f "$f" >/dev/null; done
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/tls.key" -out "$work/tls.crt" -days 1 -subj /CN=bench \
  -addext subjectAltName=IP:127.0.0.1 2>/dev/null
target/release/palisade-webhook --listen 127.0.0.1:18443 --admin-listen 127.0.0.1:18080 \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --log-format text >"$work/webhook.log" 2>&1 &
webhook_pid=$!
for _ in $(seq 120); do
  curl -sf http://127.0.0.1:18080/metrics | grep -q 'palisade_webhook_cache_objects{kind="pods"} 10000' && break
  sleep 1
done
curl -sf http://127.0.0.1:18080/metrics | grep 'cache_objects{kind="pods"}'
echo "warm-up..."
wrk -t2 -c"$CONNECTIONS" -d3s -s "$work/post.lua" https://127.0.0.1:18443/validate >/dev/null
echo "wrk -t2 -c$CONNECTIONS -d${DURATION}s (keep-alive, TLS):"
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/post.lua" https://127.0.0.1:18443/validate
echo "webhook peak RSS: $(grep VmHWM /proc/$webhook_pid/status)"
curl -s -o /dev/null -w 'one review answered with HTTP %{http_code}\n' -k -X POST -H 'Content-Type: application/json' \
  --data "$(python3 -c "import re;print(re.search(r'wrk.body = \"(.*)\"', open('$work/post.lua').read()).group(1).encode().decode('unicode_escape'))")" \
  https://127.0.0.1:18443/validate
