//! Audit tells the truth, for real: the x/y/z model on two node network namespaces, with
//! NetworkPolicies in audit mode by their annotation and by their namespace's label beside
//! enforced ones. The whole matrix is probed and the audit would-deny records the kernel logs
//! are collected; then the audit policies are promoted (annotations and label removed), the
//! same matrix probed again, and the cells denied now that were not before are exactly the
//! cells audit reported (0 misses, 0 extra), and what `palisade reach` predicts, before and
//! after.
//!
//! Needs root, `ip`, `iptables-restore` and `ipset`, like the other kernel tests. The node and
//! pod namespaces are the e2e harness's [`Network`], removed when it drops (on failure too).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use palisade_e2e::Network;
use palisade_enforcer::CompileOptions;
use palisade_enforcer::apply;
use palisade_enforcer::backend::{self, BackendChoice};
use palisade_enforcer::compile::compile_families;
use palisade_enforcer::denials::nflog::{self, Socket};
use palisade_enforcer::denials::record::{Kind, Record};
use palisade_enforcer::denials::{Options, Task};
use palisade_enforcer::metrics::Metrics;
use palisade_policy::Protocol::{self, Tcp, Udp};
use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::{Cluster, Endpoint, IpFamily};

const GROUP: u16 = 100;
const NODES: [&str; 2] = ["node-1", "node-2"];
const PORTS: [(u16, Protocol); 3] = [(80, Tcp), (81, Tcp), (80, Udp)];
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// (source, destination, port, protocol) of one probe.
type CellKey = (String, String, u16, String);

/// x/a on node-1, x/b on node-2, ... alternating, so rules judge on both nodes.
fn placement() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out = Vec::new();
    let mut i = 0;
    for ns in ["x", "y", "z"] {
        for name in ["a", "b", "c"] {
            out.push((NODES[i % 2], ns, name));
            i += 1;
        }
    }
    out
}

/// Audit mode by annotation (x/from-x, z/c-from-y, z/a-egress-80), by the label of namespace y
/// (y/b-from-z-80, y/c-egress-to-x), and enforced beside them (z/c-81-only): the enforced one
/// and the audit z/c-from-y both isolate z/c, so z/c's denials are real before promotion too.
const POLICIES: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-x, namespace: "x", annotations: {palisade.dev/mode: audit}}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-z-80, namespace: "y"}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-egress-to-x, namespace: "y"}
spec:
  podSelector: {matchLabels: {app: c}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-81-only, namespace: "z"}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{ports: [{port: 81}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-from-y, namespace: "z", annotations: {palisade.dev/mode: audit}}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-egress-80, namespace: "z", annotations: {palisade.dev/mode: audit}}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: 80}]}]
"#;

/// The cluster as the enforcer would read it: namespaces labelled `ns: NAME` (y also
/// `palisade.dev/mode=audit` when `audit`), the pods at their addresses, the policies (with
/// their audit annotations when `audit`).
fn cluster(net: &Network, audit: bool) -> Cluster {
    let mut yaml = String::new();
    for ns in ["x", "y", "z"] {
        let mode = if audit && ns == "y" {
            ", palisade.dev/mode: audit"
        } else {
            ""
        };
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{ns}\", labels: {{ns: \"{ns}\"{mode}}}}}\n"
        ));
    }
    for p in net.pods() {
        let (ns, name) = p.key.split_once('/').expect("ns/name");
        yaml.push_str(&common::pod(
            ns,
            name,
            &p.node,
            &[&p.ip.to_string()],
            &[80, 81],
        ));
    }
    let policies = if audit {
        POLICIES.to_string()
    } else {
        POLICIES.replace(", annotations: {palisade.dev/mode: audit}", "")
    };
    assert_eq!(
        policies.contains("palisade.dev/mode"),
        audit,
        "promotion removes every annotation"
    );
    yaml.push_str(&policies);
    common::cluster(&yaml)
}

/// Compiles `cluster` for each node (denial and audit logs at rates no probe run reaches) and
/// syncs it into the node's namespace.
fn install(net: &Network, cluster: &Cluster) {
    let options = CompileOptions {
        log_denials: true,
        nflog_group: GROUP,
        deny_logs_per_minute: 60_000,
        deny_log_burst: 1_000,
        audit_logs_per_minute: 60_000,
        audit_log_burst: 1_000,
        ..CompileOptions::default()
    };
    for node in net.nodes() {
        let rulesets = compile_families(cluster, &node.name, &options, &[IpFamily::V4]);
        inside(&node.netns.name, move || {
            let d = backend::detect(BackendChoice::Auto).expect("a backend works");
            apply::sync_families(d.backend, &rulesets).expect("sync");
        });
    }
}

