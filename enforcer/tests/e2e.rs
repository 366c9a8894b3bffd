//! Enforcers as processes inside two flannel nodes' network namespaces, against the real
//! apiserver with the chart's ServiceAccount token; real TCP/UDP probes between pod namespaces,
//! compared cell by cell with what the policy crate predicts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_e2e::util::{Process, http_get_at, sample};
use palisade_e2e::world::{FLANNEL_CONFLIST, PodDef, World, differences};
use palisade_e2e::{Answer, ControlPlane, chart, objects};
use palisade_policy::IpFamily;
use palisade_policy::Protocol::{self, Tcp, Udp};

/// Tests share the apiserver (Node and kube-system objects) and run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const ADMIN_PORT: u16 = 9102;
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const THREE_TIER: &str = include_str!("../../policy/tests/fixtures/tutorial/three-tier.yaml");

struct Enforcer {
    node: String,
    process: Process,
    admin: SocketAddr,
}

impl Enforcer {
    fn start(world: &World, node: &str) -> Self {
        Self::start_with(world, node, &[])
    }

    fn start_with(world: &World, node: &str, extra: &[&str]) -> Self {
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
        // The test's settings, unless `extra` gives its own (a flag may appear only once).
        let settings = [
            ("--resync-seconds", "2"),
            ("--debounce-ms", "50"),
            ("--log-format", "text"),
        ]
        .into_iter()
        .filter(|(flag, _)| !extra.contains(flag))
        .flat_map(|(flag, value)| [flag, value]);
        let args: Vec<String> = [
            "--node-name".to_string(),
            node.to_string(),
            "--cni-dir".to_string(),
            world.cni_dirs[node].to_string_lossy().into_owned(),
            "--admin-listen".to_string(),
            format!("0.0.0.0:{ADMIN_PORT}"),
        ]
        .into_iter()
        .chain(settings.chain(extra.iter().copied()).map(str::to_string))
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
            process,
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

/// The shared control plane, one test at a time, with the chart's CRDs and RBAC; `None` (the
/// test skips) on an existing cluster: the enforcers run in this machine's network namespaces.
fn setup() -> Option<(std::sync::MutexGuard<'static, ()>, &'static ControlPlane)> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared().local_for("needs this machine's network namespaces")?;
    chart::install_rbac(cp).expect("the chart's CRDs and RBAC");
    Some((serial, cp))
}

/// Measures until the matrix equals the prediction (enforcers sync within a second or two),
/// failing with the differing cells after `limit`.
fn converges(world: &World, policies: &str, ports: &[(u16, Protocol)], limit: Duration) {
    converges_in(world, policies, ports, limit, IpFamily::V4);
}

/// [`converges`] for the traffic of one IP family.
fn converges_in(
    world: &World,
    policies: &str,
    ports: &[(u16, Protocol)],
    limit: Duration,
    family: IpFamily,
) {
    let predicted = world
        .predict_in(policies, ports, family)
        .expect("prediction");
    assert!(!predicted.is_empty());
    let start = Instant::now();
    loop {
        let measured = world
            .measure_in(ports, PROBE_TIMEOUT, family)
            .expect("probes");
        assert_eq!(measured.len(), predicted.len());
        let diff = differences(&measured, &predicted);
        if diff.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "measured {family} matrix differs from palisade's prediction:\n{}",
            diff.join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_three_tier_tutorial_is_enforced_exactly_as_predicted_on_flannel_nodes() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = palisade_e2e::world::tutorial(cp).expect("the tutorial world");
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    converges(
        &world,
        "",
        &palisade_e2e::world::TUTORIAL_PORTS,
        Duration::from_secs(10),
    );

    world.cp.apply(THREE_TIER).expect("three-tier policies");
    converges(
        &world,
        THREE_TIER,
        &palisade_e2e::world::TUTORIAL_PORTS,
        Duration::from_secs(15),
    );

    // What the node status says.
    let status = cp.kubectl_must(&[
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

    // The probes the policies denied were reported: counted by namespace and policy (never a
    // pod or address in a label), and as Events on the denied pods, written with the chart's
    // RBAC (Events are written every 10 s).
    let denied: f64 = enforcers
        .iter()
        .flat_map(|e| {
            e.metrics()
                .lines()
                .filter(|l| l.starts_with("palisade_enforcer_denied_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(denied > 0.0, "{}", enforcers[0].metrics());
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = cp.kubectl_must(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=PolicyDenied",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.namespace}/{.involvedObject.name} {.count} {.message}{\"\\n\"}{end}",
        ]);
        if !events.trim().is_empty() || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        events
            .lines()
            .any(|l| l.contains(" denied: ") && l.contains("is isolated by")),
        "{events}"
    );
    eprintln!("{denied} denials counted; PolicyDenied Events:\n{events}");
    // `palisade denials` shows them for the pod, grouped under it, with the same explanation.
    let first = events.lines().next().expect("an Event");
    let (pod, message) = first.split_once(' ').expect("pod and the rest");
    let message = message.split_once(' ').map_or("", |(_, m)| m);
    let (namespace, name) = pod.split_once('/').expect("namespace/pod");
    let kubeconfig = cp.kubeconfig.to_string_lossy().into_owned();
    let (out, err, code) = palisade_cli::run_args([
        "denials",
        "-n",
        namespace,
        name,
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{pod}:\n")), "{out}");
    assert!(out.contains(message), "{out}\nwanted: {message}");

    // Rules flushed by hand come back within a resync: the enforcer rewrites them.
    let written = |e: &Enforcer| {
        sample(
            &e.metrics(),
            r#"palisade_enforcer_syncs_total{result="written"}"#,
        )
        .unwrap_or(0.0)
    };
    let before = written(&enforcers[0]);
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
    converges(
        &world,
        THREE_TIER,
        &palisade_e2e::world::TUTORIAL_PORTS,
        Duration::from_secs(10),
    );
    assert!(
        written(&enforcers[0]) > before,
        "node-1's rules were not rewritten"
    );

    cp.kubectl_must(&["delete", "networkpolicies", "--all", "-n", "production"]);
    converges(
        &world,
        "",
        &palisade_e2e::world::TUTORIAL_PORTS,
        Duration::from_secs(10),
    );
}

const XYZ_PORTS: [(u16, Protocol); 4] = [(80, Tcp), (81, Tcp), (80, Udp), (81, Udp)];

/// The upstream NetworkPolicy e2e model: namespaces x, y, z with pods a, b, c, each serving
/// 80 and 81 on TCP and UDP under the names serve-<port>-<protocol>, spread over two nodes.
fn xyz_world(cp: &ControlPlane) -> World<'_> {
    let pods = xyz_world_pods();
    World::create(
        cp,
        &["node-1", "node-2"],
        FLANNEL_CONFLIST,
        &[
            ("x", &[("ns", "x")]),
            ("y", &[("ns", "y")]),
            ("z", &[("ns", "z")]),
        ],
        &pods,
    )
    .expect("the x/y/z world")
}

/// x/a, x/c, y/b, z/a, z/c on node-1; x/b, y/a, y/c, z/b on node-2.
fn xyz_world_pods() -> Vec<PodDef> {
    let mut pods = Vec::new();
    let mut node = 0;
    for ns in ["x", "y", "z"] {
        for name in ["a", "b", "c"] {
            node += 1;
            pods.push(xyz_pod(
                ns,
                name,
                if node % 2 == 1 { "node-1" } else { "node-2" },
            ));
        }
    }
    pods
}

fn xyz_pod(ns: &str, name: &str, node: &str) -> PodDef {
    let mut pod = PodDef::new(ns, name, node).label("pod", name);
    for (port, proto) in XYZ_PORTS {
        let named = format!("serve-{port}-{}", proto.as_str().to_lowercase());
        pod = pod.port(Some(&named), port, proto);
    }
    pod
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: \"{name}\", namespace: \"{ns}\"}}\nspec:\n{spec}\n---\n"
    )
}

/// Round one of the model: one policy per feature, each on its own pod.
fn xyz_policies(world: &World) -> String {
    let xa = world.ip("x/a").unwrap();
    let yb = world.ip("y/b").unwrap();
    let subnet = format!("10.{}.0.0/16", xa.octets()[1]);
    [
        policy("x", "deny-ingress", "  podSelector: {}\n  policyTypes: [Ingress]"),
        policy(
            "x",
            "a-from-namespace-y",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n    ports: [{port: 80}]",
        ),
        policy(
            "x",
            "b-from-y-b-and",
            "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}, podSelector: {matchLabels: {pod: b}}}]",
        ),
        policy(
            "x",
            "c-from-y-or-b",
            "  podSelector: {matchLabels: {pod: c}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}, {podSelector: {matchLabels: {pod: b}}}]",
        ),
        policy(
            "y",
            "a-egress-to-z-c-81-udp",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {ns: \"z\"}}, podSelector: {matchLabels: {pod: c}}}]\n    ports: [{protocol: UDP, port: 81}]",
        ),
        policy(
            "z",
            "b-port-range",
            "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n  - ports: [{protocol: TCP, port: 80, endPort: 81}]",
        ),
        policy(
            "y",
            "c-named-port",
            "  podSelector: {matchLabels: {pod: c}}\n  ingress:\n  - ports: [{protocol: UDP, port: serve-81-udp}]",
        ),
        policy(
            "z",
            "a-ip-block-except",
            &format!(
                "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: {subnet}, except: [{xa}/32, {yb}/32]}}}}]"
            ),
        ),
        policy(
            "z",
            "c-egress-named-port",
            "  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{protocol: TCP, port: serve-80-tcp}]",
        ),
    ]
    .concat()
}

#[test]
fn the_upstream_model_follows_every_policy_change_as_predicted() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let mut world = xyz_world(cp);
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    let limit = Duration::from_secs(15);

    // Namespace and pod selectors, AND and OR, egress, endPort, named ports both ways, ipBlock
    // with except.
    let mut policies = xyz_policies(&world);
    world.cp.apply(&policies).unwrap();
    converges(&world, &policies, &XYZ_PORTS, limit);

    // A policy changed (80 -> 81), one deleted, a pod relabelled, a pod added, a pod gone.
    let changed = policies.replace("ports: [{port: 80}]", "ports: [{port: 81}]");
    assert_ne!(changed, policies);
    policies = changed;
    world.cp.apply(&policies).unwrap();
    let started = Instant::now();
    cp.kubectl_must(&[
        "delete",
        "networkpolicy",
        "a-egress-to-z-c-81-udp",
        "-n",
        "y",
    ]);
    policies = policies
        .split("---\n")
        .filter(|p| !p.contains("a-egress-to-z-c-81-udp"))
        .collect::<Vec<_>>()
        .join("---\n");
    world.label_pod("y/b", "pod", "bb").unwrap();
    world.add_pod(xyz_pod("x", "d", "node-2")).unwrap();
    world.remove_pod("y/c").unwrap();
    converges(&world, &policies, &XYZ_PORTS, limit);
    eprintln!(
        "changes applied and measured in place after {:?}",
        started.elapsed()
    );

    // Every enforcer measured how long changes took to reach the kernel.
    for e in &enforcers {
        let m = e.metrics();
        assert!(
            sample(&m, "palisade_enforcer_event_to_rule_seconds_count").is_some_and(|n| n >= 2.0),
            "{m}"
        );
        assert_eq!(
            sample(&m, r#"palisade_enforcer_syncs_total{result="error"}"#),
            None,
            "{m}"
        );
    }

    // From `kubectl apply` returning to the rule in node-1's kernel (x/a runs there).
    world
        .cp
        .apply(&policy(
            "x",
            "timed",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: c}}}]\n    ports: [{port: 81}]",
        ))
        .unwrap();
    let applied = Instant::now();
    while !node_exec(&world, 0, &["iptables-save", "-t", "filter"]).contains("x/timed ingress[0]") {
        assert!(
            applied.elapsed() < limit,
            "the new rule never reached node-1"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("API change to rule in the kernel: {:?}", applied.elapsed());

    for ns in ["x", "y", "z"] {
        cp.kubectl_must(&["delete", "networkpolicies", "--all", "-n", ns]);
    }
    converges(&world, "", &XYZ_PORTS, limit);
}

/// Syncs written so far by `enforcer` (its `palisade_enforcer_syncs_total{result="written"}`).
fn written_syncs(enforcer: &Enforcer) -> f64 {
    sample(
        &enforcer.metrics(),
        r#"palisade_enforcer_syncs_total{result="written"}"#,
    )
    .unwrap_or(0.0)
}

/// With a 3 s debounce: a change after a quiet moment is in the kernel before the debounce
/// would have let it through; a burst of changes while pods churn (policies applied one by one,
/// pods relabelled, added and removed) costs about one written sync per debounce, not one per
/// change; and the matrix ends as predicted.
#[test]
fn a_burst_of_changes_costs_one_sync_per_debounce_and_ends_as_predicted() {
    const DEBOUNCE: Duration = Duration::from_secs(3);
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let mut world = xyz_world(cp);
    let debounce_ms = DEBOUNCE.as_millis().to_string();
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| {
            Enforcer::start_with(
                &world,
                n,
                &["--debounce-ms", &debounce_ms, "--resync-seconds", "600"],
            )
        })
        .collect();
    let limit = Duration::from_secs(20);
    converges(&world, "", &XYZ_PORTS, limit);

    // A quiet moment, then one change: synced at once. (Quiet for two debounces: a started
    // enforcer is woken once more right after its first sync, by its watches' first events, and
    // syncs again a debounce later.)
    std::thread::sleep(2 * DEBOUNCE + Duration::from_millis(500));
    let mut policies = policy(
        "x",
        "timed",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: c}}}]\n    ports: [{port: 81}]",
    );
    world.cp.apply(&policies).unwrap();
    let applied = Instant::now();
    while !node_exec(&world, 0, &["iptables-save", "-t", "filter"]).contains("x/timed ingress[0]") {
        assert!(applied.elapsed() < limit, "x/timed never reached node-1");
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = applied.elapsed();
    eprintln!("after a quiet moment, kubectl apply to the rule in the kernel: {took:?}");
    assert!(
        took < DEBOUNCE,
        "the first change after a quiet moment waited {took:?}, as long as the debounce ({DEBOUNCE:?})"
    );

    // The burst.
    let before: Vec<f64> = enforcers.iter().map(written_syncs).collect();
    let started = Instant::now();
    let mut changes = 0;
    for i in 0..12 {
        let one = policy(
            "y",
            &format!("burst-{i}"),
            &format!(
                "  podSelector: {{matchLabels: {{pod: b}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{ns: {}}}}}}}]\n    ports: [{{port: {}}}]",
                ["x", "z"][i % 2],
                80 + i % 2
            ),
        );
        world.cp.apply(&one).unwrap();
        policies.push_str(&one);
        changes += 1;
        match i {
            2 => world.label_pod("z/c", "pod", "cc").unwrap(),
            5 => {
                world.add_pod(xyz_pod("x", "d", "node-2")).unwrap();
            }
            8 => world.remove_pod("z/b").unwrap(),
            10 => world.label_pod("z/c", "pod", "c").unwrap(),
            _ => continue,
        }
        changes += 1;
    }
    let burst = started.elapsed();
    converges(&world, &policies, &XYZ_PORTS, limit);
    // Syncs the burst may cost: one at its start (after the quiet moment's sync, the first waits
    // out that debounce), one per debounce while it lasts, and one after it.
    let allowed = (burst.as_secs_f64() / DEBOUNCE.as_secs_f64()).ceil() + 2.0;
    for (e, before) in enforcers.iter().zip(before) {
        let written = written_syncs(e) - before;
        eprintln!(
            "{}: {changes} changes in {burst:?}: {written} syncs written (at most {allowed})",
            e.node
        );
        assert!(
            (1.0..=allowed).contains(&written),
            "{}: {written} syncs written for {changes} changes in {burst:?} with a {DEBOUNCE:?} debounce",
            e.node
        );
        assert_eq!(
            sample(
                &e.metrics(),
                r#"palisade_enforcer_syncs_total{result="error"}"#
            ),
            None
        );
    }
    for ns in ["x", "y", "z"] {
        cp.kubectl_must(&["delete", "networkpolicies", "--all", "-n", ns]);
    }
}

/// Deny action reject on node-1, drop (the default) on node-2: a client denied by a pod on
/// node-1, or denied egress from node-1, is refused at once (TCP reset, ICMP admin-prohibited for
/// UDP); one denied by a pod on node-2 waits for its timeout. The matrix is the prediction either
/// way.
#[test]
fn reject_refuses_denied_connections_where_drop_lets_them_time_out() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = xyz_world(cp);
    let _enforcers = [
        Enforcer::start_with(&world, "node-1", &["--deny-action", "reject"]),
        Enforcer::start(&world, "node-2"),
    ];
    // x/a is on node-1, x/b on node-2, z/a on node-1; y/* are not isolated.
    let policies = [
        policy(
            "x",
            "deny-ingress",
            "  podSelector: {}\n  policyTypes: [Ingress]",
        ),
        policy(
            "z",
            "a-deny-egress",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]",
        ),
    ]
    .concat();
    world.cp.apply(&policies).unwrap();
    converges(&world, &policies, &XYZ_PORTS, Duration::from_secs(20));

    let answer = |from: &str, to: &str, port: u16, protocol: Protocol| {
        let started = Instant::now();
        let a = world
            .net
            .answer(from, to, port, protocol, Duration::from_secs(2))
            .unwrap();
        eprintln!(
            "{from} -> {to} {port}/{protocol}: {a:?} after {:?}",
            started.elapsed()
        );
        a
    };
    for (port, protocol) in XYZ_PORTS {
        assert_eq!(answer("y/a", "x/a", port, protocol), Answer::Refused);
        assert_eq!(answer("z/a", "y/a", port, protocol), Answer::Refused);
        assert_eq!(answer("y/a", "x/b", port, protocol), Answer::TimedOut);
        assert_eq!(answer("y/a", "y/b", port, protocol), Answer::Connected);
    }
    let rules = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
    assert!(
        rules.contains("-j REJECT --reject-with tcp-reset")
            && rules.contains("-j REJECT --reject-with icmp-admin-prohibited"),
        "{rules}"
    );
    let rules = node_exec(&world, 1, &["iptables-save", "-t", "filter"]);
    assert!(!rules.contains("REJECT"), "{rules}");
}

