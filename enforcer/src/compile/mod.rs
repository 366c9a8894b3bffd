//! Cluster snapshot → [`Ruleset`] for one node: the same answers as
//! [`Cluster::evaluate`], as chains and ipsets.
//!
//! Shape of the result (`iptables-save` of a node with one isolated pod):
//!
//! ```text
//! PALISADE-FORWARD   not to/from a local pod → RETURN; ESTABLISHED,RELATED → ACCEPT;
//!                    INVALID → DROP; TCP NEW without SYN → deny; -s pod → PAL-E-…;
//!                    -d pod → PAL-I-…; clear the mark bit
//! PALISADE-INPUT     the same for a local pod talking to the node's own addresses (egress only)
//! PALISADE-OUTPUT    the node to its own pods: TCP NEW without SYN → deny; the rest allowed
//!                    (RETURN)
//! PAL-I-… / PAL-E-…  per pod and direction, only if a policy isolates it: clear the bit, then
//!                    for every rule of every isolating policy jump to its PAL-R-… chain and
//!                    RETURN if that set the bit; at the end DROP, or with deny action reject a
//!                    jump to PALISADE-REJECT (in audit: count + NFLOG, no verdict)
//! PAL-R-…            per policy rule: one line per (peer, port) pair that sets the bit
//! PALISADE-REJECT    only with deny action reject: TCP → reset, other → ICMP admin-prohibited,
//!                    each within a node-wide rate; beyond it DROP
//! ```
//!
//! The verdict is taken at one place, the end of a pod chain, so drop or reject changes that one
//! line per chain and nothing else: the same packets are denied either way (ESTABLISHED/RELATED
//! still accepted first, INVALID still dropped: answering them would help nobody), and audit
//! chains, which take no verdict, are the same. The answers are rate-limited node-wide, so a
//! flood of denied packets costs the node no more than dropping them would once over the rate.
//!
//! Allowed packets leave Palisade's chains by RETURN, never ACCEPT: Palisade only takes
//! permissions away, so the rest of the filter table (kube-proxy's service rejects and
//! firewall, the CNI's rules, the administrator's) still has its say and installing Palisade can
//! never open what was closed. The one ACCEPT is for ESTABLISHED,RELATED packets (the design's
//! fast path): their connection already passed the whole table when it was new.
//!
//! A TCP packet conntrack calls NEW that is not a SYN (`! --syn`) is denied before any policy:
//! with the kernel's default `nf_conntrack_tcp_loose=1` that is a connection picked up
//! mid-stream, whose entry is gone. Cutting a connection deletes its entry, and without this
//! line the next packet of its *server* would start a "new" connection from the server to the
//! client, which the policies judge in the wrong direction and may allow. The legitimate
//! connections it also denies are those whose entry expired while idle (kube-proxy's 24 h
//! established timeout) or was flushed; with cutting off (`deny_mid_stream_tcp`) the line is
//! not written. It is a common firewall baseline (nftables: `ct state new tcp flags &
//! (fin|syn|rst|ack) != syn drop`), kept to the node's pods here.
//!
//! Why a mark bit instead of RETURN straight out of the rule chain: a rule is the AND of its
//! peers (OR) and its ports (OR); that takes a sub-chain, and the sub-chain's RETURN cannot end
//! the pod chain, so it leaves a bit the pod chain tests. The bit (default 0x10000) stays clear
//! of kube-proxy's 0x4000 (masquerade) and 0x8000 (drop), is cleared at the start of every pod
//! chain (egress and ingress of one packet are separate checks) and cleared again before the
//! entry chain ends, so packets leave with the mark they came with.
//!
//! Peers are ipsets named after the rule (policy, direction, rule index, peer index), not after
//! their content: a pod coming or going changes set members only, never a chain, so the
//! iptables side of a sync is empty in the common case.
//!
//! One ruleset per IP family ([`compile_family`]): `iptables` gets the IPv4 one, `ip6tables`
//! the IPv6 one, of the same shape. A dual-stack pod is in both (each with its address of that
//! family), a single-stack pod only in its own. An ipBlock only matches addresses of its own
//! family: in the other family's ruleset it is no peer, and a rule whose peers are all of the
//! other family matches nothing there rather than everything. Set names of the IPv6 ruleset
//! differ from the IPv4 ones ([`set_name`]), since ipsets of both families share one namespace;
//! chains are per family anyway and keep their names.
//!
//! IPv6 only: ICMPv6 neighbour discovery (types 133–137) is let through (RETURN) in
//! PALISADE-FORWARD and PALISADE-INPUT right after the not-a-local-pod line, before conntrack
//! (to which these packets are INVALID): a pod answering the node's neighbour solicitation from
//! its global address must never be cut, or the node loses its pods. With deny action reject,
//! denied packets other than TCP are refused with ICMPv6 admin-prohibited.
//!
//! Where it is written: this file the entry chains and the node's local pods; `network_policy.rs`
//! a pod's NetworkPolicy chain and the lowering of a NetworkPolicy rule; `cluster_policy.rs` the
//! ClusterNetworkPolicy tiers around it and the lowering of their rules; `chains.rs` the one
//! emitter of rule chains both kinds of rule are lowered for; `sets.rs` the ipsets of peers and
//! named ports; `options.rs` what the compiler is asked for.
//!
//! At packet level a pod is its IP. Two consequences where the policy crate can tell more:
//! hostNetwork pods on this node reach local pods through OUTPUT and are allowed like the node
//! itself, and a named egress port resolves on whatever live pod owns the destination IP
//! (hostNetwork pods included).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use palisade_policy::{Cluster, Direction, IpFamily, Phase, Pod, Policy, Protocol};

