//! The compiled rulesets decide packets exactly as the policy crate does: random small
//! dual-stack clusters (IPv4-only, IPv6-only and dual-stack pods; ipBlocks of both families) are
//! compiled for node n1, once per IP family; packets of that family are run through its rules by
//! the interpreter, and the outcome is compared with `Cluster::evaluate_forwarded` (what a node
//! forwards: `evaluate`, with a pod's packet to itself judged as a Service hairpin, since one
//! that never leaves the pod reaches no rule) of the cluster as that family sees it, for the
//! directions n1 enforces. The clusters carry ClusterNetworkPolicies of
//! both tiers too (Accept, Deny and Pass; namespaces, pods and networks peers of both families;
//! port ranges, named ports, no ports at all), so the tiers around NetworkPolicy are proven the
//! same way.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::pod_on;
use palisade_enforcer::compile::{DenyAction, compile_family, local_pods_of};
use palisade_enforcer::interpret::{Outcome, Packet, Path, run};
use palisade_enforcer::render::{render_chains, render_ipset, render_iptables};
use palisade_enforcer::ruleset::{CtState, NEIGHBOUR_DISCOVERY};
use palisade_enforcer::{CompileOptions, Ruleset, compile};
use palisade_policy::cluster_policy::Action;
use palisade_policy::strategies::{
    PORTS, PROTOCOLS, cluster_policies, dual_stack_pods, namespaces, policies,
};
use palisade_policy::{Cluster, Decision, Endpoint, IpFamily, Labels, Pod, Policy, Protocol};
use proptest::prelude::*;

const NODE: &str = "n1";

/// The node's own addresses and another node's, per family.
fn node_ips(family: IpFamily) -> (IpAddr, IpAddr) {
    match family {
        IpFamily::V4 => (
            Ipv4Addr::new(192, 168, 0, 1).into(),
            Ipv4Addr::new(192, 168, 0, 2).into(),
        ),
        IpFamily::V6 => (
            Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 2).into(),
        ),
    }
}

/// Addresses outside the pod network, some inside the generated ipBlocks and their excepts.
fn external(family: IpFamily) -> Vec<IpAddr> {
    let texts: &[&str] = match family {
        IpFamily::V4 => &["10.0.0.200", "10.0.2.1", "10.0.3.2", "10.1.0.1", "8.8.8.8"],
        IpFamily::V6 => &[
            "fd00::c8",
            "fd00:0:0:2::1",
            "fd00:0:0:3::2",
            "fd00:1::1",
            "2001:db8::8",
        ],
    };
    texts.iter().map(|t| t.parse().expect("address")).collect()
}

/// What n1 must do with a connection: drop (reject, with that deny action) when a direction it
/// enforces is denied by an enforcing policy; log and let through when only audit policies deny;
/// otherwise nothing. A ClusterNetworkPolicy Deny drops whatever the deny action.
fn expected(
    c: &Cluster,
    src: &Endpoint,
    dst: &Endpoint,
    enforce_egress: bool,
    enforce_ingress: bool,
    port: u16,
    proto: Protocol,
) -> Outcome {
    // What a node forwards: a pod's packets to its own IP never leave the pod (evaluate allows
    // them and no rule sees them), so the only such packet a node judges is one hairpinned
    // through a Service IP, which the rules judge as any connection from the pod to the pod.
    let v = c.evaluate_forwarded(src, dst, port, proto);
    let mut audit = false;
    for (decision, enforced) in [(&v.egress, enforce_egress), (&v.ingress, enforce_ingress)] {
        if !enforced {
            continue;
        }
        if let Decision::Cluster {
            action: Action::Deny,
            ..
        } = decision
        {
            return Outcome::Drop;
        }
        match decision {
            Decision::Denied { .. } => return Outcome::Reject,
            Decision::AuditWouldDeny { .. } => audit = true,
            _ => {}
        }
    }
    if audit {
        Outcome::AuditAccept
    } else {
        Outcome::Accept
    }
}

