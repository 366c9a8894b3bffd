//! `ClusterNetworkPolicy` (`policy.networking.k8s.io/v1beta1`, cluster-scoped): SIG Network's
//! tiered cluster-wide policy API (network-policy-api v0.3.x), which Palisade implements. The
//! API is read through `v1beta1`; `v1alpha2` (v0.2.x, still served by v0.3.x with the same
//! schema) is accepted in files.
//!
//! The types mirror the upstream JSON field by field (camelCase). Every upstream object that
//! takes "exactly one key" is a struct of `Option`s here, and enumerations (`tier`, `action`)
//! are strings, so an object an older or newer schema admitted still reads and Palisade can say
//! what is wrong with it (`palisade_policy::cluster_policy::ClusterPolicy::from_api`). The
//! experimental egress peers `nodes` and `domainNames` are read so they can be refused. Unknown
//! fields are ignored here; `palisade check` reports them. The chart ships the upstream CRD, not
//! one generated from these types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The API group.
pub const CLUSTER_NETWORK_POLICY_GROUP: &str = "policy.networking.k8s.io";
/// The version Palisade requests from the API (network-policy-api v0.3.0's storage version).
pub const CLUSTER_NETWORK_POLICY_VERSION: &str = "v1beta1";
/// `apiVersion` as written in manifests of the version Palisade requests.
pub const CLUSTER_NETWORK_POLICY_API_VERSION: &str = "policy.networking.k8s.io/v1beta1";
/// Every `apiVersion` Palisade reads, newest first: upstream serves `v1beta1` and `v1alpha2`
/// with the same schema (network-policy-api v0.3.0), so both read into the same types.
pub const CLUSTER_NETWORK_POLICY_API_VERSIONS: [&str; 2] = [
    "policy.networking.k8s.io/v1beta1",
    "policy.networking.k8s.io/v1alpha2",
];

/// A cluster-wide policy in the Admin tier (before NetworkPolicy) or the Baseline tier (after it).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1beta1",
    kind = "ClusterNetworkPolicy",
    plural = "clusternetworkpolicies",
    shortname = "cnp",
    status = "ClusterNetworkPolicyStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// `Admin` or `Baseline`.
    pub tier: String,
    /// 0 to 1000; lower values come first within a tier.
    pub priority: i32,
    /// The pods the policy is about: exactly one of `namespaces`, `pods`.
    #[serde(default)]
    pub subject: ClusterNetworkPolicySubject,
    /// Rules for traffic to the subject pods; absent: the policy leaves ingress alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<ClusterNetworkPolicyIngressRule>>,
    /// Rules for traffic from the subject pods; absent: the policy leaves egress alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<ClusterNetworkPolicyEgressRule>>,
}

/// Exactly one key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySubject {
    /// Every pod in the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods selected by `podSelector` in the namespaces `namespaceSelector` selects (absent: all).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    pub pod_selector: LabelSelector,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    #[serde(default)]
    pub from: Vec<ClusterNetworkPolicyIngressPeer>,
    /// Absent: every protocol and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ClusterNetworkPolicyProtocol>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    #[serde(default)]
    pub to: Vec<ClusterNetworkPolicyEgressPeer>,
    /// Absent: every protocol and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ClusterNetworkPolicyProtocol>>,
}

/// Exactly one key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Exactly one key. `nodes` and `domainNames` are the experimental channel's peers, which
/// Palisade does not enforce.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// CIDRs, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
}

/// Exactly one key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyProtocol {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ClusterNetworkPolicyProtocolPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ClusterNetworkPolicyProtocolPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ClusterNetworkPolicyProtocolPort>,
    /// A container port name, resolved on the destination pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyProtocolPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<ClusterNetworkPolicyPort>,
}

/// Exactly one key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ClusterNetworkPolicyPortRange>,
}

/// Inclusive; `start` < `end`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyPortRange {
    pub start: i32,
    pub end: i32,
}

/// Upstream standardises no condition types: each implementation reports what it sees fit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upstream_json_of_both_versions() {
        for api_version in CLUSTER_NETWORK_POLICY_API_VERSIONS {
            reads_the_upstream_json(api_version);
        }
    }

    fn reads_the_upstream_json(api_version: &str) {
        let cnp: ClusterNetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": api_version,
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "deny-external"},
            "spec": {
                "tier": "Admin",
                "priority": 10,
                "subject": {"pods": {"podSelector": {"matchLabels": {"app": "a"}}}},
                "egress": [{
                    "name": "block-all",
                    "action": "Deny",
                    "to": [{"networks": ["0.0.0.0/0"]}, {"domainNames": ["*.example.com"]}],
                    "protocols": [{"tcp": {"destinationPort": {"range": {"start": 1, "end": 2}}}},
                                  {"destinationNamedPort": "web"}]
                }]
            }
        }))
        .expect("reads");
        assert_eq!(cnp.metadata.name.as_deref(), Some("deny-external"));
        assert_eq!(cnp.spec.tier, "Admin");
        let rule = &cnp.spec.egress.as_ref().expect("egress")[0];
        assert_eq!(
            rule.to[1].domain_names.as_deref(),
            Some(&["*.example.com".to_string()][..])
        );
        let tcp = rule.protocols.as_ref().expect("protocols")[0].tcp.as_ref();
        assert_eq!(
            tcp.and_then(|t| t.destination_port.as_ref())
                .and_then(|p| p.range.as_ref()),
            Some(&ClusterNetworkPolicyPortRange { start: 1, end: 2 })
        );
        assert!(cnp.spec.ingress.is_none());
        use kube::Resource;
        assert_eq!(
            ClusterNetworkPolicy::api_version(&()),
            CLUSTER_NETWORK_POLICY_API_VERSION
        );
        assert_eq!(ClusterNetworkPolicy::plural(&()), "clusternetworkpolicies");
    }
}
