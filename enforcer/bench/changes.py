#!/usr/bin/env python3
"""Event to rule, seen from outside: enforcer/bench/compare.sh's changes, one at a time, each
timed from the apiserver's answer to the change until a real connection between two pods shows
the new verdict. The same for any NetworkPolicy implementation: nothing here reads its rules,
logs or metrics.

Three real pods of the synthetic cluster (enforcer/bench/cluster.py): the server ns-0/pod-0 on
the measured node (app-0, serving TCP 8080 and 9000), the client ns-7/pod-0 (team t0's app-0,
which the monitoring policy lets in on 8080) and the client ns-0/pod-1 (tier 1, which app-to-app
lets in on http), both on the other node. The four kinds of change of enforcer/bench/scale.sh,
each made and then undone, so that every change turns its probe's answer around:

  peer relabelled      ns-7/pod-0 app-0 -> app-5          ns-7/pod-0 -> server:8080 refused
  local pod relabelled ns-0/pod-0 app-0 -> app-3          ns-0/pod-1 -> server:8080 refused
  policy port edited   ns-0/monitoring 8080 -> 8081       ns-7/pod-0 -> server:8080 refused
  policy added         ns-0/extra from every pod on 9000  ns-7/pod-0 -> server:9000 connected
  (and each undone: the answer turns back)

Denied connections must be refused (a reject rule), not dropped, for the answer to be known at
once. A probe waits at most 100 ms, then the next one starts: the kernel sends at most about one
ICMP unreachable a second to a destination (net.ipv4.icmp_ratelimit), so a probe that a rule
rejects with ICMP may get no answer at all, and must not hold the measurement up. A change still not seen after BOUND seconds counts as late; the wait goes on up to LIMIT
seconds so that its real time is known (and the next change, which undoes it, starts from a
known state); a change not seen by LIMIT ends the run.

  changes.py KUBECONFIG COUNT BOUND LIMIT SERVER_IP CLIENT_NETNS CLIENT2_NETNS
"""
import statistics
import sys
import time

from cluster import connect
from probe import answer

NP = "/apis/networking.k8s.io/v1/namespaces/ns-0/networkpolicies"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def kinds(server, client, client2):
    """(name, do, undo, probe netns, port, answer once done)."""
    label = lambda pod, app: ("PATCH", f"/api/v1/namespaces/{pod}",
                              {"metadata": {"labels": {"app": app}}}, MERGE)
    port = lambda p: ("PATCH", f"{NP}/monitoring",
                      [{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": p}],
                      JSON_PATCH)
    extra = {"metadata": {"name": "extra"}, "spec": {
        "podSelector": {}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 9000}]}]}}
    return [
        ("peer relabelled", label("ns-7/pods/pod-0", "app-5"), label("ns-7/pods/pod-0", "app-0"),
         client, 8080, "refused"),
        ("local pod relabelled", label("ns-0/pods/pod-0", "app-3"),
         label("ns-0/pods/pod-0", "app-0"), client2, 8080, "refused"),
        ("policy port edited", port(8081), port(8080), client, 8080, "refused"),
        ("policy added/deleted", ("POST", NP, extra, "application/json"),
         ("DELETE", f"{NP}/extra", None, "application/json"), client, 9000, "connected"),
    ]


def main():
    kubeconfig, count, bound, limit, server, client, client2 = sys.argv[1:8]
    count, bound, limit = int(count), float(bound), float(limit)
    request = connect(kubeconfig)
    flip = {"refused": "connected", "connected": "refused"}
    took, late, by_kind = [], 0, {}
    for i in range(count):
        name, do, undo, netns, port, done = kinds(server, client, client2)[(i // 2) % 4]
        undoing = i % 2 == 1
        call, expected = (undo, flip[done]) if undoing else (do, done)
        before = answer(netns, server, port)
        if before == expected:
            sys.exit(f"change {i} ({name}{', undone' if undoing else ''}): the probe already "
                     f"answers {expected} before the change")
        method, path, body, content_type = call
        request(method, path, body, content_type)
        start = time.monotonic()
        while True:
            a = answer(netns, server, port, timeout=0.1)
            seconds = time.monotonic() - start
            if a == expected:
                break
            if seconds > limit:
                sys.exit(f"change {i} ({name}{', undone' if undoing else ''}) not seen within "
                         f"{limit:g} s (the probe answers {a}); changes measured so far: {took}")
            time.sleep(0.01)
        took.append(seconds)
        by_kind.setdefault(name, []).append(seconds)
        late += seconds > bound
        print(f"  change {i:3}: {name}{', undone' if undoing else ''}: {seconds * 1000:.0f} ms",
              flush=True)
    s = sorted(took)
    p99 = s[min(len(s) - 1, int(0.99 * len(s) + 0.99) - 1)]
    print(f"event to rule over {len(s)} changes (from the apiserver's answer to the probe's): "
          f"median {statistics.median(s) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {s[-1] * 1000:.0f} ms, mean {statistics.mean(s) * 1000:.0f} ms; "
          f"not applied within {bound:g} s: {late}")
    for name, xs in by_kind.items():
        print(f"  {name}: median {statistics.median(xs) * 1000:.0f} ms, "
              f"max {max(xs) * 1000:.0f} ms over {len(xs)}")


if __name__ == "__main__":
    main()
