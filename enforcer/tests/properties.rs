//! The compiled ruleset decides packets exactly as the policy crate does: random small clusters
//! are compiled for node n1, packets are run through the rules by the interpreter, and the
//! outcome is compared with `Cluster::evaluate` for the directions n1 enforces.

use std::net::{IpAddr, Ipv4Addr};

use palisade_enforcer::compile::{DenyAction, ipv4, is_audit, local_pods};
use palisade_enforcer::interpret::{Outcome, Packet, Path, run};
use palisade_enforcer::render::{render_chains, render_ipset, render_iptables};
use palisade_enforcer::ruleset::CtState;
use palisade_enforcer::{CompileOptions, Ruleset, compile};
use palisade_policy::strategies::{PORTS, PROTOCOLS, namespaces, pods, policies};
use palisade_policy::{Cluster, Decision, Endpoint, Labels, Pod, Policy, Protocol, Selector};
use proptest::prelude::*;

const NODE: &str = "n1";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const OTHER_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
/// Addresses outside the pod network, some inside the generated ipBlocks and their excepts.
const EXTERNAL: [Ipv4Addr; 5] = [
    Ipv4Addr::new(10, 0, 0, 200),
    Ipv4Addr::new(10, 0, 2, 1),
    Ipv4Addr::new(10, 0, 3, 2),
    Ipv4Addr::new(10, 1, 0, 1),
    Ipv4Addr::new(8, 8, 8, 8),
];

/// What n1 must do with a connection: drop (reject, with that deny action) when a direction it
/// enforces is denied by an enforcing policy; log and let through when only audit policies deny;
/// otherwise nothing.
fn expected(
    c: &Cluster,
    src: &Endpoint,
    dst: &Endpoint,
    enforce_egress: bool,
    enforce_ingress: bool,
    port: u16,
    proto: Protocol,
) -> Outcome {
    let v = c.evaluate(src, dst, port, proto);
    let mut audit = false;
    for (decision, enforced) in [(&v.egress, enforce_egress), (&v.ingress, enforce_ingress)] {
        let Decision::Denied { isolated_by } = decision else {
            continue;
        };
        if !enforced {
            continue;
        }
        let enforcing = isolated_by.iter().any(|r| {
            c.policies()
                .iter()
                .any(|p| p.namespace == r.namespace && p.name == r.name && !is_audit(p))
        });
        if enforcing {
            return Outcome::Drop;
        }
        audit = true;
    }
    if audit {
        Outcome::AuditAccept
    } else {
        Outcome::Accept
    }
}

fn packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, dport: u16, path: Path) -> Packet {
    Packet {
        src,
        dst,
        protocol,
        dport,
        path,
        ct_state: CtState::New,
    }
}

