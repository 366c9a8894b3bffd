//! Denials from the kernel, for real: a node network namespace routing between two pod
//! namespaces, Palisade's rules with denial logs in the node, the enforcer's NFLOG reader bound
//! to the group there. A denied SYN gives exactly one record, attributed to the pod and the
//! policy in the words `palisade reach --explain` uses; an allowed connection gives none; an
//! audit policy's would-drop gives an audit record.
//!
//! Needs root, `ip`, `iptables-restore` and `ipset`, like the other kernel tests.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use palisade_enforcer::CompileOptions;
use palisade_enforcer::apply;
use palisade_enforcer::backend::{self, BackendChoice};
use palisade_enforcer::compile::compile_families;
use palisade_enforcer::denials::nflog::{self, Socket};
use palisade_enforcer::denials::record::{Kind, Record};
use palisade_enforcer::denials::{Options, Task};
use palisade_enforcer::metrics::Metrics;
use palisade_policy::input::Inputs;
use palisade_policy::{Cluster, Endpoint, IpFamily, Protocol};

const GROUP: u16 = 100;

/// front/a (10.0.1.2, another node) and back/b (10.0.2.3, this node n1). Not `x`/`y`: YAML 1.1
/// reads a bare `y` as true.
const PODS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: front, labels: {kubernetes.io/metadata.name: front}}
---
apiVersion: v1
kind: Namespace
metadata: {name: back, labels: {kubernetes.io/metadata.name: back}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: front, labels: {app: a}}
spec: {nodeName: n2, containers: [{name: c, image: c}]}
status: {phase: Running, podIP: 10.0.1.2, podIPs: [{ip: 10.0.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: back, labels: {app: b}}
spec: {nodeName: n1, containers: [{name: c, image: c}]}
status: {phase: Running, podIP: 10.0.2.3, podIPs: [{ip: 10.0.2.3}]}
"#;

const B_8080_FROM_X: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-8080-from-x, namespace: back}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: front}}}]
    ports: [{port: 8080}]
"#;

const B_AUDIT: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-audit, namespace: back, annotations: {palisade.dev/mode: audit}}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
"#;

fn cluster(policies: &str) -> Cluster {
    let mut inputs = Inputs::default();
    inputs
        .add_text("cluster.yaml", &format!("{PODS}{policies}"))
        .expect("readable");
    inputs.cluster()
}

