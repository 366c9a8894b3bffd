//! ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2) as the enforcer sees them: a
//! watch that stays quiet where the CRD is not installed, the policies it can enforce, those it
//! cannot (named in the node's status and logged, never silently ignored), and whether this
//! node enforces them at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use palisade_api::{
    ClusterNetworkPolicy, ClusterNetworkPolicyEnforcement, MAX_NOT_ENFORCED, NotEnforcedPolicy,
};
use palisade_policy::cluster_policy::{Action, ClusterPeer, ClusterPolicy};
use palisade_policy::{Direction, Selector};

use crate::cni::{CniError, CniInfo};
use crate::mode::Mode;

/// The cluster's ClusterNetworkPolicies, quiet where their CRD is not installed.
pub type ClusterPolicyWatch = palisade_runtime::optional_watch::OptionalWatch<ClusterNetworkPolicy>;

/// The policies Palisade can enforce, in no particular order (the cluster sorts them), and
/// those it does not enforce as written, by name, each with why.
///
/// A peer with no field Palisade knows (from a newer CRD) fails closed, as upstream asks of
/// implementations: its rule matches nothing if it accepts, and denies all traffic if it denies
/// or passes. Such a policy is enforced that way and named with the reason too.
pub fn understand(
    objects: &[Arc<ClusterNetworkPolicy>],
) -> (Vec<ClusterPolicy>, Vec<NotEnforcedPolicy>) {
    let mut policies = Vec::new();
    let mut refused = Vec::new();
    for object in objects {
        let joined = |errors: Vec<palisade_policy::cluster_policy::ClusterPolicyError>| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        match ClusterPolicy::from_api(object) {
            Ok(p) => policies.push(p),
            Err(errors) => match fail_closed(object) {
                Some((policy, rules)) => {
                    refused.push(NotEnforcedPolicy {
                        name: object.name_any(),
                        reason: format!("{}: enforced failing closed ({rules})", joined(errors)),
                    });
                    policies.push(policy);
                }
                None => refused.push(NotEnforcedPolicy {
                    name: object.name_any(),
                    reason: joined(errors),
                }),
            },
        }
    }
    refused.sort_by(|a, b| a.name.cmp(&b.name));
    (policies, refused)
}

/// The policy with its unknown peers failing closed, if those are its only mistakes, and what
/// that made of their rules in words.
fn fail_closed(object: &ClusterNetworkPolicy) -> Option<(ClusterPolicy, String)> {
    let mut fixed = object.clone();
    let mut unknown: Vec<(Direction, usize)> = Vec::new();
    for (i, rule) in fixed.spec.ingress.iter_mut().flatten().enumerate() {
        for peer in &mut rule.from {
            if peer.namespaces.is_none() && peer.pods.is_none() {
                peer.namespaces = Some(Default::default());
                unknown.push((Direction::Ingress, i));
            }
        }
    }
    for (i, rule) in fixed.spec.egress.iter_mut().flatten().enumerate() {
        for peer in &mut rule.to {
            let p = &*peer;
            if p.namespaces.is_none()
                && p.pods.is_none()
                && p.networks.is_none()
                && p.nodes.is_none()
                && p.domain_names.is_none()
            {
                peer.namespaces = Some(Default::default());
                unknown.push((Direction::Egress, i));
            }
        }
    }
    if unknown.is_empty() {
        return None;
    }
    let mut policy = ClusterPolicy::from_api(&fixed).ok()?;
    unknown.dedup();
    let mut said = Vec::new();
    for (direction, index) in unknown {
        let rules = match direction {
            Direction::Ingress => &mut policy.ingress,
            Direction::Egress => &mut policy.egress,
        };
        let rule = rules.get_mut(index)?;
        let what = match rule.action {
            Action::Accept => {
                // Only the unknown peers go: the placeholder stands where each was.
                let original = match direction {
                    Direction::Ingress => object.spec.ingress.as_ref()?[index]
                        .from
                        .iter()
                        .map(|p| p.namespaces.is_none() && p.pods.is_none())
                        .collect::<Vec<_>>(),
                    Direction::Egress => object.spec.egress.as_ref()?[index]
                        .to
                        .iter()
                        .map(|p| {
                            p.namespaces.is_none()
                                && p.pods.is_none()
                                && p.networks.is_none()
                                && p.nodes.is_none()
                                && p.domain_names.is_none()
                        })
                        .collect::<Vec<_>>(),
                };
                for (peer, unknown) in rule.peers.iter_mut().zip(original) {
                    if unknown {
                        *peer = ClusterPeer::Networks(Vec::new());
                    }
                }
                "those peers match nothing"
            }
            Action::Deny | Action::Pass => {
                rule.action = Action::Deny;
                rule.peers = vec![
                    ClusterPeer::Namespaces(Selector::everything()),
                    ClusterPeer::Networks(vec!["0.0.0.0/0".parse().ok()?, "::/0".parse().ok()?]),
                ];
                rule.ports = None;
                "it denies all traffic"
            }
        };
        said.push(format!("{direction} rule {index}: {what}"));
    }
    Some((policy, said.join(", ")))
}