/// Dual-stack pods (an IPv4 and an IPv6 address each, as `status.podIPs` lists them) on two
/// nodes: the enforcers program iptables and ip6tables, and the matrix of each family equals
/// the prediction for it — pod and namespace selectors alike in both, an ipBlock only in its own
/// family (z/a's IPv4 block admits nobody over IPv6; y/b's IPv6 block nobody over IPv4). The
/// allowed IPv6 cells connect through isolated pods, so neighbour discovery was never cut. With
/// deny action reject on node-1, a denied IPv6 connection there is refused (TCP reset, ICMPv6
/// admin-prohibited); on node-2 it times out. The NodeEnforcement status says both families.
#[test]
fn dual_stack_pods_are_enforced_per_family_as_predicted() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let pods: Vec<PodDef> = xyz_world_pods();
    let world = World::create_dual_stack(
        cp,
        &["node-1", "node-2"],
        FLANNEL_CONFLIST,
        &[
            ("x", &[("ns", "x")]),
            ("y", &[("ns", "y")]),
            ("z", &[("ns", "z")]),
        ],
        &pods,
    )
    .expect("the dual-stack x/y/z world");
    let _enforcers = [
        Enforcer::start_with(&world, "node-1", &["--deny-action", "reject"]),
        Enforcer::start(&world, "node-2"),
    ];
    let xa6 = world.ip6("x/a").expect("x/a has IPv6");
    let seg = xa6.segments();
    let pods6 = format!("{:x}:{:x}:{:x}::/48", seg[0], seg[1], seg[2]);
    let policies = [
        xyz_policies(&world),
        policy(
            "y",
            "b-from-ipv6-block",
            &format!(
                "  podSelector: {{matchLabels: {{pod: b}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: \"{pods6}\", except: [\"{xa6}/128\"]}}}}]"
            ),
        ),
        policy(
            "y",
            "a-egress-to-ipv6-and-z",
            &format!(
                "  podSelector: {{matchLabels: {{pod: a}}}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{ipBlock: {{cidr: \"{pods6}\"}}}}]\n    ports: [{{protocol: TCP, port: 80}}]\n  - to: [{{namespaceSelector: {{matchLabels: {{ns: z}}}}}}]\n    ports: [{{protocol: UDP, port: 81}}]"
            ),
        ),
    ]
    .concat();
    world.cp.apply(&policies).unwrap();
    let limit = Duration::from_secs(20);
    for family in IpFamily::ALL {
        converges_in(&world, &policies, &XYZ_PORTS, limit, family);
    }
    // The two families differ where the ipBlocks are: the prediction is not one matrix twice.
    let [v4, v6] = IpFamily::ALL.map(|f| world.predict_in(&policies, &XYZ_PORTS, f).unwrap());
    assert!(
        !differences(&v4, &v6).is_empty(),
        "the IPv6 matrix should differ from the IPv4 one"
    );

    // Denied over IPv6: x/a (node-1, reject) refuses, x/b (node-2, drop) stays silent.
    for (port, protocol) in XYZ_PORTS {
        let answer = |to: &str| {
            world
                .net
                .answer_in(
                    "z/b",
                    to,
                    port,
                    protocol,
                    Duration::from_secs(2),
                    IpFamily::V6,
                )
                .unwrap()
        };
        assert_eq!(answer("x/a"), Answer::Refused, "{port}/{protocol}");
        assert_eq!(answer("x/b"), Answer::TimedOut, "{port}/{protocol}");
    }
    let rules = node_exec(&world, 0, &["ip6tables-save", "-t", "filter"]);
    for expected in [
        "-j REJECT --reject-with icmp6-adm-prohibited",
        "-j REJECT --reject-with tcp-reset",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -m comment --comment \"palisade: IPv6 neighbour discovery\" -j RETURN",
        &format!("-d {xa6}/128"),
    ] {
        assert!(rules.contains(expected), "{expected} not in\n{rules}");
    }
    let sets = node_exec(&world, 0, &["ipset", "list", "-name"]);
    assert!(sets.lines().any(|l| l == "PALISADE-LOCAL6"), "{sets}");
    for node in ["node-1", "node-2"] {
        let families = cp.kubectl_must(&[
            "get",
            "nodeenforcement",
            node,
            "-o",
            "jsonpath={.status.families}",
        ]);
        assert_eq!(families, r#"["IPv4","IPv6"]"#, "{node}");
    }
    for ns in ["x", "y", "z"] {
        cp.kubectl_must(&["delete", "networkpolicies", "--all", "-n", ns]);
    }
    for family in IpFamily::ALL {
        converges_in(&world, "", &XYZ_PORTS, limit, family);
    }
}

