//! Truth tables for what the upstream conformance leaves untested: Baseline Pass, inclusive port
//! ranges, Palisade's order for equal priorities, named ports on the destination, host-network
//! pods, a policy without an ingress list, the tiers around NetworkPolicy per direction, and the
//! reach matrix agreeing with evaluate on random clusters with both kinds of policy.

use palisade_policy::cluster_policy::ClusterPolicy;
use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::strategies;
use palisade_policy::{
    Cluster, ContainerPort, Decision, Endpoint, Labels, Namespace, Pod, Policy, Protocol, Tier,
};
use proptest::prelude::*;

fn cnp(yaml: &str) -> ClusterPolicy {
    let api: palisade_api::ClusterNetworkPolicy = serde_saphyr::from_str(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n{yaml}"
    ))
    .expect("yaml");
    ClusterPolicy::from_api(&api).expect("valid")
}

fn np(yaml: &str) -> Policy {
    let api: k8s_openapi::api::networking::v1::NetworkPolicy = serde_saphyr::from_str(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n{yaml}"
    ))
    .expect("yaml");
    Policy::compile(&api).expect("valid")
}

/// Namespaces `a` and `b` (labelled `team: <name>`); pods a/web (serving `web` on TCP 80),
/// a/api (`web` on TCP 8080), b/client, and b/host on the host network (10.9.0.1, node n1).
fn pods() -> (Vec<Namespace>, Vec<Pod>) {
    let label = |k: &str, v: &str| Labels::from([(k.to_string(), v.to_string())]);
    let namespaces = vec![
        Namespace::new("a", label("team", "a")),
        Namespace::new("b", label("team", "b")),
    ];
    let mut web = Pod::running(
        "a",
        "web",
        label("app", "web"),
        "10.0.0.1".parse().expect("ip"),
    );
    web.ports.push(ContainerPort {
        name: Some("web".into()),
        port: 80,
        protocol: Protocol::Tcp,
    });
    web.node = Some("n1".into());
    let mut api = Pod::running(
        "a",
        "api",
        label("app", "api"),
        "10.0.0.2".parse().expect("ip"),
    );
    api.ports.push(ContainerPort {
        name: Some("web".into()),
        port: 8080,
        protocol: Protocol::Tcp,
    });
    let client = Pod::running(
        "b",
        "client",
        label("app", "client"),
        "10.0.1.1".parse().expect("ip"),
    );
    let mut host = Pod::running(
        "b",
        "host",
        label("app", "client"),
        "10.9.0.1".parse().expect("ip"),
    );
    host.host_network = true;
    host.node = Some("n1".into());
    (namespaces, vec![web, api, client, host])
}

fn world(cnps: &[ClusterPolicy], nps: &[Policy]) -> Cluster {
    let (namespaces, pods) = pods();
    Cluster::new(namespaces, pods, Vec::new(), nps.to_vec()).with_cluster_policies(cnps.to_vec())
}

fn find<'a>(c: &'a Cluster, key: &str) -> &'a Pod {
    c.pods().iter().find(|p| p.key() == key).expect("pod")
}

/// `--explain`'s line for `from` -> `to` on TCP `port`, with whether it is allowed.
fn explain(c: &Cluster, from: &str, to: &str, port: u16) -> (bool, String) {
    explain_on(c, from, to, port, Protocol::Tcp)
}

fn explain_on(c: &Cluster, from: &str, to: &str, port: u16, protocol: Protocol) -> (bool, String) {
    let v = c.evaluate(
        &Endpoint::Pod(find(c, from)),
        &Endpoint::Pod(find(c, to)),
        port,
        protocol,
    );
    (v.allowed(), v.reason(from, to, port, protocol))
}

