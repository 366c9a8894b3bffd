//! ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1, or v1alpha2) as the enforcer sees them: a
//! watch that stays quiet where the CRD is not installed, the policies it can enforce, those it
//! cannot (named in the node's status and logged, never silently ignored), and whether this
//! node enforces them at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_api::{
    ClusterNetworkPolicy, ClusterNetworkPolicyEnforcement, MAX_NOT_ENFORCED, NotEnforcedPolicy,
};
use palisade_policy::cluster_policy::ClusterPolicy;
use palisade_policy::cluster_policy_reading;

use crate::cni::{CniError, CniInfo};
use crate::mode::Mode;

/// The cluster's ClusterNetworkPolicies, quiet where their CRD is not installed.
pub type ClusterPolicyWatch = palisade_runtime::optional_watch::OptionalWatch<ClusterNetworkPolicy>;

/// The policies Palisade enforces, in no particular order (the cluster sorts them), and those
/// it does not enforce as written, by name, each with why: Palisade's one reading
/// ([`palisade_policy::cluster_policy_reading`]), which the webhook's checks and the CLI share.
/// A policy whose only mistakes are peers of a kind Palisade does not know (from a newer CRD)
/// is enforced failing closed, as upstream asks of implementations, and named with the reason.
pub fn understand(
    objects: &[Arc<ClusterNetworkPolicy>],
) -> (Vec<ClusterPolicy>, Vec<NotEnforcedPolicy>) {
    let read = cluster_policy_reading::read_shared(objects);
    let refused = read
        .not_as_written
        .into_iter()
        .map(|n| NotEnforcedPolicy {
            name: n.name,
            reason: n.reason,
        })
        .collect();
    (read.policies, refused)
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