fn node_exec(world: &World, node: usize, args: &[&str]) -> String {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &world.net.nodes()[node].netns.name])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        palisade_e2e::util::text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn an_audit_policy_logs_and_counts_but_lets_traffic_through() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = xyz_world(cp);
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    // z/c is on node-1. An Audit baseline's deny, as the operator writes it.
    let audit = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: palisade-baseline-deny\n  namespace: \"z\"\n  annotations: {palisade.dev/mode: audit}\nspec:\n  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Ingress]\n";
    world.cp.apply(audit).unwrap();
    let start = Instant::now();
    loop {
        assert!(
            world.net.probe("x/a", "z/c", 80, Tcp).unwrap(),
            "audit must not drop"
        );
        let m = enforcers[0].metrics();
        let counted = m
            .lines()
            .filter(|l| l.starts_with("palisade_enforcer_audit_would_drop{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if counted > 0.0 {
            assert!(
                m.contains("z/c ingress: audit, would drop (isolated by palisade-baseline-deny)"),
                "{m}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no would-be drop counted:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let rules = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
    assert!(
        rules.contains("--nflog-prefix \"palisade-audit z/c ingress"),
        "{rules}"
    );
    // Everything is still open, as with no policy at all.
    converges(&world, "", &XYZ_PORTS, Duration::from_secs(10));
}

#[test]
fn a_killed_enforcer_never_opens_a_protected_pod_or_cuts_an_allowed_connection() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = xyz_world(cp);
    let mut enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    // y/b (node-1) only accepts x/a (node-1) on 80 and 7000; y/a (node-2) is closed to all.
    let policies = [
        policy("y", "deny", "  podSelector: {}\n  policyTypes: [Ingress]"),
        policy(
            "y",
            "b-from-x-a",
            "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: \"x\"}}, podSelector: {matchLabels: {pod: a}}}]\n    ports: [{port: 80}, {port: 7000}]",
        ),
    ]
    .concat();
    world.cp.apply(&policies).unwrap();
    converges(&world, &policies, &XYZ_PORTS, Duration::from_secs(15));

    // A long-lived allowed connection: an echo server in y/b, a client in x/a.
    let stop = Arc::new(AtomicBool::new(false));
    let yb_netns = world.net.pod("y/b").unwrap().netns.name.clone();
    let xa_netns = world.net.pod("x/a").unwrap().netns.name.clone();
    let yb_ip = world.ip("y/b").unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            palisade_e2e::netns::enter(&yb_netns).unwrap();
            let listener = std::net::TcpListener::bind(("0.0.0.0", 7000)).unwrap();
            ready_tx.send(()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 8];
            while !stop.load(Ordering::Relaxed) {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = conn.write_all(&buf[..n]);
                    }
                    Err(_) => {}
                }
            }
        })
    };
    ready_rx.recv().unwrap();
    let exchanges = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(Mutex::new(None::<String>));
    let client = {
        let (stop, exchanges, broken) = (stop.clone(), exchanges.clone(), broken.clone());
        std::thread::spawn(move || {
            palisade_e2e::netns::enter(&xa_netns).unwrap();
            let mut conn = std::net::TcpStream::connect_timeout(
                &SocketAddr::from((yb_ip, 7000)),
                Duration::from_secs(2),
            )
            .unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 8];
            while !stop.load(Ordering::Relaxed) {
                let ok = conn.write_all(b"palisade").is_ok()
                    && conn.read_exact(&mut buf).is_ok()
                    && &buf == b"palisade";
                if !ok {
                    *broken.lock().unwrap() = Some(format!(
                        "after {} exchanges",
                        exchanges.load(Ordering::Relaxed)
                    ));
                    return;
                }
                exchanges.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Kill node-1's enforcer with SIGKILL right as it syncs a change, three times; between,
    // keep probing that the protected pods stay closed and the allowed one open.
    let mut leaks = Vec::new();
    for round in 0..3 {
        let label = format!("round-{round}");
        world
            .cp
            .apply(&policy(
                "y",
                &format!("unrelated-{round}"),
                &format!("  podSelector: {{matchLabels: {{pod: c, r: \"{label}\"}}}}\n  policyTypes: [Ingress]"),
            ))
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 * round as u64));
        drop(enforcers.remove(0));
        for _ in 0..5 {
            for (from, to, port, want) in [
                ("x/b", "y/b", 80, false),
                ("z/a", "y/b", 81, false),
                ("x/a", "y/a", 80, false),
                ("x/a", "y/b", 80, true),
            ] {
                let got = world.net.probe(from, to, port, Tcp).unwrap();
                if got != want {
                    leaks.push(format!(
                        "round {round}: {from} -> {to}:{port} was {}",
                        if got { "open" } else { "closed" }
                    ));
                }
            }
        }
        enforcers.insert(0, Enforcer::start(&world, "node-1"));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    server.join().unwrap();
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    assert_eq!(
        *broken.lock().unwrap(),
        None,
        "the allowed connection was cut"
    );
    assert!(exchanges.load(Ordering::Relaxed) > 10);
    let mut all = policies.clone();
    for round in 0..3 {
        all.push_str(&policy(
            "y",
            &format!("unrelated-{round}"),
            &format!("  podSelector: {{matchLabels: {{pod: c, r: \"round-{round}\"}}}}\n  policyTypes: [Ingress]"),
        ));
    }
    converges(&world, &all, &XYZ_PORTS, Duration::from_secs(15));
}

#[test]
fn cleanup_removes_every_trace_and_a_policy_enforcing_cni_is_left_alone() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = xyz_world(cp);
    let enforcer = Enforcer::start(&world, "node-1");
    let deny = policy(
        "x",
        "deny",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]",
    );
    world.cp.apply(&deny).unwrap();
    let start = Instant::now();
    while world.net.probe("y/b", "x/a", 80, Tcp).unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "x/a never isolated"
        );
    }
    let before = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
    assert!(before.contains("-A FORWARD -m comment --comment \"palisade: NetworkPolicy enforcement\" -j PALISADE-FORWARD"), "{before}");
    // On shutdown the rules stay in force.
    drop(enforcer);
    assert!(!world.net.probe("y/b", "x/a", 80, Tcp).unwrap());

    let bin = env!("CARGO_BIN_EXE_palisade-enforcer");
    node_exec(&world, 0, &[bin, "cleanup", "--log-format", "text"]);
    let after = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
    assert!(!after.contains("PAL"), "{after}");
    assert_eq!(node_exec(&world, 0, &["ipset", "list", "-name"]).trim(), "");
    assert!(world.net.probe("y/b", "x/a", 80, Tcp).unwrap());

    // Calico enforces NetworkPolicy itself: in mode auto the enforcer stands aside and says so.
    std::fs::write(
        world.cni_dirs["node-2"].join("10-cni.conflist"),
        r#"{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": [{"type": "calico"}, {"type": "portmap"}]}"#,
    )
    .unwrap();
    let _calico = Enforcer::start(&world, "node-2");
    let status = cp.kubectl_must(&[
        "get",
        "nodeenforcement",
        "node-2",
        "-o",
        "jsonpath={.status.cni} {.status.cniEnforces} {.status.enforcing} {.status.reason}",
    ]);
    assert_eq!(
        status,
        "calico true false calico enforces NetworkPolicy itself; standing aside"
    );
    let rules = node_exec(&world, 1, &["iptables-save", "-t", "filter"]);
    assert!(!rules.contains("PAL"), "{rules}");
    // Calico enforces ClusterNetworkPolicy too: the enforcer stands aside for it as well.
    let cnp_status = || {
        cp.kubectl_must(&[
                "get",
                "nodeenforcement",
                "node-2",
                "-o",
                "jsonpath={.status.clusterNetworkPolicy.enforced} {.status.clusterNetworkPolicy.reason}",
            ],
        )
    };
    let calico = cnp_status();
    assert!(
        calico.starts_with("false calico enforces ClusterNetworkPolicy itself; standing aside"),
        "{calico}"
    );
    // Cilium enforces NetworkPolicy but not ClusterNetworkPolicy: not half-enforced, said so.
    std::fs::write(
        world.cni_dirs["node-2"].join("10-cni.conflist"),
        r#"{"name": "cilium", "cniVersion": "0.3.1", "plugins": [{"type": "cilium-cni"}]}"#,
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let got = cnp_status();
        if got.starts_with(
            "false cilium enforces NetworkPolicy but not ClusterNetworkPolicy: Palisade cannot put the Admin tier ahead of its NetworkPolicy rules, so ClusterNetworkPolicies are not enforced on this node",
        ) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{got}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let rules = node_exec(&world, 1, &["iptables-save", "-t", "filter"]);
    assert!(!rules.contains("PAL"), "{rules}");
}