#[test]
fn baseline_pass_skips_the_rest_of_the_baseline_tier_to_the_default_allow() {
    let pass = cnp(
        "metadata: {name: pass-web}\nspec:\n  tier: Baseline\n  priority: 1\n  subject: {namespaces: {}}\n  \
         ingress: [{name: let-through, action: Pass, from: [{namespaces: {matchLabels: {team: b}}}]}]\n",
    );
    let deny = cnp(
        "metadata: {name: deny-all}\nspec:\n  tier: Baseline\n  priority: 2\n  subject: {namespaces: {}}\n  \
         ingress: [{action: Deny, from: [{namespaces: {}}]}]\n",
    );
    let c = world(&[pass.clone(), deny.clone()], &[]);
    assert_eq!(
        explain(&c, "b/client", "a/web", 80),
        (
            true,
            "egress not isolated; ingress allowed: passed by ClusterNetworkPolicy pass-web (Baseline, priority 1) ingress rule 0 \"let-through\" (after the Baseline tier, the default is allow)".into()
        )
    );
    // Without the Pass, the later Baseline Deny decides.
    let c = world(&[deny], &[]);
    assert_eq!(
        explain(&c, "b/client", "a/web", 80),
        (
            false,
            "ingress denied by ClusterNetworkPolicy deny-all (Baseline, priority 2) ingress rule 0; egress not isolated".into()
        )
    );
}

#[test]
fn port_ranges_include_both_ends() {
    let p = cnp(
        "metadata: {name: range}\nspec:\n  tier: Admin\n  priority: 0\n  subject: {namespaces: {matchLabels: {team: a}}}\n  \
         ingress:\n  - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 80, end: 90}}}}]}\n",
    );
    let c = world(&[p], &[]);
    let table: Vec<(u16, bool)> = [79, 80, 85, 90, 91]
        .into_iter()
        .map(|port| (port, explain(&c, "b/client", "a/web", port).0))
        .collect();
    assert_eq!(
        table,
        vec![
            (79, true),
            (80, false),
            (85, false),
            (90, false),
            (91, true)
        ]
    );
    // Another protocol on the same numbers is not matched.
    assert!(explain_on(&c, "b/client", "a/web", 80, Protocol::Udp).0);
}

#[test]
fn equal_priorities_are_ordered_by_name() {
    let policy = |name: &str, action: &str| {
        cnp(&format!(
            "metadata: {{name: {name}}}\nspec:\n  tier: Admin\n  priority: 5\n  subject: {{namespaces: {{}}}}\n  \
             ingress: [{{action: {action}, from: [{{namespaces: {{}}}}]}}]\n"
        ))
    };
    let c = world(
        &[policy("b-deny", "Deny"), policy("a-accept", "Accept")],
        &[],
    );
    assert_eq!(
        c.cluster_policies()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["a-accept", "b-deny"]
    );
    assert_eq!(
        explain(&c, "b/client", "a/web", 80),
        (
            true,
            "egress not isolated; ingress allowed by ClusterNetworkPolicy a-accept (Admin, priority 5) ingress rule 0".into()
        )
    );
    // Renamed so the Deny sorts first, the Deny decides.
    let c = world(
        &[policy("0-deny", "Deny"), policy("a-accept", "Accept")],
        &[],
    );
    assert!(!explain(&c, "b/client", "a/web", 80).0);
    // Priorities order before names; tiers before priorities.
    let mut later = policy("0-deny", "Deny");
    later.priority = 6;
    let mut baseline = policy("00-baseline-deny", "Deny");
    baseline.tier = Tier::Baseline;
    baseline.priority = 0;
    let c = world(&[baseline, later, policy("a-accept", "Accept")], &[]);
    assert_eq!(
        c.cluster_policies()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["a-accept", "0-deny", "00-baseline-deny"]
    );
    assert!(explain(&c, "b/client", "a/web", 80).0);
}

#[test]
fn named_ports_resolve_on_the_destination_pod() {
    // Egress from b/client accepting `web`, then denying everything: `web` is 80 on a/web and
    // 8080 on a/api.
    let p = cnp(
        "metadata: {name: web-only}\nspec:\n  tier: Admin\n  priority: 0\n  subject: {namespaces: {matchLabels: {team: b}}}\n  \
         egress:\n  - {name: web, action: Accept, to: [{namespaces: {}}], protocols: [{destinationNamedPort: web}]}\n  \
         - {action: Deny, to: [{networks: [0.0.0.0/0]}]}\n",
    );
    let c = world(&[p], &[]);
    let table: Vec<(&str, u16, bool)> = [
        ("a/web", 80),
        ("a/web", 8080),
        ("a/api", 80),
        ("a/api", 8080),
    ]
    .into_iter()
    .map(|(to, port)| (to, port, explain(&c, "b/client", to, port).0))
    .collect();
    assert_eq!(
        table,
        vec![
            ("a/web", 80, true),
            ("a/web", 8080, false),
            ("a/api", 80, false),
            ("a/api", 8080, true)
        ]
    );
    assert_eq!(
        explain(&c, "b/client", "a/api", 8080).1,
        "egress allowed by ClusterNetworkPolicy web-only (Admin, priority 0) egress rule 0 \"web\"; ingress not isolated"
    );
    // An address outside the pod network has no named ports: the Deny decides.
    let v = c.evaluate(
        &Endpoint::Pod(find(&c, "b/client")),
        &Endpoint::External("192.0.2.1".parse().expect("ip")),
        80,
        Protocol::Tcp,
    );
    assert!(
        !v.allowed(),
        "{}",
        v.reason("b/client", "192.0.2.1", 80, Protocol::Tcp)
    );
}

