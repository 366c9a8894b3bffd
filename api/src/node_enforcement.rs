//! `NodeEnforcement` (palisade.dev/v1alpha1, cluster-scoped): what the enforcer of each node
//! reports.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What Palisade's enforcer found and does on one node (cluster-scoped, named after the node),
/// written by that node's enforcer and read by the webhook's `enforcement` check and by people:
/// `kubectl get nodeenforcements`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "NodeEnforcement",
    shortname = "ne",
    status = "NodeEnforcementStatus",
    printcolumn = r#"{"name":"CNI","type":"string","jsonPath":".status.cni"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".status.mode"}"#,
    printcolumn = r#"{"name":"Enforcing","type":"boolean","jsonPath":".status.enforcing"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.iptablesBackend"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.rules"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSync"}"#,
    printcolumn = r#"{"name":"Error","type":"string","jsonPath":".status.lastError","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeEnforcementSpec {
    /// The node this object describes (also its name).
    pub node: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeEnforcementStatus {
    /// The CNI identified from the node's CNI configuration, e.g. `flannel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
    /// The active CNI configuration file and its plugin types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_config: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cni_plugins: Vec<String>,
    /// Whether that CNI enforces NetworkPolicy itself (absent: unknown CNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_enforces: Option<bool>,
    /// The enforcer's mode: auto (enforce where the CNI does not), enforce, or off.
    #[serde(default)]
    pub mode: String,
    /// Whether this node's enforcer programs rules.
    #[serde(default)]
    pub enforcing: bool,
    /// Why it enforces or stands aside, in words.
    #[serde(default)]
    pub reason: String,
    /// The iptables backend Palisade's rules are in: `nft` or `legacy` (absent: none works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_backend: Option<String>,
    /// How that backend was chosen: `detected` (where the node's other rules are, or the only
    /// one that works), `override` (enforcer.iptablesBackend), or `default` (nothing to go by:
    /// nft).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_backend_source: Option<String>,
    /// What happens to a denied connection: `drop` or `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_action: Option<String>,
    /// The IP families this node enforces: `IPv4` when its iptables backend works, `IPv6` when
    /// that backend's ip6tables works too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// The last time the rules were checked against the policies and found or made right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Pods on this node the rules protect.
    #[serde(default)]
    pub local_pods: u32,
    /// Sizes of the installed ruleset.
    #[serde(default)]
    pub chains: u32,
    #[serde(default)]
    pub rules: u32,
    #[serde(default)]
    pub sets: u32,
    /// The last sync's error, while it persists (the previous rules stay in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether this node enforces ClusterNetworkPolicies, and those it cannot (absent: an
    /// enforcer older than ClusterNetworkPolicy support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_network_policy: Option<ClusterNetworkPolicyEnforcement>,
    /// Whether new pods on this node are isolated from their first packet (the `palisade-cni`
    /// plugin in the node's CNI configuration), and why not (absent: an enforcer older than
    /// first-packet isolation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_packet: Option<FirstPacketStatus>,
}

/// First-packet isolation on one node: the chained CNI plugin `palisade-cni` makes a new pod
/// wait for its rules before it gets its network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirstPacketStatus {
    /// Whether the plugin is the last plugin of the node's active CNI configuration.
    #[serde(default)]
    pub installed: bool,
    /// Why, or why not, in words.
    #[serde(default)]
    pub reason: String,
    /// The CNI configuration file it is in (or was refused by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl FirstPacketStatus {
    /// The enforcer runs without first-packet isolation.
    pub fn disabled() -> Self {
        Self {
            installed: false,
            reason: "disabled (enforcer.firstPacket.enabled: false)".into(),
            config: None,
        }
    }
}

/// How many ClusterNetworkPolicies are named in [`ClusterNetworkPolicyEnforcement::not_enforced`]
/// at most (the count says how many there are).
pub const MAX_NOT_ENFORCED: usize = 20;

/// ClusterNetworkPolicy (policy.networking.k8s.io) on one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEnforcement {
    /// Whether this node's rules carry the Admin and Baseline tiers. False when the enforcer does
    /// not enforce here, when the CNI enforces ClusterNetworkPolicy itself (Palisade stands
    /// aside), or when the CNI enforces NetworkPolicy but not ClusterNetworkPolicy (Palisade
    /// cannot put the Admin tier ahead of the CNI's NetworkPolicy rules).
    #[serde(default)]
    pub enforced: bool,
    /// Why, in words.
    #[serde(default)]
    pub reason: String,
    /// ClusterNetworkPolicies in the cluster (0 where the CRD is not installed).
    #[serde(default)]
    pub policies: u32,
    /// How many of them Palisade does not enforce as written, never silently: refused whole (an
    /// experimental peer, a value outside the API), or, for a peer of a kind Palisade does not
    /// know, enforced with that rule failing closed as upstream asks (an Accept's unknown peers
    /// match nothing, a Deny or Pass denies all traffic).
    #[serde(default)]
    pub not_enforced_count: u32,
    /// The first 20 of those by name, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_enforced: Vec<NotEnforcedPolicy>,
}

/// A ClusterNetworkPolicy Palisade does not enforce, and why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotEnforcedPolicy {
    pub name: String,
    pub reason: String,
}
