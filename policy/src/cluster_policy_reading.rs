//! How Palisade reads a ClusterNetworkPolicy, the one reading that the enforcer, the webhook's
//! checks and the CLI (files and live) all use, so they never disagree about a policy Palisade
//! cannot read as written.
//!
//! - As written: [`ClusterPolicy::from_api`] reads it without a mistake.
//! - Failing closed: its only mistakes are peers of a kind Palisade does not know (a field of a
//!   newer CRD, which the types drop). Upstream asks implementations to fail closed there: a rule
//!   that accepts matches nothing through those peers; a rule that denies or passes denies all
//!   traffic of its direction. The policy is evaluated and enforced that way, and named with
//!   the reason.
//! - Not at all: any other mistake (the experimental `nodes`/`domainNames` peers, a value outside
//!   the API): nothing can stand in for what it means, so it is left out, and named with the
//!   reason.

use std::sync::Arc;

use palisade_api::{
    ClusterNetworkPolicy, ClusterNetworkPolicyEgressPeer, ClusterNetworkPolicyIngressPeer,
};

use crate::cluster_policy::{Action, ClusterPeer, ClusterPolicy, ClusterPolicyError};
use crate::policy::Direction;
use crate::selector::Selector;

/// One ClusterNetworkPolicy as Palisade reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Read as written.
    AsWritten(ClusterPolicy),
    /// Evaluated and enforced failing closed: `errors` say what could not be read, `rules` what
    /// that made of the rules in words (`egress rule 0: those peers match nothing`).
    FailingClosed {
        policy: ClusterPolicy,
        errors: Vec<ClusterPolicyError>,
        rules: String,
    },
    /// Left out: evaluated and enforced nowhere.
    LeftOut(Vec<ClusterPolicyError>),
}

impl Reading {
    /// Reads one policy.
    pub fn of(object: &ClusterNetworkPolicy) -> Self {
        match ClusterPolicy::from_api(object) {
            Ok(policy) => Reading::AsWritten(policy),
            Err(errors) => match fail_closed(object) {
                Some((policy, rules)) => Reading::FailingClosed {
                    policy,
                    errors,
                    rules,
                },
                None => Reading::LeftOut(errors),
            },
        }
    }

    /// The policy as evaluated and enforced; `None` where it is left out.
    pub fn policy(&self) -> Option<&ClusterPolicy> {
        match self {
            Reading::AsWritten(p) | Reading::FailingClosed { policy: p, .. } => Some(p),
            Reading::LeftOut(_) => None,
        }
    }

    /// The mistakes found; none for a policy read as written.
    pub fn errors(&self) -> &[ClusterPolicyError] {
        match self {
            Reading::AsWritten(_) => &[],
            Reading::FailingClosed { errors, .. } | Reading::LeftOut(errors) => errors,
        }
    }

    /// What becomes of a policy not read as written, in words: `enforced failing closed
    /// (egress rule 0: those peers match nothing)` or `not enforced`; `None` for one read as
    /// written.
    pub fn consequence(&self) -> Option<String> {
        match self {
            Reading::AsWritten(_) => None,
            Reading::FailingClosed { rules, .. } => {
                Some(format!("enforced failing closed ({rules})"))
            }
            Reading::LeftOut(_) => Some("not enforced".to_string()),
        }
    }

    /// Why a policy is not read as written, every mistake and the consequence, e.g.
    /// `spec.egress[0].to[0]: ...: enforced failing closed (egress rule 0: those peers match
    /// nothing)`; `None` for one read as written.
    pub fn reason(&self) -> Option<String> {
        let errors = self
            .errors()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        match self {
            Reading::AsWritten(_) => None,
            Reading::FailingClosed { rules, .. } => {
                Some(format!("{errors}: enforced failing closed ({rules})"))
            }
            Reading::LeftOut(_) => Some(errors),
        }
    }
}

/// A policy not read as written, by name, with why and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAsWritten {
    pub name: String,
    /// [`Reading::reason`].
    pub reason: String,
    /// Enforced failing closed (rather than left out).
    pub failing_closed: bool,
}

/// The cluster's ClusterNetworkPolicies as Palisade reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterPolicies {
    /// Those evaluated and enforced (as written or failing closed), in the order given.
    pub policies: Vec<ClusterPolicy>,
    /// Those not read as written, by name.
    pub not_as_written: Vec<NotAsWritten>,
}