fn check_all(c: &Cluster, rules: &Ruleset, denied: Outcome) -> Result<(), TestCaseError> {
    let local: Vec<&Pod> = local_pods(c, NODE).collect();
    let is_local = |p: &Pod| local.iter().any(|l| l.key() == p.key());
    let pod_ip = |p: &Pod| ipv4(p).expect("generated pods have IPv4");
    let node = Endpoint::Node {
        name: NODE,
        ip: Some(IpAddr::V4(NODE_IP)),
    };
    let other_node = Endpoint::Node {
        name: "n2",
        ip: Some(IpAddr::V4(OTHER_NODE_IP)),
    };
    for port in PORTS {
        for proto in PROTOCOLS {
            let probe = |what: String,
                         pkt: Packet,
                         src: &Endpoint,
                         dst: &Endpoint,
                         eg: bool,
                         ing: bool|
             -> Result<(), TestCaseError> {
                let want = match expected(c, src, dst, eg, ing, port, proto) {
                    Outcome::Drop => denied,
                    other => other,
                };
                let got = run(rules, pkt).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, want, "{} {}/{:?}", what, port, proto);
                Ok(())
            };
            for s in c.pods() {
                for d in c.pods() {
                    let (sl, dl) = (is_local(s), is_local(d));
                    probe(
                        format!("{} -> {}", s.key(), d.key()),
                        packet(pod_ip(s), pod_ip(d), proto, port, Path::Forward),
                        &Endpoint::Pod(s),
                        &Endpoint::Pod(d),
                        sl,
                        dl,
                    )?;
                }
                for ext in EXTERNAL {
                    let e = Endpoint::External(IpAddr::V4(ext));
                    let local = is_local(s);
                    probe(
                        format!("{} -> {ext}", s.key()),
                        packet(pod_ip(s), ext, proto, port, Path::Forward),
                        &Endpoint::Pod(s),
                        &e,
                        local,
                        false,
                    )?;
                    probe(
                        format!("{ext} -> {}", s.key()),
                        packet(ext, pod_ip(s), proto, port, Path::Forward),
                        &e,
                        &Endpoint::Pod(s),
                        false,
                        local,
                    )?;
                }
                if is_local(s) {
                    // The node to its own pod (OUTPUT), and the pod to the node (INPUT).
                    probe(
                        format!("node -> {}", s.key()),
                        packet(NODE_IP, pod_ip(s), proto, port, Path::Output),
                        &node,
                        &Endpoint::Pod(s),
                        false,
                        true,
                    )?;
                    probe(
                        format!("{} -> node", s.key()),
                        packet(pod_ip(s), NODE_IP, proto, port, Path::Input),
                        &Endpoint::Pod(s),
                        &node,
                        true,
                        false,
                    )?;
                    // Another node is no exception: it is judged by ipBlocks.
                    probe(
                        format!("n2 -> {}", s.key()),
                        packet(OTHER_NODE_IP, pod_ip(s), proto, port, Path::Forward),
                        &other_node,
                        &Endpoint::Pod(s),
                        false,
                        true,
                    )?;
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn compiled_rules_decide_as_the_policy_crate(
        ns in namespaces(), pods in pods(), pols in policies(), reject in any::<bool>()
    ) {
        let c = Cluster::new(ns, pods, vec![], pols);
        let (deny_action, denied) = if reject {
            (DenyAction::Reject, Outcome::Reject)
        } else {
            (DenyAction::Drop, Outcome::Drop)
        };
        let options = CompileOptions { deny_action, ..CompileOptions::default() };
        let rules = compile(&c, NODE, &options);
        prop_assert_eq!(rules.validate(), Ok(()));
        check_all(&c, &rules, denied)?;
    }

    /// Same snapshot in another order, same ruleset and text; and a ruleset compared with itself
    /// renders no change.
    #[test]
    fn compilation_is_deterministic_and_idempotent(
        ns in namespaces(), pods in pods(), pols in policies()
    ) {
        let a = compile(&Cluster::new(ns.clone(), pods.clone(), vec![], pols.clone()), NODE, &CompileOptions::default());
        let mut pods = pods;
        pods.reverse();
        let mut pols = pols;
        pols.reverse();
        let mut ns = ns;
        ns.reverse();
        let b = compile(&Cluster::new(ns, pods, vec![], pols), NODE, &CompileOptions::default());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(render_chains(&a), render_chains(&b));
        prop_assert_eq!(render_iptables(&a, &render_chains(&b)), None);
        prop_assert_eq!(render_ipset(&a, Some(&b.sets)), "");
    }
}

/// Stale and established traffic: not NEW packets are decided by conntrack alone.
#[test]
fn conntrack_states_short_circuit() {
    let mut pod = Pod::running(
        "x",
        "a",
        Labels::new(),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    );
    pod.node = Some(NODE.into());
    let deny = Policy {
        namespace: "x".into(),
        name: "deny".into(),
        labels: Labels::new(),
        annotations: Default::default(),
        pod_selector: Selector::everything(),
        ingress: Some(vec![]),
        egress: None,
        implicit_types: false,
    };
    let c = Cluster::new(vec![], vec![pod], vec![], vec![deny]);
    let rules = compile(&c, NODE, &CompileOptions::default());
    let mut p = packet(
        Ipv4Addr::new(10, 9, 9, 9),
        Ipv4Addr::new(10, 0, 0, 1),
        Protocol::Tcp,
        80,
        Path::Forward,
    );
    assert_eq!(run(&rules, p), Ok(Outcome::Drop));
    p.ct_state = CtState::Established;
    assert_eq!(run(&rules, p), Ok(Outcome::Accept));
    p.ct_state = CtState::Related;
    assert_eq!(run(&rules, p), Ok(Outcome::Accept));
    p.ct_state = CtState::Invalid;
    assert_eq!(run(&rules, p), Ok(Outcome::Drop));
    // With deny action reject, a NEW packet is refused; an INVALID one is still only dropped.
    let options = CompileOptions {
        deny_action: DenyAction::Reject,
        ..CompileOptions::default()
    };
    let rejecting = compile(&c, NODE, &options);
    assert_eq!(run(&rejecting, p), Ok(Outcome::Drop));
    p.ct_state = CtState::New;
    assert_eq!(run(&rejecting, p), Ok(Outcome::Reject));
    p.ct_state = CtState::Invalid;
    // Not about a local pod: Palisade stays out, whatever the state.
    p.dst = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(run(&rules, p), Ok(Outcome::Accept));
}
