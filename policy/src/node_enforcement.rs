//! Who enforces NetworkPolicy on a node, from what the cluster says: the node's
//! `NodeEnforcement` status (written by its Palisade enforcer, which read the node's CNI
//! configuration), else CNI node annotations, else the CNI DaemonSet in kube-system. Pure; the
//! CLI's live mode uses it, and says it in words for `reach --explain`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

use crate::checks::{ClusterPolicyEnforcement, NodeEnforcement, cni_enforces_network_policy};
use crate::model::IpFamily;

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

/// A running enforcer refreshes its status's `lastSync` at least this often, even when nothing
/// changed (one write per node per period: the API writes stay bounded).
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);
/// A `lastSync` older than this (three refresh periods) is from an enforcer that went silent:
/// its node counts as not enforced. Calico's Felix reports the same way (every 30 s, 90 s TTL).
pub const STALE_AFTER: Duration = Duration::from_secs(90);

/// What a node's enforcer reported in its `NodeEnforcement` status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reported {
    pub cni: Option<String>,
    pub enforcing: bool,
    pub reason: String,
    /// It has synced its rules at least once.
    pub synced: bool,
    pub last_error: Option<String>,
    /// How long ago its last sync was, when that is longer than [`STALE_AFTER`] by the clock
    /// the status was read with: the enforcer went silent.
    pub silent_for: Option<Duration>,
    /// The IP families it enforces (status `families`). An enforcer older than dual-stack
    /// support writes none and enforces IPv4 only.
    pub families: Vec<IpFamily>,
    /// What it says of ClusterNetworkPolicy (status `clusterNetworkPolicy`); `None` from an
    /// enforcer older than ClusterNetworkPolicy support.
    pub cluster_policies: Option<ClusterPolicyEnforcement>,
    /// Its mode (status `mode`: `auto`, `enforce` or `off`), when it says.
    pub mode: Option<String>,
    /// When it last synced (status `lastSync`), when that is a readable time.
    pub last_sync: Option<Timestamp>,
}

/// The families a status's `families` names; IPv4 when it has none (older enforcers).
pub fn reported_families(status: &serde_json::Value) -> Vec<IpFamily> {
    match status.get("families").and_then(|f| f.as_array()) {
        Some(list) => IpFamily::ALL
            .into_iter()
            .filter(|f| list.iter().any(|v| v.as_str() == Some(f.as_str())))
            .collect(),
        None => vec![IpFamily::V4],
    }
}

/// `IPv4`, `IPv4 and IPv6`.
pub fn families_text<S: AsRef<str>>(families: &[S]) -> String {
    let names: Vec<&str> = families.iter().map(AsRef::as_ref).collect();
    match names.as_slice() {
        [] => "no IP family".into(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Reported {
    /// From a `NodeEnforcement`'s `status` (JSON, as the apiserver returns it), read now.
    pub fn from_status(status: &serde_json::Value) -> Self {
        Self::from_status_at(status, Timestamp::now())
    }

    /// From a `NodeEnforcement`'s `status`, read at `now`.
    pub fn from_status_at(status: &serde_json::Value, now: Timestamp) -> Self {
        let text = |k: &str| status.get(k).and_then(|v| v.as_str()).map(String::from);
        let last_sync = text("lastSync");
        let last_sync_at = last_sync
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok());
        Self {
            cni: text("cni"),
            enforcing: status.get("enforcing").and_then(|v| v.as_bool()) == Some(true),
            reason: text("reason").unwrap_or_default(),
            synced: last_sync.is_some(),
            last_error: text("lastError"),
            silent_for: last_sync_at.and_then(|t| silent_for(t, now)),
            families: reported_families(status),
            cluster_policies: status
                .get("clusterNetworkPolicy")
                .and_then(|c| serde_json::from_value(c.clone()).ok()),
            mode: text("mode").filter(|m| !m.is_empty()),
            last_sync: last_sync_at,
        }
    }

    /// The enforcer programs this node's rules, its last sync succeeded, and it still reports.
    pub fn active(&self) -> bool {
        self.enforcing && self.synced && self.last_error.is_none() && self.silent_for.is_none()
    }
}

/// How long an enforcer whose last sync was at `last_sync` has been silent at `now`, when that
/// is longer than [`STALE_AFTER`]. A time ahead of `now` (clocks apart) is not silence.
pub fn silent_for(last_sync: Timestamp, now: Timestamp) -> Option<Duration> {
    let age = Duration::try_from(now.duration_since(last_sync)).ok()?;
    (age > STALE_AFTER).then_some(age)
}

/// A duration as people read it in a status: `95s`, `12m`, `3h`, `2d`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
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
        enforcer_silent_secs: reported.and_then(|r| r.silent_for).map(|d| d.as_secs()),
        enforced_families: reported
            .filter(|r| r.active())
            .map(|r| r.families.iter().map(|f| f.as_str().to_string()).collect())
            .unwrap_or_default(),
        cluster_policies: reported
            .filter(|r| r.silent_for.is_none())
            .and_then(|r| r.cluster_policies.clone()),
    }
}