use crate::ruleset::{
    CtState, DENIED_CHAIN, DENY_PREFIX, FORWARD_CHAIN, INPUT_CHAIN, IpSet, Match,
    NEIGHBOUR_DISCOVERY, OUTPUT_CHAIN, REJECT_CHAIN, RejectWith, RuleLine, Ruleset, SetDir,
    SetEntry, SetKind, Target, local_set,
};

mod chains;
mod cluster_policy;
mod network_policy;
mod options;
mod sets;

use cluster_policy::Tiers;
pub use options::{CompileOptions, DenyAction, KUBE_PROXY_MARKS};

pub use palisade_policy::policy::{AUDIT_MODE, MODE_ANNOTATION, MODE_LABEL};
/// NFLOG prefixes longer than this are cut by the kernel (64 bytes with the terminating NUL).
pub const MAX_NFLOG_PREFIX: usize = 63;
/// iptables' comment match holds 255 bytes.
pub const MAX_COMMENT: usize = 255;

/// Whether a policy only audits (logs and counts what it would drop): annotated so, or its
/// namespace labelled so ([`Cluster::audit_mode`]).
pub fn is_audit(cluster: &Cluster, policy: &Policy) -> bool {
    cluster.audit_mode(policy).is_some()
}

/// A pod's IPv4 address, if it has one.
pub fn ipv4(pod: &Pod) -> Option<Ipv4Addr> {
    match pod.ip_of(IpFamily::V4) {
        Some(IpAddr::V4(ip)) => Some(ip),
        _ => None,
    }
}

pub(crate) fn finished(pod: &Pod) -> bool {
    matches!(pod.phase, Phase::Succeeded | Phase::Failed)
}

/// The pods this node enforces for: bound to it, with an IP address, not on the host network,
/// not finished. In cluster order (namespace, name).
pub fn local_pods<'a>(cluster: &'a Cluster, node: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
    cluster.pods().iter().filter(move |p| {
        p.node.as_deref() == Some(node)
            && p.families().next().is_some()
            && p.is_target()
            && !finished(p)
    })
}

/// The local pods ([`local_pods`]) with an address of `family`.
pub fn local_pods_of<'a>(
    cluster: &'a Cluster,
    node: &'a str,
    family: IpFamily,
) -> impl Iterator<Item = &'a Pod> + 'a {
    local_pods(cluster, node).filter(move |p| p.ip_of(family).is_some())
}

/// Compiles the IPv4 ruleset for `node` ([`compile_family`]).
pub fn compile(cluster: &Cluster, node: &str, options: &CompileOptions) -> Ruleset {
    compile_family(cluster, node, options, IpFamily::V4)
}

/// Compiles the ruleset of each of `families` for `node`, in that order.
pub fn compile_families(
    cluster: &Cluster,
    node: &str,
    options: &CompileOptions,
    families: &[IpFamily],
) -> Vec<Ruleset> {
    families
        .iter()
        .map(|f| compile_family(cluster, node, options, *f))
        .collect()
}