/// Runs `f` on a thread inside namespace `name`.
fn inside<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = name.to_string();
    std::thread::spawn(move || {
        palisade_e2e::netns::enter(&name).expect("enter the namespace");
        f()
    })
    .join()
    .expect("the thread inside the namespace")
}

/// The NFLOG group of each node, bound in its namespace.
fn listen(net: &Network) -> Vec<(String, Socket)> {
    net.nodes()
        .iter()
        .map(|node| {
            let socket = inside(&node.netns.name, || {
                Socket::open(GROUP, 8 << 20, Duration::from_millis(200))
                    .expect("bind the NFLOG group")
            });
            (node.name.clone(), socket)
        })
        .collect()
}

/// Every record the nodes' sockets hold, explained against `cluster` by each node's reader;
/// read until a second passes without a message.
fn records(sockets: &[(String, Socket)], cluster: &Cluster) -> Vec<Record> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    for (node, socket) in sockets {
        let metrics = Arc::new(Metrics::default());
        metrics.latest.want();
        metrics.latest.publish(cluster);
        let mut task = Task::new(
            Options {
                node: node.clone(),
                nflog_group: GROUP,
                events: false,
                max_events_per_minute: 30,
                records_per_second: 100_000,
            },
            metrics,
            vec![],
        );
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(1) {
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            quiet_since = Instant::now();
            for logged in nflog::parse_datagram(&buf[..n], SystemTime::now()).expect("parses") {
                if let Some(r) = task.take(&logged, Instant::now()) {
                    out.push(r);
                }
            }
        }
    }
    out
}

fn all_cells(net: &Network) -> Vec<(String, String, u16, Protocol)> {
    let keys: Vec<String> = net.pods().iter().map(|p| p.key.clone()).collect();
    let mut cells = Vec::new();
    for from in &keys {
        for to in &keys {
            for (port, proto) in PORTS {
                cells.push((from.clone(), to.clone(), port, proto));
            }
        }
    }
    cells
}

/// The denied cells of a probe of the whole matrix.
fn probe_denied(net: &Network) -> BTreeSet<CellKey> {
    net.probe_all(&all_cells(net), PROBE_TIMEOUT)
        .expect("probes")
        .into_iter()
        .filter(|p| !p.allowed)
        .map(|p| (p.from, p.to, p.port, p.protocol))
        .collect()
}

/// What `palisade reach` says of every cell: the denied ones, and the allowed ones audit-mode
/// policies alone would deny.
fn reach(cluster: &Cluster) -> (BTreeSet<CellKey>, BTreeSet<CellKey>) {
    let pods = reachable_pods(cluster);
    let ports: Vec<ProbePort> = PORTS
        .iter()
        .map(|&(port, protocol)| ProbePort { port, protocol })
        .collect();
    let m = Matrix::compute(cluster, pods.clone(), pods.clone(), ports.clone());
    let (mut denied, mut audit) = (BTreeSet::new(), BTreeSet::new());
    for (si, &s) in pods.iter().enumerate() {
        for (di, &d) in pods.iter().enumerate() {
            for (pi, port) in ports.iter().enumerate() {
                let key = (
                    cluster.pods()[s].key(),
                    cluster.pods()[d].key(),
                    port.port,
                    port.protocol.to_string(),
                );
                let cell = m.cell(si, di, pi);
                if !cell.allowed() {
                    denied.insert(key.clone());
                }
                if cell.audit_would_deny() {
                    audit.insert(key);
                }
            }
        }
    }
    (denied, audit)
}

/// `palisade reach --explain`'s reason for one cell.
fn explain(cluster: &Cluster, from: &str, to: &str, port: u16, protocol: &str) -> String {
    let pod = |key: &str| {
        cluster
            .pods()
            .iter()
            .find(|p| p.key() == key)
            .unwrap_or_else(|| panic!("no pod {key}"))
    };
    let protocol: Protocol = protocol.parse().expect("a protocol");
    cluster
        .evaluate(
            &Endpoint::Pod(pod(from)),
            &Endpoint::Pod(pod(to)),
            port,
            protocol,
        )
        .reason(from, to, port, protocol)
}

fn cells_of(records: &[Record], kind: Kind) -> BTreeSet<CellKey> {
    records
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| {
            (
                r.source.clone(),
                r.destination.clone(),
                r.port,
                r.protocol.to_string(),
            )
        })
        .collect()
}

fn show(cells: &BTreeSet<CellKey>) -> String {
    let lines: Vec<String> = cells
        .iter()
        .map(|(f, t, p, proto)| format!("{f} -> {t} {p}/{proto}"))
        .collect();
    lines.join("\n")
}

