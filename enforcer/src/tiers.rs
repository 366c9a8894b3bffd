//! ClusterNetworkPolicy's tiers in a pod's chain, around its NetworkPolicy part.
//!
//! A pod and direction that a ClusterNetworkPolicy's subject selects (with rules in that
//! direction) gets this chain instead of the NetworkPolicy-only one, under the same name:
//!
//! ```text
//! PAL-I-… / PAL-E-…  clear the bit
//!                    Admin rules in Palisade's order (tier, priority, name; rules in order):
//!                      jump to the rule's PAL-C-… chain, then if it set the bit:
//!                      Accept → RETURN (allowed), Deny → DROP, Pass → jump to PAL-T-… and
//!                      RETURN (allowed) if that came back
//!                    then the rest, inline when no Pass leads to it, else a jump to PAL-T-…
//! PAL-T-…            the rest: clear the bit; if NetworkPolicies isolate the pod in this
//!                    direction their rules and verdict, exactly as without tiers (the Baseline
//!                    tier is never reached); otherwise the Baseline rules (Accept and Pass →
//!                    RETURN, Deny: its chain drops); at the end set the bit (allowed)
//! PAL-C-…            per ClusterNetworkPolicy rule: one line per (peer, port) pair that sets the
//!                    bit (DROP for a Deny rule); peers are the same `hash:ip` sets NetworkPolicy peers use (a
//!                    `namespaces` peer is a namespaceSelector with every pod), networks a
//!                    `hash:net` set that also holds pod addresses
//! ```
//!
//! A ClusterNetworkPolicy Deny always drops silently, whatever `--deny-action` says: upstream
//! defines Deny as a drop and its conformance tests count a refused connection as a failure.
//! `--deny-action reject` applies to what NetworkPolicies deny.
//!
//! Where nothing follows a Pass (no NetworkPolicy isolates the pod in that direction and no
//! Baseline rule applies), the Pass line returns at once: the default allow.

use ipnet::IpNet;
use palisade_policy::cluster_policy::{
    Action, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, Tier,
};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope};
use palisade_policy::{Cluster, Direction, Peer, Pod, Policy, Protocol, Selector};

use crate::compile::{
    Builder, finished, ip_block_entries, is_audit, peer_key, pod_chain_name, start_unmarked,
};
use crate::ruleset::{
    IpSet, Match, RuleLine, SetDir, SetEntry, SetKind, Target, hashed_name, set_name,
};

/// One ClusterNetworkPolicy rule that applies to a pod in one direction.
pub(crate) struct TierRule<'a> {
    pub policy: &'a ClusterPolicy,
    pub index: usize,
    pub rule: &'a ClusterRule,
}

/// The ClusterNetworkPolicy rules of both tiers that apply to a pod in one direction, in
/// Palisade's order.
pub(crate) struct Tiers<'a> {
    pub admin: Vec<TierRule<'a>>,
    /// Empty when NetworkPolicies isolate the pod in this direction: then the Baseline tier is
    /// never reached.
    pub baseline: Vec<TierRule<'a>>,
}

impl<'a> Tiers<'a> {
    pub fn of(cluster: &'a Cluster, pod: &Pod, direction: Direction, isolated: bool) -> Self {
        let mut tiers = Tiers {
            admin: Vec::new(),
            baseline: Vec::new(),
        };
        for policy in cluster.cluster_policies() {
            let rules = policy.rules(direction);
            if rules.is_empty()
                || (policy.tier == Tier::Baseline && isolated)
                || !cluster.cluster_policy_selects(policy, pod)
            {
                continue;
            }
            let list = match policy.tier {
                Tier::Admin => &mut tiers.admin,
                Tier::Baseline => &mut tiers.baseline,
            };
            list.extend(rules.iter().enumerate().map(|(index, rule)| TierRule {
                policy,
                index,
                rule,
            }));
        }
        tiers
    }

    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.baseline.is_empty()
    }
}

