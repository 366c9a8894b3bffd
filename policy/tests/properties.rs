//! Property tests over random small clusters: the laws the semantics must keep.

use std::net::{IpAddr, Ipv4Addr};

use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use palisade_policy::reach::{Matrix, ProbePort};
use palisade_policy::{
    Cluster, ContainerPort, Decision, Endpoint, Labels, Namespace, Peer, Pod, Policy, Protocol,
    Rule, Selector,
};
use proptest::prelude::*;

const NAMESPACES: [&str; 2] = ["x", "y"];
const PORTS: [u16; 3] = [80, 81, 443];

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier"]),
        prop::sample::select(vec!["a", "b"]),
        0..=2,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn selector() -> impl Strategy<Value = Selector> {
    labels().prop_map(|l| Selector::from_labels(&l))
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(vec![Protocol::Tcp, Protocol::Udp])
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (prop::option::of(selector()), selector()).prop_map(|(ns, pods)| Peer::Pods {
            namespaces: ns.map_or(NamespaceScope::Own, NamespaceScope::Matching),
            pods,
        }),
        (0u8..4, any::<bool>()).prop_map(|(third, except)| {
            let cidr = format!("10.0.{third}.0/24").parse().unwrap();
            let except = if except {
                vec![format!("10.0.{third}.0/30").parse().unwrap()]
            } else {
                vec![]
            };
            Peer::IpBlock(IpBlockPeer { cidr, except })
        }),
    ]
}

fn port_match() -> impl Strategy<Value = PortMatch> {
    (
        protocol(),
        prop_oneof![
            Just(PortSpec::Any),
            prop::sample::select(PORTS.to_vec()).prop_map(|p| PortSpec::Range(p, p)),
            Just(PortSpec::Range(80, 81)),
            Just(PortSpec::Named("web".into())),
        ],
    )
        .prop_map(|(protocol, port)| PortMatch { protocol, port })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_match(), 0..2),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn policy(name: usize) -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(NAMESPACES.to_vec()),
        selector(),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
    )
        .prop_map(move |(ns, pod_selector, ingress, egress)| Policy {
            namespace: ns.into(),
            name: format!("p{name}"),
            labels: Labels::new(),
            annotations: Default::default(),
            pod_selector,
            ingress,
            egress,
        })
}

fn pods() -> impl Strategy<Value = Vec<Pod>> {
    prop::collection::vec(
        (
            prop::sample::select(NAMESPACES.to_vec()),
            labels(),
            any::<bool>(),
        ),
        1..7,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (ns, labels, named))| {
                let mut p = Pod::running(
                    ns,
                    &format!("p{i}"),
                    labels,
                    IpAddr::V4(Ipv4Addr::new(10, 0, (i % 4) as u8, i as u8)),
                );
                if named {
                    p.ports.push(ContainerPort {
                        name: Some("web".into()),
                        port: 80,
                        protocol: Protocol::Tcp,
                    });
                }
                p
            })
            .collect()
    })
}

fn namespaces() -> impl Strategy<Value = Vec<Namespace>> {
    (labels(), labels()).prop_map(|(a, b)| vec![Namespace::new("x", a), Namespace::new("y", b)])
}

fn policies() -> impl Strategy<Value = Vec<Policy>> {
    (0usize..5).prop_flat_map(|n| (0..n).map(policy).collect::<Vec<_>>())
}

fn probes(c: &Cluster) -> Vec<(usize, usize, u16, Protocol)> {
    let n = c.pods().len();
    let mut out = Vec::new();
    for s in 0..n {
        for d in 0..n {
            for port in PORTS {
                for proto in [Protocol::Tcp, Protocol::Udp] {
                    out.push((s, d, port, proto));
                }
            }
        }
    }
    out
}

fn allowed(c: &Cluster, (s, d, port, proto): (usize, usize, u16, Protocol)) -> bool {
    c.evaluate(
        &Endpoint::Pod(&c.pods()[s]),
        &Endpoint::Pod(&c.pods()[d]),
        port,
        proto,
    )
    .allowed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn evaluation_is_independent_of_policy_order(ns in namespaces(), pods in pods(), mut pols in policies()) {
        let a = Cluster::new(ns.clone(), pods.clone(), vec![], pols.clone());
        pols.reverse();
        let b = Cluster::new(ns, pods, vec![], pols);
        for probe in probes(&a) {
            let (s, d, port, proto) = probe;
            let va = a.evaluate(&Endpoint::Pod(&a.pods()[s]), &Endpoint::Pod(&a.pods()[d]), port, proto);
            let vb = b.evaluate(&Endpoint::Pod(&b.pods()[s]), &Endpoint::Pod(&b.pods()[d]), port, proto);
            prop_assert_eq!(va, vb);
        }
    }

    /// Adding a policy never allows a connection that was denied, unless one of its own rules
    /// is what allows it now.
    #[test]
    fn adding_a_policy_only_allows_through_its_own_rules(
        ns in namespaces(), pods in pods(), pols in policies(), mut extra in policy(99)
    ) {
        extra.name = "added".into();
        let before = Cluster::new(ns.clone(), pods.clone(), vec![], pols.clone());
        let mut more = pols;
        more.push(extra.clone());
        let after = Cluster::new(ns, pods, vec![], more);
        for probe in probes(&before) {
            if allowed(&before, probe) || !allowed(&after, probe) {
                continue;
            }
            let (s, d, port, proto) = probe;
            let v = after.evaluate(&Endpoint::Pod(&after.pods()[s]), &Endpoint::Pod(&after.pods()[d]), port, proto);
            let old = before.evaluate(&Endpoint::Pod(&before.pods()[s]), &Endpoint::Pod(&before.pods()[d]), port, proto);
            let by_added = |d: &Decision| matches!(d, Decision::Allowed { by, .. } if by.name == "added");
            prop_assert!(
                (old.egress.allows() || by_added(&v.egress)) && (old.ingress.allows() || by_added(&v.ingress)),
                "newly allowed {:?} not through the added policy: {:?}", probe, v
            );
        }
    }

    /// The precomputed matrix agrees with the canonical evaluation on every cell.
    #[test]
    fn matrix_agrees_with_evaluate(ns in namespaces(), pods in pods(), pols in policies()) {
        let c = Cluster::new(ns, pods, vec![], pols);
        let all: Vec<usize> = (0..c.pods().len()).collect();
        let ports: Vec<ProbePort> = PORTS.iter().flat_map(|&port| [Protocol::Tcp, Protocol::Udp].map(|protocol| ProbePort { port, protocol })).collect();
        let m = Matrix::compute(&c, all.clone(), all, ports);
        for p in m.probes(true) {
            let src = c.pods().iter().find(|x| x.key() == p.from).unwrap();
            let dst = c.pods().iter().find(|x| x.key() == p.to).unwrap();
            let proto: Protocol = p.protocol.parse().unwrap();
            let v = c.evaluate(&Endpoint::Pod(src), &Endpoint::Pod(dst), p.port, proto);
            prop_assert_eq!(v.allowed(), p.allowed);
            prop_assert_eq!(v.reason(&p.from, &p.to, p.port, proto), p.reason);
        }
    }
}
