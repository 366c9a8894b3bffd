//! Cluster snapshot → [`Ruleset`] for one node: the same answers as
//! [`Cluster::evaluate`], as chains and ipsets.
//!
//! Shape of the result (`iptables-save` of a node with one isolated pod):
//!
//! ```text
//! PALISADE-FORWARD   not to/from a local pod → RETURN; ESTABLISHED,RELATED → ACCEPT;
//!                    INVALID → DROP; -s pod → PAL-E-…; -d pod → PAL-I-…; clear the mark bit
//! PALISADE-INPUT     the same for a local pod talking to the node's own addresses (egress only)
//! PALISADE-OUTPUT    the node to its own pods: always allowed (RETURN)
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
//! At packet level a pod is its IP. Two consequences where the policy crate can tell more:
//! hostNetwork pods on this node reach local pods through OUTPUT and are allowed like the node
//! itself, and a named egress port resolves on whatever live pod owns the destination IP
//! (hostNetwork pods included).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortSpec};
use palisade_policy::{
    Cluster, Direction, Endpoint, IpFamily, Peer, Phase, Pod, Policy, Protocol, Rule,
};

use crate::ruleset::{
    CtState, FORWARD_CHAIN, INPUT_CHAIN, IpSet, Match, NEIGHBOUR_DISCOVERY, OUTPUT_CHAIN,
    REJECT_CHAIN, RejectWith, RuleLine, Ruleset, SetDir, SetEntry, SetKind, Target, hashed_name,
    local_set, set_name,
};
use crate::tiers::Tiers;

pub use palisade_policy::policy::{AUDIT_MODE, MODE_ANNOTATION};
/// NFLOG prefixes longer than this are cut by the kernel (64 bytes with the terminating NUL).
pub const MAX_NFLOG_PREFIX: usize = 63;
/// iptables' comment match holds 255 bytes.
pub const MAX_COMMENT: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// Netlink group audit logs go to (read them with ulogd, or `tcpdump -i nflog:<group>`).
    pub nflog_group: u16,
    /// The single mark bit Palisade borrows while a packet is in its chains.
    pub mark: u32,
    /// Audit log rate per pod and direction.
    pub audit_logs_per_minute: u32,
    pub audit_log_burst: u32,
    /// What happens to a packet no rule allows.
    pub deny_action: DenyAction,
    /// With [`DenyAction::Reject`]: answers a minute, node-wide, for TCP and for the rest each.
    pub rejects_per_minute: u32,
    pub reject_burst: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            nflog_group: 100,
            mark: 0x10000,
            audit_logs_per_minute: 10,
            audit_log_burst: 20,
            deny_action: DenyAction::Drop,
            rejects_per_minute: 6000,
            reject_burst: 100,
        }
    }
}

/// What happens to a packet that policies deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DenyAction {
    /// Drop silently: the client waits for its timeout (a scanner learns nothing).
    #[default]
    Drop,
    /// Refuse: a TCP reset, or ICMP admin-prohibited for other protocols, rate-limited (beyond
    /// the rate, drop): the client fails at once.
    Reject,
}

impl DenyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyAction::Drop => "drop",
            DenyAction::Reject => "reject",
        }
    }
}

/// kube-proxy's masquerade (0x4000) and drop (0x8000) bits.
pub const KUBE_PROXY_MARKS: u32 = 0xc000;

impl CompileOptions {
    /// Refuses a mark that is not one bit or that kube-proxy uses.
    pub fn validate(&self) -> Result<(), String> {
        if self.mark.count_ones() != 1 || self.mark & KUBE_PROXY_MARKS != 0 {
            return Err(format!(
                "mark {:#x} must be a single bit other than kube-proxy's 0x4000 and 0x8000",
                self.mark
            ));
        }
        if self.audit_logs_per_minute == 0 {
            return Err("audit log rate must be at least 1 a minute".into());
        }
        if self.rejects_per_minute == 0 {
            return Err("reject rate must be at least 1 a minute".into());
        }
        Ok(())
    }
}

