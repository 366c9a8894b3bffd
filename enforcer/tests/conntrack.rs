//! Which live connections a change cuts ([`to_cut`]): exactly those the policies deny now, on a
//! side this node enforces; never one still allowed, never for an audit-mode policy, in both
//! IP families, Service connections judged by the pod behind the Service.

use std::net::IpAddr;

mod common;

use palisade_enforcer::conntrack::{Entry, parse, to_cut};
use palisade_policy::Cluster;

const NODE: &str = "n1";

/// `x/client` and `x/web` and `y/other` on n1, `x/remote` on n2, all dual-stack.
fn pods() -> String {
    [
        common::namespace("x"),
        common::namespace("y"),
        common::pod("x", "client", "n1", &["10.0.0.1", "fd00::1"], &[]),
        common::pod("x", "web", "n1", &["10.0.0.2", "fd00::2"], &[8080]),
        common::pod("y", "other", "n1", &["10.0.0.3", "fd00::3"], &[9000]),
        common::pod("x", "remote", "n2", &["10.0.1.1", "fd00:1::1"], &[]),
    ]
    .concat()
}

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
    common::cluster(&format!("{}{policies}", pods()))
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

/// The cost of judging a large table (a figure for BENCHMARKS.md, not an assertion): 20,000
/// entries of 110 local pods among 2,000, every local pod isolated by a policy.
#[test]
#[ignore = "a measure: cargo test -p palisade-enforcer --test conntrack -- --ignored --nocapture"]
fn judging_twenty_thousand_entries() {
    let mut yaml = String::new();
    for i in 0..2000u32 {
        let node = if i < 110 { "n1" } else { "n2" };
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns{}, labels: {{app: a{}}}}}\nspec: {{nodeName: {node}, containers: [{{name: c, image: c}}]}}\nstatus: {{phase: Running, podIP: 10.{}.{}.{}}}\n---\n",
            i % 20,
            i % 7,
            1 + i / 60000,
            (i / 250) % 250,
            1 + i % 250
        ));
    }
    for n in 0..20 {
        yaml.push_str(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: only-a1, namespace: ns{n}}}\nspec:\n  podSelector: {{}}\n  ingress: [{{from: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: a1}}}}}}]}}]\n---\n"
        ));
    }
    let cluster = common::cluster(&yaml);
    let ip = |i: u32| format!("10.{}.{}.{}", 1 + i / 60000, (i / 250) % 250, 1 + i % 250);
    let text: Vec<String> = (0..20_000u32)
        .map(|k| {
            let (src, dst) = (110 + k % 1890, k % 110);
            line(
                "tcp",
                &ip(src),
                &ip(dst),
                (10_000 + k % 50_000) as u16,
                8080,
            )
        })
        .collect();
    let text = text.join("\n");
    let start = std::time::Instant::now();
    let entries = parse(&text);
    let parsed = start.elapsed();
    let cut = to_cut(&entries, &cluster, NODE, &node_addresses());
    eprintln!(
        "{} entries: parsed in {:?}, judged in {:?}, {} to cut",
        entries.len(),
        parsed,
        start.elapsed() - parsed,
        cut.len()
    );
    assert_eq!(entries.len(), 20_000);
}

/// Deleting by exact tuple over ctnetlink, in a network namespace the test makes: 1,000 of
/// 20,000 entries go, the others stay (and the time it takes, for BENCHMARKS.md).
#[test]
#[ignore = "needs root and conntrack-tools: cargo test -p palisade-enforcer --test conntrack -- --ignored --nocapture"]
fn ctnetlink_deletes_exactly_the_entries_named() {
    use palisade_e2e::netns::{self, Netns};
    let ns = Netns::add(&format!("pal-ct-{}", std::process::id())).expect("netns");
    let entry = |i: u32| {
        let (a, b) = (1 + i / 200, 1 + i % 200);
        format!(
            "tcp 6 300 ESTABLISHED src=10.1.{a}.{b} dst=10.2.{b}.{a} sport={} dport=8080 src=10.2.{b}.{a} dst=10.1.{a}.{b} sport=8080 dport={} [ASSURED] mark=0 use=1",
            10_000 + i,
            10_000 + i
        )
    };
    let inserts: String = (0..20_000u32)
        .map(|i| {
            let (a, b) = (1 + i / 200, 1 + i % 200);
            format!(
                "-I -p tcp -s 10.1.{a}.{b} -d 10.2.{b}.{a} --sport {} --dport 8080 --state ESTABLISHED -t 600 -u ASSURED\n",
                10_000 + i
            )
        })
        .collect();
    let mut load = ns
        .command("conntrack")
        .args(["-R", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("conntrack");
    std::io::Write::write_all(&mut load.stdin.take().expect("stdin"), inserts.as_bytes())
        .expect("write");
    assert!(load.wait().expect("conntrack").success());
    let count = || {
        let o = ns
            .command("conntrack")
            .arg("-C")
            .output()
            .expect("conntrack -C");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(count(), "20000");
    let doomed = parse(
        &(0..20_000u32)
            .step_by(20)
            .map(entry)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert_eq!(doomed.len(), 1000);
    let (deleted, took) = netns::run_in(&ns.name, move || {
        let start = std::time::Instant::now();
        let n = palisade_enforcer::ctnetlink::delete(&doomed).expect("delete");
        (n, start.elapsed())
    })
    .expect("enter");
    eprintln!("ctnetlink: deleted {deleted} of 20,000 entries in {took:?}");
    assert_eq!(deleted, 1000);
    assert_eq!(count(), "19000");
}
