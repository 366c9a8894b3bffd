//! `enforcement`: nothing will enforce this policy.

use std::time::Duration;

use super::{Context, Issue, name};
use crate::model::IpFamily;
use crate::node_enforcement::{STALE_AFTER, WHY_NOT_IPV6, families_text, human_duration};
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

/// Whether a CNI plugin enforces ClusterNetworkPolicy (policy.networking.k8s.io) itself, by the
/// names [`cni_enforces_network_policy`] knows; `None` for plugins Palisade does not know.
pub fn cni_enforces_cluster_network_policy(cni: &str) -> Option<bool> {
    match cni {
        "calico" | "antrea" => Some(true),
        "cilium" | "weave" | "weave-net" | "kube-router" => Some(false),
        other => cni_enforces_network_policy(other).map(|_| false),
    }
}

/// What a node's Palisade enforcer reports of ClusterNetworkPolicy (its status
/// `clusterNetworkPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ClusterPolicyEnforcement {
    /// Its rules carry the Admin and Baseline tiers.
    pub enforced: bool,
    /// Why, in the enforcer's words.
    pub reason: String,
    /// How many ClusterNetworkPolicies it does not enforce as written (status
    /// `clusterNetworkPolicy.notEnforcedCount`).
    #[serde(default, rename = "notEnforcedCount")]
    pub not_enforced_count: u32,
    /// The first of those by name, with the reason (status `clusterNetworkPolicy.notEnforced`).
    #[serde(default, rename = "notEnforced", skip_serializing_if = "Vec::is_empty")]
    pub not_enforced: Vec<NotEnforcedPolicy>,
}

/// A ClusterNetworkPolicy a node's enforcer does not enforce as written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NotEnforcedPolicy {
    pub name: String,
    pub reason: String,
}

/// Whether a node enforces a kind of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Enforced {
    Yes,
    No,
    /// Nothing certain is known: a CNI Palisade does not know, and no enforcer that reports.
    Unknown,
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
    /// The IP families (`IPv4`, `IPv6`) the active enforcer enforces; empty when none is
    /// active. Traffic of the other family passes the node unfiltered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enforced_families: Vec<String>,
    /// What the node's enforcer reports of ClusterNetworkPolicy; `None` when no enforcer that
    /// still reports says (none runs there, or one older than ClusterNetworkPolicy support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_policies: Option<ClusterPolicyEnforcement>,
}

impl NodeEnforcement {
    /// Whether NetworkPolicy is enforced on this node for traffic of `families`: by its CNI, or
    /// by an active Palisade enforcer of each of those families. The one decision the
    /// `enforcement` check, `reach --explain` and `palisade status` share.
    pub fn network_policy(&self, families: &[IpFamily]) -> Enforced {
        if self.cni_enforces == Some(true) {
            Enforced::Yes
        } else if self.enforcer_active {
            if self.missing_families(families).is_empty() {
                Enforced::Yes
            } else {
                Enforced::No
            }
        } else if self.cni_enforces == Some(false) {
            Enforced::No
        } else {
            Enforced::Unknown
        }
    }

    /// Whether ClusterNetworkPolicy is enforced on this node, and why not when it is not: its
    /// Palisade enforcer says it enforces the tiers, or its CNI enforces them itself; else its
    /// enforcer's reason, or the CNI's known lack. The decision the `enforcement` check of a
    /// ClusterNetworkPolicy and `palisade status` share.
    pub fn cluster_policy(&self) -> (Enforced, Option<String>) {
        let cni = self.cni.as_deref();
        let by_cni = cni.and_then(cni_enforces_cluster_network_policy);
        match (&self.cluster_policies, by_cni) {
            (Some(c), _) if c.enforced => (Enforced::Yes, None),
            (_, Some(true)) => (Enforced::Yes, None),
            (Some(c), _) => (
                Enforced::No,
                Some(format!("its Palisade enforcer: {}", c.reason)),
            ),
            (None, Some(false)) => (
                Enforced::No,
                Some(format!(
                    "CNI {} does not enforce ClusterNetworkPolicy, and no Palisade enforcer there reports enforcing it",
                    cni.unwrap_or("unknown")
                )),
            ),
            (None, None) => (Enforced::Unknown, None),
        }
    }

