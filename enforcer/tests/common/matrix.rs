//! The x/y/z model on two node network namespaces, for the tests that compare what the kernel
//! denies and logs with what `palisade reach` predicts: where the pods go, the rules synced
//! into each node, the NFLOG groups read back into denial records, and the prediction and
//! explanation of each cell.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use palisade_e2e::Network;
use palisade_enforcer::CompileOptions;
use palisade_enforcer::apply;
use palisade_enforcer::backend::{self, Backend, Family, Tables};
use palisade_enforcer::compile::compile_families;
use palisade_enforcer::denials::nflog::{self, Socket};
use palisade_enforcer::denials::record::{Kind, Record};
use palisade_enforcer::denials::{Options, Task};
use palisade_enforcer::metrics::Metrics;
use palisade_policy::Protocol;
use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::{Cluster, Endpoint, IpFamily};

/// The NFLOG group the rules log to and the tests read.
pub const GROUP: u16 = 100;
pub const NODES: [&str; 2] = ["node-1", "node-2"];

/// The ports every pod serves and every probe tries.
pub const XYZ_PORTS: [(u16, Protocol); 3] = [
    (80, Protocol::Tcp),
    (81, Protocol::Tcp),
    (80, Protocol::Udp),
];

/// (source, destination, port, protocol) of one probe.
pub type CellKey = (String, String, u16, String);

/// Audit mode by annotation (x/from-x, z/c-from-y, z/a-egress-80), by the label of namespace y
/// (y/b-from-z-80, y/c-egress-to-x), and enforced beside them (z/c-81-only): the enforced one
/// and the audit z/c-from-y both isolate z/c, so z/c's denials are real before promotion too.
pub const XYZ_POLICIES: &str = r#"
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

/// `policies` enforced: their `palisade.dev/mode: audit` annotations removed.
pub fn enforced(policies: &str) -> String {
    let out = policies.replace(", annotations: {palisade.dev/mode: audit}", "");
    assert!(
        !out.contains("palisade.dev/mode"),
        "every annotation removed"
    );
    out
}

/// x/a on node-1, x/b on node-2, ... alternating, so rules judge on both nodes.
pub fn placement() -> Vec<(&'static str, &'static str, &'static str)> {
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

/// The network of [`placement`], every pod serving `ports` (dual stack when `dual_stack`).
pub fn network(dual_stack: bool, ports: &[(u16, Protocol)]) -> Network {
    let mut net = if dual_stack {
        Network::create_dual_stack(&NODES)
    } else {
        Network::create(&NODES)
    }
    .expect("network");
    for (node, ns, name) in placement() {
        net.add_pod(node, ns, name).expect("pod");
        net.serve(&format!("{ns}/{name}"), ports).expect("servers");
    }
    net
}

/// Namespaces x, y and z labelled `ns: NAME` (plus `extra_labels` for the namespaces it
/// names), then the network's pods at all their addresses with container ports 80 and 81.
pub fn namespaces_and_pods(net: &Network, extra_labels: &[(&str, &str)]) -> String {
    let mut yaml = String::new();
    for ns in ["x", "y", "z"] {
        let extra: String = extra_labels
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, label)| format!(", {label}"))
            .collect();
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{ns}\", labels: {{ns: \"{ns}\"{extra}}}}}\n"
        ));
    }
    for p in net.pods() {
        let (ns, name) = p.key.split_once('/').expect("ns/name");
        let mut ips = vec![p.ip.to_string()];
        ips.extend(p.ip6.map(|ip| ip.to_string()));
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        yaml.push_str(&super::pod(ns, name, &p.node, &ips, &[80, 81]));
    }
    yaml
}

/// Compile options logging every denial and audit record a probe run makes (rates no run
/// reaches), the rest as `base`.
pub fn logging_everything(base: CompileOptions) -> CompileOptions {
    CompileOptions {
        log_denials: true,
        nflog_group: GROUP,
        deny_logs_per_minute: 60_000,
        deny_log_burst: 1_000,
        audit_logs_per_minute: 60_000,
        audit_log_burst: 1_000,
        ..base
    }
}

