#!/usr/bin/env python3
"""The synthetic cluster of enforcer/bench/scale.sh, written straight to the apiserver.

The shape is the one of palisade_policy::synthetic (policy/src/synthetic.rs): 250 namespaces (team t0..t6) of 40 pods
(app-0..9, tier 0..2, a container port named http 8080), 10,000 pods spread over 100 nodes, and
four policies per namespace (default deny both ways, app-to-app on the named port, monitoring from
team=t0 namespaces' app-0 pods on 8080, DNS + in-cluster http + 0.0.0.0/0 except 10/8 on 443
egress). Pod i of the cluster is on node i % 100; node 0 is NODE (the enforcer's), the others
n1..n99. Pod IPs are 10.200.x.y, except the pods given as NS/NAME=NODE@IP overrides (the pods
that have real network namespaces). With PALISADE_BENCH_DUAL_STACK=1 the cluster is dual-stack as
synthetic::dual_stack_cluster makes it: pod i also has the IPv6 address fd00:10:244::<i> (second in
status.podIPs, after its IPv4 one; the overridden pods keep theirs, an address in the API only),
and the egress policies also allow ::/0 except fd00::/8 on 443. Each pod's status.hostIP is its node's InternalIP (the Node
objects written by `nodes`; 10.199.0.i for the synthetic node ni), as a kubelet reports it
(kube-router finds the pods of its node that way; Palisade by spec.nodeName).

kubectl creates objects one request at a time (minutes for 20,000 writes on 2 cores), so this
uses a pool of keep-alive HTTPS connections with the admin certificate of the kubeconfig.

  cluster.py KUBECONFIG nodes NAME=IP ...                 Node objects with an InternalIP
  cluster.py KUBECONFIG pods NODE [NS/NAME=NODE@IP ...]   namespaces, pods, then their status
  cluster.py KUBECONFIG policies                          the 1,000 NetworkPolicies
  cluster.py KUBECONFIG cluster-policies N                N ClusterNetworkPolicies (the CRD installed)
  cluster.py KUBECONFIG xyz NODE NS/NAME=IP ...           the upstream x/y/z model's pods and
                                                          policies (as in enforcer/tests/e2e.rs)
  cluster.py KUBECONFIG xyz-delete                        its pods and policies removed
"""
import http.client
import ipaddress
import json
import os
import re
import ssl
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

NAMESPACES, PER_NS, NODES, THREADS = 250, 40, 100, 8
# A smaller cluster of the same shape: PALISADE_BENCH_NAMESPACES namespaces of 40 pods (and four
# policies each), still spread over 100 nodes.
NAMESPACES = int(os.environ.get("PALISADE_BENCH_NAMESPACES", NAMESPACES))
DUAL_STACK = os.environ.get("PALISADE_BENCH_DUAL_STACK", "") == "1"


def ipv6_of(i):
    """Pod i's IPv6 address in the dual-stack cluster, as synthetic::dual_stack_cluster gives it."""
    return str(ipaddress.IPv6Address((0xFD00_0010_0244 << 80) | i))


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
                local.conn.request(method, path, None if body is None else json.dumps(body),
                                   {"Content-Type": content_type})
                resp = local.conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                del local.conn
                if attempt == 2:
                    raise
                continue
            if resp.status >= 300 and not (method == "POST" and resp.status == 409):
                raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
            return json.loads(data) if data else None
    return request


def run_all(request, calls):
    with ThreadPoolExecutor(THREADS) as pool:
        for f in [pool.submit(request, *c) for c in calls]:
            f.result()


def nodes(request, addresses):
    """Node objects as a kubelet registers them: the InternalIP in the status subresource."""
    for name, ip in addresses.items():
        request("POST", "/api/v1/nodes", {"metadata": {"name": name}})
        request("PATCH", f"/api/v1/nodes/{name}/status",
                {"status": {"addresses": [{"type": "InternalIP", "address": ip}]}},
                "application/merge-patch+json")


