//! The one emitter of rule chains. A NetworkPolicy rule (`network_policy.rs`) and a
//! ClusterNetworkPolicy rule (`cluster_policy.rs`) are both lowered to a [`RuleChain`]: the
//! chain's name, its comment, the peers as sets, the port alternatives, the egress named
//! ports and what a match does. The chain holds one line per (peer, ports) pair, and one line
//! for the named-port set.

use palisade_policy::{Direction, Pod};

use super::Builder;
use super::sets::{NamedPort, NamedPorts, PeerSet};
use crate::ruleset::{Match, RuleLine, SetDir, Target, hashed_name};

/// A rule's ports as they apply to one pod in one direction, whichever kind of rule they come
/// from.
#[derive(Debug, Default)]
pub(super) struct Ports<'a> {
    /// Alternatives of (protocol, port range) matches; one empty alternative: any port.
    pub alternatives: Vec<Vec<Match>>,
    /// Egress named ports: they resolve on the destination.
    pub named: Vec<NamedPort<'a>>,
    /// How ingress named ports resolved on the pod, for the chain's name.
    pub resolution: String,
}

impl<'a> Ports<'a> {
    /// A rule without ports: any port.
    pub fn any() -> Self {
        Ports {
            alternatives: vec![Vec::new()],
            ..Ports::default()
        }
    }

    pub fn add(&mut self, alternative: Vec<Match>) {
        self.alternatives.push(alternative);
    }

    /// A named port: ingress ports resolve on `pod` (the destination) now, and match nothing
    /// where it does not define them; egress ones go to a named-port set.
    pub fn add_named(&mut self, port: NamedPort<'a>, direction: Direction, pod: &Pod) {
        match direction {
            Direction::Ingress => {
                self.resolution.push_str(&port.resolution(pod));
                if let Some((protocol, number)) = port.resolve(pod) {
                    self.add(vec![
                        Match::Protocol(protocol),
                        Match::DstPorts(number, number),
                    ]);
                }
            }
            Direction::Egress => self.named.push(port),
        }
    }
}

/// One rule as it applies to one pod in one direction.
pub(super) struct RuleChain<'a> {
    /// The chain's name: after the rule and how its ingress named ports resolved on the pod,
    /// so pods that see the rule alike share the chain.
    pub name: String,
    /// How the chain's lines name the rule.
    pub comment: String,
    pub direction: Direction,
    /// The peers; `None`: any peer.
    pub peers: Option<Vec<PeerSet<'a>>>,
    /// Alternatives of (protocol, port range) matches; one empty alternative: any port.
    /// Empty: no port of the rule resolved, and only named ports (if any) can match.
    pub ports: Vec<Vec<Match>>,
    /// Egress named ports, which resolve on the destination.
    pub named: Option<NamedPorts<'a>>,
    /// What a matching packet gets: the mark bit (allowed, for the pod chain to act on) or,
    /// for a ClusterNetworkPolicy Deny, DROP.
    pub target: Target,
}

impl Builder<'_> {
    /// The chain of `rule`, written once however many pods share it, or `None` when the rule
    /// can match nothing (in this family).
    pub(super) fn rule_chain(&mut self, rule: RuleChain) -> Option<String> {
        if self.out.chains.contains_key(&rule.name) {
            return Some(rule.name);
        }
        let set_dir = match rule.direction {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        };
        let mut peers: Vec<Option<Match>> = Vec::new();
        match &rule.peers {
            None => peers.push(None),
            // No port to go with them: no set is needed.
            Some(_) if rule.ports.is_empty() => {}
            Some(sets) => {
                for set in sets {
                    if let Some(name) = self.peer_set(set) {
                        peers.push(Some(Match::Set {
                            name,
                            dir: set_dir,
                            negate: false,
                        }));
                    }
                }
            }
        }
        let mut lines = Vec::new();
        for peer in &peers {
            for ports in &rule.ports {
                let matches = peer.iter().chain(ports).cloned().collect();
                lines.push(RuleLine::new(
                    matches,
                    rule.target.clone(),
                    rule.comment.clone(),
                ));
            }
        }
        if let Some(named) = &rule.named {
            let name = self.named_port_set(named, rule.peers.as_deref());
            lines.push(RuleLine::new(
                vec![Match::Set {
                    name,
                    dir: SetDir::DstIpPort,
                    negate: false,
                }],
                rule.target.clone(),
                format!("{} named ports", rule.comment),
            ));
        }
        if lines.is_empty() {
            return None;
        }
        self.out.chains.insert(rule.name.clone(), lines);
        Some(rule.name)
    }

    /// Sets the mark bit: what a matching allow rule does.
    pub(super) fn allow(&self) -> Target {
        Target::SetMark {
            value: self.options.mark,
            mask: self.options.mark,
        }
    }
}

/// The chain that decides `direction` for `pod`: named after the pod and direction, so the
/// same pod keeps its chain whatever its policies.
pub(super) fn pod_chain_name(pod: &Pod, direction: Direction) -> String {
    let tag = match direction {
        Direction::Ingress => 'I',
        Direction::Egress => 'E',
    };
    hashed_name(tag, &[&pod.namespace, &pod.name, direction.as_str()])
}

/// Clears Palisade's mark bit: the first line of a chain whose rule chains set it.
pub(super) fn start_unmarked(subject: &str, mark: u32) -> RuleLine {
    RuleLine::new(
        vec![],
        Target::SetMark {
            value: 0,
            mask: mark,
        },
        format!("{subject}: start unmarked"),
    )
}