/// Compiles the ruleset of one IP family for `node`. Pure and deterministic: the same snapshot
/// gives the same ruleset, whatever order objects arrived in.
pub fn compile_family(
    cluster: &Cluster,
    node: &str,
    options: &CompileOptions,
    family: IpFamily,
) -> Ruleset {
    let mut b = Builder {
        cluster,
        options,
        family,
        out: Ruleset::empty(family),
    };
    let mut local = IpSet::new(SetKind::HashIp, family);
    let mut egress_dispatch = Vec::new();
    let mut ingress_dispatch = Vec::new();
    for pod in local_pods(cluster, node) {
        let Some(ip) = pod.ip_of(family) else {
            continue;
        };
        local.entries.insert(SetEntry::Ip(ip));
        let host = IpNet::from(ip);
        for direction in [Direction::Egress, Direction::Ingress] {
            let isolating: Vec<&Policy> =
                cluster.isolating(pod, direction).map(|(_, p)| p).collect();
            let tiers = Tiers::of(cluster, pod, direction, !isolating.is_empty());
            let chain = if !tiers.is_empty() {
                b.tiered_chain(pod, direction, &tiers, &isolating)
            } else if !isolating.is_empty() {
                b.pod_chain(pod, direction, &isolating)
            } else {
                continue;
            };
            let comment = format!("{} {direction}", pod.key());
            match direction {
                Direction::Egress => egress_dispatch.push(RuleLine::new(
                    vec![Match::Src(host)],
                    Target::Jump(chain),
                    comment,
                )),
                Direction::Ingress => ingress_dispatch.push(RuleLine::new(
                    vec![Match::Dst(host)],
                    Target::Jump(chain),
                    comment,
                )),
            }
        }
    }
    let local_name = local_set(family);
    b.out.sets.insert(local_name.to_string(), local);
    let mark = options.mark;

    let local_set = |dir, negate| Match::Set {
        name: local_name.into(),
        dir,
        negate,
    };
    // IPv6 neighbour discovery is never Palisade's to judge (and conntrack calls it INVALID).
    let neighbour_discovery = || -> Vec<RuleLine> {
        match family {
            IpFamily::V4 => Vec::new(),
            IpFamily::V6 => NEIGHBOUR_DISCOVERY
                .iter()
                .map(|t| {
                    RuleLine::new(
                        vec![Match::Icmpv6Type(*t)],
                        Target::Return,
                        "palisade: IPv6 neighbour discovery",
                    )
                })
                .collect(),
        }
    };
    // A TCP packet new to conntrack that opens no handshake: conntrack lost the connection's
    // entry (the cut deleted it) and picked the connection up mid-stream. Denied whatever the
    // policies, or a cut connection whose server talks first would come back as a new
    // connection from the server, which the client's side may allow.
    let mid_stream = || {
        let deny = match options.deny_action {
            DenyAction::Drop => Target::Drop,
            DenyAction::Reject => Target::Jump(REJECT_CHAIN.into()),
        };
        options.deny_mid_stream_tcp.then(|| {
            RuleLine::new(
                vec![
                    Match::Protocol(Protocol::Tcp),
                    Match::TcpNotSyn,
                    Match::CtState(vec![CtState::New]),
                ],
                deny,
                "palisade: TCP picked up mid-stream, no handshake",
            )
        })
    };
    let conntrack = || {
        [
            RuleLine::new(
                vec![Match::CtState(vec![CtState::Related, CtState::Established])],
                Target::Accept,
                "palisade: established connections",
            ),
            RuleLine::new(
                vec![Match::CtState(vec![CtState::Invalid])],
                Target::Drop,
                "palisade: invalid packets",
            ),
        ]
        .into_iter()
        .chain(mid_stream())
    };
    let unmark = || {
        RuleLine::new(
            vec![],
            Target::SetMark {
                value: 0,
                mask: mark,
            },
            "palisade: leave the mark as found",
        )
    };

    let mut forward = vec![RuleLine::new(
        vec![local_set(SetDir::Src, true), local_set(SetDir::Dst, true)],
        Target::Return,
        "palisade: not from or to a local pod",
    )];
    forward.extend(neighbour_discovery());
    forward.extend(conntrack());
    forward.extend(egress_dispatch.iter().cloned());
    forward.extend(ingress_dispatch);
    forward.push(unmark());

    // Local pods talking to the node's own addresses: only their egress applies.
    let mut input = vec![RuleLine::new(
        vec![local_set(SetDir::Src, true)],
        Target::Return,
        "palisade: not from a local pod",
    )];
    input.extend(neighbour_discovery());
    input.extend(conntrack());
    input.extend(egress_dispatch);
    input.push(unmark());

    // The node to its own pods (kubelet probes): always allowed, and only recognised on this
    // path, since a source address in FORWARD could be spoofed.
    // Mid-stream TCP from the node to a pod too: a cut connection of a pod to a server on the
    // node's network would otherwise come back the same way.
    let mut output: Vec<RuleLine> = mid_stream()
        .map(|mut line| {
            line.matches.insert(0, local_set(SetDir::Dst, false));
            line
        })
        .into_iter()
        .collect();
    output.push(RuleLine::new(
        vec![local_set(SetDir::Dst, false)],
        Target::Return,
        "palisade: from this node to its pods, always allowed",
    ));

    b.out.chains.insert(FORWARD_CHAIN.into(), forward);
    b.out.chains.insert(INPUT_CHAIN.into(), input);
    b.out.chains.insert(OUTPUT_CHAIN.into(), output);
    let jumps_to_denied = b
        .out
        .chains
        .values()
        .flatten()
        .any(|l| matches!(&l.target, Target::Jump(c) if c == DENIED_CHAIN));
    if jumps_to_denied {
        b.out
            .chains
            .insert(DENIED_CHAIN.into(), denied_chain(options));
    }
    if options.deny_action == DenyAction::Reject {
        b.out
            .chains
            .insert(REJECT_CHAIN.into(), reject_chain(options, family));
    }
    b.out
}

