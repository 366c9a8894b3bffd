//! A pod reaching its own IP is allowed, whatever the policies: its packets never leave its
//! network namespace, so no node's rules see them (kubernetes/kubernetes#95879 for
//! NetworkPolicy, network-policy-api#390 for ClusterNetworkPolicy). `evaluate`, the matrix and
//! `reach --explain` (in the CLI's tests, `cli/tests/reach_to_itself.rs`) say so, for both tiers
//! and every action.

mod common;

use common::{pod, world as cluster};
use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::verdict::TO_ITSELF;
use palisade_policy::{Decision, Endpoint, Protocol};

/// Three alike pods `x/a-*` and a lone pod `x/b`, all isolated both ways by a deny-all
/// NetworkPolicy.
const DENIED: &str = include_str!("fixtures/to-itself/denied.yaml");
/// Everything denied by an Admin ClusterNetworkPolicy too.
const ADMIN_DENY: &str = include_str!("fixtures/to-itself/admin-deny.yaml");
/// Everything accepted by a Baseline ClusterNetworkPolicy.
const ADMIN_ACCEPT: &str = include_str!("fixtures/to-itself/baseline-accept.yaml");

#[test]
fn evaluate_allows_a_pod_to_itself_in_every_tier() {
    for (what, text) in [
        ("NetworkPolicy deny-all", DENIED.to_string()),
        ("Admin Deny", format!("{DENIED}{ADMIN_DENY}")),
        ("Baseline Accept", format!("{DENIED}{ADMIN_ACCEPT}")),
    ] {
        let c = cluster(&text);
        let (a, a1) = (pod(&c, "x/a-0"), pod(&c, "x/a-1"));
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            let v = c.evaluate(&Endpoint::Pod(a), &Endpoint::Pod(a), 80, protocol);
            assert!(v.allowed(), "{what}: a pod to itself");
            assert_eq!(v.egress, Decision::ToItself, "{what}");
            assert_eq!(v.ingress, Decision::ToItself, "{what}");
            assert_eq!(v.reason("x/a-0", "x/a-0", 80, protocol), TO_ITSELF);
        }
        // Another pod alike in every way is still denied (Baseline Accept comes after the
        // NetworkPolicy that isolates it).
        let other = c.evaluate(&Endpoint::Pod(a), &Endpoint::Pod(a1), 80, Protocol::Tcp);
        assert!(!other.allowed(), "{what}: a pod to another");
    }
}

#[test]
fn evaluate_to_the_pods_own_address_as_an_outside_address_is_not_itself() {
    // Only the pod as a pod is itself; the verdict for an address is the address's.
    let c = cluster(DENIED);
    let a = pod(&c, "x/a-0");
    let ip = a.ip.expect("ip");
    let v = c.evaluate(
        &Endpoint::Pod(a),
        &Endpoint::External(ip),
        80,
        Protocol::Tcp,
    );
    assert!(!v.allowed());
}

/// The matrix (grouped: the a-* pods are one group) says allowed for each pod to itself and
/// denied between alike pods, exactly as evaluate.
#[test]
fn matrix_is_exact_for_itself_and_for_alike_pods() {
    for text in [DENIED.to_string(), format!("{DENIED}{ADMIN_DENY}")] {
        let c = cluster(&text);
        let everyone = reachable_pods(&c);
        let port = vec![ProbePort {
            port: 80,
            protocol: Protocol::Tcp,
        }];
        let m = Matrix::compute(&c, everyone.clone(), everyone, port);
        let probes = m.probes(true);
        assert_eq!(probes.len(), 16);
        for p in probes {
            let v = c.evaluate(
                &Endpoint::Pod(pod(&c, &p.from)),
                &Endpoint::Pod(pod(&c, &p.to)),
                80,
                Protocol::Tcp,
            );
            assert_eq!(p.allowed, p.from == p.to, "{} -> {}", p.from, p.to);
            assert_eq!(p.allowed, v.allowed());
            assert_eq!(p.reason, v.reason(&p.from, &p.to, 80, Protocol::Tcp));
        }
    }
}
