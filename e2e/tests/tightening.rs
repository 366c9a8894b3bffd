//! Real nodes, the chart with its defaults: a policy that tightens cuts the live connections it
//! denies within a second of its rules being in the kernel, and they stay cut when their server
//! talks first, on both node kinds (iptables-legacy and nft); another connection is left
//! alone; a pod reaching its own IP is what `palisade reach` says (allowed, whatever the
//! policies), and reaching itself through its Service is what the node's rules judge. A deny-all
//! in a namespace in audit mode leaves a live connection alone, and cuts it once the namespace
//! is promoted (its `palisade.dev/mode=audit` label removed).
//!
//! Skipped, with one line naming what is missing, where this machine cannot run real nodes.

use std::time::{Duration, SystemTime};

use palisade_e2e::ControlPlane;
use palisade_e2e::chart;
use palisade_e2e::long_lived::PodConnection;
use palisade_e2e::real_nodes;
use palisade_e2e::real_pods::{busybox_pod, create_namespaces};
use palisade_e2e::world::predict;
use palisade_policy::input::Inputs;
use palisade_policy::{Endpoint, Protocol};

/// What a server that talks first runs for each connection: a numbered line every 100 ms,
/// unasked.
const TALK: &str = "sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'";

/// A busybox pod on `node` serving `servers` (`port program`: `nc -ll -p PORT -e PROGRAM`).
fn pod(ns: &str, name: &str, node: &str, labels: &str, servers: &[(u16, &str)]) -> String {
    let run: Vec<String> = servers
        .iter()
        .map(|(port, program)| format!("nc -ll -p {port} -e {program} &"))
        .collect();
    let ports: Vec<String> = servers
        .iter()
        .map(|(port, _)| format!("{{containerPort: {port}}}"))
        .collect();
    busybox_pod(
        ns,
        name,
        node,
        labels,
        &format!("[{}]", ports.join(", ")),
        &format!("{} sleep 3600 & wait", run.join(" ")),
    )
}

fn pod_ip(cp: &ControlPlane, key: &str) -> String {
    let (ns, name) = key.split_once('/').expect("namespace/name");
    cp.kubectl_must(&[
        "get",
        "pod",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.status.podIP}",
    ])
}

/// Whether a TCP handshake from pod `from` to `ip`:`port` succeeds (busybox `nc -w 2`).
fn connects(cp: &ControlPlane, from: &str, ip: &str, port: u16) -> bool {
    let (ns, name) = from.split_once('/').expect("namespace/name");
    cp.kubectl(&[
        "exec",
        "-n",
        ns,
        name,
        "--",
        "sh",
        "-c",
        &format!("nc -w 2 {ip} {port} </dev/null"),
    ])
    .is_ok_and(|o| o.status.success())
}

/// The cluster's objects as a user dumps them, for the policy crate.
fn dump(cp: &ControlPlane) -> String {
    cp.kubectl_must(&["get", "namespaces,pods,networkpolicies", "-A", "-o", "yaml"])
}

/// An RFC 3339 time (the enforcer's JSON log) as a system time.
fn rfc3339(text: &str) -> Option<SystemTime> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

/// When node `node`'s enforcer had the rules in the kernel for the sync that cut connections,
/// and how many it cut: its log line `connections that policy now denies cut` (JSON) says when
/// the cut ended and how long it took.
fn cut_on(cp: &ControlPlane, node: &str) -> Option<(SystemTime, u64, u64)> {
    let pod = chart::enforcer_pod_on(cp, node);
    let log = cp.kubectl_must(&["logs", "-n", chart::ENFORCER_NAMESPACE, &pod]);
    log.lines()
        .rev()
        .filter(|l| l.contains("connections that policy now denies cut"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let at = rfc3339(v["timestamp"].as_str()?)?;
            let took = v["fields"]["took_ms"].as_u64()?;
            let cut = v["fields"]["cut"].as_u64()?;
            Some((at - Duration::from_millis(took), took, cut))
        })
        .next()
}

/// How long after `rules_in` the connection `what` passed its last data, in ms (0 when before);
/// fails when that was more than a second after.
fn stopped_within_a_second(what: &str, echoes: &[SystemTime], rules_in: SystemTime) -> i64 {
    let last = *echoes
        .last()
        .unwrap_or_else(|| panic!("{what} passed no data"));
    let stopped = last
        .duration_since(rules_in)
        .map_or(0, |d| d.as_millis() as i64);
    assert!(
        last <= rules_in + Duration::from_secs(1),
        "{what} passed data {stopped} ms after the rules were in"
    );
    stopped
}