/// With denial logs, where ClusterNetworkPolicy Deny rules send what they match: the first
/// packet of a connection attempt to the NFLOG group within the node-wide denial log rate, then
/// DROP (a ClusterNetworkPolicy Deny always drops, whatever the deny action).
fn denied_chain(options: &CompileOptions) -> Vec<RuleLine> {
    vec![
        RuleLine::new(
            vec![
                Match::CtState(vec![CtState::New]),
                Match::Limit {
                    per_minute: options.deny_logs_per_minute,
                    burst: options.deny_log_burst,
                },
            ],
            Target::Nflog {
                group: options.nflog_group,
                prefix: format!("{DENY_PREFIX} cluster"),
            },
            "palisade: ClusterNetworkPolicy denial log",
        ),
        RuleLine::new(
            vec![],
            Target::Drop,
            "palisade: denied by a ClusterNetworkPolicy",
        ),
    ]
}

/// Denied packets with deny action reject: answered within the rate (TCP and the rest each have
/// their own, per family), dropped beyond it.
fn reject_chain(options: &CompileOptions, family: IpFamily) -> Vec<RuleLine> {
    let prohibited = match family {
        IpFamily::V4 => "palisade: denied, refused with ICMP admin-prohibited",
        IpFamily::V6 => "palisade: denied, refused with ICMPv6 admin-prohibited",
    };
    let limit = Match::Limit {
        per_minute: options.rejects_per_minute,
        burst: options.reject_burst,
    };
    vec![
        RuleLine::new(
            vec![Match::Protocol(Protocol::Tcp), limit.clone()],
            Target::Reject(RejectWith::TcpReset),
            "palisade: denied, refused with a TCP reset",
        ),
        RuleLine::new(
            vec![Match::Protocol(Protocol::Tcp)],
            Target::Drop,
            "palisade: denied, over the reject rate",
        ),
        RuleLine::new(
            vec![limit],
            Target::Reject(RejectWith::prohibited(family)),
            prohibited,
        ),
        RuleLine::new(
            vec![],
            Target::Drop,
            "palisade: denied, over the reject rate",
        ),
    ]
}

/// The ruleset of one family while it is written; the rule chains and sets it holds are shared
/// by every pod that sees them alike.
struct Builder<'a> {
    cluster: &'a Cluster,
    options: &'a CompileOptions,
    family: IpFamily,
    out: Ruleset,
}

pub use sets::{ip_block_entries, resolve_named};

/// Cut to what the kernel keeps, on a character boundary.
pub fn nflog_prefix(text: &str) -> String {
    truncate(text, MAX_NFLOG_PREFIX)
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nflog_prefixes_are_cut_on_a_character_boundary() {
        let long = format!("palisade-audit {}", "é".repeat(40));
        let cut = nflog_prefix(&long);
        assert!(cut.len() <= MAX_NFLOG_PREFIX && long.starts_with(&cut));
    }
}