#[test]
fn rules_stay_through_restarts_and_go_when_helm_uninstall_deletes_the_daemonset_and_its_rbac() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = xyz_world(cp);
    // The chart's DaemonSet object (no kubelet runs its pods here: the enforcer runs as a
    // process in the node's namespace instead).
    let daemonset = chart::template(&["--show-only", "templates/enforcer/daemonset.yaml"]).unwrap();
    world.cp.apply(&daemonset).unwrap();
    let flags = [
        "--daemonset",
        "palisade-enforcer",
        "--namespace",
        chart::ENFORCER_NAMESPACE,
    ];
    let mut enforcer = Enforcer::start_with(&world, "node-1", &flags);
    world
        .cp
        .apply(&policy(
            "x",
            "deny",
            "  podSelector: {}\n  policyTypes: [Ingress]",
        ))
        .unwrap();
    let start = Instant::now();
    while world.net.probe("y/b", "x/a", 80, Tcp).unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "x/a never isolated"
        );
    }

    // A restart (SIGTERM while the DaemonSet exists): the rules stay in force.
    let status = enforcer
        .process
        .terminate(Duration::from_secs(10))
        .expect("exit");
    assert!(status.success(), "{status}");
    assert!(!world.net.probe("y/b", "x/a", 80, Tcp).unwrap());
    enforcer = Enforcer::start_with(&world, "node-1", &flags);

    // `helm uninstall`: the DaemonSet goes (background deletion), then the chart's RBAC, and
    // only then are the enforcer pods stopped; the enforcer has watched its DaemonSet go.
    world
        .cp
        .kubectl_ok(&[
            "delete",
            "daemonset",
            "palisade-enforcer",
            "-n",
            chart::ENFORCER_NAMESPACE,
            "--cascade=background",
        ])
        .unwrap();
    let rbac = chart::template(&["--show-only", "templates/rbac.yaml"]).unwrap();
    world
        .cp
        .kubectl_stdin(&["delete", "-f", "-", "--wait=true"], &rbac)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Then Kubernetes stops the enforcer pods: each removes its rules.
    let status = enforcer
        .process
        .terminate(Duration::from_secs(10))
        .expect("exit");
    assert!(status.success(), "{status}");
    let rules = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
    assert!(!rules.contains("PAL"), "{rules}");
    assert!(world.net.probe("y/b", "x/a", 80, Tcp).unwrap());
    chart::install_rbac(cp).unwrap(); // for the tests after this one
}

