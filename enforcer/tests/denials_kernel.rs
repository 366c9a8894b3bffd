//! Denials from the kernel, for real: a node network namespace routing between two pod
//! namespaces, Palisade's rules with denial logs in the node, the enforcer's NFLOG reader bound
//! to the group there. A denied SYN gives exactly one record, attributed to the pod and the
//! policy in the words `palisade reach --explain` uses (a ClusterNetworkPolicy Deny: its tier,
//! priority and rule); an allowed connection gives none; an
//! audit policy's would-drop gives an audit record.
//!
//! Needs root, `ip`, `iptables-restore` and `ipset`, like the other kernel tests.

mod common;

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
use palisade_policy::{Cluster, Endpoint, IpFamily, Protocol};

const GROUP: u16 = 100;

/// front/a (10.0.1.2, another node) and back/b (10.0.2.3, this node n1).
fn pods() -> String {
    [
        common::namespace("front"),
        common::namespace("back"),
        common::pod("front", "a", "n2", &["10.0.1.2"], &[]),
        common::pod("back", "b", "n1", &["10.0.2.3"], &[]),
    ]
    .concat()
}

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

/// An Admin Deny of port 9090 into b.
const ADMIN_DENY_9090: &str = r#"
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-9090}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}
  ingress: [{name: block, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 9090}}}]}]
"#;

fn cluster(policies: &str) -> Cluster {
    common::cluster(&format!("{}{policies}", pods()))
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
    palisade_e2e::netns::run_in(name, f).expect("enter the namespace")
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

#[test]
fn a_cluster_network_policy_deny_is_attributed_to_its_tier_policy_and_rule() {
    let t = Topology::new("cnp");
    let cluster = cluster(ADMIN_DENY_9090);
    let socket = install(&t, &cluster);
    try_connect(&t, "10.0.2.3", 9090);
    // Another port: not isolated, allowed, no record.
    try_connect(&t, "10.0.2.3", 9091);
    let got = records(&socket, &cluster);
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(r.pod.as_deref(), Some("back/b"));
    assert_eq!(r.direction, "ingress");
    assert_eq!(r.policies, ["ClusterNetworkPolicy no-9090"]);
    assert_eq!(r.reason, reach_explains(&cluster, 9090));
    assert!(
        r.reason.starts_with(
            "ingress denied by ClusterNetworkPolicy no-9090 (Admin, priority 5) ingress rule 0 \"block\""
        ),
        "{}",
        r.reason
    );
}

/// A TCP SYN from `src:sport` to `dst:dport`, IPv4 header included (the kernel fills in the
/// IP checksum; the TCP one is computed here).
fn raw_syn(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    // TCP checksum over the pseudo header (conntrack calls a bad one INVALID).
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for w in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
    };
    add(&src);
    add(&dst);
    add(&[0, 6, 0, 20]);
    add(&p[20..40]);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let check = !(sum as u16);
    p[36..38].copy_from_slice(&check.to_be_bytes());
    p
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let t = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    t(u.ru_utime) + t(u.ru_stime)
}

/// BENCHMARKS.md: pod a sends 10,000 denied SYNs a second (each from a new source port, so
/// each is a new connection attempt) for 10 s; the reader (socket and explaining task, on one
/// thread as in the enforcer) runs in the node namespace. Prints the reader's CPU time, the
/// records and what the kernel's limit let through. Run with
/// `cargo test -p palisade-enforcer --test denials_kernel -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement for BENCHMARKS.md"]
fn measure_the_readers_cpu_at_10000_denied_syns_a_second() {
    const RATE: u64 = 10_000;
    const SECONDS: u64 = 10;
    let t = Topology::new("flood");
    let cluster = cluster(B_8080_FROM_X);
    let socket = install(&t, &cluster);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let cluster = cluster.clone();
        std::thread::spawn(move || {
            let metrics = Arc::new(Metrics::default());
            metrics.latest.want();
            metrics.latest.publish(&cluster);
            let mut task = Task::new(
                Options {
                    node: "n1".into(),
                    nflog_group: GROUP,
                    events: true,
                    max_events_per_minute: 30,
                    records_per_second: 100,
                },
                metrics.clone(),
                vec![],
            );
            let start = thread_cpu();
            let (mut logged_n, mut records) = (0u64, 0u64);
            let mut buf = vec![0u8; 65536];
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                for logged in
                    nflog::parse_datagram(&buf[..n], SystemTime::now()).unwrap_or_default()
                {
                    logged_n += 1;
                    if task.take(&logged, Instant::now()).is_some() {
                        records += 1;
                    }
                }
            }
            (thread_cpu() - start, logged_n, records)
        })
    };
    let sent = inside(&t.a, move || {
        // SAFETY: a raw socket we own and close; IP_HDRINCL: we write the IP header.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket");
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([10, 0, 2, 3]),
            },
            sin_zero: [0; 8],
        };
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < RATE * SECONDS {
            let due = started + Duration::from_micros(sent * 1_000_000 / RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let sport = 1024 + (sent % 60_000) as u16;
            let p = raw_syn([10, 0, 1, 2], sport, [10, 0, 2, 3], 80);
            // SAFETY: sending a buffer we own to an address we own.
            unsafe {
                libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
            }
            sent += 1;
        }
        unsafe { libc::close(fd) };
        (sent, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (cpu, logged, records) = reader.join().expect("reader");
    let (n, took) = sent;
    println!(
        "sent {n} denied SYNs in {:.2} s ({:.0}/s); the kernel logged {logged}, records {records}; reader CPU {:.1} ms = {:.3} % of one core",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0,
        cpu.as_secs_f64() / took.as_secs_f64() * 100.0
    );
    assert!(records >= 1);
}