#[test]
fn host_network_pods_are_never_subjects_or_pod_peers_but_networks_catch_their_address() {
    let deny_everyone = cnp(
        "metadata: {name: deny}\nspec:\n  tier: Admin\n  priority: 0\n  subject: {namespaces: {}}\n  \
         ingress: [{action: Deny, from: [{namespaces: {}}]}]\n  egress: [{action: Deny, to: [{pods: {podSelector: {}}}]}]\n",
    );
    let c = world(std::slice::from_ref(&deny_everyone), &[]);
    // b/host is not a subject (its egress is not subject to policy) and not a peer.
    let (ok, why) = explain(&c, "b/host", "a/api", 80);
    assert_eq!(
        (ok, why.as_str()),
        (true, "egress not subject to policy; ingress not isolated")
    );
    let (ok, why) = explain(&c, "a/api", "b/host", 80);
    assert_eq!(
        (ok, why.as_str()),
        (true, "egress not isolated; ingress not subject to policy")
    );
    // A pod-to-pod flow is denied by the same policy.
    assert!(!explain(&c, "b/client", "a/api", 80).0);
    // networks peers catch the host-network pod's address.
    let by_address = cnp(
        "metadata: {name: no-hosts}\nspec:\n  tier: Admin\n  priority: 0\n  subject: {namespaces: {}}\n  \
         egress: [{action: Deny, to: [{networks: [10.9.0.0/16]}]}]\n",
    );
    let c = world(&[by_address], &[]);
    assert_eq!(
        explain(&c, "a/api", "b/host", 80),
        (
            false,
            "egress denied by ClusterNetworkPolicy no-hosts (Admin, priority 0) egress rule 0; ingress not subject to policy".into()
        )
    );
}

#[test]
fn a_policy_without_an_ingress_list_leaves_ingress_alone() {
    let egress_only = cnp(
        "metadata: {name: egress-only}\nspec:\n  tier: Admin\n  priority: 0\n  subject: {namespaces: {}}\n  \
         egress: [{action: Accept, to: [{namespaces: {}}]}]\n",
    );
    // With a NetworkPolicy isolating a/web's ingress, ingress is still decided by it alone.
    let deny_ingress = np(
        "metadata: {name: deny-in, namespace: a}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n",
    );
    let c = world(&[egress_only], &[deny_ingress]);
    assert_eq!(
        explain(&c, "b/client", "a/web", 80),
        (
            false,
            "ingress denied: a/web is isolated by a/deny-in and no rule allows b/client on 80/TCP; egress allowed by ClusterNetworkPolicy egress-only (Admin, priority 0) egress rule 0".into()
        )
    );
    assert!(
        c.cluster_selecting(find(&c, "a/web"), palisade_policy::Direction::Ingress)
            .next()
            .is_none()
    );
}

#[test]
fn network_policy_isolation_is_per_direction_for_the_baseline() {
    // A NetworkPolicy isolating a's ingress only: a's egress still reaches the Baseline tier.
    let baseline = cnp(
        "metadata: {name: guard}\nspec:\n  tier: Baseline\n  priority: 0\n  subject: {namespaces: {matchLabels: {team: a}}}\n  \
         ingress: [{action: Accept, from: [{namespaces: {}}]}]\n  egress: [{action: Deny, to: [{namespaces: {}}]}]\n",
    );
    let allow_in = np(
        "metadata: {name: from-b, namespace: a}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]\n",
    );
    let c = world(&[baseline], &[allow_in]);
    let (ok, why) = explain(&c, "a/web", "a/api", 80);
    assert!(!ok);
    assert_eq!(
        why,
        "egress denied by ClusterNetworkPolicy guard (Baseline, priority 0) egress rule 0; ingress denied: a/api is isolated by a/from-b and no rule allows a/web on 80/TCP"
    );
    assert_eq!(
        explain(&c, "b/client", "a/api", 80),
        (
            true,
            "egress not isolated; ingress allowed by a/from-b ingress rule 0".into()
        )
    );
}

