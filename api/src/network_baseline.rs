//! `NetworkBaseline` (palisade.dev/v1alpha1, cluster-scoped): what every namespace labelled
//! `palisade.dev/baseline=<name>` gets.

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