#[test]
fn promoted_audit_policies_deny_exactly_what_audit_reported() {
    let mut net = Network::create(&NODES).expect("network");
    for (node, ns, name) in placement() {
        net.add_pod(node, ns, name).expect("pod");
        net.serve(&format!("{ns}/{name}"), &PORTS).expect("servers");
    }
    let total = all_cells(&net).len();

    // In audit mode: probe everything, collect what the kernel logged.
    let audit = cluster(&net, true);
    install(&net, &audit);
    let sockets = listen(&net);
    let denied_before = probe_denied(&net);
    let logged = records(&sockets, &audit);
    // An audit record for a cell denied anyway is one whose other side denies for real (z/a's
    // audit egress logs 80/UDP to z/c, whose enforced ingress then drops it): promotion
    // changes nothing there. The cells audit speaks for are the ones it lets through.
    let logged_cells = cells_of(&logged, Kind::AuditWouldDeny);
    let reported: BTreeSet<CellKey> = logged_cells.difference(&denied_before).cloned().collect();
    let denied_anyway = logged_cells.len() - reported.len();
    let (predicted_denied, predicted_audit) = reach(&audit);
    assert_eq!(
        denied_before,
        predicted_denied,
        "in audit mode, the denied cells are reach's: measured only:\n{}\npredicted only:\n{}",
        show(
            &denied_before
                .difference(&predicted_denied)
                .cloned()
                .collect()
        ),
        show(
            &predicted_denied
                .difference(&denied_before)
                .cloned()
                .collect()
        ),
    );
    assert_eq!(
        reported,
        predicted_audit,
        "audit records are the cells reach says audit would deny: reported only:\n{}\npredicted only:\n{}",
        show(&reported.difference(&predicted_audit).cloned().collect()),
        show(&predicted_audit.difference(&reported).cloned().collect()),
    );
    // Each audit record is explained as `reach --explain` explains its cell.
    for r in logged.iter().filter(|r| r.kind == Kind::AuditWouldDeny) {
        let explain = explain(&audit, &r.source, &r.destination, r.port, r.protocol);
        assert_eq!(r.reason, explain, "{r:#?}");
        assert!(
            r.reason.contains("would be denied (audit: not enforced)"),
            "{r:#?}"
        );
    }
    // Both ways into audit mode were exercised, and real denials beside them.
    let audit_policies: BTreeSet<&str> = logged
        .iter()
        .filter(|r| r.kind == Kind::AuditWouldDeny)
        .flat_map(|r| r.policies.iter().map(String::as_str))
        .collect();
    for p in [
        "x/from-x",
        "y/b-from-z-80",
        "y/c-egress-to-x",
        "z/a-egress-80",
    ] {
        assert!(audit_policies.contains(p), "{p}: {audit_policies:?}");
    }
    assert!(!denied_before.is_empty());

    // Promoted: annotations and the namespace label removed.
    let promoted = cluster(&net, false);
    install(&net, &promoted);
    let denied_after = probe_denied(&net);
    let after_logged = records(&sockets, &promoted);
    let newly_denied: BTreeSet<CellKey> =
        denied_after.difference(&denied_before).cloned().collect();
    let misses: BTreeSet<CellKey> = reported.difference(&newly_denied).cloned().collect();
    let extra: BTreeSet<CellKey> = newly_denied.difference(&reported).cloned().collect();
    println!(
        "{total} cells probed twice; in audit mode {} denied, {} audit records for {} cells let through (and {denied_anyway} denied on their other side); promoted {} denied ({} newly); misses {}, extra {}; {} denial records after promotion",
        denied_before.len(),
        logged
            .iter()
            .filter(|r| r.kind == Kind::AuditWouldDeny)
            .count(),
        reported.len(),
        denied_after.len(),
        newly_denied.len(),
        misses.len(),
        extra.len(),
        after_logged.len(),
    );
    assert!(
        misses.is_empty(),
        "audit said these would be denied, promoted they pass:\n{}",
        show(&misses)
    );
    assert!(
        extra.is_empty(),
        "promoted these are denied, audit never said so:\n{}",
        show(&extra)
    );
    assert!(
        denied_before.is_subset(&denied_after),
        "promotion let through what was denied"
    );
    let (predicted_after, no_audit) = reach(&promoted);
    assert_eq!(denied_after, predicted_after);
    assert!(no_audit.is_empty());
    // Promoted, every denied cell is logged as a real denial, and nothing is audit any more.
    assert_eq!(cells_of(&after_logged, Kind::Denied), denied_after);
    assert_eq!(
        after_logged.len(),
        denied_after.len(),
        "one record per denied probe"
    );
    assert!(cells_of(&after_logged, Kind::AuditWouldDeny).is_empty());
}
