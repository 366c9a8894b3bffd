//! The compiled ruleset decides packets exactly as the policy crate does: random small clusters
//! are compiled for node n1, packets are run through the rules by the interpreter, and the
//! outcome is compared with `Cluster::evaluate` for the directions n1 enforces.

use std::net::{IpAddr, Ipv4Addr};

use palisade_enforcer::compile::{MODE_ANNOTATION, ipv4, is_audit, local_pods};
use palisade_enforcer::interpret::{Outcome, Packet, Path, run};
use palisade_enforcer::render::{render_chains, render_ipset, render_iptables};
use palisade_enforcer::ruleset::CtState;
use palisade_enforcer::{CompileOptions, Ruleset, compile};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use palisade_policy::{
    Cluster, ContainerPort, Decision, Endpoint, Labels, Namespace, Peer, Pod, Policy, Protocol,
    Rule, Selector,
};
use proptest::prelude::*;

const NAMESPACES: [&str; 2] = ["x", "y"];
const PORTS: [u16; 3] = [80, 81, 443];
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
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
    prop::sample::select(PROTOCOLS.to_vec())
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("test CIDR")
}

fn ip_block() -> impl Strategy<Value = IpBlockPeer> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(third, except)| IpBlockPeer {
            cidr: net(&format!("10.0.{third}.0/24")),
            except: if except {
                vec![net(&format!("10.0.{third}.0/30"))]
            } else {
                vec![]
            },
        }),
        Just(IpBlockPeer {
            cidr: net("0.0.0.0/0"),
            except: vec![net("10.0.0.0/16")],
        }),
        Just(IpBlockPeer {
            cidr: net("10.0.0.0/8"),
            except: vec![net("10.0.1.0/24"), net("10.0.1.0/30")],
        }),
        // Everything excepted: matches nothing.
        Just(IpBlockPeer {
            cidr: net("10.0.2.0/24"),
            except: vec![net("10.0.2.0/24")],
        }),
        Just(IpBlockPeer {
            cidr: net("fd00::/64"),
            except: vec![],
        }),
    ]
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (prop::option::of(selector()), selector()).prop_map(|(ns, pods)| Peer::Pods {
            namespaces: ns.map_or(NamespaceScope::Own, NamespaceScope::Matching),
            pods,
        }),
        ip_block().prop_map(Peer::IpBlock),
    ]
}

fn port_match() -> impl Strategy<Value = PortMatch> {
    (
        protocol(),
        prop_oneof![
            Just(PortSpec::Any),
            prop::sample::select(PORTS.to_vec()).prop_map(|p| PortSpec::Range(p, p)),
            Just(PortSpec::Range(80, 81)),
            Just(PortSpec::Range(81, 443)),
            Just(PortSpec::Named("web".into())),
            Just(PortSpec::Named("alt".into())),
        ],
    )
        .prop_map(|(protocol, port)| PortMatch { protocol, port })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_match(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn policy(name: usize) -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(NAMESPACES.to_vec()),
        selector(),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
        prop::bool::weighted(0.3),
    )
        .prop_map(move |(ns, pod_selector, ingress, egress, audit)| Policy {
            namespace: ns.into(),
            name: format!("p{name}"),
            labels: Labels::new(),
            annotations: if audit {
                [(MODE_ANNOTATION.to_string(), "audit".to_string())].into()
            } else {
                Default::default()
            },
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
            0u8..4,
            prop::sample::select(vec!["n1", "n2"]),
        ),
        1..7,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (ns, labels, named, node))| {
                let mut p = Pod::running(
                    ns,
                    &format!("p{i}"),
                    labels,
                    IpAddr::V4(Ipv4Addr::new(10, 0, (i % 4) as u8, i as u8)),
                );
                p.node = Some(node.into());
                // Named ports that differ between pods: "web" is 80/TCP or 81/UDP, "alt" 443.
                if named & 1 != 0 {
                    p.ports.push(ContainerPort {
                        name: Some("web".into()),
                        port: if i % 2 == 0 { 80 } else { 81 },
                        protocol: if i % 3 == 0 {
                            Protocol::Udp
                        } else {
                            Protocol::Tcp
                        },
                    });
                }
                if named & 2 != 0 {
                    p.ports.push(ContainerPort {
                        name: Some("alt".into()),
                        port: 443,
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

/// What n1 must do with a connection: drop when a direction it enforces is denied by an
/// enforcing policy; log and let through when only audit policies deny; otherwise nothing.
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

fn check_all(c: &Cluster, rules: &Ruleset) -> Result<(), TestCaseError> {
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
                let want = expected(c, src, dst, eg, ing, port, proto);
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
        ns in namespaces(), pods in pods(), pols in policies()
    ) {
        let c = Cluster::new(ns, pods, vec![], pols);
        let rules = compile(&c, NODE, &CompileOptions::default());
        prop_assert_eq!(rules.validate(), Ok(()));
        check_all(&c, &rules)?;
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
    // Not about a local pod: Palisade stays out, whatever the state.
    p.dst = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(run(&rules, p), Ok(Outcome::Accept));
}
