//! Property tests over random small clusters: the laws the semantics must keep.

use palisade_policy::reach::{Matrix, ProbePort};
use palisade_policy::strategies::{PORTS, namespaces, pods, policies, policy};
use palisade_policy::{Cluster, Decision, Endpoint, Protocol};
use proptest::prelude::*;

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
