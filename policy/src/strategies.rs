//! proptest strategies for random small clusters: the generators of the property tests of the
//! policy crate (the semantics' laws) and of the enforcer (compiled rules against the
//! semantics), so both explore the same space. Behind the `strategies` feature.
//!
//! Two namespaces `x` and `y`; up to six pods on nodes `n1` and `n2` with IPs in 10.0.0.0/22 and
//! named ports that differ between pods (`web`: 80/TCP or 81/UDP, `alt`: 443/TCP); up to four
//! policies with pod and namespace selectors, ipBlocks of both families (nested excepts, /0,
//! fully excepted), ports, ranges and named ports over TCP, UDP and SCTP; some marked audit.
//! [`dual_stack_pods`]: the same pods, each IPv4-only, IPv6-only (in fd00::/48, mirroring the
//! IPv4 addresses) or dual-stack. [`cluster_policies`]: up to three ClusterNetworkPolicies of
//! both tiers, with equal priorities, every action, namespace/pod/network peers (pod addresses
//! inside them, /0 of both families) and port numbers, ranges and named ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use crate::cluster_policy::{
    Action, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, Subject, Tier,
};
use crate::policy::{
    AUDIT_MODE, IpBlockPeer, MODE_ANNOTATION, MODE_LABEL, NamespaceScope, PortMatch, PortSpec,
};
use crate::{ContainerPort, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector};

pub const NAMESPACES: [&str; 2] = ["x", "y"];
pub const PORTS: [u16; 3] = [80, 81, 443];
pub const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
pub fn labels() -> impl Strategy<Value = Labels> {
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

pub fn selector() -> impl Strategy<Value = Selector> {
    labels().prop_map(|l| Selector::from_labels(&l))
}

pub fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(PROTOCOLS.to_vec())
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("test CIDR")
}

pub fn ip_block() -> impl Strategy<Value = IpBlockPeer> {
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
        // IPv6 mirrors of the IPv4 blocks, over the addresses of [`dual_stack_pods`].
        (0u16..4, any::<bool>()).prop_map(|(subnet, except)| IpBlockPeer {
            cidr: net(&format!("fd00:0:0:{subnet}::/64")),
            except: if except {
                vec![net(&format!("fd00:0:0:{subnet}::/126"))]
            } else {
                vec![]
            },
        }),
        Just(IpBlockPeer {
            cidr: net("::/0"),
            except: vec![net("fd00::/48")],
        }),
        Just(IpBlockPeer {
            cidr: net("fd00::/32"),
            except: vec![net("fd00:0:0:1::/64"), net("fd00:0:0:1::/126")],
        }),
        Just(IpBlockPeer {
            cidr: net("fd00:0:0:2::/64"),
            except: vec![net("fd00:0:0:2::/64")],
        }),
    ]
}

/// The IPv6 address [`dual_stack_pods`] gives pod `i`: `fd00:0:0:<i % 4>::<i>`, where the IPv4
/// one is `10.0.<i % 4>.<i>`.
pub fn ipv6_of_pod(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, (i % 4) as u16, 0, 0, 0, i as u16)
}

pub fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (prop::option::of(selector()), selector()).prop_map(|(ns, pods)| Peer::Pods {
            namespaces: ns.map_or(NamespaceScope::Own, NamespaceScope::Matching),
            pods,
        }),
        ip_block().prop_map(Peer::IpBlock),
    ]
}

pub fn port_match() -> impl Strategy<Value = PortMatch> {
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

pub fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_match(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

pub fn policy(name: usize) -> impl Strategy<Value = Policy> {
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
                [(MODE_ANNOTATION.to_string(), AUDIT_MODE.to_string())].into()
            } else {
                Default::default()
            },
            pod_selector,
            ingress,
            egress,
            implicit_types: false,
        })
}