    /// Those of `families` the node's active enforcer does not enforce (as `IPv6`).
    pub fn missing_families(&self, families: &[IpFamily]) -> Vec<String> {
        families
            .iter()
            .map(|f| f.as_str())
            .filter(|f| !self.enforced_families.iter().any(|e| e == f))
            .map(String::from)
            .collect()
    }
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
        .filter(|n| n.network_policy(&[]) == Enforced::No)
        .collect();
    // Caches list nodes in no particular order; the message should not change between reviews.
    open.sort_by(|a, b| a.node.cmp(&b.node));
    let partly = partly_enforced(&ready, ctx);
    if open.is_empty() {
        return Ok(partly_issue(policy, &partly, ready.len()));
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
    if !partly.is_empty() {
        detail.push_str("Also not fully enforced:\n");
        partly_evidence(&mut detail, &partly);
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

/// A ready node whose active enforcer does not enforce every IP family its pods have
/// addresses of: those families' traffic passes unfiltered.
struct Partly<'a> {
    node: &'a NodeEnforcement,
    missing: Vec<String>,
    /// Some of the node's pods with addresses of a missing family.
    pods: Vec<String>,
    more_pods: usize,
}

fn partly_enforced<'a>(ready: &[&'a NodeEnforcement], ctx: &Context) -> Vec<Partly<'a>> {
    let mut out = Vec::new();
    for n in ready {
        if !n.enforcer_active || n.cni_enforces == Some(true) {
            continue;
        }
        let mut families: Vec<IpFamily> = Vec::new();
        let mut pods: Vec<(IpFamily, String)> = Vec::new();
        for pod in ctx.cluster.pods() {
            if pod.node.as_deref() != Some(n.node.as_str()) || !pod.is_target() {
                continue;
            }
            for f in pod.families() {
                if !families.contains(&f) {
                    families.push(f);
                }
                pods.push((f, pod.key()));
            }
        }
        if n.network_policy(&families) != Enforced::No {
            continue;
        }
        let missing = n.missing_families(&families);
        let mut keys: Vec<String> = pods
            .into_iter()
            .filter(|(f, _)| missing.iter().any(|m| m == f.as_str()))
            .map(|(_, k)| k)
            .collect();
        keys.dedup();
        let more_pods = keys.len().saturating_sub(3);
        keys.truncate(3);
        out.push(Partly {
            node: n,
            missing,
            pods: keys,
            more_pods,
        });
    }
    out.sort_by(|a, b| a.node.node.cmp(&b.node.node));
    out
}

fn partly_evidence(detail: &mut String, partly: &[Partly]) {
    for p in partly.iter().take(10) {
        let more = if p.more_pods > 0 {
            format!(" and {} more", p.more_pods)
        } else {
            String::new()
        };
        detail.push_str(&format!(
            "  node {}: NOT enforced for {}: pods there have {} addresses ({}{more}), and its \
             Palisade enforcer enforces {} only, so their {} traffic passes unfiltered\n",
            p.node.node,
            families_text(&p.missing),
            families_text(&p.missing),
            p.pods.join(", "),
            families_text(&p.node.enforced_families),
            families_text(&p.missing),
        ));
    }
    if partly.len() > 10 {
        detail.push_str(&format!("  ... and {} more nodes\n", partly.len() - 10));
    }
}