/// Whether a policy only audits (logs and counts what it would drop).
pub fn is_audit(policy: &Policy) -> bool {
    policy.is_audit()
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
    let output = vec![RuleLine::new(
        vec![local_set(SetDir::Dst, false)],
        Target::Return,
        "palisade: from this node to its pods, always allowed",
    )];

    b.out.chains.insert(FORWARD_CHAIN.into(), forward);
    b.out.chains.insert(INPUT_CHAIN.into(), input);
    b.out.chains.insert(OUTPUT_CHAIN.into(), output);
    if options.deny_action == DenyAction::Reject {
        b.out
            .chains
            .insert(REJECT_CHAIN.into(), reject_chain(options, family));
    }
    b.out
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

pub(crate) struct Builder<'a> {
    pub(crate) cluster: &'a Cluster,
    pub(crate) options: &'a CompileOptions,
    pub(crate) family: IpFamily,
    pub(crate) out: Ruleset,
}

fn dir_tag(direction: Direction) -> char {
    match direction {
        Direction::Ingress => 'I',
        Direction::Egress => 'E',
    }
}

impl<'a> Builder<'a> {
    /// The chain that decides `direction` for `pod`, which `isolating` (not empty) isolate.
    fn pod_chain(&mut self, pod: &Pod, direction: Direction, isolating: &[&Policy]) -> String {
        let name = pod_chain_name(pod, direction);
        let subject = format!("{} {direction}", pod.key());
        let mark = self.options.mark;
        let mut lines = self.policy_lines(pod, direction, isolating);
        if !lines.is_empty() {
            // Egress and ingress of one packet are separate checks: start each unmarked.
            lines.insert(0, start_unmarked(&subject, mark));
        }
        lines.extend(self.verdict_lines(&subject, isolating));
        self.out.chains.insert(name.clone(), lines);
        name
    }