pub fn pods() -> impl Strategy<Value = Vec<Pod>> {
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

/// [`pods`], each IPv4-only, IPv6-only or dual-stack (with either family first, as
/// `status.podIPs` lists them).
pub fn dual_stack_pods() -> impl Strategy<Value = Vec<Pod>> {
    pods().prop_flat_map(|pods| {
        let n = pods.len();
        (Just(pods), prop::collection::vec(0u8..4, n)).prop_map(|(pods, stacks)| {
            pods.into_iter()
                .zip(stacks)
                .enumerate()
                .map(|(i, (pod, stack))| {
                    let v4 = pod.ip.expect("generated pods have an IP");
                    let v6 = IpAddr::V6(ipv6_of_pod(i));
                    match stack {
                        0 => pod,
                        1 => Pod {
                            ip: Some(v6),
                            ips: vec![v6],
                            ..pod
                        },
                        2 => pod.with_second_ip(v6),
                        _ => Pod {
                            ip: Some(v6),
                            ips: vec![v6],
                            ..pod
                        }
                        .with_second_ip(v4),
                    }
                })
                .collect()
        })
    })
}

/// Namespaces x and y; now and then one labelled [`MODE_LABEL`]`=audit`, which puts its
/// policies in audit mode.
pub fn namespaces() -> impl Strategy<Value = Vec<Namespace>> {
    let audit = || prop::bool::weighted(0.2);
    (labels(), labels(), audit(), audit()).prop_map(|(mut a, mut b, audit_x, audit_y)| {
        for (labels, audit) in [(&mut a, audit_x), (&mut b, audit_y)] {
            if audit {
                labels.insert(MODE_LABEL.to_string(), AUDIT_MODE.to_string());
            }
        }
        vec![Namespace::new("x", a), Namespace::new("y", b)]
    })
}

pub fn policies() -> impl Strategy<Value = Vec<Policy>> {
    (0usize..5).prop_flat_map(|n| (0..n).map(policy).collect::<Vec<_>>())
}

/// A ClusterNetworkPolicy peer; `networks` only for egress, as the API allows. The networks:
/// everything of a family, pod subnets and single pod addresses of each family, an outside
/// address, and mixes of both families.
pub fn cluster_peer(ingress: bool) -> impl Strategy<Value = ClusterPeer> {
    let pods = prop_oneof![
        selector().prop_map(ClusterPeer::Namespaces),
        (selector(), selector())
            .prop_map(|(namespaces, pods)| ClusterPeer::Pods { namespaces, pods }),
    ];
    if ingress {
        return pods.boxed();
    }
    let networks = prop::collection::vec(
        prop::sample::select(vec![
            "10.0.0.0/24",
            "10.0.1.0/30",
            "10.0.2.2/32",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "8.8.8.8/32",
            "::/0",
            "fd00:0:0:1::/64",
            "fd00:0:0:2::/64",
        ]),
        1..3,
    )
    .prop_map(|nets| ClusterPeer::Networks(nets.into_iter().map(net).collect()));
    prop_oneof![2 => pods, 1 => networks].boxed()
}

pub fn cluster_port() -> impl Strategy<Value = ClusterPort> {
    prop_oneof![
        (protocol(), prop::sample::select(PORTS.to_vec())).prop_map(|(protocol, p)| {
            ClusterPort::Ports {
                protocol,
                first: p,
                last: p,
            }
        }),
        protocol().prop_map(|protocol| ClusterPort::Ports {
            protocol,
            first: 80,
            last: 81,
        }),
        protocol().prop_map(|protocol| ClusterPort::Ports {
            protocol,
            first: 1,
            last: 65535,
        }),
        Just(ClusterPort::Named("web".into())),
        Just(ClusterPort::Named("alt".into())),
    ]
}

pub fn cluster_rule(ingress: bool) -> impl Strategy<Value = ClusterRule> {
    (
        prop::sample::select(vec![Action::Accept, Action::Deny, Action::Pass]),
        prop::collection::vec(cluster_peer(ingress), 1..3),
        prop::option::of(prop::collection::vec(cluster_port(), 1..3)),
        any::<bool>(),
    )
        .prop_map(|(action, peers, ports, named)| ClusterRule {
            name: named.then(|| format!("{}-rule", action.as_str().to_lowercase())),
            action,
            peers,
            ports,
        })
}

/// A ClusterNetworkPolicy named `cnp<name>`; priorities 0, 5 or 10, so equal priorities occur.
pub fn cluster_policy(name: usize) -> impl Strategy<Value = ClusterPolicy> {
    (
        prop::sample::select(vec![Tier::Admin, Tier::Baseline]),
        prop::sample::select(vec![0u16, 5, 10]),
        prop_oneof![
            selector().prop_map(Subject::Namespaces),
            (selector(), selector())
                .prop_map(|(namespaces, pods)| Subject::Pods { namespaces, pods }),
        ],
        prop::collection::vec(cluster_rule(true), 0..3),
        prop::collection::vec(cluster_rule(false), 0..3),
    )
        .prop_map(
            move |(tier, priority, subject, ingress, egress)| ClusterPolicy {
                name: format!("cnp{name}"),
                tier,
                priority,
                subject,
                ingress,
                egress,
            },
        )
}

pub fn cluster_policies() -> impl Strategy<Value = Vec<ClusterPolicy>> {
    (0usize..5).prop_flat_map(|n| (0..n).map(cluster_policy).collect::<Vec<_>>())
}