/// Both families' rulesets of a dual-stack node go into the kernel with real `ipset`,
/// `iptables-restore` and `ip6tables-restore` of each backend, in a network namespace of this
/// test's own (gone with its thread), and read back exactly as rendered: a second sync writes
/// nothing; after a pod leaves, one sync writes and the next nothing again.
#[test]
fn dual_stack_rulesets_round_trip_through_the_kernel() {
    use palisade_enforcer::CompileOptions;
    use palisade_enforcer::apply::sync_families;
    use palisade_enforcer::backend::Backend;
    use palisade_enforcer::compile::compile_families;

    let full = palisade_policy::synthetic::dual_stack_cluster(6, 10, 2);
    let mut fewer = full.pods().to_vec();
    fewer.retain(|p| p.key() != "ns-0/pod-0");
    let fewer = palisade_policy::Cluster::new(
        full.namespaces().cloned(),
        fewer,
        vec![],
        full.policies().to_vec(),
    );
    let options = CompileOptions {
        deny_action: palisade_enforcer::compile::DenyAction::Reject,
        ..CompileOptions::default()
    };
    let rulesets =
        |c: &palisade_policy::Cluster| compile_families(c, "n0", &options, &IpFamily::ALL);
    let (before, after) = (rulesets(&full), rulesets(&fewer));
    assert!(before[1].sets.values().any(|s| !s.entries.is_empty()));
    for backend in [Backend::Nft, Backend::Legacy] {
        let (before, after) = (before.clone(), after.clone());
        std::thread::spawn(move || {
            // SAFETY: moves only this thread (and the tools it starts) into a new network
            // namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let sync = |r: &[palisade_enforcer::Ruleset]| {
                sync_families(backend, r).unwrap_or_else(|e| panic!("{backend}: {e}"))
            };
            assert!(sync(&before).wrote());
            assert!(
                !sync(&before).wrote(),
                "{backend}: the host reads back differently"
            );
            assert!(sync(&after).wrote());
            assert!(
                !sync(&after).wrote(),
                "{backend}: the host reads back differently"
            );
        })
        .join()
        .expect("the kernel round trip");
    }
}