/// Reads every policy: the one function the enforcer, the webhook and the CLI call.
pub fn read_all<'a>(
    objects: impl IntoIterator<Item = &'a ClusterNetworkPolicy>,
) -> ClusterPolicies {
    let mut out = ClusterPolicies::default();
    for object in objects {
        let reading = Reading::of(object);
        if let Some(reason) = reading.reason() {
            out.not_as_written.push(NotAsWritten {
                name: object.metadata.name.clone().unwrap_or_default(),
                reason,
                failing_closed: matches!(reading, Reading::FailingClosed { .. }),
            });
        }
        if let Some(policy) = reading.policy() {
            out.policies.push(policy.clone());
        }
    }
    out.not_as_written.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// [`read_all`] of shared objects, as watches hold them.
pub fn read_shared(objects: &[Arc<ClusterNetworkPolicy>]) -> ClusterPolicies {
    read_all(objects.iter().map(AsRef::as_ref))
}

/// An ingress peer with no field Palisade knows (of a newer CRD's kind).
fn unknown_ingress_peer(p: &ClusterNetworkPolicyIngressPeer) -> bool {
    p.namespaces.is_none() && p.pods.is_none()
}

/// An egress peer with no field Palisade knows (of a newer CRD's kind).
fn unknown_egress_peer(p: &ClusterNetworkPolicyEgressPeer) -> bool {
    p.namespaces.is_none()
        && p.pods.is_none()
        && p.networks.is_none()
        && p.nodes.is_none()
        && p.domain_names.is_none()
}

/// The policy with its unknown peers failing closed, if those are its only mistakes, and what
/// that made of their rules in words.
fn fail_closed(object: &ClusterNetworkPolicy) -> Option<(ClusterPolicy, String)> {
    // Which peers of which rules are unknown, before anything stands in for them.
    let ingress: Vec<Vec<bool>> = object
        .spec
        .ingress
        .iter()
        .flatten()
        .map(|r| r.from.iter().map(unknown_ingress_peer).collect())
        .collect();
    let egress: Vec<Vec<bool>> = object
        .spec
        .egress
        .iter()
        .flatten()
        .map(|r| r.to.iter().map(unknown_egress_peer).collect())
        .collect();
    let unknown = |rules: &[Vec<bool>]| -> Vec<usize> {
        rules
            .iter()
            .enumerate()
            .filter(|(_, peers)| peers.iter().any(|u| *u))
            .map(|(i, _)| i)
            .collect()
    };
    let (unknown_ingress, unknown_egress) = (unknown(&ingress), unknown(&egress));
    if unknown_ingress.is_empty() && unknown_egress.is_empty() {
        return None;
    }
    // A placeholder (every namespace) stands where each unknown peer was, so the rest of the
    // policy reads; the rules that had one are then rewritten below.
    let mut fixed = object.clone();
    for rule in fixed.spec.ingress.iter_mut().flatten() {
        for peer in rule.from.iter_mut().filter(|p| unknown_ingress_peer(p)) {
            peer.namespaces = Some(Default::default());
        }
    }
    for rule in fixed.spec.egress.iter_mut().flatten() {
        for peer in rule.to.iter_mut().filter(|p| unknown_egress_peer(p)) {
            peer.namespaces = Some(Default::default());
        }
    }
    let mut policy = ClusterPolicy::from_api(&fixed).ok()?;
    let mut said = Vec::new();
    for (direction, indices, peers) in [
        (Direction::Ingress, unknown_ingress, &ingress),
        (Direction::Egress, unknown_egress, &egress),
    ] {
        for index in indices {
            let rules = match direction {
                Direction::Ingress => &mut policy.ingress,
                Direction::Egress => &mut policy.egress,
            };
            let rule = rules.get_mut(index)?;
            let what = match rule.action {
                Action::Accept => {
                    // Only the unknown peers go: a peer that matches nothing stands in each.
                    for (peer, unknown) in rule.peers.iter_mut().zip(&peers[index]) {
                        if *unknown {
                            *peer = ClusterPeer::Networks(Vec::new());
                        }
                    }
                    "those peers match nothing"
                }
                Action::Deny | Action::Pass => {
                    rule.action = Action::Deny;
                    rule.peers = vec![
                        ClusterPeer::Namespaces(Selector::everything()),
                        ClusterPeer::Networks(vec![
                            "0.0.0.0/0".parse().ok()?,
                            "::/0".parse().ok()?,
                        ]),
                    ];
                    rule.ports = None;
                    "it denies all traffic"
                }
            };
            said.push(format!("{direction} rule {index}: {what}"));
        }
    }
    Some((policy, said.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnp(json: serde_json::Value) -> ClusterNetworkPolicy {
        serde_json::from_value(json).expect("a ClusterNetworkPolicy")
    }

    #[test]
    fn each_policy_is_read_as_written_failing_closed_or_left_out() {
        let good = cnp(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "deny-ssh"},
            "spec": {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                     "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                                  "protocols": [{"tcp": {"destinationPort": {"number": 22}}}]}]}
        }));
        // `services` stands for a peer kind of a newer CRD.
        let newer = cnp(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "newer"},
            "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                     "ingress": [{"action": "Pass", "from": [{"services": {"name": "y"}}]}]}
        }));
        let nodes = cnp(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "a-nodes"},
            "spec": {"tier": "Baseline", "priority": 5, "subject": {"namespaces": {}},
                     "egress": [{"action": "Deny", "to": [{"nodes": {}}]}]}
        }));
        let read = read_all([&good, &newer, &nodes]);
        assert_eq!(
            read.policies
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["deny-ssh", "newer"]
        );
        assert_eq!(
            read.not_as_written,
            [
                NotAsWritten {
                    name: "a-nodes".into(),
                    reason: "spec.egress[0].to[0].nodes: nodes peers (experimental) are not enforced by Palisade".into(),
                    failing_closed: false,
                },
                NotAsWritten {
                    name: "newer".into(),
                    reason: format!(
                        "{}: enforced failing closed (ingress rule 0: it denies all traffic)",
                        Reading::of(&newer).errors()[0]
                    ),
                    failing_closed: true,
                },
            ]
        );
        let failing = &read.policies[1];
        assert_eq!(failing.ingress[0].action, Action::Deny);
        assert_eq!(failing.ingress[0].ports, None);
    }
}
