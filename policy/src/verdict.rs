//! Verdicts that say why: which policies isolate a pod, and which policy rule allowed a
//! connection, or that none did.

use std::fmt;

use crate::cluster_policy::{Action, Tier};
use crate::model::Protocol;
use crate::policy::{Direction, PolicyRef};

/// The decision for one direction (the source's egress, or the destination's ingress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy selects the pod for this direction: everything is allowed.
    NotIsolated,
    /// The endpoint is not a pod policies apply to (an external address, a node, a hostNetwork pod).
    NotApplicable,
    /// Traffic from the destination pod's own node (kubelet probes) is always allowed.
    FromOwnNode,
    /// A pod's traffic to its own IP: it never leaves the pod's network namespace (the kernel
    /// routes it over `lo`), so no policy applies to it (upstream: kubernetes/kubernetes#95879,
    /// network-policy-api#390) and it is always allowed.
    ToItself,
    Allowed {
        by: PolicyRef,
        rule: usize,
    },
    Denied {
        isolated_by: Vec<PolicyRef>,
    },
    /// No rule allows, but every policy isolating the pod is in audit mode
    /// ([`crate::policy::AuditMode`]): allowed, and reported as what they would deny.
    AuditWouldDeny {
        isolated_by: Vec<PolicyRef>,
    },
    /// Decided by a ClusterNetworkPolicy rule: `rule` is its index in the direction's rules.
    /// Accept and Deny decide; a Pass is the decision only when nothing after it decided (an
    /// Admin Pass with no NetworkPolicy or Baseline rule deciding, or a Baseline Pass): allowed.
    Cluster {
        tier: Tier,
        policy: String,
        priority: u16,
        rule: usize,
        rule_name: Option<String>,
        action: Action,
    },
}

impl Decision {
    pub fn allows(&self) -> bool {
        !matches!(
            self,
            Decision::Denied { .. }
                | Decision::Cluster {
                    action: Action::Deny,
                    ..
                }
        )
    }
}

/// `ClusterNetworkPolicy deny-external (Admin, priority 10) egress rule 2 "block-all"`.
fn cluster_rule(
    dir: Direction,
    tier: Tier,
    policy: &str,
    priority: u16,
    rule: usize,
    rule_name: Option<&str>,
) -> String {
    let mut s =
        format!("ClusterNetworkPolicy {policy} ({tier}, priority {priority}) {dir} rule {rule}");
    if let Some(name) = rule_name {
        s.push_str(&format!(" {name:?}"));
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub egress: Decision,
    pub ingress: Decision,
}

/// Why a pod reaching its own IP is allowed, as `reach --explain` says it.
pub const TO_ITSELF: &str = "allowed: a pod's traffic to its own IP never leaves the pod, so no NetworkPolicy or ClusterNetworkPolicy applies to it";

impl Verdict {
    /// A pod's connection to its own IP (see [`Decision::ToItself`]).
    pub fn to_itself() -> Self {
        Self {
            egress: Decision::ToItself,
            ingress: Decision::ToItself,
        }
    }

    /// A connection needs the source's egress and the destination's ingress to allow it.
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }

    /// Allowed only because the policies that would deny it are all in audit mode.
    pub fn audit_would_deny(&self) -> bool {
        self.allowed()
            && [&self.egress, &self.ingress]
                .iter()
                .any(|d| matches!(d, Decision::AuditWouldDeny { .. }))
    }

    /// One line a person reads, e.g. `ingress denied: y/b is isolated by y/deny-all and no
    /// rule allows x/a on 80/TCP; egress not isolated`.
    pub fn reason(&self, from: &str, to: &str, port: u16, protocol: Protocol) -> String {
        if self.egress == Decision::ToItself && self.ingress == Decision::ToItself {
            return TO_ITSELF.to_string();
        }
        let side = |dir: Direction, d: &Decision| -> String {
            let (subject, peer) = match dir {
                Direction::Egress => (from, to),
                Direction::Ingress => (to, from),
            };
            match d {
                Decision::NotIsolated => format!("{dir} not isolated"),
                Decision::NotApplicable => format!("{dir} not subject to policy"),
                Decision::FromOwnNode => format!("{dir} allowed: traffic from the pod's own node"),
                Decision::ToItself => format!("{dir} allowed: traffic to the pod's own IP"),
                Decision::Allowed { by, rule } => {
                    format!("{dir} allowed by {by} {dir} rule {rule}")
                }
                Decision::Denied { isolated_by } => format!(
                    "{dir} denied: {subject} is isolated by {} and no rule allows {peer} on {port}/{protocol}",
                    join_refs(isolated_by)
                ),
                Decision::AuditWouldDeny { isolated_by } => format!(
                    "{dir} would be denied (audit: not enforced): {subject} is isolated by {} (audit mode) and no rule allows {peer} on {port}/{protocol}",
                    join_refs(isolated_by)
                ),
                Decision::Cluster {
                    tier,
                    policy,
                    priority,
                    rule,
                    rule_name,
                    action,
                } => {
                    let by =
                        cluster_rule(dir, *tier, policy, *priority, *rule, rule_name.as_deref());
                    match (action, tier) {
                        (Action::Accept, _) => format!("{dir} allowed by {by}"),
                        (Action::Deny, _) => format!("{dir} denied by {by}"),
                        (Action::Pass, Tier::Admin) => format!(
                            "{dir} allowed: passed by {by}, and no NetworkPolicy or Baseline rule decides"
                        ),
                        (Action::Pass, Tier::Baseline) => format!(
                            "{dir} allowed: passed by {by} (after the Baseline tier, the default is allow)"
                        ),
                    }
                }
            }
        };
        // The deciding side first: a denial is what the reader is looking for, then what audit
        // would deny.
        let e = side(Direction::Egress, &self.egress);
        let i = side(Direction::Ingress, &self.ingress);
        let weight = |d: &Decision| match d {
            d if !d.allows() => 0,
            Decision::AuditWouldDeny { .. } => 1,
            _ => 2,
        };
        if weight(&self.ingress) < weight(&self.egress) {
            format!("{i}; {e}")
        } else {
            format!("{e}; {i}")
        }
    }
}

pub(crate) fn join_refs(refs: &[PolicyRef]) -> String {
    let names: Vec<String> = refs.iter().map(ToString::to_string).collect();
    names.join(", ")
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::NotIsolated => f.write_str("not isolated"),
            Decision::NotApplicable => f.write_str("not subject to policy"),
            Decision::FromOwnNode => f.write_str("from own node"),
            Decision::ToItself => f.write_str("to itself"),
            Decision::Allowed { by, rule } => write!(f, "allowed by {by} rule {rule}"),
            Decision::Denied { isolated_by } => {
                write!(f, "denied (isolated by {})", join_refs(isolated_by))
            }
            Decision::AuditWouldDeny { isolated_by } => write!(
                f,
                "would be denied (audit: not enforced; isolated by {})",
                join_refs(isolated_by)
            ),
            Decision::Cluster {
                tier,
                policy,
                priority,
                rule,
                rule_name,
                action,
            } => {
                let verb = match action {
                    Action::Accept => "accepted",
                    Action::Deny => "denied",
                    Action::Pass => "passed",
                };
                write!(
                    f,
                    "{verb} by ClusterNetworkPolicy {policy} ({tier}, priority {priority}) rule {rule}"
                )?;
                match rule_name {
                    Some(name) => write!(f, " {name:?}"),
                    None => Ok(()),
                }
            }
        }
    }
}