/// Whether a CNI enforces ClusterNetworkPolicy itself (by the names [`crate::cni`] gives them),
/// as the webhook's `enforcement` check judges it.
pub fn cni_enforces_cluster_network_policy(cni: &str) -> bool {
    palisade_policy::checks::cni_enforces_cluster_network_policy(cni) == Some(true)
}

/// Whether this node's rules carry the ClusterNetworkPolicy tiers, and why in words, given
/// whether it enforces NetworkPolicy (`enforcing`, from [`crate::mode::decide`]).
///
/// Where the CNI enforces NetworkPolicy itself, Palisade stands aside for NetworkPolicy; it
/// cannot put an Admin tier ahead of the CNI's NetworkPolicy rules (a packet the CNI drops
/// never reaches an Admin Accept, and the Baseline tier needs to know what the CNI's
/// NetworkPolicies select), so there it enforces ClusterNetworkPolicy only if the CNI does
/// (standing aside for it too) and otherwise reports them as not enforced.
pub fn decide(mode: Mode, cni: &Result<CniInfo, CniError>, enforcing: bool) -> (bool, String) {
    let cni_name = cni.as_ref().ok().map(|i| i.cni.as_str());
    let cni_enforces_np = cni.as_ref().ok().and_then(|i| i.enforces) == Some(true);
    match (mode, cni_name) {
        (Mode::Off, _) => (false, "mode off: reporting only".into()),
        (Mode::Auto, Some(name)) if cni_enforces_np => {
            if cni_enforces_cluster_network_policy(name) {
                (
                    false,
                    format!("{name} enforces ClusterNetworkPolicy itself; standing aside"),
                )
            } else {
                (
                    false,
                    format!(
                        "{name} enforces NetworkPolicy but not ClusterNetworkPolicy: Palisade cannot \
                         put the Admin tier ahead of its NetworkPolicy rules, so ClusterNetworkPolicies \
                         are not enforced on this node"
                    ),
                )
            }
        }
        _ if !enforcing => (false, "the enforcer does not enforce on this node".into()),
        _ => (true, "enforced with NetworkPolicy".into()),
    }
}

/// The status of ClusterNetworkPolicy on this node, with what the watch says.
pub fn report(
    enforced: bool,
    reason: String,
    watch: &ClusterPolicyWatch,
    policies: usize,
    refused: &[NotEnforcedPolicy],
) -> ClusterNetworkPolicyEnforcement {
    let problem = match (watch.installed(), watch.error()) {
        (Some(false), _) => Some("the ClusterNetworkPolicy CRD is not installed".to_string()),
        (_, Some(e)) => Some(format!("cannot read ClusterNetworkPolicies: {e}")),
        _ => None,
    };
    summarize(enforced, reason, problem, policies, refused)
}

/// The status of ClusterNetworkPolicy on this node: `problem` (a missing CRD, a failing watch)
/// is added to the reason; at most [`MAX_NOT_ENFORCED`] refused policies are named, all counted.
pub fn summarize(
    enforced: bool,
    reason: String,
    problem: Option<String>,
    policies: usize,
    refused: &[NotEnforcedPolicy],
) -> ClusterNetworkPolicyEnforcement {
    let reason = match problem {
        Some(p) => format!("{reason}; {p}"),
        None => reason,
    };
    ClusterNetworkPolicyEnforcement {
        enforced,
        reason,
        policies: policies as u32,
        not_enforced_count: refused.len() as u32,
        not_enforced: refused.iter().take(MAX_NOT_ENFORCED).cloned().collect(),
    }
}

/// Logs each policy Palisade cannot enforce once (again when the reason changes), and the
/// node's ClusterNetworkPolicy decision when it changes with policies present.
#[derive(Default)]
pub struct Warnings {
    refused: BTreeMap<String, String>,
    decision: Option<(bool, String)>,
}

impl Warnings {
    pub fn note(
        &mut self,
        enforced: bool,
        reason: &str,
        policies: usize,
        refused: &[NotEnforcedPolicy],
    ) {
        let now: BTreeMap<String, String> = refused
            .iter()
            .map(|r| (r.name.clone(), r.reason.clone()))
            .collect();
        for (name, why) in &now {
            if self.refused.get(name) != Some(why) {
                tracing::warn!(
                    policy = %name,
                    reason = %why,
                    "ClusterNetworkPolicy not enforced: Palisade cannot enforce it as written"
                );
            }
        }
        self.refused = now;
        let decision = (enforced, reason.to_string());
        if policies > 0 && self.decision.as_ref() != Some(&decision) {
            if enforced {
                tracing::info!(policies, "ClusterNetworkPolicies enforced");
            } else {
                tracing::warn!(
                    policies,
                    reason,
                    "ClusterNetworkPolicies not enforced on this node"
                );
            }
            self.decision = Some(decision);
        } else if policies == 0 {
            self.decision = None;
        }
    }
}