/// `admin cnp/deny-egress egress[2]`: how lines name a ClusterNetworkPolicy rule.
fn label(r: &TierRule, direction: Direction) -> String {
    let tier = match r.policy.tier {
        Tier::Admin => "admin",
        Tier::Baseline => "baseline",
    };
    let name = match &r.rule.name {
        Some(n) => format!(" ({n})"),
        None => String::new(),
    };
    format!(
        "{tier} cnp/{} {direction}[{}]{name}",
        r.policy.name, r.index
    )
}

/// A named port as the destination pod defines it: (protocol, number). A container port's name
/// is unique in its pod and carries its protocol.
pub fn resolve_named(pod: &Pod, name: &str) -> Option<(Protocol, u16)> {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .find_map(|p| Some((p, pod.resolve_named_port(name, p)?)))
}

/// A `namespaces` or `pods` peer as the NetworkPolicy peer that selects the same pods, so both
/// kinds share one set; `None` for `networks`.
fn as_pod_peer(peer: &ClusterPeer) -> Option<Peer> {
    match peer {
        ClusterPeer::Namespaces(namespaces) => Some(Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces.clone()),
            pods: Selector::everything(),
        }),
        ClusterPeer::Pods { namespaces, pods } => Some(Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces.clone()),
            pods: pods.clone(),
        }),
        ClusterPeer::Networks(_) => None,
    }
}

/// What a networks set is named after: its networks, sorted (the same list in any order is one
/// set).
fn networks_key(nets: &[IpNet]) -> Vec<String> {
    let mut key: Vec<String> = nets.iter().map(|n| n.trunc().to_string()).collect();
    key.sort();
    key.dedup();
    key.insert(0, "networks".into());
    key
}