#[test]
fn tightening_cuts_live_connections_and_a_pod_reaches_itself_on_real_nodes() {
    let Some(cluster) = real_nodes::cluster_for_tests() else {
        return;
    };
    let cp = &cluster.cp;
    chart::install_release(cp, &[]);

    // tight/echo (node-1) echoes on 7000, answers on 8080 and talks first on 7001;
    // tight/client (node-1) and open/client (node-2) connect to it; open/talker (node-1) to
    // open/echo (node-2). tight/speaker (node-2) talks first on 7001 too: a cut on each kind of
    // node (node-1 iptables-legacy, node-2 nft).
    create_namespaces(cp, &["tight", "open"]);
    let pods = [
        pod(
            "tight",
            "echo",
            "node-1",
            "{app: echo}",
            &[(7000, "/bin/cat"), (8080, "/bin/true"), (7001, TALK)],
        ),
        pod(
            "tight",
            "speaker",
            "node-2",
            "{app: speaker}",
            &[(7001, TALK)],
        ),
        pod("tight", "client", "node-1", "{app: client}", &[]),
        pod("open", "client", "node-2", "{app: client}", &[]),
        pod("open", "talker", "node-1", "{app: talker}", &[]),
        pod(
            "open",
            "echo",
            "node-2",
            "{app: echo}",
            &[(7000, "/bin/cat")],
        ),
    ]
    .concat();
    cp.apply(&pods).expect("pods");
    for key in [
        "tight/echo",
        "tight/speaker",
        "tight/client",
        "open/client",
        "open/talker",
        "open/echo",
    ] {
        let (ns, name) = key.split_once('/').expect("key");
        cp.kubectl_must(&[
            "wait",
            "--for=condition=Ready",
            "--timeout=90s",
            "pod",
            name,
            "-n",
            ns,
        ]);
    }
    cp.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: tight}\n\
         spec: {selector: {app: echo}, ports: [{port: 8080, protocol: TCP}]}\n",
    )
    .expect("Service");
    let echo_ip = pod_ip(cp, "tight/echo");
    let service_ip = cp.kubectl_must(&[
        "get",
        "service",
        "echo",
        "-n",
        "tight",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);

    // A pod reaching itself, before and after a deny-all: by its own IP as `reach` says, through
    // its Service as the node judges it (the hairpinned packet goes through FORWARD).
    let reach_itself = |when: &str| {
        let documents = dump(cp);
        let predicted = predict(
            &[("cluster.yaml", &documents)],
            &[(
                "tight/echo".into(),
                "tight/echo".into(),
                8080,
                Protocol::Tcp,
            )],
        )
        .expect("prediction");
        assert_eq!(predicted.len(), 1, "{when}");
        let own = connects(cp, "tight/echo", &echo_ip, 8080);
        eprintln!(
            "{when}: tight/echo to its own IP: measured {}, reach says {}",
            if own { "open" } else { "blocked" },
            if predicted[0].allowed {
                "open"
            } else {
                "blocked"
            }
        );
        assert_eq!(own, predicted[0].allowed, "{when}: a pod to its own IP");
        let mut inputs = Inputs::default();
        inputs
            .add_text("cluster.yaml", &documents)
            .expect("readable");
        let c = inputs.cluster();
        let echo = c
            .pods()
            .iter()
            .find(|p| p.key() == "tight/echo")
            .expect("tight/echo");
        let judged = c
            .evaluate_forwarded(
                &Endpoint::Pod(echo),
                &Endpoint::Pod(echo),
                8080,
                Protocol::Tcp,
            )
            .allowed();
        // kube-proxy may need a moment for the Service; an open answer is retried briefly.
        let mut through_service = connects(cp, "tight/echo", &service_ip, 8080);
        for _ in 0..10 {
            if through_service == judged {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            through_service = connects(cp, "tight/echo", &service_ip, 8080);
        }
        eprintln!(
            "{when}: tight/echo through its Service {service_ip}: measured {}, the node's rules say {}",
            if through_service { "open" } else { "blocked" },
            if judged { "open" } else { "blocked" }
        );
        assert_eq!(
            through_service, judged,
            "{when}: a pod to itself through its Service"
        );
    };
    reach_itself("no policy");

    // Long-lived connections, each passing a line every 100 ms.
    let open_echo_ip = pod_ip(cp, "open/echo");
    let same_node = PodConnection::open(cp, "tight/client", &echo_ip, 7000, 1200).expect("exec");
    let cross_node = PodConnection::open(cp, "open/client", &echo_ip, 7000, 1200).expect("exec");
    let other = PodConnection::open(cp, "open/talker", &open_echo_ip, 7000, 1200).expect("exec");
    // Connections whose server talks first, the clients sending nothing: one on each node kind
    // and one across nodes.
    let speaker_ip = pod_ip(cp, "tight/speaker");
    let listens = [
        (
            "tight/client -> tight/echo:7001 (node-1, the server talking)",
            "node-1",
            PodConnection::listen(cp, "tight/client", &echo_ip, 7001, 120).expect("exec"),
        ),
        (
            "open/client -> tight/speaker:7001 (node-2, the server talking)",
            "node-2",
            PodConnection::listen(cp, "open/client", &speaker_ip, 7001, 120).expect("exec"),
        ),
        (
            "open/talker -> tight/speaker:7001 (cross node, the server talking)",
            "node-2",
            PodConnection::listen(cp, "open/talker", &speaker_ip, 7001, 120).expect("exec"),
        ),
    ];
    for (what, c) in [
        ("tight/client -> tight/echo", &same_node),
        ("open/client -> tight/echo", &cross_node),
        ("open/talker -> open/echo", &other),
    ]
    .into_iter()
    .chain(listens.iter().map(|(what, _, c)| (*what, c)))
    {
        assert!(
            c.wait_for(5, Duration::from_secs(30)),
            "{what} passed no data"
        );
    }

    // tight denies all ingress.
    cp.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: tight}\n\
         spec: {podSelector: {}, policyTypes: [Ingress]}\n",
    )
    .expect("deny-all");
    let applied = SystemTime::now();
    std::thread::sleep(Duration::from_secs(5));
    let (rules_in, took_ms, cut) = cut_on(cp, "node-1")
        .unwrap_or_else(|| panic!("node-1's enforcer logged no cut connections"));
    eprintln!(
        "node-1 had the rules in {} ms after kubectl apply returned; the cut took {took_ms} ms and cut {cut} connections",
        rules_in
            .duration_since(applied)
            .unwrap_or_default()
            .as_millis()
    );
    for (what, c) in [
        ("tight/client -> tight/echo (same node)", &same_node),
        ("open/client -> tight/echo (cross node)", &cross_node),
    ] {
        let echoes = c.echoes();
        let after = echoes.iter().filter(|t| **t > rules_in).count();
        let stopped = stopped_within_a_second(what, &echoes, rules_in);
        eprintln!(
            "{what}: {} echoes in all, {after} after the rules were in, the last {stopped} ms after them",
            echoes.len()
        );
    }
    // The servers that talk first kept sending (retransmitting what was not acknowledged):
    // nothing of it arrived once their node's rules were in.
    for (what, node, c) in &listens {
        let (rules_in, took_ms, cut) = cut_on(cp, node)
            .unwrap_or_else(|| panic!("{node}'s enforcer logged no cut connections"));
        let echoes = c.echoes();
        let stopped = stopped_within_a_second(what, &echoes, rules_in);
        eprintln!(
            "{what}: {} lines in all, the last {stopped} ms after {node}'s rules were in (its cut took {took_ms} ms, {cut} connections)",
            echoes.len()
        );
    }
    // The other connection went on all along.
    let echoes = other.echoes();
    let since = SystemTime::now() - Duration::from_secs(2);
    assert!(
        echoes.iter().filter(|t| **t > since).count() >= 5,
        "open/talker -> open/echo stopped passing data"
    );
    // New connections to tight/echo are denied too; tight/echo reaches itself.
    assert!(!connects(cp, "open/client", &echo_ip, 7000));
    reach_itself("deny-all ingress in tight");

    // Audit, then promotion: in a namespace labelled `palisade.dev/mode=audit` a deny-all only
    // reports, so the live connection open/talker -> open/echo (node-1 to node-2) goes on;
    // removing the label enforces the policy, and node-2's enforcer cuts it as any tightening.
    cp.kubectl_must(&["label", "namespace", "open", "palisade.dev/mode=audit"]);
    cp.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: open}\n\
         spec: {podSelector: {}, policyTypes: [Ingress]}\n",
    )
    .expect("deny-all in open");
    std::thread::sleep(Duration::from_secs(3));
    let since = SystemTime::now() - Duration::from_secs(2);
    assert!(
        other.echoes().iter().filter(|t| **t > since).count() >= 5,
        "open/talker -> open/echo stopped passing data under an audit-mode deny-all"
    );
    let promoted = SystemTime::now();
    cp.kubectl_must(&["label", "namespace", "open", "palisade.dev/mode-"]);
    std::thread::sleep(Duration::from_secs(5));
    let (rules_in, took_ms, cut) = cut_on(cp, "node-2")
        .filter(|(at, _, _)| *at > promoted)
        .unwrap_or_else(|| panic!("node-2's enforcer logged no cut after the promotion"));
    let stopped = stopped_within_a_second(
        "open/talker -> open/echo, promoted",
        &other.echoes(),
        rules_in,
    );
    eprintln!(
        "promotion: node-2 had the rules in {} ms after the label was removed; the cut took {took_ms} ms and cut {cut} connections; open/talker -> open/echo passed its last data {stopped} ms after the rules were in",
        rules_in
            .duration_since(promoted)
            .unwrap_or_default()
            .as_millis()
    );
    assert!(!connects(cp, "open/talker", &open_echo_ip, 7000));
    drop((same_node, cross_node, other, listens));
    for ns in ["tight", "open"] {
        let _ = cp.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}