fn cluster_policy(name: &str, tier: &str, priority: u32, spec: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: \"{name}\"}}\nspec:\n  tier: {tier}\n  priority: {priority}\n{spec}\n---\n"
    )
}

/// The tiers on the x/y/z model: an Admin policy on x's ingress (Accept y/a on 81/TCP, Deny z,
/// Pass y), a NetworkPolicy in x (from y on 80/TCP), a Baseline policy on y (ingress: Deny z on
/// UDP 80; egress: Accept x's `serve-81-udp`, Deny every IPv4 address on UDP 80-81), an Admin
/// policy on z/c's egress (Pass everyone on 80/TCP: nothing after it, allowed; Deny y on
/// 81/TCP). Measured with real TCP and UDP, cell by cell equal to `palisade reach` with the same
/// objects; then the NetworkPolicy goes (the Pass reaches the default allow). Enforcers started
/// before the CRD exists say so in their status, quietly, and pick the policies up once it does.
#[test]
fn cluster_network_policy_tiers_are_enforced_as_predicted() {
    let Some((_serial, cp)) = setup() else {
        return;
    };
    let _ = cp.kubectl(&[
        "delete",
        "crd",
        objects::CLUSTER_NETWORK_POLICY_CRD_NAME,
        "--ignore-not-found",
    ]);
    // Cluster-scoped: removed with their CRD also when the test fails.
    struct Crd<'a>(&'a ControlPlane);
    impl Drop for Crd<'_> {
        fn drop(&mut self) {
            let _ = self.0.kubectl(&[
                "delete",
                "crd",
                objects::CLUSTER_NETWORK_POLICY_CRD_NAME,
                "--ignore-not-found",
            ]);
        }
    }
    let _crd = Crd(cp);
    let world = xyz_world(cp);
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    let limit = Duration::from_secs(20);
    converges(&world, "", &XYZ_PORTS, limit);
    let cnp_status = |node: &str| {
        cp.kubectl_must(&[
                "get",
                "nodeenforcement",
                node,
                "-o",
                "jsonpath={.status.clusterNetworkPolicy.enforced} {.status.clusterNetworkPolicy.policies} {.status.clusterNetworkPolicy.reason}",
            ],
        )
    };
    assert_eq!(
        cnp_status("node-1"),
        "true 0 enforced with NetworkPolicy; the ClusterNetworkPolicy CRD is not installed"
    );

    objects::cluster_network_policy_crd(cp).unwrap();
    let np = policy(
        "x",
        "from-y-80",
        "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n    ports: [{port: 80}]",
    );
    let cnps = [
        cluster_policy(
            "admin-guard-x",
            "Admin",
            10,
            "  subject: {namespaces: {matchLabels: {ns: \"x\"}}}\n  ingress:\n  - action: Accept\n    from: [{pods: {namespaceSelector: {matchLabels: {ns: \"y\"}}, podSelector: {matchLabels: {pod: a}}}}]\n    protocols: [{tcp: {destinationPort: {number: 81}}}]\n  - name: no-z\n    action: Deny\n    from: [{namespaces: {matchLabels: {ns: \"z\"}}}]\n  - action: Pass\n    from: [{namespaces: {matchLabels: {ns: \"y\"}}}]",
        ),
        cluster_policy(
            "admin-z-c-egress",
            "Admin",
            20,
            "  subject: {pods: {namespaceSelector: {matchLabels: {ns: \"z\"}}, podSelector: {matchLabels: {pod: c}}}}\n  egress:\n  - action: Pass\n    to: [{namespaces: {}}]\n    protocols: [{tcp: {destinationPort: {number: 80}}}]\n  - action: Deny\n    to: [{namespaces: {matchLabels: {ns: \"y\"}}}]\n    protocols: [{tcp: {destinationPort: {range: {start: 81, end: 82}}}}]",
        ),
        cluster_policy(
            "baseline-y",
            "Baseline",
            0,
            "  subject: {namespaces: {matchLabels: {ns: \"y\"}}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {matchLabels: {ns: \"z\"}}}]\n    protocols: [{udp: {destinationPort: {number: 80}}}]\n  egress:\n  - action: Accept\n    to: [{namespaces: {matchLabels: {ns: \"x\"}}}]\n    protocols: [{destinationNamedPort: serve-81-udp}]\n  - action: Deny\n    to: [{networks: [\"0.0.0.0/0\"]}]\n    protocols: [{udp: {destinationPort: {range: {start: 80, end: 81}}}}]",
        ),
    ]
    .concat();
    let all = format!("{np}{cnps}");
    world.cp.apply(&all).expect("the policies");
    // The enforcers' watch looks for the CRD again within its backoff (at most 30 s).
    converges(&world, &all, &XYZ_PORTS, Duration::from_secs(60));
    for node in ["node-1", "node-2"] {
        assert_eq!(cnp_status(node), "true 3 enforced with NetworkPolicy");
    }
    // The rules name the tier, the policy and the rule.
    let rules = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
    assert!(
        rules.contains("admin cnp/admin-guard-x ingress[1] (no-z) denies"),
        "{rules}"
    );

    // Without the NetworkPolicy, what x's Admin Pass lets through reaches the default allow.
    cp.kubectl_must(&["delete", "networkpolicy", "from-y-80", "-n", "x"]);
    converges(&world, &cnps, &XYZ_PORTS, limit);

    for e in &enforcers {
        let m = e.metrics();
        assert_eq!(
            sample(&m, r#"palisade_enforcer_syncs_total{result="error"}"#),
            None,
            "{m}"
        );
    }
    cp.kubectl_must(&["delete", "clusternetworkpolicies", "--all"]);
    converges(&world, "", &XYZ_PORTS, limit);
}