#[test]
fn admin_accept_and_deny_override_network_policy_and_own_node_traffic_stays_allowed() {
    let deny_in = np(
        "metadata: {name: deny-in, namespace: a}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n",
    );
    let accept = cnp(
        "metadata: {name: monitoring}\nspec:\n  tier: Admin\n  priority: 0\n  subject: {namespaces: {matchLabels: {team: a}}}\n  \
         ingress: [{action: Accept, from: [{namespaces: {matchLabels: {team: b}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]},\n            \
                   {action: Deny, from: [{namespaces: {}}]}]\n",
    );
    let c = world(&[accept], &[deny_in]);
    assert!(explain(&c, "b/client", "a/web", 80).0);
    assert!(!explain(&c, "b/client", "a/web", 81).0);
    // kubelet probes from the pod's own node come before every tier.
    let v = c.evaluate(
        &Endpoint::Node {
            name: "n1",
            ip: Some("192.168.0.1".parse().expect("ip")),
        },
        &Endpoint::Pod(find(&c, "a/web")),
        81,
        Protocol::Tcp,
    );
    assert_eq!(v.ingress, Decision::FromOwnNode);
    // Ingress from outside the pod network never matches namespaces/pods peers.
    let v = c.evaluate(
        &Endpoint::External("192.0.2.1".parse().expect("ip")),
        &Endpoint::Pod(find(&c, "a/web")),
        81,
        Protocol::Tcp,
    );
    assert!(
        matches!(v.ingress, Decision::Denied { .. }),
        "{:?}",
        v.ingress
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The reach matrix (grouped pods, per-rule peer bit sets, compact outcomes) decides and
    /// explains every cell as evaluate does, with both kinds of policy.
    #[test]
    fn reach_agrees_with_evaluate(
        namespaces in strategies::namespaces(),
        pods in strategies::pods(),
        policies in strategies::policies(),
        cnps in strategies::cluster_policies(),
    ) {
        let c = Cluster::new(namespaces, pods, Vec::new(), policies).with_cluster_policies(cnps);
        let everyone = reachable_pods(&c);
        let ports: Vec<ProbePort> = strategies::PORTS
            .iter()
            .flat_map(|&port| strategies::PROTOCOLS.iter().map(move |&protocol| ProbePort { port, protocol }))
            .collect();
        let m = Matrix::compute(&c, everyone.clone(), everyone, ports);
        for probe in m.probes(true) {
            let src = c.pods().iter().find(|p| p.key() == probe.from).expect("pod");
            let dst = c.pods().iter().find(|p| p.key() == probe.to).expect("pod");
            let protocol: Protocol = probe.protocol.parse().expect("protocol");
            let v = c.evaluate(&Endpoint::Pod(src), &Endpoint::Pod(dst), probe.port, protocol);
            prop_assert_eq!(probe.allowed, v.allowed());
            prop_assert_eq!(probe.reason, v.reason(&probe.from, &probe.to, probe.port, protocol));
        }
    }

    /// Without ClusterNetworkPolicies, or with only policies whose subjects match nobody,
    /// verdicts are NetworkPolicy's alone.
    #[test]
    fn policies_selecting_nobody_change_nothing(
        namespaces in strategies::namespaces(),
        pods in strategies::pods(),
        policies in strategies::policies(),
        mut cnps in strategies::cluster_policies(),
    ) {
        for p in &mut cnps {
            p.subject = palisade_policy::Subject::Namespaces(palisade_policy::Selector::from_labels(
                &Labels::from([("no-such".to_string(), "label".to_string())]),
            ));
        }
        let plain = Cluster::new(namespaces.clone(), pods.clone(), Vec::new(), policies.clone());
        let with = plain.clone().with_cluster_policies(cnps);
        for s in plain.pods() {
            for d in plain.pods() {
                for port in strategies::PORTS {
                    let a = plain.evaluate(&Endpoint::Pod(s), &Endpoint::Pod(d), port, Protocol::Tcp);
                    let b = with.evaluate(&Endpoint::Pod(s), &Endpoint::Pod(d), port, Protocol::Tcp);
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