/// Namespaces deleted when dropped, even when the test fails.
struct Topology {
    node: String,
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Topology {
    /// node routes between a (10.0.1.2 behind 10.0.1.1) and b (10.0.2.3 behind 10.0.2.1).
    fn new(what: &str) -> Self {
        let id = std::process::id();
        let t = Topology {
            node: format!("pal-den-{id}-{what}-n"),
            a: format!("pal-den-{id}-{what}-a"),
            b: format!("pal-den-{id}-{what}-b"),
        };
        for ns in [&t.node, &t.a, &t.b] {
            ip(&["netns", "add", ns]);
        }
        for (pod, dev, gw, addr) in [
            (&t.a, "va", "10.0.1.1", "10.0.1.2"),
            (&t.b, "vb", "10.0.2.1", "10.0.2.3"),
        ] {
            let outside = format!("{dev}0");
            ip(&[
                "-n", &t.node, "link", "add", &outside, "type", "veth", "peer", "name", "eth0",
                "netns", pod,
            ]);
            ip(&[
                "-n",
                &t.node,
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                &outside,
            ]);
            ip(&["-n", &t.node, "link", "set", &outside, "up"]);
            ip(&[
                "-n",
                pod,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", pod, "link", "set", "eth0", "up"]);
            ip(&["-n", pod, "link", "set", "lo", "up"]);
            ip(&["-n", pod, "route", "add", "default", "via", gw]);
        }
        ip(&[
            "netns",
            "exec",
            &t.node,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.node, &self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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

/// One TCP connection attempt from pod a, given up after 300 ms: one SYN (the first
/// retransmission would come after 1 s).
fn try_connect(t: &Topology, to: &str, port: u16) {
    let addr = SocketAddr::new(to.parse().expect("address"), port);
    inside(&t.a, move || {
        let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    });
}

/// Compiles `cluster` with denial logs and syncs it into the node namespace; opens the NFLOG
/// socket there.
fn install(t: &Topology, cluster: &Cluster) -> Socket {
    let options = CompileOptions {
        log_denials: true,
        nflog_group: GROUP,
        ..CompileOptions::default()
    };
    let rulesets = compile_families(cluster, "n1", &options, &[IpFamily::V4]);
    inside(&t.node, move || {
        let d = backend::detect(BackendChoice::Auto).expect("a backend works");
        apply::sync_families(d.backend, &rulesets).expect("sync");
        Socket::open(GROUP, 1 << 20, Duration::from_millis(200)).expect("bind the NFLOG group")
    })
}

/// Every record of what the socket holds after `quiet` without a new message.
fn records(socket: &Socket, cluster: &Cluster) -> Vec<Record> {
    let metrics = Arc::new(Metrics::default());
    metrics.latest.want();
    metrics.latest.publish(cluster);
    let mut task = Task::new(
        Options {
            node: "n1".into(),
            nflog_group: GROUP,
            events: false,
            max_events_per_minute: 30,
            records_per_second: 100,
        },
        metrics,
        vec![],
    );
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        for logged in nflog::parse_datagram(&buf[..n], SystemTime::now()).expect("parses") {
            if let Some(r) = task.take(&logged, Instant::now()) {
                out.push(r);
            }
        }
    }
    out
}

/// What `palisade reach --explain` says for front/a to back/b on `port`/TCP.
fn reach_explains(cluster: &Cluster, port: u16) -> String {
    let pods = cluster.pods();
    let a = pods.iter().find(|p| p.name == "a").expect("a");
    let b = pods.iter().find(|p| p.name == "b").expect("b");
    cluster
        .evaluate(&Endpoint::Pod(a), &Endpoint::Pod(b), port, Protocol::Tcp)
        .reason(&a.key(), &b.key(), port, Protocol::Tcp)
}

#[test]
fn a_denied_syn_gives_exactly_one_attributed_record_and_an_allowed_one_none() {
    let t = Topology::new("np");
    let cluster = cluster(B_8080_FROM_X);
    let socket = install(&t, &cluster);
    // Allowed: port 8080 from front (nobody listens: b answers with a reset, which is fine).
    try_connect(&t, "10.0.2.3", 8080);
    // Denied: port 80.
    try_connect(&t, "10.0.2.3", 80);
    let got = records(&socket, &cluster);
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(r.kind, Kind::Denied);
    assert_eq!(r.pod.as_deref(), Some("back/b"));
    assert_eq!(r.direction, "ingress");
    assert_eq!(
        (r.source.as_str(), r.destination.as_str()),
        ("front/a", "back/b")
    );
    assert_eq!(r.source_ip, "10.0.1.2".parse::<IpAddr>().unwrap());
    assert_eq!((r.protocol, r.port), ("TCP", 80));
    assert_eq!(r.policies, ["back/b-8080-from-x"]);
    assert_eq!(r.reason, reach_explains(&cluster, 80));
    assert_eq!(
        r.reason,
        "ingress denied: back/b is isolated by back/b-8080-from-x and no rule allows front/a on 80/TCP; egress not isolated"
    );
}

#[test]
fn an_audit_would_drop_gives_an_audit_record_and_passes() {
    let t = Topology::new("audit");
    let cluster = cluster(B_AUDIT);
    let socket = install(&t, &cluster);
    try_connect(&t, "10.0.2.3", 9000);
    let got = records(&socket, &cluster);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].kind, Kind::AuditWouldDeny);
    assert_eq!(got[0].pod.as_deref(), Some("back/b"));
    assert_eq!(got[0].policies, ["back/b-audit"]);
    assert_eq!(got[0].reason, reach_explains(&cluster, 9000));
}
