//! A measure for BENCHMARKS.md, not a test of a bound (issue 26 item 5): how long after `kubectl
//! apply` of a policy its rules hold on both real nodes, as the upstream suites see it (they
//! probe right after creating a policy), and how long after `kubectl delete` traffic flows
//! again. A pod on node-1 starts a handshake with a server on each node every 50 ms; a
//! NetworkPolicy (deny-all ingress) and a ClusterNetworkPolicy (Admin Deny) are applied and
//! deleted in turn; the figure is the time from the start of `kubectl apply` to the last
//! handshake that still completed (and from `kubectl delete` to the first that completes).
//!
//!   cargo test -p palisade-e2e --test policy_latency -- --ignored --nocapture

use std::net::Ipv4Addr;
use std::time::Duration;

use palisade_e2e::chart;
use palisade_e2e::handshakes::{Handshake, Prober};
use palisade_e2e::real_nodes;
use palisade_e2e::real_world::RealWorld;
use palisade_e2e::world::PodDef;
use palisade_policy::Protocol;

const PORT: u16 = 8080;
const ROUNDS: usize = 10;
const SETTLE: Duration = Duration::from_secs(4);

const NETWORK_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: lat}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
const CLUSTER_POLICY: &str = "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: lat-deny}\nspec:\n  tier: Admin\n  priority: 10\n  subject:\n    namespaces: {matchLabels: {kubernetes.io/metadata.name: lat}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n";

/// p50 and max of `d`, in milliseconds.
fn summary(mut d: Vec<Duration>) -> String {
    if d.is_empty() {
        return "no samples".into();
    }
    d.sort();
    format!(
        "p50 {} ms, max {} ms (n={})",
        d[d.len() / 2].as_millis(),
        d[d.len() - 1].as_millis(),
        d.len()
    )
}

#[test]
#[ignore = "a measure: cargo test -p palisade-e2e --test policy_latency -- --ignored --nocapture"]
fn policy_changes_hold_on_every_node_within() {
    let Some(cluster) = real_nodes::cluster_for_tests() else {
        return;
    };
    let cp = &cluster.cp;
    chart::install_release_for_conformance(cp, &[]);
    let world = RealWorld::create(
        cp,
        &[("lat", &[]), ("probe", &[])],
        vec![
            PodDef::new("lat", "server-1", "node-1").port(None, PORT, Protocol::Tcp),
            PodDef::new("lat", "server-2", "node-2").port(None, PORT, Protocol::Tcp),
            PodDef::new("probe", "client", "node-1").port(None, 80, Protocol::Tcp),
        ],
    )
    .expect("pods");
    let ips = world.ips().expect("IPs");
    let targets: Vec<Ipv4Addr> = ["lat/server-1", "lat/server-2"]
        .iter()
        .map(|p| ips[*p].parse().expect("an IPv4 address"))
        .collect();
    let container = cp.kubectl_must(&[
        "get",
        "pod",
        "client",
        "-n",
        "probe",
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
    ]);
    let pid = cluster
        .node("node-1")
        .expect("node-1")
        .task_pid(&container)
        .expect("the client's process");
    let prober = Prober::start(
        pid,
        targets.clone(),
        PORT,
        Duration::from_millis(50),
        Duration::from_secs(600),
    )
    .expect("the prober");
    let clock = prober.started;
    std::thread::sleep(SETTLE);

    // (kind, applied at, deleted at), on the prober's clock.
    let mut changes: Vec<(&str, Duration, Duration)> = Vec::new();
    for round in 0..ROUNDS {
        let (kind, yaml, delete): (&str, &str, &[&str]) = if round % 2 == 0 {
            (
                "NetworkPolicy",
                NETWORK_POLICY,
                &["delete", "networkpolicy", "deny-all", "-n", "lat"],
            )
        } else {
            (
                "ClusterNetworkPolicy",
                CLUSTER_POLICY,
                &["delete", "clusternetworkpolicy", "lat-deny"],
            )
        };
        let applied = clock.elapsed();
        cp.apply(yaml).expect("kubectl apply");
        std::thread::sleep(SETTLE);
        let deleted = clock.elapsed();
        cp.kubectl_must(delete);
        std::thread::sleep(SETTLE);
        changes.push((kind, applied, deleted));
    }
    let seen = prober.stop().expect("the prober");

    let to = |target: Ipv4Addr| -> Vec<&Handshake> {
        seen.handshakes
            .iter()
            .filter(|h| h.address == target)
            .collect()
    };
    for kind in ["NetworkPolicy", "ClusterNetworkPolicy"] {
        let (mut hold, mut open) = (Vec::new(), Vec::new());
        for (_, applied, deleted) in changes.iter().filter(|(k, ..)| *k == kind) {
            for &target in &targets {
                let handshakes = to(target);
                // The last handshake after the apply began (none: it held within a round).
                let last = handshakes
                    .iter()
                    .filter(|h| h.at >= *applied && h.at < *deleted)
                    .map(|h| h.at - *applied)
                    .max()
                    .unwrap_or_default();
                hold.push(last);
                let first = handshakes
                    .iter()
                    .filter(|h| h.at >= *deleted && h.at < *deleted + SETTLE)
                    .map(|h| h.at - *deleted)
                    .min();
                open.push(first.unwrap_or(SETTLE));
            }
        }
        eprintln!(
            "{kind}: from kubectl apply to the rules holding on both nodes: {}; from kubectl delete to traffic again: {}",
            summary(hold),
            summary(open)
        );
    }
    eprintln!(
        "prober: {} rounds, longest {} ms",
        seen.rounds,
        seen.longest_round.as_millis()
    );
}
