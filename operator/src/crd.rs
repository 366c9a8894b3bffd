//! Palisade's custom resources (palisade.dev/v1alpha1, both cluster-scoped): `NetworkBaseline`,
//! what every namespace labelled `palisade.dev/baseline=<name>` gets, and `NodeEnforcement`,
//! what the enforcer of each node reports.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The namespace label that opts a namespace in, naming the baseline.
pub const BASELINE_LABEL: &str = "palisade.dev/baseline";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "NetworkBaseline",
    shortname = "nb",
    status = "NetworkBaselineStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"integer","jsonPath":".status.namespaceCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBaselineSpec {
    /// Directions to deny by default. Default: both.
    #[serde(default = "default_policy_types")]
    #[schemars(length(min = 1))]
    pub policy_types: Vec<PolicyType>,
    /// DNS allowance: on by default, so a default deny never breaks name lookups.
    #[serde(default)]
    pub dns: DnsAllowance,
    /// Traffic the baseline allows besides DNS.
    #[serde(default)]
    pub allow: Allowances,
    /// Enforce drops what the baseline denies; Audit only logs and counts it (the enforcer reads
    /// the `palisade.dev/mode: audit` annotation on the managed policies).
    #[serde(default)]
    pub mode: BaselineMode,
    /// Namespaces never to touch, whatever their label. kube-system and Palisade's own namespace
    /// are always excluded.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
}

fn default_policy_types() -> Vec<PolicyType> {
    vec![PolicyType::Ingress, PolicyType::Egress]
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BaselineMode {
    #[default]
    Enforce,
    Audit,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsAllowance {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Labels of the namespace the resolvers run in.
    #[serde(default = "default_dns_namespace")]
    pub namespace_selector: BTreeMap<String, String>,
    /// Labels of the resolver pods.
    #[serde(default = "default_dns_pods")]
    pub pod_selector: BTreeMap<String, String>,
    /// Ports allowed to the resolvers, over UDP and TCP.
    #[serde(default = "default_dns_ports")]
    #[schemars(length(min = 1))]
    pub ports: Vec<u16>,
    /// A node-local DNS cache address (e.g. 169.254.20.10), allowed as well.
    #[serde(
        default,
        rename = "nodeLocalIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_local_ip: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_dns_namespace() -> BTreeMap<String, String> {
    [(
        "kubernetes.io/metadata.name".to_string(),
        "kube-system".to_string(),
    )]
    .into()
}
fn default_dns_pods() -> BTreeMap<String, String> {
    [("k8s-app".to_string(), "kube-dns".to_string())].into()
}
fn default_dns_ports() -> Vec<u16> {
    vec![53]
}

impl Default for DnsAllowance {
    fn default() -> Self {
        Self {
            enabled: true,
            namespace_selector: default_dns_namespace(),
            pod_selector: default_dns_pods(),
            ports: default_dns_ports(),
            node_local_ip: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Allowances {
    /// Pods of the namespace may talk to each other.
    #[serde(default)]
    pub same_namespace: bool,
    /// Ingress from every pod of these namespaces (by name), e.g. an ingress controller or
    /// monitoring.
    #[serde(default)]
    pub from_namespaces: Vec<String>,
    /// Extra egress destinations with their ports.
    #[serde(default)]
    pub egress: Vec<EgressAllowance>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressAllowance {
    /// A destination address block, e.g. 10.20.0.0/16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Destination namespaces, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Ports, e.g. `443` or `5432/TCP`; none means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBaselineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Degraded, with reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// How many namespaces the baseline covers.
    #[serde(default)]
    pub namespace_count: u32,
    /// The covered namespaces, at most 50 listed.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces that ask for this baseline but cannot have it, with why.
    #[serde(default)]
    pub conflicts: Vec<String>,
}

/// The annotation on Palisade's CRDs naming the Palisade version whose types generated them.
pub const VERSION_ANNOTATION: &str = "palisade.dev/version";

/// Palisade's CustomResourceDefinitions, generated from the types and stamped with this
/// version (`VERSION_ANNOTATION`).
pub fn crds()
-> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 2]
{
    use kube::CustomResourceExt;
    let mut crds = [NetworkBaseline::crd(), NodeEnforcement::crd()];
    for crd in &mut crds {
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(VERSION_ANNOTATION.into(), env!("CARGO_PKG_VERSION").into());
    }
    crds
}

/// Palisade's CustomResourceDefinitions as YAML, as `crdgen` prints them and the chart ships
/// them.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let [baselines, nodes] = crds();
    Ok(format!(
        "---\n{}---\n{}",
        serde_saphyr::to_string(&baselines)?,
        serde_saphyr::to_string(&nodes)?
    ))
}

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
}

impl palisade_policy::watch::Slim for NodeEnforcement {}
