//! `enforcement`: nothing will enforce this policy.

use std::time::Duration;

use super::{Context, Issue, name};
use crate::node_enforcement::{STALE_AFTER, human_duration};
use crate::policy::Policy;

/// Whether a CNI plugin enforces NetworkPolicy, by the name its DaemonSet, node annotations or
/// CNI configuration use; `None` for plugins Palisade does not know.
pub fn cni_enforces_network_policy(cni: &str) -> Option<bool> {
    match cni {
        "calico" | "cilium" | "weave" | "weave-net" | "kube-router" | "antrea" => Some(true),
        "flannel" | "bridge" | "ptp" | "host-local" | "macvlan" | "ipvlan" | "kindnet" => {
            Some(false)
        }
        _ => None,
    }
}

/// Per-node knowledge: the CNI found there, and whether a Palisade enforcer is active on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeEnforcement {
    pub node: String,
    pub ready: bool,
    /// The CNI plugin identified on the node (e.g. `flannel`), if any.
    pub cni: Option<String>,
    /// Whether that CNI enforces NetworkPolicy; `None` when unknown.
    pub cni_enforces: Option<bool>,
    /// A Palisade enforcer is running on the node and has synced its rules.
    pub enforcer_active: bool,
    /// The node's enforcer has not reported for this many seconds, longer than a running one
    /// ever is silent: it counts as not active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcer_silent_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Enforcement {
    pub nodes: Vec<NodeEnforcement>,
}

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    let Some(enf) = ctx.enforcement else {
        return Err("nothing is known about the nodes' CNI".into());
    };
    let ready: Vec<&NodeEnforcement> = enf.nodes.iter().filter(|n| n.ready).collect();
    let mut open: Vec<&NodeEnforcement> = ready
        .iter()
        .copied()
        .filter(|n| n.cni_enforces == Some(false) && !n.enforcer_active)
        .collect();
    // Caches list nodes in no particular order; the message should not change between reviews.
    open.sort_by(|a, b| a.node.cmp(&b.node));
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let cnis = {
        let mut c: Vec<&str> = open.iter().filter_map(|n| n.cni.as_deref()).collect();
        c.sort();
        c.dedup();
        c.join(", ")
    };
    let silent = open
        .iter()
        .filter(|n| n.enforcer_silent_secs.is_some())
        .count();
    let enforcers = match silent {
        0 => "no Palisade enforcer",
        s if s == open.len() => "Palisade enforcer silent",
        _ => "no Palisade enforcer or a silent one",
    };
    let summary = format!(
        "not enforced on {} of {} ready nodes (CNI {cnis}, {enforcers})",
        open.len(),
        ready.len()
    );
    let mut detail = format!(
        "NetworkPolicy {} would be stored but not enforced: on {} of {} ready nodes the CNI ignores \
         NetworkPolicy and no Palisade enforcer is active, so pods there stay reachable by everyone.\n\
         Evidence:\n",
        name(policy),
        open.len(),
        ready.len()
    );
    for n in open.iter().take(10) {
        let enforcer = match n.enforcer_silent_secs {
            Some(secs) => format!(
                "silent: its last status is {} old, older than {}s, so it is not counted as \
                 enforcing (it may have stopped, or cannot reach the API server)",
                human_duration(Duration::from_secs(secs)),
                STALE_AFTER.as_secs()
            ),
            None => "not active".to_string(),
        };
        detail.push_str(&format!(
            "  node {}: CNI {} (does not enforce NetworkPolicy), Palisade enforcer: {enforcer}\n",
            n.node,
            n.cni.as_deref().unwrap_or("unknown")
        ));
    }
    if open.len() > 10 {
        detail.push_str(&format!("  ... and {} more nodes\n", open.len() - 10));
    }
    if silent > 0 {
        detail.push_str(
            "Fix: see why the enforcer there stopped reporting (its pod's state and log):\n\
             \x20 kubectl get pods -A -l app.kubernetes.io/component=enforcer -o wide\n",
        );
    }
    detail.push_str(
        "Fix: run Palisade's enforcer on these nodes:\n\
         \x20 helm upgrade palisade charts/palisade -n palisade-system --reuse-values --set enforcer.mode=auto\n\
         or move the cluster to a CNI that enforces NetworkPolicy (Calico, Cilium, Antrea).",
    );
    Ok(vec![Issue::new(summary, detail)])
}