/// [`describe`] for traffic of a pod with addresses of `families`: on a node whose enforcer
/// does not enforce one of them, that family's traffic is not filtered, and this says so.
pub fn describe_for(
    ne: &NodeEnforcement,
    reported: Option<&Reported>,
    families: &[IpFamily],
) -> String {
    let missing = ne.missing_families(families);
    if missing.is_empty() || !ne.enforcer_active || ne.cni_enforces == Some(true) {
        return describe(ne, reported);
    }
    format!(
        "enforced on {} by the Palisade enforcer for {} only, NOT for {}: {}",
        ne.node,
        families_text(&ne.enforced_families),
        families_text(&missing),
        WHY_NOT_IPV6
    )
}

/// Why an active enforcer may not enforce IPv6.
pub const WHY_NOT_IPV6: &str = "ip6tables does not work on that node (its NodeEnforcement status says why) or its enforcer is older than IPv6 support";

/// Whether, and by what, NetworkPolicy is enforced on a node, in words.
pub fn describe(ne: &NodeEnforcement, reported: Option<&Reported>) -> String {
    let node = &ne.node;
    let cni = ne.cni.as_deref().unwrap_or("an unknown CNI");
    match reported {
        Some(r) if r.active() => format!(
            "enforced on {node} by the Palisade enforcer ({})",
            families_text(&ne.enforced_families)
        ),
        Some(r) if r.enforcing && r.silent_for.is_some() => {
            let silent = format!(
                "its Palisade enforcer has not reported for {} (a running one reports every {}s)",
                human_duration(r.silent_for.unwrap_or_default()),
                STATUS_REFRESH.as_secs()
            );
            if ne.cni_enforces == Some(true) {
                format!("enforced on {node} by {cni}; {silent}")
            } else {
                format!(
                    "NOT counted as enforced on {node}: {silent}; its last rules may still be in force"
                )
            }
        }
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

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn the_enforcers_report_decides_and_is_said_in_words() {
        let now = at("2026-01-01T00:01:00Z");
        let active = Reported::from_status_at(
            &serde_json::json!({
                "cni": "flannel", "enforcing": true, "lastSync": "2026-01-01T00:00:00Z", "reason": "flannel does not enforce NetworkPolicy"
            }),
            now,
        );
        let ne = node_enforcement(&node("node-1", true), Some(&active), None);
        assert_eq!(
            ne,
            NodeEnforcement {
                node: "node-1".into(),
                ready: true,
                cni: Some("flannel".into()),
                cni_enforces: Some(false),
                enforcer_active: true,
                enforcer_silent_secs: None,
                enforced_families: vec!["IPv4".into()],
                cluster_policies: None,
            }
        );
        assert_eq!(
            describe(&ne, Some(&active)),
            "enforced on node-1 by the Palisade enforcer (IPv4)"
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

        let aside = Reported::from_status_at(
            &serde_json::json!({
                "cni": "calico", "enforcing": false, "lastSync": "2026-01-01T00:00:00Z", "reason": "calico enforces NetworkPolicy itself; standing aside"
            }),
            now,
        );
        let ne = node_enforcement(&node("node-3", true), Some(&aside), None);
        assert_eq!(
            describe(&ne, Some(&aside)),
            "enforced on node-3 by calico (calico enforces NetworkPolicy itself; standing aside)"
        );
        // Gone silent: not counted, however well its last sync went. Calico still enforces.
        let later = at("2026-01-01T00:12:00Z");
        let silent = Reported::from_status_at(
            &serde_json::json!({"cni": "flannel", "enforcing": true, "lastSync": "2026-01-01T00:00:00Z"}),
            later,
        );
        let ne = node_enforcement(&node("node-1", true), Some(&silent), None);
        assert!(!ne.enforcer_active);
        assert_eq!(ne.enforcer_silent_secs, Some(720));
        assert_eq!(
            describe(&ne, Some(&silent)),
            "NOT counted as enforced on node-1: its Palisade enforcer has not reported for 12m (a running one reports every 30s); its last rules may still be in force"
        );
        let aside = Reported::from_status_at(
            &serde_json::json!({"cni": "calico", "enforcing": false, "lastSync": "2026-01-01T00:00:00Z", "reason": "calico enforces NetworkPolicy itself; standing aside"}),
            later,
        );
        let ne = node_enforcement(&node("node-3", true), Some(&aside), None);
        assert!(describe(&ne, Some(&aside)).starts_with("enforced on node-3 by calico"));
        // An enforcer that enforced on top of an enforcing CNI (mode enforce) and went silent:
        // the CNI still enforces, and nothing says it never synced.
        let doubled = Reported::from_status_at(
            &serde_json::json!({"cni": "calico", "enforcing": true, "lastSync": "2026-01-01T00:00:00Z"}),
            later,
        );
        let ne = node_enforcement(&node("node-3", true), Some(&doubled), None);
        assert_eq!(
            describe(&ne, Some(&doubled)),
            "enforced on node-3 by calico; its Palisade enforcer has not reported for 12m (a running one reports every 30s)"
        );
    }

    /// A status names the families its enforcer enforces; one written before dual-stack support
    /// has none and means IPv4. A pod's IPv6 traffic on a node enforcing IPv4 only is said to be
    /// unfiltered, naming the node and the family.
    #[test]
    fn the_families_a_node_enforces_are_said() {
        let now = at("2026-01-01T00:01:00Z");
        let status = |families: serde_json::Value| {
            let mut s = serde_json::json!({"cni": "flannel", "enforcing": true, "lastSync": "2026-01-01T00:00:00Z"});
            if !families.is_null() {
                s["families"] = families;
            }
            Reported::from_status_at(&s, now)
        };
        let dual = status(serde_json::json!(["IPv4", "IPv6"]));
        assert_eq!(dual.families, [IpFamily::V4, IpFamily::V6]);
        let ne = node_enforcement(&node("node-1", true), Some(&dual), None);
        assert_eq!(ne.enforced_families, ["IPv4", "IPv6"]);
        assert_eq!(
            describe_for(&ne, Some(&dual), &[IpFamily::V4, IpFamily::V6]),
            "enforced on node-1 by the Palisade enforcer (IPv4 and IPv6)"
        );
        let old = status(serde_json::Value::Null);
        assert_eq!(old.families, [IpFamily::V4]);
        let ne = node_enforcement(&node("node-2", true), Some(&old), None);
        assert_eq!(ne.missing_families(&[IpFamily::V4]), Vec::<String>::new());
        assert_eq!(
            describe_for(&ne, Some(&old), &[IpFamily::V4]),
            "enforced on node-2 by the Palisade enforcer (IPv4)"
        );
        assert_eq!(
            describe_for(&ne, Some(&old), &[IpFamily::V4, IpFamily::V6]),
            format!(
                "enforced on node-2 by the Palisade enforcer for IPv4 only, NOT for IPv6: {WHY_NOT_IPV6}"
            )
        );
        // Not active: no families enforced, whatever the status says.
        let off = Reported::from_status_at(
            &serde_json::json!({"enforcing": false, "families": ["IPv4", "IPv6"]}),
            now,
        );
        let ne = node_enforcement(&node("node-3", true), Some(&off), None);
        assert!(ne.enforced_families.is_empty());
    }

    /// Silence is decided by the clock passed in: up to three refresh periods is still fresh,
    /// a time ahead (clocks apart) is fresh, an unreadable time is not silence.
    #[test]
    fn a_status_older_than_the_bound_is_silence() {
        let synced = at("2026-01-01T00:00:00Z");
        assert_eq!(silent_for(synced, at("2026-01-01T00:01:30Z")), None);
        assert_eq!(
            silent_for(synced, at("2026-01-01T00:01:31Z")),
            Some(Duration::from_secs(91))
        );
        assert_eq!(silent_for(synced, at("2025-12-31T23:59:00Z")), None);
        let status = |t: &str| serde_json::json!({"enforcing": true, "lastSync": t});
        let now = at("2026-01-01T00:05:00Z");
        assert!(Reported::from_status_at(&status("2026-01-01T00:04:00Z"), now).active());
        assert!(!Reported::from_status_at(&status("2026-01-01T00:03:00Z"), now).active());
        assert_eq!(STALE_AFTER, 3 * STATUS_REFRESH);
        assert_eq!(human_duration(Duration::from_secs(95)), "95s");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3d");
    }
}