fn partly_issue(policy: &Policy, partly: &[Partly], ready: usize) -> Vec<Issue> {
    if partly.is_empty() {
        return Vec::new();
    }
    let mut missing: Vec<&str> = partly
        .iter()
        .flat_map(|p| p.missing.iter().map(String::as_str))
        .collect();
    missing.sort();
    missing.dedup();
    let missing = families_text(&missing);
    let summary = format!(
        "{missing} not enforced on {} of {ready} ready nodes (the enforcer there lacks it)",
        partly.len()
    );
    let mut detail = format!(
        "NetworkPolicy {} would be enforced only in part: on {} of {ready} ready nodes pods have \
         {missing} addresses and the Palisade enforcer there does not enforce {missing}, so those \
         pods stay reachable by everyone over {missing}.\nEvidence:\n",
        name(policy),
        partly.len(),
    );
    partly_evidence(&mut detail, partly);
    detail.push_str(&format!(
        "Why: {WHY_NOT_IPV6}.\n\
         Fix: make ip6tables work on these nodes (the kernel's ip6_tables or nf_tables IPv6 \
         support), or upgrade Palisade's enforcer; see\n\
         \x20 kubectl get nodeenforcement NODE -o yaml"
    ));
    vec![Issue::new(summary, detail)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{CheckConfig, Enforcement, run};
    use crate::{Cluster, Labels, Pod};

    fn node(name: &str, families: &[&str]) -> NodeEnforcement {
        NodeEnforcement {
            node: name.into(),
            ready: true,
            cni: Some("flannel".into()),
            cni_enforces: Some(false),
            enforcer_active: true,
            enforcer_silent_secs: None,
            enforced_families: families.iter().map(|f| f.to_string()).collect(),
            cluster_policies: None,
        }
    }

    fn pod(name: &str, node: &str, ips: &[&str]) -> Pod {
        let mut ips = ips.iter().map(|i| i.parse().expect("ip"));
        let mut p = Pod::running("x", name, Labels::new(), ips.next().expect("an ip"));
        for ip in ips {
            p = p.with_second_ip(ip);
        }
        p.node = Some(node.into());
        p
    }

    /// A node whose pods have IPv6 addresses but whose enforcer enforces IPv4 only (an older
    /// enforcer, or no working ip6tables) does not count as enforcing: the refusal names the
    /// node and the family. Nodes with IPv4-only pods, and nodes enforcing both, are fine.
    #[test]
    fn ipv6_pods_on_a_node_enforcing_ipv4_only_are_not_enforced() {
        let cluster = Cluster::new(
            vec![],
            vec![
                pod("a", "n1", &["10.0.0.1", "fd00:10:244::1"]),
                pod("b", "n2", &["10.0.1.1"]),
                pod("c", "n3", &["fd00:10:244:3::1"]),
            ],
            vec![],
            vec![Policy::deny_all_ingress("x", "deny")],
        );
        let review = |nodes: Vec<NodeEnforcement>| {
            let enforcement = Enforcement { nodes };
            let ctx = Context {
                cluster: &cluster,
                enforcement: Some(&enforcement),
                knows_pods: true,
                knows_namespaces: true,
            };
            run(
                &Policy::deny_all_ingress("x", "deny"),
                &ctx,
                &CheckConfig::default(),
            )
            .findings
            .into_iter()
            .filter(|f| f.check == super::super::CheckId::Enforcement)
            .collect::<Vec<_>>()
        };
        let both = ["IPv4", "IPv6"];
        assert_eq!(
            review(vec![
                node("n1", &both),
                node("n2", &["IPv4"]),
                node("n3", &both)
            ]),
            vec![]
        );
        let found = review(vec![
            node("n1", &["IPv4"]),
            node("n2", &["IPv4"]),
            node("n3", &both),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].summary,
            "IPv6 not enforced on 1 of 3 ready nodes (the enforcer there lacks it)"
        );
        assert!(
            found[0].message.contains(
                "node n1: NOT enforced for IPv6: pods there have IPv6 addresses (x/a), and its \
                 Palisade enforcer enforces IPv4 only"
            ),
            "{}",
            found[0].message
        );
        // A node without any enforcer is still the main finding; the partial one is evidence.
        let mut off = node("n2", &[]);
        off.enforcer_active = false;
        let found = review(vec![node("n1", &["IPv4"]), off, node("n3", &both)]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .summary
                .starts_with("not enforced on 1 of 3 ready nodes")
        );
        assert!(
            found[0]
                .message
                .contains("Also not fully enforced:\n  node n1: NOT enforced for IPv6")
        );
    }
}