/// A policy that tightens cuts the live connections it now denies (their conntrack entries are
/// deleted once the new rules are in), within a second, and nothing else: another allowed
/// connection keeps passing data, and neither loosening nor an audit-mode policy cuts anything.
/// A cut connection stays cut when its server talks first (the server's next packet, new to
/// conntrack, would otherwise pass as a new connection from the server, which y's egress and
/// x's ingress allow).
#[test]
fn tightening_cuts_live_connections_it_denies_and_nothing_else() {
    use palisade_e2e::long_lived::{Connection, EchoServer, TalkingServer};

    let Some((_serial, cp)) = setup() else {
        return;
    };
    let world = xyz_world(cp);
    let enforcers: Vec<Enforcer> = ["node-1", "node-2"]
        .iter()
        .map(|n| Enforcer::start(&world, n))
        .collect();
    let netns = |pod: &str| world.net.pod(pod).unwrap().netns.name.clone();
    let ip = |pod: &str| std::net::IpAddr::from(world.ip(pod).unwrap());
    // Echo servers in y/b and z/a (both on node-1).
    let _servers = [
        EchoServer::start(&netns("y/b"), 7000).unwrap(),
        EchoServer::start(&netns("z/a"), 7000).unwrap(),
    ];
    // Into y/b from x/a (same node) and x/b (node-2); x/c -> z/a is never denied.
    let mut same_node = Connection::open(&netns("x/a"), ip("y/b"), 7000).unwrap();
    let mut cross_node = Connection::open(&netns("x/b"), ip("y/b"), 7000).unwrap();
    let mut other = Connection::open(&netns("x/c"), ip("z/a"), 7000).unwrap();
    let timeout = Duration::from_millis(300);
    let all_echo = |conns: &mut [&mut Connection]| conns.iter_mut().all(|c| c.echoes(timeout));
    assert!(all_echo(&mut [&mut same_node, &mut cross_node, &mut other]));
    // y/b also talks first on 7001 (a line every 50 ms); x/a and x/b listen, never sending.
    let _talker = TalkingServer::start(&netns("y/b"), 7001, Duration::from_millis(50)).unwrap();
    let mut same_node_listens = Connection::open(&netns("x/a"), ip("y/b"), 7001).unwrap();
    let mut cross_node_listens = Connection::open(&netns("x/b"), ip("y/b"), 7001).unwrap();
    assert!(same_node_listens.hears(timeout) && cross_node_listens.hears(timeout));

    let cut_metric = || {
        let m = enforcers[0].metrics();
        sample(
            &m,
            "palisade_enforcer_connections_cut_total{protocol=\"TCP\"}",
        )
        .unwrap_or(0.0)
    };
    // Loosening (y isolated, everything allowed) and an audit-mode deny: nothing is cut.
    let loose = policy("y", "allow-all", "  podSelector: {}\n  ingress: [{}]");
    let audit = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: audit-deny\n  namespace: \"y\"\n  annotations: {palisade.dev/mode: audit}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    for (what, yaml) in [("loosening", loose.as_str()), ("an audit-mode deny", audit)] {
        world.cp.apply(yaml).unwrap();
        // Both enforcers have synced it when a new connection sees it (the audit rule lets
        // traffic through, so compare the rule counts instead: wait for the rules to change).
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            assert!(
                all_echo(&mut [&mut same_node, &mut cross_node, &mut other]),
                "{what} cut a connection"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let rules = node_exec(&world, 0, &["iptables-save", "-t", "filter"]);
        assert!(
            rules.contains("PAL-I-"),
            "{what} is not in node-1's rules:\n{rules}"
        );
    }
    assert_eq!(cut_metric(), 0.0);
    cp.kubectl_must(&[
        "delete",
        "networkpolicy",
        "-n",
        "y",
        "allow-all",
        "audit-deny",
    ]);

    // Tightening: y denies all ingress. Both connections into y/b stop; x/c -> z/a goes on.
    world
        .cp
        .apply(&policy(
            "y",
            "deny",
            "  podSelector: {}\n  policyTypes: [Ingress]",
        ))
        .unwrap();
    let applied = Instant::now();
    let every = Duration::from_millis(50);
    let limit = Duration::from_secs(5);
    let stopped = [
        ("x/a -> y/b", same_node.stops_within(every, timeout, limit)),
        ("x/b -> y/b", cross_node.stops_within(every, timeout, limit)),
        (
            "x/a -> y/b:7001, the server talking",
            same_node_listens.falls_silent_within(every, timeout, limit),
        ),
        (
            "x/b -> y/b:7001, the server talking",
            cross_node_listens.falls_silent_within(every, timeout, limit),
        ),
    ];
    for (what, at) in stopped {
        let at = at.unwrap_or_else(|| panic!("{what} kept passing data for {limit:?}"));
        eprintln!(
            "{what}: last data sent {} ms after kubectl apply returned",
            at.duration_since(applied).as_millis()
        );
    }
    assert!(
        other.echoes(timeout),
        "the allowed connection x/c -> z/a was cut"
    );
    // Still dead a while later (not a blip), and new connections are denied too.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!same_node.echoes(timeout) && !cross_node.echoes(timeout));
    // The server kept sending all along (retransmitting what was not acknowledged): none of it
    // got through.
    assert!(
        !same_node_listens.hears(Duration::from_secs(1)),
        "x/a -> y/b:7001 resumed: the server's data passed after the cut"
    );
    assert!(
        !cross_node_listens.hears(Duration::from_secs(1)),
        "x/b -> y/b:7001 resumed: the server's data passed after the cut"
    );
    assert!(!world.net.probe("x/a", "y/b", 80, Tcp).unwrap());
    assert!(other.echoes(timeout));
    assert!(cut_metric() >= 1.0, "{}", enforcers[0].metrics());
    // The cut follows the rules into the kernel at once: the conntrack pass took < 1 s.
    let log = std::fs::read_to_string(world.dir().join("enforcer-node-1.log")).unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.contains("connections that policy now denies cut"))
        .unwrap_or_else(|| panic!("no log line of the cut:\n{log}"));
    // The text format colours field names: without the escape sequences, `took_ms=N`.
    let mut plain = String::new();
    let mut escaped = false;
    for c in line.chars() {
        match (escaped, c) {
            (false, '\u{1b}') => escaped = true,
            (true, 'm') => escaped = false,
            (false, c) => plain.push(c),
            (true, _) => {}
        }
    }
    let took_ms: u64 = plain
        .split_whitespace()
        .find_map(|w| w.strip_prefix("took_ms=")?.parse().ok())
        .unwrap_or_else(|| panic!("no took_ms in {plain}"));
    eprintln!("cut after the rules were in: {took_ms} ms ({line})");
    assert!(took_ms < 1000, "{line}");
}