    /// For every rule of every isolating policy: a jump to its rule chain and a RETURN if that
    /// set the mark (the rule allows).
    pub(crate) fn policy_lines(
        &mut self,
        pod: &Pod,
        direction: Direction,
        isolating: &[&Policy],
    ) -> Vec<RuleLine> {
        let mark = self.options.mark;
        let mut lines = Vec::new();
        for policy in isolating {
            for (index, rule) in policy
                .rules(direction)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let what = rule_label(policy, direction, index);
                if let Some(chain) = self.rule_chain(policy, direction, index, rule, pod) {
                    lines.push(RuleLine::new(vec![], Target::Jump(chain), what.clone()));
                    lines.push(RuleLine::new(
                        vec![Match::Mark {
                            value: mark,
                            mask: mark,
                            negate: false,
                        }],
                        Target::Return,
                        format!("{what} allows"),
                    ));
                }
            }
        }
        lines
    }

    /// The end of a pod's NetworkPolicy part, reached when no rule allowed: the deny action, or
    /// with only audit policies isolating, a count and a log line (no verdict).
    pub(crate) fn verdict_lines(&self, subject: &str, isolating: &[&Policy]) -> Vec<RuleLine> {
        let mut lines = Vec::new();
        if isolating.iter().any(|p| !is_audit(p)) {
            let deny = match self.options.deny_action {
                DenyAction::Drop => Target::Drop,
                DenyAction::Reject => Target::Jump(REJECT_CHAIN.into()),
            };
            lines.push(RuleLine::new(
                vec![],
                deny,
                format!("{subject}: no rule allows"),
            ));
        } else {
            // Only audit policies isolate: count and log what would be dropped, let it pass.
            let names: Vec<&str> = isolating.iter().map(|p| p.name.as_str()).collect();
            let names = names.join(",");
            lines.push(RuleLine::new(
                vec![],
                Target::None,
                format!("{subject}: audit, would drop (isolated by {names})"),
            ));
            lines.push(RuleLine::new(
                vec![Match::Limit {
                    per_minute: self.options.audit_logs_per_minute,
                    burst: self.options.audit_log_burst,
                }],
                Target::Nflog {
                    group: self.options.nflog_group,
                    prefix: nflog_prefix(&format!("palisade-audit {subject} {names}")),
                },
                format!("{subject}: audit log"),
            ));
        }
        lines
    }

    /// The chain of one rule as it applies to `pod` (ingress named ports resolve on it), or
    /// `None` when the rule can match nothing.
    fn rule_chain(
        &mut self,
        policy: &Policy,
        direction: Direction,
        index: usize,
        rule: &Rule,
        pod: &Pod,
    ) -> Option<String> {
        let what = rule_label(policy, direction, index);
        let idx = index.to_string();
        let base = [
            policy.namespace.as_str(),
            policy.name.as_str(),
            direction.as_str(),
            idx.as_str(),
        ];

        // Ports: alternatives of (protocol, range); egress named ports go to an ip,port set.
        let mut port_alts: Vec<Vec<Match>> = Vec::new();
        let mut named: Vec<(Protocol, &str)> = Vec::new();
        let mut resolution = String::new();
        if rule.ports.is_empty() {
            port_alts.push(Vec::new());
        }
        for m in &rule.ports {
            match &m.port {
                PortSpec::Any => port_alts.push(vec![Match::Protocol(m.protocol)]),
                PortSpec::Range(lo, hi) => {
                    port_alts.push(vec![Match::Protocol(m.protocol), Match::DstPorts(*lo, *hi)]);
                }
                PortSpec::Named(port_name) => match direction {
                    Direction::Ingress => {
                        let port = pod.resolve_named_port(port_name, m.protocol);
                        resolution.push_str(&format!("{port_name}/{}={port:?};", m.protocol));
                        if let Some(port) = port {
                            port_alts.push(vec![
                                Match::Protocol(m.protocol),
                                Match::DstPorts(port, port),
                            ]);
                        }
                    }
                    Direction::Egress => named.push((m.protocol, port_name)),
                },
            }
        }

        let chain = hashed_name('R', &[&base[..], &[resolution.as_str()]].concat());
        if self.out.chains.contains_key(&chain) {
            return Some(chain);
        }

        let set_dir = match direction {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        };
        let mut peer_alts: Vec<Option<Match>> = Vec::new();
        if rule.peers.is_empty() {
            peer_alts.push(None);
        }
        if !port_alts.is_empty() {
            for peer in &rule.peers {
                let set = match peer {
                    Peer::Pods { .. } => {
                        let name = set_name('S', &peer_key(&policy.namespace, peer), self.family);
                        self.pod_set(&name, &policy.namespace, peer);
                        Some(name)
                    }
                    Peer::IpBlock(block) => {
                        let name = set_name('N', &peer_key(&policy.namespace, peer), self.family);
                        if !self.out.sets.contains_key(&name) {
                            let entries = ip_block_entries(block, self.family);
                            if let Some(entries) = entries {
                                let set = IpSet {
                                    kind: SetKind::HashNet,
                                    family: self.family,
                                    entries,
                                };
                                self.out.sets.insert(name.clone(), set);
                            }
                        }
                        self.out.sets.contains_key(&name).then_some(name)
                    }
                };
                if let Some(name) = set {
                    peer_alts.push(Some(Match::Set {
                        name,
                        dir: set_dir,
                        negate: false,
                    }));
                }
            }
        }

        let allow = Target::SetMark {
            value: self.options.mark,
            mask: self.options.mark,
        };
        let mut lines = Vec::new();
        for peer in &peer_alts {
            for ports in &port_alts {
                let matches = peer.iter().chain(ports).cloned().collect();
                lines.push(RuleLine::new(matches, allow.clone(), what.clone()));
            }
        }
        if !named.is_empty() {
            let name = set_name('P', &named_key(policy, rule, &named), self.family);
            self.named_port_set(&name, policy, rule, &named);
            lines.push(RuleLine::new(
                vec![Match::Set {
                    name,
                    dir: SetDir::DstIpPort,
                    negate: false,
                }],
                allow,
                format!("{what} named ports"),
            ));
        }
        if lines.is_empty() {
            return None;
        }
        self.out.chains.insert(chain.clone(), lines);
        Some(chain)
    }

    /// A `hash:ip` set of the pods a pod-selecting peer names.
    pub(crate) fn pod_set(&mut self, name: &str, policy_ns: &str, peer: &Peer) {
        if self.out.sets.contains_key(name) {
            return;
        }
        let cluster = self.cluster;
        // Narrow by namespace first (cheap), then ask the policy crate (exact).
        let candidates: Box<dyn Iterator<Item = &Pod>> = match peer {
            Peer::Pods {
                namespaces: NamespaceScope::Matching(sel),
                ..
            } => Box::new(
                cluster
                    .namespaces()
                    .filter(move |n| sel.matches(&n.labels))
                    .flat_map(move |n| cluster.pods_in(&n.name)),
            ),
            _ => Box::new(cluster.pods_in(policy_ns)),
        };
        let family = self.family;
        let entries = candidates
            .filter(|p| cluster.peer_matches(policy_ns, peer, &Endpoint::Pod(p)))
            .filter_map(|p| p.ip_of(family))
            .map(SetEntry::Ip)
            .collect();
        self.out.sets.insert(
            name.to_string(),
            IpSet {
                kind: SetKind::HashIp,
                family,
                entries,
            },
        );
    }

    /// A `hash:ip,port` set of (pod, protocol, port) for the live pods that are peers of `rule`
    /// and define one of the `named` ports: egress named ports resolve on the destination.
    fn named_port_set(
        &mut self,
        name: &str,
        policy: &Policy,
        rule: &Rule,
        named: &[(Protocol, &str)],
    ) {
        if self.out.sets.contains_key(name) {
            return;
        }
        let mut set = IpSet::new(SetKind::HashIpPort, self.family);
        for pod in self.cluster.pods() {
            let Some(ip) = pod.ip_of(self.family) else {
                continue;
            };
            if finished(pod) {
                continue;
            }
            let ports: Vec<(Protocol, u16)> = named
                .iter()
                .filter_map(|(proto, n)| Some((*proto, pod.resolve_named_port(n, *proto)?)))
                .collect();
            if ports.is_empty() {
                continue;
            }
            // The pod as this family's packets see it: an ipBlock peer holds its address of
            // this family or does not match.
            let seen = pod.in_family(self.family);
            if !self
                .cluster
                .rule_peers_match(&policy.namespace, rule, &Endpoint::Pod(&seen))
            {
                continue;
            }
            for (proto, port) in ports {
                set.entries.insert(SetEntry::IpPort(ip, proto, port));
            }
        }
        self.out.sets.insert(name.to_string(), set);
    }
}