def node_ips(request):
    ips = {}
    for item in request("GET", "/api/v1/nodes", None)["items"]:
        for a in item.get("status", {}).get("addresses", []):
            if a["type"] == "InternalIP":
                ips[item["metadata"]["name"]] = a["address"]
    return ips


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
            placed.append((f"ns-{n}", f"pod-{p}", where, ip, p, i))
    run_all(request, [("POST", f"/api/v1/namespaces/{ns}/pods", {
        "metadata": {"name": name, "labels": {"app": f"app-{p % 10}", "tier": str(p % 3)}},
        "spec": {"nodeName": where, "containers": [
            {"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }) for ns, name, where, ip, p, i in placed])
    # The status is reset on create: the IPs go through the status subresource.
    hosts = node_ips(request)
    host = lambda where: hosts.get(where) or f"10.199.0.{int(where[1:]) if where[1:].isdigit() else 0}"
    pod_ips = lambda ip, i: [{"ip": ip}] + ([{"ip": ipv6_of(i)}] if DUAL_STACK else [])
    run_all(request, [("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                       {"status": {"phase": "Running", "podIP": ip, "podIPs": pod_ips(ip, i),
                                   "hostIP": host(where), "hostIPs": [{"ip": host(where)}]}},
                       "application/merge-patch+json")
                      for ns, name, where, ip, p, i in placed])
    print(f"{len(placed)} {'dual-stack ' if DUAL_STACK else ''}pods in {NAMESPACES} namespaces, "
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
                     "ports": [{"protocol": "TCP", "port": 443}]}]
                + ([{"to": [{"ipBlock": {"cidr": "::/0", "except": ["fd00::/8"]}}],
                     "ports": [{"protocol": "TCP", "port": 443}]}] if DUAL_STACK else [])}),
        ]
    run_all(request, calls)
    print(f"{len(calls)} NetworkPolicies")


XYZ = [(ns, name) for ns in "xyz" for name in "abc"]


def cluster_policy(i):
    """ClusterNetworkPolicy i of the synthetic set, the same object as cluster_policy(i) of
    enforcer/benches/compile.rs: 7 in 10 Admin, repeating priorities, subjects by team or by team
    and app; ingress Deny another team on one port, Pass an app; egress Accept an app's http named
    port, Deny two networks (IPv4, IPv6), Accept a port range to 172.16.0.0/12."""
    team = lambda k: {"matchLabels": {"team": f"t{k % 7}"}}
    app = lambda k: {"matchLabels": {"app": f"app-{k % 10}"}}
    subject = ({"namespaces": team(i)} if i % 2 == 0
               else {"pods": {"namespaceSelector": team(i), "podSelector": app(i)}})
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": f"cnp-{i:03}"},
        "spec": {
            "tier": "Admin" if i % 10 < 7 else "Baseline",
            "priority": (i * 7) % 50,
            "subject": subject,
            "ingress": [
                {"name": "deny-admin-port", "action": "Deny", "from": [{"namespaces": team(i + 1)}],
                 "protocols": [{"tcp": {"destinationPort": {"number": 2000 + i}}}]},
                {"action": "Pass",
                 "from": [{"pods": {"namespaceSelector": {}, "podSelector": app(i + 3)}}]},
            ],
            "egress": [
                {"action": "Accept",
                 "to": [{"pods": {"namespaceSelector": team(i + 2), "podSelector": app(i)}}],
                 "protocols": [{"destinationNamedPort": "http"}]},
                {"action": "Deny",
                 "to": [{"networks": [f"192.168.{i % 256}.0/24", f"fd00:{i:x}::/64"]}]},
                {"action": "Accept", "to": [{"networks": ["172.16.0.0/12"]}],
                 "protocols": [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8999}}}}]},
            ],
        },
    }


def cluster_policies(request, n):
    run_all(request, [("POST", "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
                       cluster_policy(i)) for i in range(n)])


