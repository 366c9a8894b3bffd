#!/usr/bin/env python3
"""The synthetic cluster of enforcer/bench/scale.sh, written straight to the apiserver.

The shape is the one of palisade_policy::synthetic (policy/src/synthetic.rs): 250 namespaces (team t0..t6) of 40 pods
(app-0..9, tier 0..2, a container port named http 8080), 10,000 pods spread over 100 nodes, and
four policies per namespace (default deny both ways, app-to-app on the named port, monitoring from
team=t0 namespaces' app-0 pods on 8080, DNS + in-cluster http + 0.0.0.0/0 except 10/8 on 443
egress). Pod i of the cluster is on node i % 100; node 0 is NODE (the enforcer's), the others
n1..n99. Pod IPs are 10.200.x.y, except the pods given as NS/NAME=NODE@IP overrides (the iperf3
pods, which have real network namespaces).

kubectl creates objects one request at a time (minutes for 20,000 writes on 2 cores), so this
uses a pool of keep-alive HTTPS connections with the admin certificate of the kubeconfig.

  cluster.py KUBECONFIG pods NODE [NS/NAME=NODE@IP ...]   namespaces, pods, then their status
  cluster.py KUBECONFIG policies                          the 1,000 NetworkPolicies
"""
import http.client
import json
import re
import ssl
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

NAMESPACES, PER_NS, NODES, THREADS = 250, 40, 100, 8


def connect(kubeconfig):
    text = open(kubeconfig).read()
    field = lambda name: re.search(name + r': "?([^",}]+)"?', text).group(1)
    host, port = re.match(r"https://([^:/]+):(\d+)", field("server")).groups()
    ctx = ssl.create_default_context(cafile=field("certificate-authority"))
    ctx.check_hostname = False  # the serving certificate names `kubernetes`, not 127.0.0.1
    ctx.load_cert_chain(field("client-certificate"), field("client-key"))
    local = threading.local()

    def request(method, path, body, content_type="application/json"):
        for attempt in range(3):
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
            try:
                local.conn.request(method, path, json.dumps(body), {"Content-Type": content_type})
                resp = local.conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                del local.conn
                if attempt == 2:
                    raise
                continue
            if resp.status >= 300 and not (method == "POST" and resp.status == 409):
                raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
            return
    return request


def run_all(request, calls):
    with ThreadPoolExecutor(THREADS) as pool:
        for f in [pool.submit(request, *c) for c in calls]:
            f.result()


def pods(request, node, overrides):
    run_all(request, [("POST", "/api/v1/namespaces",
                       {"metadata": {"name": f"ns-{n}", "labels": {"team": f"t{n % 7}"}}})
                      for n in range(NAMESPACES)])
    placed = []
    for n in range(NAMESPACES):
        for p in range(PER_NS):
            i = n * PER_NS + p
            where = node if i % NODES == 0 else f"n{i % NODES}"
            ip = f"10.200.{i >> 8}.{i & 255}"
            where, ip = overrides.get(f"ns-{n}/pod-{p}", (where, ip))
            placed.append((f"ns-{n}", f"pod-{p}", where, ip, p))
    run_all(request, [("POST", f"/api/v1/namespaces/{ns}/pods", {
        "metadata": {"name": name, "labels": {"app": f"app-{p % 10}", "tier": str(p % 3)}},
        "spec": {"nodeName": where, "containers": [
            {"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }) for ns, name, where, ip, p in placed])
    # The status is reset on create: the IPs go through the status subresource.
    run_all(request, [("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                       {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
                       "application/merge-patch+json")
                      for ns, name, where, ip, p in placed])
    print(f"{len(placed)} pods in {NAMESPACES} namespaces, "
          f"{sum(1 for x in placed if x[2] == node)} on {node}")


def policies(request):
    calls = []
    for n in range(NAMESPACES):
        path = f"/apis/networking.k8s.io/v1/namespaces/ns-{n}/networkpolicies"
        pol = lambda name, spec: ("POST", path, {"metadata": {"name": name}, "spec": spec})
        calls += [
            pol("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            pol("app-to-app", {
                "podSelector": {"matchLabels": {"app": f"app-{n % 10}"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "1"}}}],
                             "ports": [{"protocol": "TCP", "port": "http"}]}]}),
            pol("monitoring", {
                "podSelector": {}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "t0"}},
                                       "podSelector": {"matchLabels": {"app": "app-0"}}}],
                             "ports": [{"protocol": "TCP", "port": 8080}]}]}),
            pol("egress", {
                "podSelector": {}, "policyTypes": ["Egress"],
                "egress": [
                    {"ports": [{"protocol": "UDP", "port": 53}]},
                    {"to": [{"namespaceSelector": {}, "podSelector": {}}],
                     "ports": [{"protocol": "TCP", "port": "http"}]},
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                     "ports": [{"protocol": "TCP", "port": 443}]}]}),
        ]
    run_all(request, calls)
    print(f"{len(calls)} NetworkPolicies")


def main():
    request = connect(sys.argv[1])
    if sys.argv[2] == "pods":
        overrides = {}
        for arg in sys.argv[4:]:
            key, where = arg.split("=")
            overrides[key] = tuple(where.split("@"))
        pods(request, sys.argv[3], overrides)
    elif sys.argv[2] == "policies":
        policies(request)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