/// What a peer's set is named after: what it selects, not which policy it is in, so policies
/// that name the same peers share one set (a namespaceSelector peer does not even depend on
/// the policy's namespace). Never the members: a pod coming or going must not rename a set.
pub(crate) fn peer_key(policy_ns: &str, peer: &Peer) -> Vec<String> {
    match peer {
        Peer::Pods { namespaces, pods } => {
            let scope = match namespaces {
                NamespaceScope::Own => format!("own {policy_ns}"),
                NamespaceScope::Matching(sel) => format!("namespaces {:?}", sel.requirements()),
            };
            vec!["pods".into(), scope, format!("{:?}", pods.requirements())]
        }
        Peer::IpBlock(block) => {
            let mut key = vec!["block".to_string(), block.cidr.to_string()];
            key.extend(block.except.iter().map(ToString::to_string));
            key
        }
    }
}

/// What an egress named-port set is named after: the rule's peers (as in [`peer_key`]) and
/// the port names, so rules that say the same in different policies share one set.
fn named_key(policy: &Policy, rule: &Rule, named: &[(Protocol, &str)]) -> Vec<String> {
    let mut key = vec!["named".to_string()];
    for (protocol, name) in named {
        key.push(format!("{protocol}/{name}"));
    }
    if rule.peers.is_empty() {
        key.push("any peer".into());
    }
    for peer in &rule.peers {
        key.push("peer".into());
        key.extend(peer_key(&policy.namespace, peer));
    }
    key
}

/// The chain that decides `direction` for `pod`: named after the pod and direction, so the
/// same pod keeps its chain whatever its policies.
pub(crate) fn pod_chain_name(pod: &Pod, direction: Direction) -> String {
    hashed_name(
        dir_tag(direction),
        &[&pod.namespace, &pod.name, direction.as_str()],
    )
}

/// Clears Palisade's mark bit: the first line of a chain whose rule chains set it.
pub(crate) fn start_unmarked(subject: &str, mark: u32) -> RuleLine {
    RuleLine::new(
        vec![],
        Target::SetMark {
            value: 0,
            mask: mark,
        },
        format!("{subject}: start unmarked"),
    )
}

