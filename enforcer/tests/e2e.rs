//! Enforcers as processes inside two flannel nodes' network namespaces, against the real
//! apiserver with the chart's ServiceAccount token; real TCP/UDP probes between pod namespaces,
//! compared cell by cell with what the policy crate predicts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_e2e::util::{Process, http_get_at};
use palisade_e2e::world::{FLANNEL_CONFLIST, PodDef, World, differences};
use palisade_e2e::{ControlPlane, chart};
use palisade_policy::Protocol::{self, Tcp, Udp};

/// Tests share the apiserver (Node and kube-system objects) and run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const ADMIN_PORT: u16 = 9102;
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const THREE_TIER: &str = include_str!("../../policy/tests/fixtures/tutorial/three-tier.yaml");

struct Enforcer {
    node: String,
    _process: Process,
    admin: SocketAddr,
}

impl Enforcer {
    fn start(world: &World, node: &str) -> Self {
        let cp = world.cp;
        let n = world
            .net
            .nodes()
            .iter()
            .find(|n| n.name == node)
            .expect("node");
        let token = chart::token(cp, "enforcer").expect("token");
        let kubeconfig = cp
            .kubeconfig_at(n.gateway.into(), Some(&token))
            .expect("kubeconfig");
        let args: Vec<String> = [
            "--node-name",
            node,
            "--cni-dir",
            &world.cni_dirs[node].to_string_lossy(),
            "--admin-listen",
            &format!("0.0.0.0:{ADMIN_PORT}"),
            "--resync-seconds",
            "2",
            "--debounce-ms",
            "50",
            "--log-format",
            "text",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = world
            .spawn_on_node(
                node,
                Path::new(env!("CARGO_BIN_EXE_palisade-enforcer")),
                &args,
                &[("KUBECONFIG", kubeconfig.as_os_str())],
                &world.dir().join(format!("enforcer-{node}.log")),
            )
            .expect("enforcer");
        let enforcer = Self {
            node: node.into(),
            _process: process,
            admin: SocketAddr::from((n.address, ADMIN_PORT)),
        };
        enforcer.wait_ready(world);
        enforcer
    }

    fn wait_ready(&self, world: &World) {
        let start = Instant::now();
        while http_get_at(self.admin, "/readyz").map(|r| r.0) != Some(200) {
            if start.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(
                    world.dir().join(format!("enforcer-{}.log", self.node)),
                )
                .unwrap_or_default();
                panic!("the enforcer on {} did not become ready:\n{log}", self.node);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self) -> String {
        http_get_at(self.admin, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    }
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn setup() -> (std::sync::MutexGuard<'static, ()>, &'static ControlPlane) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    chart::install_rbac(cp).expect("the chart's CRDs and RBAC");
    (serial, cp)
}

/// Measures until the matrix equals the prediction (enforcers sync within a second or two),
/// failing with the differing cells after `limit`.
fn converges(world: &World, policies: &str, ports: &[(u16, Protocol)], limit: Duration) {
    let predicted = world.predict(policies, ports).expect("prediction");
    assert!(!predicted.is_empty());
    let start = Instant::now();
    loop {
        let measured = world.measure(ports, PROBE_TIMEOUT).expect("probes");
        assert_eq!(measured.len(), predicted.len());
        let diff = differences(&measured, &predicted);
        if diff.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "measured matrix differs from palisade's prediction:\n{}",
            diff.join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn tutorial_world(cp: &ControlPlane) -> World<'_> {
    let pods = [
        PodDef::new("production", "frontend", "node-1")
            .label("app", "frontend")
            .label("tier", "web")
            .port(Some("http"), 80, Tcp),
        PodDef::new("production", "backend", "node-2")
            .label("app", "api")
            .label("tier", "app")
            .port(Some("http-api"), 8080, Tcp)
            .port(Some("metrics"), 9090, Tcp),
        PodDef::new("production", "database", "node-1")
            .label("app", "database")
            .label("tier", "data")
            .port(Some("postgres"), 5432, Tcp),
        PodDef::new("monitoring", "prometheus", "node-2")
            .label("app", "prometheus")
            .port(None, 9090, Tcp),
        PodDef::new("ingress-nginx", "controller", "node-1")
            .label("app.kubernetes.io/name", "ingress-nginx")
            .port(None, 80, Tcp),
        PodDef::new("kube-system", "coredns", "node-2")
            .label("k8s-app", "kube-dns")
            .port(Some("dns"), 53, Udp)
            .port(Some("dns-tcp"), 53, Tcp),
    ];
    World::create(
        cp,
        &["node-1", "node-2"],
        FLANNEL_CONFLIST,
        &[
            ("production", &[("team", "shop")]),
            ("monitoring", &[("purpose", "monitoring")]),
            ("ingress-nginx", &[]),
            ("kube-system", &[]),
        ],
        &pods,
    )
    .expect("the tutorial world")
}

const TUTORIAL_PORTS: [(u16, Protocol); 6] = [
    (80, Tcp),
    (8080, Tcp),
    (9090, Tcp),
    (5432, Tcp),
    (53, Udp),
    (53, Tcp),
];

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let o = cp.kubectl(args).unwrap();
    assert!(
        o.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        palisade_e2e::util::text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_three_tier_tutorial_is_enforced_exactly_as_predicted_on_flannel_nodes() {
    let (_serial, cp) = setup();
    if !cp.is_local() {
        return; // needs this machine's network namespaces
    }
    let world = tutorial_world(cp);
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    converges(&world, "", &TUTORIAL_PORTS, Duration::from_secs(10));

    world.apply(THREE_TIER).expect("three-tier policies");
    converges(&world, THREE_TIER, &TUTORIAL_PORTS, Duration::from_secs(15));

    // What the node status says.
    let status = kubectl(
        cp,
        &[
            "get",
            "nodeenforcement",
            "node-1",
            "-o",
            "jsonpath={.status.cni} {.status.cniEnforces} {.status.mode} {.status.enforcing} {.status.localPods}",
        ],
    );
    assert_eq!(status, "flannel false auto true 3");
    let m = enforcers[0].metrics();
    assert_eq!(sample(&m, "palisade_enforcer_enforcing"), Some(1.0), "{m}");
    assert!(
        sample(&m, "palisade_enforcer_rules").is_some_and(|r| r > 0.0),
        "{m}"
    );
    assert!(m.contains("palisade_enforcer_event_to_rule_seconds_count"));

    // Rules flushed by hand come back within a resync.
    let node1 = &world.net.nodes()[0];
    let flush = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &node1.netns.name,
            "iptables",
            "-F",
            "PALISADE-FORWARD",
        ])
        .status()
        .unwrap();
    assert!(flush.success());
    converges(&world, THREE_TIER, &TUTORIAL_PORTS, Duration::from_secs(10));

    kubectl(
        cp,
        &["delete", "networkpolicies", "--all", "-n", "production"],
    );
    converges(&world, "", &TUTORIAL_PORTS, Duration::from_secs(10));
}