fn packet(src: IpAddr, dst: IpAddr, protocol: Protocol, dport: u16, path: Path) -> Packet {
    Packet::new(src, dst, protocol, dport, path)
}

/// Every probe of `family` against that family's ruleset: pod to pod, pod to and from outside
/// addresses, the node to its pods and back, another node to them. `c` is the whole cluster;
/// the expectation is the policy crate's answer for the cluster as `family` sees it.
fn check_family(
    c: &Cluster,
    family: IpFamily,
    rules: &Ruleset,
    denied: Outcome,
    deny_mid_stream: bool,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(rules.family, family);
    let seen = c.in_family(family);
    let local: Vec<String> = local_pods_of(c, NODE, family).map(Pod::key).collect();
    let is_local = |p: &Pod| local.contains(&p.key());
    let (node_ip, other_node_ip) = node_ips(family);
    let node = Endpoint::Node {
        name: NODE,
        ip: Some(node_ip),
    };
    let other_node = Endpoint::Node {
        name: "n2",
        ip: Some(other_node_ip),
    };
    // Pods without an address of this family send and receive none of its packets.
    let pods: Vec<(&Pod, IpAddr)> = seen
        .pods()
        .iter()
        .filter_map(|p| Some((p, p.ip?)))
        .collect();
    for port in PORTS {
        for proto in PROTOCOLS {
            let probe = |what: String,
                         pkt: Packet,
                         src: &Endpoint,
                         dst: &Endpoint,
                         eg: bool,
                         ing: bool|
             -> Result<(), TestCaseError> {
                // Reject stands for "what NetworkPolicy denies": the deny action.
                let want = match expected(&seen, src, dst, eg, ing, port, proto) {
                    Outcome::Reject => denied,
                    other => other,
                };
                let got = run(rules, pkt).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, want, "{} {} {}/{:?}", family, what, port, proto);
                // The same TCP packet picked up mid-stream (NEW, no SYN): denied whenever a
                // local pod is at either end, whatever the policies; otherwise as the SYN.
                if proto == Protocol::Tcp {
                    let mid_stream = Packet {
                        tcp_syn: false,
                        ..pkt
                    };
                    let want = if deny_mid_stream && (eg || ing) {
                        denied
                    } else {
                        want
                    };
                    let got =
                        run(rules, mid_stream).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(got, want, "{} {} {}/TCP mid-stream", family, what, port);
                }
                Ok(())
            };
            for &(s, s_ip) in &pods {
                for &(d, d_ip) in &pods {
                    probe(
                        format!("{} -> {}", s.key(), d.key()),
                        packet(s_ip, d_ip, proto, port, Path::Forward),
                        &Endpoint::Pod(s),
                        &Endpoint::Pod(d),
                        is_local(s),
                        is_local(d),
                    )?;
                }
                for ext in external(family) {
                    let e = Endpoint::External(ext);
                    let local = is_local(s);
                    probe(
                        format!("{} -> {ext}", s.key()),
                        packet(s_ip, ext, proto, port, Path::Forward),
                        &Endpoint::Pod(s),
                        &e,
                        local,
                        false,
                    )?;
                    probe(
                        format!("{ext} -> {}", s.key()),
                        packet(ext, s_ip, proto, port, Path::Forward),
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
                        packet(node_ip, s_ip, proto, port, Path::Output),
                        &node,
                        &Endpoint::Pod(s),
                        false,
                        true,
                    )?;
                    probe(
                        format!("{} -> node", s.key()),
                        packet(s_ip, node_ip, proto, port, Path::Input),
                        &Endpoint::Pod(s),
                        &node,
                        true,
                        false,
                    )?;
                    // Another node is no exception: it is judged by ipBlocks.
                    probe(
                        format!("n2 -> {}", s.key()),
                        packet(other_node_ip, s_ip, proto, port, Path::Forward),
                        &other_node,
                        &Endpoint::Pod(s),
                        false,
                        true,
                    )?;
                }
            }
        }
    }
    if family == IpFamily::V6 {
        // Neighbour discovery between a pod and the node, or pods on one bridge, whatever the
        // policies and even though conntrack calls it INVALID.
        for &(s, s_ip) in &pods {
            for t in NEIGHBOUR_DISCOVERY {
                for (dst, path) in [(node_ip, Path::Input), (other_node_ip, Path::Forward)] {
                    for (from, to) in [(s_ip, dst), (dst, s_ip)] {
                        let mut nd = packet(from, to, Protocol::Tcp, 0, path);
                        nd.icmpv6_type = Some(t);
                        nd.ct_state = CtState::Invalid;
                        let got = run(rules, nd).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(got, Outcome::Accept, "{} type {} {:?}", s.key(), t, path);
                    }
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
        ns in namespaces(), pods in dual_stack_pods(), pols in policies(),
        cnps in cluster_policies(), reject in any::<bool>(), deny_mid_stream_tcp in any::<bool>(),
        log_denials in any::<bool>()
    ) {
        let c = Cluster::new(ns, pods, vec![], pols).with_cluster_policies(cnps);
        let (deny_action, denied) = if reject {
            (DenyAction::Reject, Outcome::Reject)
        } else {
            (DenyAction::Drop, Outcome::Drop)
        };
        // Denial logs (NFLOG lines, the PALISADE-DENIED chain) never change a verdict.
        let options = CompileOptions {
            deny_action,
            deny_mid_stream_tcp,
            log_denials,
            ..CompileOptions::default()
        };
        let mut set_names = Vec::new();
        for family in IpFamily::ALL {
            let rules = compile_family(&c, NODE, &options, family);
            prop_assert_eq!(rules.validate(), Ok(()));
            check_family(&c, family, &rules, denied, deny_mid_stream_tcp)?;
            set_names.extend(rules.sets.keys().cloned());
        }
        // One ipset namespace for both families: no name is used twice.
        let count = set_names.len();
        set_names.sort();
        set_names.dedup();
        prop_assert_eq!(set_names.len(), count);
    }

    /// Same snapshot in another order, same ruleset and text; and a ruleset compared with itself
    /// renders no change.
    #[test]
    fn compilation_is_deterministic_and_idempotent(
        ns in namespaces(), pods in dual_stack_pods(), pols in policies(),
        cnps in cluster_policies(), v6 in any::<bool>()
    ) {
        let family = if v6 { IpFamily::V6 } else { IpFamily::V4 };
        let options = CompileOptions::default();
        let a = compile_family(
            &Cluster::new(ns.clone(), pods.clone(), vec![], pols.clone())
                .with_cluster_policies(cnps.clone()),
            NODE, &options, family,
        );
        let mut pods = pods;
        pods.reverse();
        let mut pols = pols;
        pols.reverse();
        let mut ns = ns;
        ns.reverse();
        let mut cnps = cnps;
        cnps.reverse();
        let b = compile_family(
            &Cluster::new(ns, pods, vec![], pols).with_cluster_policies(cnps),
            NODE, &options, family,
        );
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(render_chains(&a), render_chains(&b));
        prop_assert_eq!(render_iptables(&a, &render_chains(&b)), None);
        prop_assert_eq!(render_ipset(&a, Some(&b.sets)), "");
    }
}

/// Stale and established traffic: not NEW packets are decided by conntrack alone.
#[test]
fn conntrack_states_short_circuit() {
    let pod = pod_on(
        "x",
        "a",
        Labels::new(),
        Ipv4Addr::new(10, 0, 0, 1).into(),
        NODE,
    );
    let deny = Policy::deny_all_ingress("x", "deny");
    let c = Cluster::new(vec![], vec![pod], vec![], vec![deny]);
    let rules = compile(&c, NODE, &CompileOptions::default());
    let mut p = packet(
        Ipv4Addr::new(10, 9, 9, 9).into(),
        Ipv4Addr::new(10, 0, 0, 1).into(),
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
    let mut elsewhere = p;
    elsewhere.dst = Ipv4Addr::new(10, 0, 0, 2).into();
    assert_eq!(run(&rules, elsewhere), Ok(Outcome::Accept));
    elsewhere.ct_state = CtState::New;
    elsewhere.tcp_syn = false;
    assert_eq!(run(&rules, elsewhere), Ok(Outcome::Accept));
}

/// A TCP packet conntrack picked up mid-stream (NEW, no SYN), the next packet of a connection
/// whose entry the cut deleted: denied to and from a local pod on every path even where the
/// policies allow that direction (the server of a cut connection talking first), refused with
/// deny action reject; a SYN is judged by the policies as before; without the option, as
/// before too.
#[test]
fn tcp_picked_up_mid_stream_is_denied_for_local_pods() {
    let server = pod_on(
        "x",
        "server",
        Labels::new(),
        Ipv4Addr::new(10, 0, 0, 1).into(),
        NODE,
    );
    let client = pod_on(
        "y",
        "client",
        Labels::new(),
        Ipv4Addr::new(10, 0, 0, 2).into(),
        NODE,
    );
    // x denies all ingress; y allows everything.
    let deny = Policy::deny_all_ingress("x", "deny");
    let c = Cluster::new(vec![], vec![server, client], vec![], vec![deny]);
    let (server_ip, client_ip): (IpAddr, IpAddr) = (
        Ipv4Addr::new(10, 0, 0, 1).into(),
        Ipv4Addr::new(10, 0, 0, 2).into(),
    );
    let node_ip: IpAddr = Ipv4Addr::new(192, 168, 0, 1).into();
    let mid_stream = |src, dst, path| Packet {
        tcp_syn: false,
        ..packet(src, dst, Protocol::Tcp, 40000, path)
    };
    let rules = compile(&c, NODE, &CompileOptions::default());
    // The server's packet to the client: as a SYN, policy allows it (y is open, x's egress
    // too); mid-stream, denied.
    assert_eq!(
        run(
            &rules,
            packet(server_ip, client_ip, Protocol::Tcp, 40000, Path::Forward)
        ),
        Ok(Outcome::Accept)
    );
    assert_eq!(
        run(&rules, mid_stream(server_ip, client_ip, Path::Forward)),
        Ok(Outcome::Drop)
    );
    // The client's next packet is denied either way.
    assert_eq!(
        run(&rules, mid_stream(client_ip, server_ip, Path::Forward)),
        Ok(Outcome::Drop)
    );
    // A pod and the node's own addresses, both ways; and another node's packet to a pod.
    assert_eq!(
        run(&rules, mid_stream(client_ip, node_ip, Path::Input)),
        Ok(Outcome::Drop)
    );
    assert_eq!(
        run(&rules, mid_stream(node_ip, client_ip, Path::Output)),
        Ok(Outcome::Drop)
    );
    assert_eq!(
        run(
            &rules,
            packet(node_ip, client_ip, Protocol::Tcp, 80, Path::Output)
        ),
        Ok(Outcome::Accept)
    );
    // Other protocols have no handshake to go by: judged by the policies.
    let udp = packet(server_ip, client_ip, Protocol::Udp, 53, Path::Forward);
    assert_eq!(
        run(
            &rules,
            Packet {
                tcp_syn: false,
                ..udp
            }
        ),
        Ok(Outcome::Accept)
    );
    // Established packets are never touched.
    let established = Packet {
        ct_state: CtState::Established,
        ..mid_stream(server_ip, client_ip, Path::Forward)
    };
    assert_eq!(run(&rules, established), Ok(Outcome::Accept));

    let rejecting = compile(
        &c,
        NODE,
        &CompileOptions {
            deny_action: DenyAction::Reject,
            ..CompileOptions::default()
        },
    );
    assert_eq!(
        run(&rejecting, mid_stream(server_ip, client_ip, Path::Forward)),
        Ok(Outcome::Reject)
    );
    let without = compile(
        &c,
        NODE,
        &CompileOptions {
            deny_mid_stream_tcp: false,
            ..CompileOptions::default()
        },
    );
    assert_eq!(
        run(&without, mid_stream(server_ip, client_ip, Path::Forward)),
        Ok(Outcome::Accept)
    );
}
