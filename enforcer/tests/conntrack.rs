//! Which live connections a change cuts ([`to_cut`]): exactly those the policies deny now, on a
//! side this node enforces; never one still allowed, never for an audit-mode policy, in both
//! IP families, Service connections judged by the pod behind the Service.

use std::net::IpAddr;

use palisade_enforcer::conntrack::{Entry, parse, to_cut};
use palisade_policy::Cluster;
use palisade_policy::input::Inputs;

const NODE: &str = "n1";

/// `x/client` and `x/web` and `y/other` on n1, `x/remote` on n2, all dual-stack.
const PODS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {kubernetes.io/metadata.name: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {kubernetes.io/metadata.name: y}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c, image: c}]}
status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: c, ports: [{containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.0.0.2, podIPs: [{ip: 10.0.0.2}, {ip: "fd00::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: y, labels: {app: other}}
spec: {nodeName: n1, containers: [{name: c, image: c, ports: [{containerPort: 9000}]}]}
status: {phase: Running, podIP: 10.0.0.3, podIPs: [{ip: 10.0.0.3}, {ip: "fd00::3"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: remote, namespace: x, labels: {app: remote}}
spec: {nodeName: n2, containers: [{name: c, image: c}]}
status: {phase: Running, podIP: 10.0.1.1, podIPs: [{ip: 10.0.1.1}, {ip: "fd00:1::1"}]}
"#;

/// Ingress to web only from remote.
const WEB_FROM_REMOTE: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-remote, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: remote}}}]}]
"#;

/// The same, in audit mode.
const WEB_FROM_REMOTE_AUDIT: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-remote, namespace: x, annotations: {palisade.dev/mode: audit}}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: remote}}}]}]
"#;

/// Egress of client denied to everything.
const CLIENT_NO_EGRESS: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-no-egress, namespace: x}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
"#;

/// An Admin Deny of everything into web.
const ADMIN_DENY_WEB: &str = r#"
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: deny-web}
spec:
  tier: Admin
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
"#;

fn cluster(policies: &str) -> Cluster {
    let mut inputs = Inputs::default();
    inputs
        .add_text("cluster.yaml", &format!("{PODS}{policies}"))
        .expect("readable");
    inputs.cluster()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A connection as conntrack lists it (no NAT: the reply comes from the destination).
fn line(proto: &str, src: &str, dst: &str, sport: u16, dport: u16) -> String {
    let n = if proto == "udp" { 17 } else { 6 };
    format!(
        "{proto} {n} 300 ESTABLISHED src={src} dst={dst} sport={sport} dport={dport} src={dst} dst={src} sport={dport} dport={sport} [ASSURED] mark=0 use=1"
    )
}

/// Every connection among the pods, and some with the node and the outside, both families.
fn table() -> Vec<Entry> {
    let mut lines = vec![
        line("tcp", "10.0.0.1", "10.0.0.2", 40001, 8080), // client -> web
        line("tcp", "10.0.1.1", "10.0.0.2", 40002, 8080), // remote -> web
        line("tcp", "10.0.0.1", "10.0.0.3", 40003, 9000), // client -> other
        line("udp", "10.0.0.3", "10.0.0.1", 40004, 5353), // other -> client
        line("tcp", "192.168.0.1", "10.0.0.2", 40005, 8080), // the node -> web (kubelet)
        line("tcp", "10.0.0.1", "8.8.8.8", 40006, 443),   // client -> outside
        line("tcp", "10.0.1.1", "10.0.1.2", 40007, 80),   // between pods of another node
        line("tcp", "fd00::1", "fd00::2", 40008, 8080),   // client -> web, IPv6
        line("tcp", "fd00:1::1", "fd00::2", 40009, 8080), // remote -> web, IPv6
    ];
    // client -> a Service IP, DNATed to web.
    lines.push("tcp 6 300 ESTABLISHED src=10.0.0.1 dst=10.96.0.50 sport=40010 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=8080 dport=40010 [ASSURED] mark=0 use=1".into());
    parse(&lines.join("\n"))
}

fn node_addresses() -> Vec<IpAddr> {
    vec![ip("192.168.0.1"), ip("10.0.0.254")]
}

/// The cut connections as `src -> reply_src:port`.
fn cut(policies: &str) -> Vec<String> {
    to_cut(&table(), &cluster(policies), NODE, &node_addresses())
        .iter()
        .map(|e| {
            format!(
                "{} {} -> {}:{}",
                e.protocol, e.src, e.reply_src, e.reply_sport
            )
        })
        .collect()
}

#[test]
fn the_table_is_read_whole() {
    assert_eq!(table().len(), 10);
}

#[test]
fn without_policies_nothing_is_cut() {
    assert!(cut("").is_empty());
}

#[test]
fn tightening_ingress_cuts_exactly_the_connections_it_denies_in_both_families() {
    assert_eq!(
        cut(WEB_FROM_REMOTE),
        [
            "TCP 10.0.0.1 -> 10.0.0.2:8080",
            "TCP 10.0.0.1 -> 10.0.0.2:8080", // through the Service IP
            "TCP fd00::1 -> fd00::2:8080",
        ]
    );
    // The node's own connection (kubelet probes) and remote's stay; so does everything else.
}

#[test]
fn tightening_egress_cuts_the_sources_connections() {
    assert_eq!(
        cut(CLIENT_NO_EGRESS),
        [
            "TCP 10.0.0.1 -> 10.0.0.2:8080",
            "TCP 10.0.0.1 -> 10.0.0.3:9000",
            "TCP 10.0.0.1 -> 8.8.8.8:443",
            "TCP 10.0.0.1 -> 10.0.0.2:8080",
            "TCP fd00::1 -> fd00::2:8080",
        ]
    );
}

#[test]
fn a_cluster_network_policy_deny_cuts_too() {
    assert_eq!(
        cut(ADMIN_DENY_WEB),
        [
            "TCP 10.0.0.1 -> 10.0.0.2:8080",
            "TCP 10.0.1.1 -> 10.0.0.2:8080",
            "TCP 10.0.0.1 -> 10.0.0.2:8080",
            "TCP fd00::1 -> fd00::2:8080",
            "TCP fd00:1::1 -> fd00::2:8080",
        ]
    );
}

#[test]
fn audit_mode_policies_cut_nothing() {
    assert!(cut(WEB_FROM_REMOTE_AUDIT).is_empty());
}

/// Loosening: from a deny to an allow, what is left in the table is allowed, so nothing is cut
/// (the entries that exist under the tighter policy are the connections it allowed).
#[test]
fn loosening_cuts_nothing() {
    let loose = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-x, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {}}]}]
"#;
    assert!(cut(loose).is_empty());
    assert!(cut(&format!("{WEB_FROM_REMOTE}{loose}")).is_empty());
}

/// Another node's enforcer judges only its own pods' sides: n2 cuts remote's egress, never
/// web's ingress (n1 does that).
#[test]
fn a_node_judges_only_the_sides_it_enforces() {
    let remote_no_egress = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: remote-no-egress, namespace: x}
spec:
  podSelector: {matchLabels: {app: remote}}
  policyTypes: [Egress]
"#;
    let on = |node: &str, policies: &str| -> usize {
        to_cut(&table(), &cluster(policies), node, &node_addresses()).len()
    };
    assert_eq!(on("n1", remote_no_egress), 0);
    // n2 sees remote -> web (both families) and remote -> 10.0.1.2.
    assert_eq!(on("n2", remote_no_egress), 3);
    assert_eq!(on("n2", WEB_FROM_REMOTE), 0);
}
