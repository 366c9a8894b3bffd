//! Who enforces NetworkPolicy on a node, from what the cluster says: the node's
//! `NodeEnforcement` status (written by its Palisade enforcer, which read the node's CNI
//! configuration), else CNI node annotations, else the CNI DaemonSet in kube-system. Pure; the
//! CLI's live mode uses it, and says it in words for `reach --explain`.

use k8s_openapi::api::core::v1::Node;

use crate::checks::{NodeEnforcement, cni_enforces_network_policy};

/// kube-system DaemonSets that give away the cluster's CNI, and its name.
pub const CNI_DAEMONSETS: &[(&str, &str)] = &[
    ("kube-flannel-ds", "flannel"),
    ("flannel", "flannel"),
    ("calico-node", "calico"),
    ("cilium", "cilium"),
    ("weave-net", "weave"),
    ("kube-router", "kube-router"),
    ("antrea-agent", "antrea"),
    ("kindnet", "kindnet"),
];

/// Node annotations that CNIs set, and the CNI's name.
pub const CNI_NODE_ANNOTATIONS: &[(&str, &str)] = &[
    ("flannel.alpha.coreos.com/backend-type", "flannel"),
    ("projectcalico.org/IPv4Address", "calico"),
    ("io.cilium.network.ipv4-pod-cidr", "cilium"),
    ("kube-router.io/pod-cidr", "kube-router"),
];

/// What a node's enforcer reported in its `NodeEnforcement` status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reported {
    pub cni: Option<String>,
    pub enforcing: bool,
    pub reason: String,
    /// It has synced its rules at least once.
    pub synced: bool,
    pub last_error: Option<String>,
}

impl Reported {
    /// From a `NodeEnforcement`'s `status` (JSON, as the apiserver returns it).
    pub fn from_status(status: &serde_json::Value) -> Self {
        let text = |k: &str| status.get(k).and_then(|v| v.as_str()).map(String::from);
        Self {
            cni: text("cni"),
            enforcing: status.get("enforcing").and_then(|v| v.as_bool()) == Some(true),
            reason: text("reason").unwrap_or_default(),
            synced: text("lastSync").is_some(),
            last_error: text("lastError"),
        }
    }

    /// The enforcer programs this node's rules and its last sync succeeded.
    pub fn active(&self) -> bool {
        self.enforcing && self.synced && self.last_error.is_none()
    }
}

/// The cluster's CNI from the DaemonSets of kube-system (`names`), when one gives it away.
pub fn cluster_cni<'a>(
    kube_system_daemonsets: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    kube_system_daemonsets.into_iter().find_map(|ds| {
        CNI_DAEMONSETS
            .iter()
            .find(|(name, _)| *name == ds)
            .map(|(_, cni)| cni.to_string())
    })
}

/// One node's enforcement, as the `enforcement` check reads it.
pub fn node_enforcement(
    node: &Node,
    reported: Option<&Reported>,
    cluster_cni: Option<&str>,
) -> NodeEnforcement {
    let annotations = node.metadata.annotations.clone().unwrap_or_default();
    let cni = reported
        .and_then(|r| r.cni.clone())
        .or_else(|| {
            CNI_NODE_ANNOTATIONS
                .iter()
                .find(|(key, _)| annotations.contains_key(*key))
                .map(|(_, cni)| cni.to_string())
        })
        .or_else(|| cluster_cni.map(String::from));
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    NodeEnforcement {
        node: node.metadata.name.clone().unwrap_or_default(),
        ready,
        cni_enforces: cni.as_deref().and_then(cni_enforces_network_policy),
        cni,
        enforcer_active: reported.is_some_and(Reported::active),
    }
}

/// Whether, and by what, NetworkPolicy is enforced on a node, in words.
pub fn describe(ne: &NodeEnforcement, reported: Option<&Reported>) -> String {
    let node = &ne.node;
    let cni = ne.cni.as_deref().unwrap_or("an unknown CNI");
    match reported {
        Some(r) if r.active() => format!("enforced on {node} by the Palisade enforcer"),
        Some(r) if r.enforcing => match &r.last_error {
            Some(e) => format!(
                "the Palisade enforcer on {node} enforces, but its last sync failed ({e}): the previous rules stay in force"
            ),
            None => {
                format!("the Palisade enforcer on {node} enforces but has not synced its rules yet")
            }
        },
        _ if ne.cni_enforces == Some(true) => {
            let aside = reported
                .filter(|r| !r.reason.is_empty())
                .map(|r| format!(" ({})", r.reason))
                .unwrap_or_default();
            format!("enforced on {node} by {cni}{aside}")
        }
        Some(r) => format!(
            "NOT enforced on {node}: {cni} ignores NetworkPolicy and the Palisade enforcer there does not enforce ({})",
            if r.reason.is_empty() {
                "no reason given"
            } else {
                &r.reason
            }
        ),
        None if ne.cni_enforces == Some(false) => format!(
            "NOT enforced on {node}: {cni} ignores NetworkPolicy and no Palisade enforcer reports from it"
        ),
        None => format!(
            "unknown whether anything enforces NetworkPolicy on {node}: {cni}, and no Palisade enforcer reports from it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_enforcers_report_decides_and_is_said_in_words() {
        let active = Reported::from_status(&serde_json::json!({
            "cni": "flannel", "enforcing": true, "lastSync": "2026-01-01T00:00:00Z", "reason": "flannel does not enforce NetworkPolicy"
        }));
        let ne = node_enforcement(&node("node-1", true), Some(&active), None);
        assert_eq!(
            ne,
            NodeEnforcement {
                node: "node-1".into(),
                ready: true,
                cni: Some("flannel".into()),
                cni_enforces: Some(false),
                enforcer_active: true
            }
        );
        assert_eq!(
            describe(&ne, Some(&active)),
            "enforced on node-1 by the Palisade enforcer"
        );

        let ne = node_enforcement(
            &node("node-2", true),
            None,
            cluster_cni(["coredns", "kube-flannel-ds"]).as_deref(),
        );
        assert_eq!(
            describe(&ne, None),
            "NOT enforced on node-2: flannel ignores NetworkPolicy and no Palisade enforcer reports from it"
        );

        let aside = Reported::from_status(&serde_json::json!({
            "cni": "calico", "enforcing": false, "lastSync": "2026-01-01T00:00:00Z", "reason": "calico enforces NetworkPolicy itself; standing aside"
        }));
        let ne = node_enforcement(&node("node-3", true), Some(&aside), None);
        assert_eq!(
            describe(&ne, Some(&aside)),
            "enforced on node-3 by calico (calico enforces NetworkPolicy itself; standing aside)"
        );
    }
}
