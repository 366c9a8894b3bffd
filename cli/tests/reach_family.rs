//! `palisade reach --family`: a dual-stack cluster's matrix for each family's traffic, as the
//! enforcer compiles it (an ipBlock only matches addresses of its own family).

mod common;

use common::{reach_on, text};

const CLUSTER: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {containers: [{name: c, image: c}]}
status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: "fd00:10:244::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {containers: [{name: c, image: c, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.0.2, podIPs: [{ip: 10.0.0.2}, {ip: "fd00:10:244::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v6only, namespace: x, labels: {app: v6only}}
spec: {containers: [{name: c, image: c}]}
status: {phase: Running, podIP: "fd00:10:244::3", podIPs: [{ip: "fd00:10:244::3"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-ipv4-block, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/24}}]
"#;

fn reach(args: &[&str]) -> (String, String) {
    let out = reach_on(CLUSTER, &[&["--port", "80"], args].concat());
    (text(&out.stdout), text(&out.stderr))
}

/// The IPv4 block lets the client reach web over IPv4 only; over IPv6 web is closed to
/// everyone, and the IPv6-only pod takes part only in the IPv6 matrix.
#[test]
fn each_family_gets_its_own_matrix() {
    let (v4, err) = reach(&[
        "--family",
        "IPv4",
        "--from",
        "x/client",
        "--to",
        "x/web",
        "--explain",
    ]);
    assert!(v4.contains("✓ x/client -> x/web 80/TCP"), "{v4}{err}");
    let (v6, err) = reach(&[
        "--family",
        "ipv6",
        "--from",
        "x/client",
        "--to",
        "x/web",
        "--explain",
    ]);
    assert!(v6.contains("✗ x/client -> x/web 80/TCP"), "{v6}{err}");
    let (all6, _) = reach(&["--family", "IPv6"]);
    assert!(all6.contains("x/v6only"), "{all6}");
    let (all4, _) = reach(&["--family", "IPv4"]);
    assert!(!all4.contains("x/v6only"), "{all4}");
}