/// Compiles `cluster` for each node with `options` in `families` and syncs it into the node's
/// namespace through `backend`.
pub fn install(
    net: &Network,
    cluster: &Cluster,
    options: &CompileOptions,
    families: &[IpFamily],
    backend: Backend,
) {
    for node in net.nodes() {
        let rulesets = compile_families(cluster, &node.name, options, families);
        inside(&node.netns.name, move || {
            apply::sync_families(backend, &rulesets).expect("sync");
        });
    }
}

/// Takes Palisade's rules and sets out of `backend` on every node.
pub fn leave(net: &Network, backend: Backend) {
    for node in net.nodes() {
        inside(&node.netns.name, move || backend::leave(backend));
    }
}

/// Whether every node's `backend` holds Palisade's forward chain for both families
/// (`iptables-save` and `ip6tables-save` of that backend show it).
pub fn holds_rules(net: &Network, backend: Backend) -> bool {
    net.nodes().iter().all(|node| {
        [Family::V4, Family::V6].into_iter().all(|family| {
            let save = Tables::new(backend, family).save();
            let out = inside(&node.netns.name, move || {
                std::process::Command::new(save)
                    .output()
                    .unwrap_or_else(|e| panic!("{save}: {e}"))
            });
            String::from_utf8_lossy(&out.stdout).contains(":PALISADE-FORWARD")
        })
    })
}

/// Runs `f` on a thread inside namespace `name`.
pub fn inside<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = name.to_string();
    std::thread::spawn(move || {
        palisade_e2e::netns::enter(&name).expect("enter the namespace");
        f()
    })
    .join()
    .expect("the thread inside the namespace")
}

/// The NFLOG group of each node, bound in its namespace.
pub fn listen(net: &Network) -> Vec<(String, Socket)> {
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
pub fn records(sockets: &[(String, Socket)], cluster: &Cluster) -> Vec<Record> {
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

/// Every (source, destination, port, protocol) of the network's pods on `ports`.
pub fn all_cells(net: &Network, ports: &[(u16, Protocol)]) -> Vec<(String, String, u16, Protocol)> {
    let keys: Vec<String> = net.pods().iter().map(|p| p.key.clone()).collect();
    let mut cells = Vec::new();
    for from in &keys {
        for to in &keys {
            for &(port, proto) in ports {
                cells.push((from.clone(), to.clone(), port, proto));
            }
        }
    }
    cells
}

/// The denied cells of a probe of the whole matrix over `family`.
pub fn probe_denied(
    net: &Network,
    ports: &[(u16, Protocol)],
    timeout: Duration,
    family: IpFamily,
) -> BTreeSet<CellKey> {
    net.probe_all_in(&all_cells(net, ports), timeout, family)
        .expect("probes")
        .into_iter()
        .filter(|p| !p.allowed)
        .map(|p| (p.from, p.to, p.port, p.protocol))
        .collect()
}

/// What `palisade reach` says of every cell of `cluster` (as one family sees it: see
/// [`Cluster::in_family`]): the denied ones, and the allowed ones audit-mode policies alone
/// would deny.
pub fn reach(
    cluster: &Cluster,
    ports: &[(u16, Protocol)],
) -> (BTreeSet<CellKey>, BTreeSet<CellKey>) {
    let pods = reachable_pods(cluster);
    let ports: Vec<ProbePort> = ports
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

/// `palisade reach --explain`'s reason for one cell of `cluster` (as one family sees it).
pub fn explain(cluster: &Cluster, from: &str, to: &str, port: u16, protocol: &str) -> String {
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

/// The cells of the records of `kind`.
pub fn cells_of(records: &[Record], kind: Kind) -> BTreeSet<CellKey> {
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

/// One line per cell, for assertion messages.
pub fn show(cells: &BTreeSet<CellKey>) -> String {
    let lines: Vec<String> = cells
        .iter()
        .map(|(f, t, p, proto)| format!("{f} -> {t} {p}/{proto}"))
        .collect();
    lines.join("\n")
}