impl Builder<'_> {
    /// The chain that decides `direction` for `pod` when ClusterNetworkPolicy rules apply to it.
    pub(crate) fn tiered_chain(
        &mut self,
        pod: &Pod,
        direction: Direction,
        tiers: &Tiers,
        isolating: &[&Policy],
    ) -> String {
        let name = pod_chain_name(pod, direction);
        let subject = format!("{} {direction}", pod.key());
        let mark = self.options.mark;
        let marked = || {
            vec![Match::Mark {
                value: mark,
                mask: mark,
                negate: false,
            }]
        };

        // After the Admin tier: NetworkPolicy where it isolates, else the Baseline tier.
        let mut rest = Vec::new();
        let rest_denies = isolating.iter().any(|p| !is_audit(p));
        if !isolating.is_empty() {
            rest.extend(self.policy_lines(pod, direction, isolating));
            rest.extend(self.verdict_lines(&subject, isolating));
        } else {
            for r in &tiers.baseline {
                let Some(chain) = self.cluster_rule_chain(r, direction, pod) else {
                    continue;
                };
                let what = label(r, direction);
                // A Deny rule's chain drops by itself.
                if r.rule.action == Action::Deny {
                    rest.push(RuleLine::new(
                        vec![],
                        Target::Jump(chain),
                        format!("{what} denies"),
                    ));
                    continue;
                }
                rest.push(RuleLine::new(vec![], Target::Jump(chain), what.clone()));
                let verb = match r.rule.action {
                    Action::Pass => "passes: the default allow",
                    _ => "accepts",
                };
                rest.push(RuleLine::new(
                    marked(),
                    Target::Return,
                    format!("{what} {verb}"),
                ));
            }
        }

        let mut lines = vec![start_unmarked(&subject, mark)];
        let mut rest_chain: Option<String> = None;
        for r in &tiers.admin {
            let Some(chain) = self.cluster_rule_chain(r, direction, pod) else {
                continue;
            };
            let what = label(r, direction);
            if r.rule.action == Action::Deny {
                lines.push(RuleLine::new(
                    vec![],
                    Target::Jump(chain),
                    format!("{what} denies"),
                ));
                continue;
            }
            lines.push(RuleLine::new(vec![], Target::Jump(chain), what.clone()));
            match r.rule.action {
                Action::Accept => {
                    lines.push(RuleLine::new(
                        marked(),
                        Target::Return,
                        format!("{what} accepts"),
                    ));
                }
                Action::Deny => {}
                Action::Pass if rest.is_empty() => lines.push(RuleLine::new(
                    marked(),
                    Target::Return,
                    format!("{what} passes: nothing after it, the default allow"),
                )),
                Action::Pass => {
                    let rest_name = rest_chain
                        .get_or_insert_with(|| {
                            hashed_name('T', &[&pod.namespace, &pod.name, direction.as_str()])
                        })
                        .clone();
                    lines.push(RuleLine::new(
                        marked(),
                        Target::Jump(rest_name),
                        format!("{what} passes to the next tier"),
                    ));
                    lines.push(RuleLine::new(
                        marked(),
                        Target::Return,
                        format!("{subject}: allowed after {what} passed"),
                    ));
                }
            }
        }
        match rest_chain {
            Some(rest_name) => {
                let mut chain = vec![start_unmarked(&subject, mark)];
                chain.extend(rest);
                if !rest_denies {
                    chain.push(RuleLine::new(
                        vec![],
                        Target::SetMark {
                            value: mark,
                            mask: mark,
                        },
                        format!("{subject}: allowed"),
                    ));
                }
                self.out.chains.insert(rest_name.clone(), chain);
                lines.push(RuleLine::new(
                    vec![],
                    Target::Jump(rest_name),
                    format!("{subject}: the next tier"),
                ));
            }
            None => lines.extend(rest),
        }
        self.out.chains.insert(name.clone(), lines);
        name
    }

    /// The chain of one ClusterNetworkPolicy rule as it applies to `pod` (ingress named ports
    /// resolve on it), or `None` when the rule can match nothing in this family.
    fn cluster_rule_chain(
        &mut self,
        r: &TierRule,
        direction: Direction,
        pod: &Pod,
    ) -> Option<String> {
        let what = label(r, direction);
        let mut port_alts: Vec<Vec<Match>> = Vec::new();
        let mut named: Vec<&str> = Vec::new();
        let mut resolution = String::new();
        match &r.rule.ports {
            None => port_alts.push(Vec::new()),
            Some(ports) => {
                for port in ports {
                    match port {
                        ClusterPort::Ports {
                            protocol,
                            first,
                            last,
                        } => port_alts.push(vec![
                            Match::Protocol(*protocol),
                            Match::DstPorts(*first, *last),
                        ]),
                        ClusterPort::Named(port_name) => match direction {
                            Direction::Ingress => {
                                let found = resolve_named(pod, port_name);
                                resolution.push_str(&format!("{port_name}={found:?};"));
                                if let Some((protocol, number)) = found {
                                    port_alts.push(vec![
                                        Match::Protocol(protocol),
                                        Match::DstPorts(number, number),
                                    ]);
                                }
                            }
                            Direction::Egress => named.push(port_name),
                        },
                    }
                }
            }
        }
        let idx = r.index.to_string();
        let chain = hashed_name(
            'C',
            &[
                "cluster",
                r.policy.name.as_str(),
                direction.as_str(),
                idx.as_str(),
                resolution.as_str(),
            ],
        );
        if self.out.chains.contains_key(&chain) {
            return Some(chain);
        }
        let set_dir = match direction {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        };
        let mut peer_sets = Vec::new();
        if !port_alts.is_empty() {
            for peer in &r.rule.peers {
                if let Some(set) = self.cluster_peer_set(peer) {
                    peer_sets.push(set);
                }
            }
        }
        // A match: a Deny rule drops right here (one line less in every pod chain); the others
        // set the mark for the pod chain to act on.
        let allow = match r.rule.action {
            Action::Deny => Target::Drop,
            Action::Accept | Action::Pass => Target::SetMark {
                value: self.options.mark,
                mask: self.options.mark,
            },
        };
        let mut lines = Vec::new();
        for set in &peer_sets {
            for ports in &port_alts {
                let mut matches = vec![Match::Set {
                    name: set.clone(),
                    dir: set_dir,
                    negate: false,
                }];
                matches.extend(ports.iter().cloned());
                lines.push(RuleLine::new(matches, allow.clone(), what.clone()));
            }
        }
        if !named.is_empty() {
            let name = self.cluster_named_port_set(r.rule, &named);
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

    /// The set of a peer: pods as a NetworkPolicy peer's `hash:ip` set (shared with
    /// NetworkPolicies that select the same pods), networks as a `hash:net` set of this
    /// family's networks (`None` when it has none).
    fn cluster_peer_set(&mut self, peer: &ClusterPeer) -> Option<String> {
        if let Some(pods) = as_pod_peer(peer) {
            let name = set_name('S', &peer_key("", &pods), self.family);
            self.pod_set(&name, "", &pods);
            return Some(name);
        }
        let ClusterPeer::Networks(nets) = peer else {
            return None;
        };
        let name = set_name('N', &networks_key(nets), self.family);
        if !self.out.sets.contains_key(&name) {
            let mut set = IpSet::new(SetKind::HashNet, self.family);
            for net in nets {
                let block = IpBlockPeer {
                    cidr: *net,
                    except: Vec::new(),
                };
                set.entries
                    .extend(ip_block_entries(&block, self.family).into_iter().flatten());
            }
            if set.entries.is_empty() {
                return None;
            }
            self.out.sets.insert(name.clone(), set);
        }
        Some(name)
    }

    /// A `hash:ip,port` set of (pod, protocol, port) for the live pods that are peers of `rule`
    /// and define one of the `named` ports: egress named ports resolve on the destination.
    fn cluster_named_port_set(&mut self, rule: &ClusterRule, named: &[&str]) -> String {
        let mut key = vec!["cluster named".to_string()];
        key.extend(named.iter().map(|n| n.to_string()));
        for peer in &rule.peers {
            key.push("peer".into());
            match (as_pod_peer(peer), peer) {
                (Some(pods), _) => key.extend(peer_key("", &pods)),
                (None, ClusterPeer::Networks(nets)) => key.extend(networks_key(nets)),
                _ => {}
            }
        }
        let name = set_name('P', &key, self.family);
        if self.out.sets.contains_key(&name) {
            return name;
        }
        let mut set = IpSet::new(SetKind::HashIpPort, self.family);
        let family = self.family;
        let cluster = self.cluster;
        // The pods as this family's packets see them that a peer names ([`Cluster::
        // cluster_peer_matches`]), narrowed by namespace first for pod peers (cheap): live, not
        // on the host network (named ports never resolve there), with an address of the family.
        let live =
            move |pod: &&Pod| pod.ip_of(family).is_some() && !finished(pod) && !pod.host_network;
        for peer in &rule.peers {
            let pods: Box<dyn Iterator<Item = &Pod>> = match peer {
                ClusterPeer::Namespaces(namespaces) | ClusterPeer::Pods { namespaces, .. } => {
                    Box::new(
                        cluster
                            .namespaces()
                            .filter(move |n| namespaces.matches(&n.labels))
                            .flat_map(move |n| cluster.pods_in(&n.name))
                            .filter(move |p| match peer {
                                ClusterPeer::Pods { pods, .. } => pods.matches(&p.labels),
                                _ => true,
                            }),
                    )
                }
                ClusterPeer::Networks(nets) => Box::new(cluster.pods().iter().filter(move |p| {
                    p.ip_of(family)
                        .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
                })),
            };
            for pod in pods.filter(live) {
                let Some(ip) = pod.ip_of(family) else {
                    continue;
                };
                for (protocol, port) in named.iter().filter_map(|n| resolve_named(pod, n)) {
                    set.entries.insert(SetEntry::IpPort(ip, protocol, port));
                }
            }
        }
        self.out.sets.insert(name.clone(), set);
        name
    }
}
