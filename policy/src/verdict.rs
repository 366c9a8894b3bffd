//! Verdicts that say why: which policies isolate a pod, and which policy rule allowed a
//! connection, or that none did.

use std::fmt;

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
    Allowed {
        by: PolicyRef,
        rule: usize,
    },
    Denied {
        isolated_by: Vec<PolicyRef>,
    },
}

impl Decision {
    pub fn allows(&self) -> bool {
        !matches!(self, Decision::Denied { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub egress: Decision,
    pub ingress: Decision,
}

impl Verdict {
    /// A connection needs the source's egress and the destination's ingress to allow it.
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }

    /// One line a person reads, e.g. `ingress denied: y/b is isolated by y/deny-all and no
    /// rule allows x/a on 80/TCP; egress not isolated`.
    pub fn reason(&self, from: &str, to: &str, port: u16, protocol: Protocol) -> String {
        let side = |dir: Direction, d: &Decision| -> String {
            let (subject, peer) = match dir {
                Direction::Egress => (from, to),
                Direction::Ingress => (to, from),
            };
            match d {
                Decision::NotIsolated => format!("{dir} not isolated"),
                Decision::NotApplicable => format!("{dir} not subject to policy"),
                Decision::FromOwnNode => format!("{dir} allowed: traffic from the pod's own node"),
                Decision::Allowed { by, rule } => {
                    format!("{dir} allowed by {by} {dir} rule {rule}")
                }
                Decision::Denied { isolated_by } => format!(
                    "{dir} denied: {subject} is isolated by {} and no rule allows {peer} on {port}/{protocol}",
                    join_refs(isolated_by)
                ),
            }
        };
        // The deciding side first: a denial is what the reader is looking for.
        let e = side(Direction::Egress, &self.egress);
        let i = side(Direction::Ingress, &self.ingress);
        if !self.ingress.allows() && self.egress.allows() {
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
            Decision::Allowed { by, rule } => write!(f, "allowed by {by} rule {rule}"),
            Decision::Denied { isolated_by } => {
                write!(f, "denied (isolated by {})", join_refs(isolated_by))
            }
        }
    }
}