/// `ns/policy ingress[0]`: how rule lines name their rule.
fn rule_label(policy: &Policy, direction: Direction, index: usize) -> String {
    format!("{}/{} {direction}[{index}]", policy.namespace, policy.name)
}

/// The `hash:net` entries that match exactly the addresses of `family` an ipBlock contains, or
/// `None` for a block of the other family (it matches no packet of this one). One set per block:
/// excepts of overlapping blocks in one set would punch holes into each other under
/// longest-prefix matching.
pub fn ip_block_entries(
    block: &IpBlockPeer,
    family: IpFamily,
) -> Option<std::collections::BTreeSet<SetEntry>> {
    let cidr = block.cidr.trunc();
    if IpFamily::of(&cidr.addr()) != family {
        return None;
    }
    // hash:net cannot hold a /0: two halves instead.
    let mut matching: BTreeMap<IpNet, bool> = if cidr.prefix_len() == 0 {
        cidr.subnets(1)
            .map(|s| s.map(|n| (n, true)).collect())
            .unwrap_or_default()
    } else {
        [(cidr, true)].into()
    };
    for except in &block.except {
        // An except of the other family is outside the block (the API refuses it anyway).
        if IpFamily::of(&except.addr()) != family {
            continue;
        }
        let except = except.trunc();
        if except.prefix_len() == 0 {
            return Some(Default::default());
        }
        // An except equal to a matching entry cancels it (one element cannot be both).
        match matching.get(&except) {
            Some(true) => {
                matching.remove(&except);
            }
            _ => {
                matching.insert(except, false);
            }
        }
    }
    Some(
        matching
            .into_iter()
            .map(|(net, matches)| SetEntry::Net {
                net,
                nomatch: !matches,
            })
            .collect(),
    )
}

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
    fn options_refuse_kube_proxy_marks() {
        assert_eq!(CompileOptions::default().validate(), Ok(()));
        for mark in [0x4000, 0x8000, 0x30000, 0] {
            let options = CompileOptions {
                mark,
                ..Default::default()
            };
            assert!(options.validate().is_err(), "{mark:#x}");
        }
    }

    #[test]
    fn ip_blocks_become_exact_hash_net_entries() {
        let block = |cidr: &str, except: &[&str]| IpBlockPeer {
            cidr: cidr.parse().expect("cidr"),
            except: except.iter().map(|e| e.parse().expect("cidr")).collect(),
        };
        let entries = |b: &IpBlockPeer| -> Vec<String> {
            ip_block_entries(b, IpFamily::of(&b.cidr.addr()))
                .into_iter()
                .flatten()
                .map(|e| match e {
                    SetEntry::Net { net, nomatch } => {
                        format!("{net}{}", if nomatch { " nomatch" } else { "" })
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            entries(&block("10.0.0.0/8", &["10.0.0.0/8"])),
            Vec::<String>::new()
        );
        assert_eq!(
            entries(&block("0.0.0.0/0", &["0.0.0.0/1", "10.0.0.0/8"])),
            ["10.0.0.0/8 nomatch", "128.0.0.0/1"]
        );
        assert_eq!(
            entries(&block("0.0.0.0/0", &["0.0.0.0/0"])),
            Vec::<String>::new()
        );
        assert_eq!(
            ip_block_entries(&block("fd00::/64", &[]), IpFamily::V4),
            None
        );
        assert_eq!(
            ip_block_entries(&block("10.0.0.0/8", &[]), IpFamily::V6),
            None
        );
        assert_eq!(
            entries(&block("::/0", &["fd00::/48", "fd00:0:0:1::/64"])),
            [
                "::/1",
                "8000::/1",
                "fd00::/48 nomatch",
                "fd00:0:0:1::/64 nomatch"
            ]
        );
        assert_eq!(
            entries(&block("fd00::/64", &["fd00::/64"])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn nflog_prefixes_are_cut_on_a_character_boundary() {
        let long = format!("palisade-audit {}", "é".repeat(40));
        let cut = nflog_prefix(&long);
        assert!(cut.len() <= MAX_NFLOG_PREFIX && long.starts_with(&cut));
    }
}
