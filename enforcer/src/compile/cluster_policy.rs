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
//!                    bit (DROP for a Deny rule); peers are the same `hash:ip` sets NetworkPolicy
//!                    peers use (a `namespaces` peer is a namespaceSelector with every pod),
//!                    networks a `hash:net` set that also holds pod addresses
//! ```
//!
//! A ClusterNetworkPolicy Deny always drops silently, whatever `--deny-action` says: upstream
//! defines Deny as a drop and its conformance tests count a refused connection as a failure.
//! `--deny-action reject` applies to what NetworkPolicies deny.
//!
//! Where nothing follows a Pass (no NetworkPolicy isolates the pod in that direction and no
//! Baseline rule applies), the Pass line returns at once: the default allow.
//!
//! A rule is lowered here to the [`RuleChain`] that `chains.rs` writes for NetworkPolicy rules
//! too; its peers are the sets of `sets.rs`.

use ipnet::IpNet;
use palisade_policy::cluster_policy::{
    Action, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, Tier,
};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope};
use palisade_policy::{Cluster, Direction, Peer, Pod, Policy, Selector};

use super::chains::{Ports, RuleChain, pod_chain_name, start_unmarked};
use super::sets::{NamedPort, NamedPorts, PeerSet};
use super::{Builder, finished, is_audit};
use crate::ruleset::{DENIED_CHAIN, Match, RuleLine, Target, hashed_name};

/// One ClusterNetworkPolicy rule that applies to a pod in one direction.
pub(super) struct TierRule<'a> {
    pub policy: &'a ClusterPolicy,
    pub index: usize,
    pub rule: &'a ClusterRule,
}

/// The ClusterNetworkPolicy rules of both tiers that apply to a pod in one direction, in
/// Palisade's order.
pub(super) struct Tiers<'a> {
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

/// What a networks set is named after: its networks, sorted (the same list in any order is one
/// set).
fn networks_key(nets: &[IpNet]) -> Vec<String> {
    let mut key: Vec<String> = nets.iter().map(|n| n.trunc().to_string()).collect();
    key.sort();
    key.dedup();
    key.insert(0, "networks".into());
    key
}

