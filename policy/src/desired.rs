//! The NetworkPolicies a baseline means for one namespace: a pure function, so what the operator
//! writes can be tested exactly.

use std::collections::BTreeMap;

use crate::reach::ProbePort;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use palisade_api::{BaselineMode, NetworkBaselineSpec, PolicyType};

/// Labels every managed policy carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "palisade";
/// The baseline a managed policy belongs to.
pub const BASELINE_NAME_LABEL: &str = "palisade.dev/baseline";
/// Set to `audit` on the policies of an Audit baseline; the enforcer logs instead of dropping.
pub use crate::policy::{AUDIT_MODE, MODE_ANNOTATION};
/// Names of managed policies start with this.
pub const NAME_PREFIX: &str = "palisade-baseline-";
/// The baseline's default-deny policy; its allows are the other managed policies.
pub const DENY_POLICY: &str = "palisade-baseline-deny";
/// Namespaces no baseline ever touches.
pub const ALWAYS_EXCLUDED: &[&str] = &["kube-system"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    #[error("spec.allow.egress[{index}].cidr: {message}")]
    Cidr { index: usize, message: String },
    #[error("spec.allow.egress[{index}].ports[{port}]: {message}")]
    Port {
        index: usize,
        port: usize,
        message: String,
    },
    #[error("spec.allow.egress[{index}]: give a cidr, namespaces, or both")]
    EmptyEgress { index: usize },
    #[error("spec.dns.nodeLocalIP: {0}")]
    NodeLocalIp(String),
}

/// Why a namespace that names a baseline does not get it; `None` when it does.
pub fn exclusion(
    spec: &NetworkBaselineSpec,
    namespace: &str,
    own_namespace: &str,
) -> Option<String> {
    if ALWAYS_EXCLUDED.contains(&namespace) || namespace == own_namespace {
        return Some(format!(
            "namespace {namespace} is never given a baseline (Palisade must not lock out the cluster or itself)"
        ));
    }
    spec.exclude_namespaces
        .iter()
        .any(|n| n == namespace)
        .then(|| format!("namespace {namespace} is listed in spec.excludeNamespaces"))
}

fn everything() -> LabelSelector {
    LabelSelector::default()
}

fn labels(map: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(map.clone()),
        match_expressions: None,
    }
}

fn namespaces_named(names: &[String]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "In".into(),
            values: Some(names.to_vec()),
        }]),
    }
}

fn port(p: u16, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(p))),
        end_port: None,
        protocol: Some(protocol.into()),
    }
}

/// The managed NetworkPolicies of `baseline` for `namespace`, sorted by name.
pub fn desired_policies(
    baseline: &str,
    spec: &NetworkBaselineSpec,
    namespace: &str,
) -> Result<Vec<NetworkPolicy>, BaselineError> {
    let ingress = spec.policy_types.contains(&PolicyType::Ingress);
    let egress = spec.policy_types.contains(&PolicyType::Egress);
    let meta = |suffix: &str| ObjectMeta {
        name: Some(format!("{NAME_PREFIX}{suffix}")),
        namespace: Some(namespace.to_string()),
        labels: Some(
            [
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (BASELINE_NAME_LABEL.to_string(), baseline.to_string()),
            ]
            .into(),
        ),
        annotations: (spec.mode == BaselineMode::Audit)
            .then(|| [(MODE_ANNOTATION.to_string(), AUDIT_MODE.to_string())].into()),
        ..Default::default()
    };
    let types = |i: bool, e: bool| {
        let mut t = Vec::new();
        if i {
            t.push("Ingress".to_string());
        }
        if e {
            t.push("Egress".to_string());
        }
        Some(t)
    };
    let mut out = Vec::new();

    out.push(NetworkPolicy {
        metadata: meta("deny"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(everything()),
            policy_types: types(ingress, egress),
            ..Default::default()
        }),
    });

    if egress && spec.dns.enabled {
        let mut to = vec![NetworkPolicyPeer {
            namespace_selector: Some(labels(&spec.dns.namespace_selector)),
            pod_selector: Some(labels(&spec.dns.pod_selector)),
            ip_block: None,
        }];
        if let Some(ip) = &spec.dns.node_local_ip {
            let addr: std::net::IpAddr = ip
                .parse()
                .map_err(|_| BaselineError::NodeLocalIp(format!("{ip:?} is not an IP address")))?;
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            to.push(NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: format!("{addr}/{bits}"),
                    except: None,
                }),
                ..Default::default()
            });
        }
        let ports = spec
            .dns
            .ports
            .iter()
            .flat_map(|&p| [port(p, "UDP"), port(p, "TCP")])
            .collect();
        out.push(NetworkPolicy {
            metadata: meta("dns"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(everything()),
                policy_types: types(false, true),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(to),
                    ports: Some(ports),
                }]),
                ..Default::default()
            }),
        });
    }

    if spec.allow.same_namespace {
        let own = || {
            Some(vec![NetworkPolicyPeer {
                pod_selector: Some(everything()),
                ..Default::default()
            }])
        };
        out.push(NetworkPolicy {
            metadata: meta("same-namespace"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(everything()),
                policy_types: types(ingress, egress),
                ingress: ingress.then(|| {
                    vec![NetworkPolicyIngressRule {
                        from: own(),
                        ports: None,
                    }]
                }),
                egress: egress.then(|| {
                    vec![NetworkPolicyEgressRule {
                        to: own(),
                        ports: None,
                    }]
                }),
            }),
        });
    }

    if ingress && !spec.allow.from_namespaces.is_empty() {
        out.push(NetworkPolicy {
            metadata: meta("from-namespaces"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(everything()),
                policy_types: types(true, false),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(namespaces_named(&spec.allow.from_namespaces)),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
                ..Default::default()
            }),
        });
    }

    if egress && !spec.allow.egress.is_empty() {
        let mut rules = Vec::new();
        for (index, a) in spec.allow.egress.iter().enumerate() {
            let mut to = Vec::new();
            if let Some(cidr) = &a.cidr {
                let net = crate::policy::parse_cidr(cidr)
                    .map_err(|message| BaselineError::Cidr { index, message })?;
                to.push(NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: net.to_string(),
                        except: None,
                    }),
                    ..Default::default()
                });
            }
            if !a.namespaces.is_empty() {
                to.push(NetworkPolicyPeer {
                    namespace_selector: Some(namespaces_named(&a.namespaces)),
                    ..Default::default()
                });
            }
            if to.is_empty() {
                return Err(BaselineError::EmptyEgress { index });
            }
            let mut ports = Vec::new();
            for (p, text) in a.ports.iter().enumerate() {
                let parsed: ProbePort = text.parse().map_err(|message| BaselineError::Port {
                    index,
                    port: p,
                    message,
                })?;
                ports.push(port(parsed.port, parsed.protocol.as_str()));
            }
            rules.push(NetworkPolicyEgressRule {
                to: Some(to),
                ports: (!ports.is_empty()).then_some(ports),
            });
        }
        out.push(NetworkPolicy {
            metadata: meta("egress"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(everything()),
                policy_types: types(false, true),
                egress: Some(rules),
                ..Default::default()
            }),
        });
    }

    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(out)
}