def xyz(request, node, ips):
    """The upstream NetworkPolicy e2e model, round one of enforcer/tests/e2e.rs: namespaces x, y,
    z (label ns) with pods a, b, c (label pod) serving 80 and 81 on TCP and UDP under the names
    serve-<port>-<protocol>, all on NODE, and one policy per feature."""
    run_all(request, [("POST", "/api/v1/namespaces", {"metadata": {"name": ns, "labels": {"ns": ns}}})
                      for ns in "xyz"])
    ports = [{"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
             for port in (80, 81) for proto in ("TCP", "UDP")]
    run_all(request, [("POST", f"/api/v1/namespaces/{ns}/pods", {
        "metadata": {"name": name, "labels": {"pod": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": ports}]},
    }) for ns, name in XYZ])
    host = node_ips(request)[node]
    run_all(request, [("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                       {"status": {"phase": "Running", "podIP": ips[f"{ns}/{name}"],
                                   "podIPs": [{"ip": ips[f"{ns}/{name}"]}],
                                   "hostIP": host, "hostIPs": [{"ip": host}]}},
                       "application/merge-patch+json") for ns, name in XYZ])
    xa, yb = ips["x/a"], ips["y/b"]
    subnet = "10.%s.0.0/16" % xa.split(".")[1]
    sel = lambda **labels: {"matchLabels": labels}
    policies = [
        ("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        ("x", "a-from-namespace-y", {"podSelector": sel(pod="a"), "ingress": [
            {"from": [{"namespaceSelector": sel(ns="y")}], "ports": [{"port": 80}]}]}),
        ("x", "b-from-y-b-and", {"podSelector": sel(pod="b"), "ingress": [
            {"from": [{"namespaceSelector": sel(ns="y"), "podSelector": sel(pod="b")}]}]}),
        ("x", "c-from-y-or-b", {"podSelector": sel(pod="c"), "ingress": [
            {"from": [{"namespaceSelector": sel(ns="y")}, {"podSelector": sel(pod="b")}]}]}),
        ("y", "a-egress-to-z-c-81-udp", {"podSelector": sel(pod="a"), "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": sel(ns="z"), "podSelector": sel(pod="c")}],
                        "ports": [{"protocol": "UDP", "port": 81}]}]}),
        ("z", "b-port-range", {"podSelector": sel(pod="b"), "ingress": [
            {"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]}),
        ("y", "c-named-port", {"podSelector": sel(pod="c"), "ingress": [
            {"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}]}),
        ("z", "a-ip-block-except", {"podSelector": sel(pod="a"), "ingress": [
            {"from": [{"ipBlock": {"cidr": subnet, "except": [f"{xa}/32", f"{yb}/32"]}}]}]}),
        ("z", "c-egress-named-port", {"podSelector": sel(pod="c"), "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": "serve-80-tcp"}]}]}),
    ]
    run_all(request, [("POST", f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                       {"metadata": {"name": name}, "spec": spec}) for ns, name, spec in policies])
    print(f"x/y/z: {len(XYZ)} pods on {node}, {len(policies)} NetworkPolicies")


def xyz_delete(request):
    """The model's pods and policies go (its three namespaces stay: without a namespace
    controller a deleted namespace would stay Terminating)."""
    for ns in "xyz":
        request("DELETE", f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", None)
        request("DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0", None)


def main():
    request = connect(sys.argv[1])
    if sys.argv[2] == "nodes":
        nodes(request, dict(arg.split("=") for arg in sys.argv[3:]))
    elif sys.argv[2] == "pods":
        overrides = {}
        for arg in sys.argv[4:]:
            key, where = arg.split("=")
            overrides[key] = tuple(where.split("@"))
        pods(request, sys.argv[3], overrides)
    elif sys.argv[2] == "policies":
        policies(request)
    elif sys.argv[2] == "cluster-policies":
        cluster_policies(request, int(sys.argv[3]))
    elif sys.argv[2] == "xyz":
        xyz(request, sys.argv[3], dict(arg.split("=") for arg in sys.argv[4:]))
    elif sys.argv[2] == "xyz-delete":
        xyz_delete(request)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