impl<'a> Builder<'a> {
    /// The chain that decides `direction` for `pod` when ClusterNetworkPolicy rules apply to it.
    pub(super) fn tiered_chain(
        &mut self,
        pod: &Pod,
        direction: Direction,
        tiers: &Tiers<'a>,
        isolating: &[&'a Policy],
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
        let rest_denies = isolating.iter().any(|p| !is_audit(self.cluster, p));
        if !isolating.is_empty() {
            rest.extend(self.policy_lines(pod, direction, isolating));
            rest.extend(self.verdict_lines(&subject, isolating));
        } else {
            for r in &tiers.baseline {
                let Some(what) = self.jump_to_rule(r, direction, pod, &mut rest) else {
                    continue;
                };
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
            let Some(what) = self.jump_to_rule(r, direction, pod, &mut lines) else {
                continue;
            };
            match r.rule.action {
                Action::Accept => {
                    lines.push(RuleLine::new(
                        marked(),
                        Target::Return,
                        format!("{what} accepts"),
                    ));
                }
                // Its chain dropped what it matched.
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

    /// A jump to the chain of `r` (written if new) onto `lines`; the rule's label when what
    /// comes next must act on its mark, `None` when the rule matches nothing here or denies (a
    /// Deny rule's chain drops by itself).
    fn jump_to_rule(
        &mut self,
        r: &TierRule<'a>,
        direction: Direction,
        pod: &Pod,
        lines: &mut Vec<RuleLine>,
    ) -> Option<String> {
        let chain = self.rule_chain(self.lower_cluster_rule(r, direction, pod))?;
        let what = label(r, direction);
        if r.rule.action == Action::Deny {
            lines.push(RuleLine::new(
                vec![],
                Target::Jump(chain),
                format!("{what} denies"),
            ));
            return None;
        }
        lines.push(RuleLine::new(vec![], Target::Jump(chain), what.clone()));
        Some(what)
    }

    /// One ClusterNetworkPolicy rule as it applies to `pod` (ingress named ports resolve on
    /// it). A match of a Deny rule drops right in its chain (one line less in every pod chain);
    /// the others set the mark for the pod chain to act on.
    fn lower_cluster_rule(
        &self,
        r: &TierRule<'a>,
        direction: Direction,
        pod: &Pod,
    ) -> RuleChain<'a> {
        let mut ports = Ports::default();
        match &r.rule.ports {
            None => ports = Ports::any(),
            Some(list) => {
                for port in list {
                    match port {
                        ClusterPort::Ports {
                            protocol,
                            first,
                            last,
                        } => ports.add(vec![
                            Match::Protocol(*protocol),
                            Match::DstPorts(*first, *last),
                        ]),
                        ClusterPort::Named(name) => {
                            let port = NamedPort {
                                name,
                                protocol: None,
                            };
                            ports.add_named(port, direction, pod);
                        }
                    }
                }
            }
        }
        let idx = r.index.to_string();
        let name = hashed_name(
            'C',
            &[
                "cluster",
                r.policy.name.as_str(),
                direction.as_str(),
                idx.as_str(),
                ports.resolution.as_str(),
            ],
        );
        let peers = r.rule.peers.iter().map(peer_set).collect();
        let named =
            (!ports.named.is_empty()).then(|| self.cluster_named_ports(r.rule, ports.named));
        RuleChain {
            name,
            comment: label(r, direction),
            direction,
            peers: Some(peers),
            ports: ports.alternatives,
            named,
            target: match r.rule.action {
                // With denial logs, through the node's logging chain (which drops).
                Action::Deny if self.options.log_denials => Target::Jump(DENIED_CHAIN.into()),
                Action::Deny => Target::Drop,
                Action::Accept | Action::Pass => self.allow(),
            },
        }
    }

    /// Egress named ports resolve on the pods the rule's peers name as this family's packets
    /// see them ([`Cluster::cluster_peer_matches`]), narrowed by namespace first for pod peers
    /// (cheap): live, not on the host network (named ports never resolve there).
    fn cluster_named_ports(
        &self,
        rule: &'a ClusterRule,
        ports: Vec<NamedPort<'a>>,
    ) -> NamedPorts<'a> {
        let cluster = self.cluster;
        let family = self.family;
        NamedPorts {
            tag: "cluster named",
            ports,
            candidates: Box::new(move || {
                let live = move |pod: &&Pod| {
                    pod.ip_of(family).is_some() && !finished(pod) && !pod.host_network
                };
                rule.peers
                    .iter()
                    .flat_map(|peer| destinations(cluster, peer, family).filter(live))
                    .collect()
            }),
            peers: Box::new(|_| true),
        }
    }
}

/// The pods a peer names, as this family's packets see them.
fn destinations<'a>(
    cluster: &'a Cluster,
    peer: &'a ClusterPeer,
    family: palisade_policy::IpFamily,
) -> Box<dyn Iterator<Item = &'a Pod> + 'a> {
    match peer {
        ClusterPeer::Namespaces(namespaces) | ClusterPeer::Pods { namespaces, .. } => Box::new(
            cluster
                .namespaces()
                .filter(move |n| namespaces.matches(&n.labels))
                .flat_map(move |n| cluster.pods_in(&n.name))
                .filter(move |p| match peer {
                    ClusterPeer::Pods { pods, .. } => pods.matches(&p.labels),
                    _ => true,
                }),
        ),
        ClusterPeer::Networks(nets) => Box::new(cluster.pods().iter().filter(move |p| {
            p.ip_of(family)
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
        })),
    }
}

/// The set of a peer: a `namespaces` or `pods` peer as the NetworkPolicy peer that selects the
/// same pods (one set with NetworkPolicies that select them), networks as one `hash:net` set
/// of this family's networks.
fn peer_set(peer: &ClusterPeer) -> PeerSet<'static> {
    let pods = |namespaces: &Selector, pods: Selector| PeerSet::Pods {
        namespace: "",
        peer: Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces.clone()),
            pods,
        },
    };
    match peer {
        ClusterPeer::Namespaces(namespaces) => pods(namespaces, Selector::everything()),
        ClusterPeer::Pods {
            namespaces,
            pods: p,
        } => pods(namespaces, p.clone()),
        ClusterPeer::Networks(nets) => PeerSet::Nets {
            key: networks_key(nets),
            blocks: nets
                .iter()
                .map(|net| IpBlockPeer {
                    cidr: *net,
                    except: Vec::new(),
                })
                .collect(),
        },
    }
}
