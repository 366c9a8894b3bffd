//! A NetworkPolicy compiled into the form the semantics work on: selectors parsed, CIDRs parsed,
//! ports validated, `policyTypes` defaulted. Compilation fails with the field path of the first
//! mistake, so every consumer (webhook, enforcer, CLI) reports it the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::Protocol;
use crate::selector::{Labels, Selector};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// JSON-path-like location inside the object, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
    pub path: String,
    pub message: String,
}

impl PolicyError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
    /// The name of the peer list in this direction's rules.
    pub fn peers_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The annotation that marks a policy audit-only (the operator sets it on the policies of an
/// Audit baseline): the enforcer logs and counts what it would drop instead of dropping it.
pub const MODE_ANNOTATION: &str = "palisade.dev/mode";
/// The value of [`MODE_ANNOTATION`] (and of [`MODE_LABEL`]) that makes a policy audit-only.
pub const AUDIT_MODE: &str = "audit";
/// The namespace label that puts every NetworkPolicy of its namespace in audit mode
/// (`kubectl label namespace NS palisade.dev/mode=audit`); removing it enforces them.
pub const MODE_LABEL: &str = "palisade.dev/mode";

/// Why a NetworkPolicy is in audit mode: evaluated, its would-be denials logged and counted,
/// nothing dropped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditMode {
    /// The policy is annotated `palisade.dev/mode: audit`.
    Annotation,
    /// Its namespace is labelled `palisade.dev/mode=audit`.
    NamespaceLabel,
    /// Both.
    Both,
}

impl AuditMode {
    /// Whether `policy`, in a namespace with `namespace_labels`, is in audit mode, and why. The
    /// one decision every reader (enforcer, webhook, `reach`, `status`, denials) asks.
    pub fn of(policy: &Policy, namespace_labels: &Labels) -> Option<AuditMode> {
        let annotated =
            policy.annotations.get(MODE_ANNOTATION).map(String::as_str) == Some(AUDIT_MODE);
        let labelled = namespace_labels.get(MODE_LABEL).map(String::as_str) == Some(AUDIT_MODE);
        match (annotated, labelled) {
            (true, true) => Some(AuditMode::Both),
            (true, false) => Some(AuditMode::Annotation),
            (false, true) => Some(AuditMode::NamespaceLabel),
            (false, false) => None,
        }
    }

    /// Why `policy` is in audit mode, in words: `annotated palisade.dev/mode: audit` (for a
    /// policy of a NetworkBaseline: `NetworkBaseline NAME is in Audit mode`), `namespace prod
    /// is labelled palisade.dev/mode=audit`, or both.
    pub fn why(self, policy: &Policy) -> String {
        let annotation = match policy.labels.get(crate::desired::BASELINE_NAME_LABEL) {
            Some(b) => format!("NetworkBaseline {b} is in Audit mode"),
            None => format!("annotated {MODE_ANNOTATION}: {AUDIT_MODE}"),
        };
        let namespace = &policy.namespace;
        let label = format!("namespace {namespace} is labelled {MODE_LABEL}={AUDIT_MODE}");
        match self {
            AuditMode::Annotation => annotation,
            AuditMode::NamespaceLabel => label,
            AuditMode::Both => format!("{annotation} and {label}"),
        }
    }

    /// How to enforce `policy`: `remove the annotation palisade.dev/mode` (for a policy of a
    /// NetworkBaseline: `set NetworkBaseline NAME to mode Enforce`, since the operator puts the
    /// annotation back), `remove the label palisade.dev/mode from namespace prod`, or both.
    pub fn promote(self, policy: &Policy) -> String {
        let annotation = match policy.labels.get(crate::desired::BASELINE_NAME_LABEL) {
            Some(b) => format!("set NetworkBaseline {b} to mode Enforce"),
            None => format!("remove the annotation {MODE_ANNOTATION}"),
        };
        let namespace = &policy.namespace;
        let label = format!("remove the label {MODE_LABEL} from namespace {namespace}");
        match self {
            AuditMode::Annotation => annotation,
            AuditMode::NamespaceLabel => label,
            AuditMode::Both => format!("{annotation} and {label}"),
        }
    }
}

/// A policy's identity in verdicts and messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlockPeer {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlockPeer {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// `podSelector` alone: the policy's own namespace.
    Own,
    /// `namespaceSelector` given: namespaces whose labels match.
    Matching(Selector),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods chosen by namespace and pod labels (both must hold when both are given).
    Pods {
        namespaces: NamespaceScope,
        pods: Selector,
    },
    IpBlock(IpBlockPeer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// `port` unset: every port of the protocol.
    Any,
    /// A number, or an inclusive `port`..`endPort` range.
    Range(u16, u16),
    /// A container port name, resolved on the destination pod.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMatch {
    pub protocol: Protocol,
    pub port: PortSpec,
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortSpec::Any => write!(f, "any/{}", self.protocol),
            PortSpec::Range(a, b) if a == b => write!(f, "{a}/{}", self.protocol),
            PortSpec::Range(a, b) => write!(f, "{a}-{b}/{}", self.protocol),
            PortSpec::Named(n) => write!(f, "{n}/{}", self.protocol),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Empty: every peer (no `from`/`to`, or an empty list).
    pub peers: Vec<Peer>,
    /// Empty: every port and protocol.
    pub ports: Vec<PortMatch>,
}

impl Rule {
    pub fn allow_all() -> Self {
        Self {
            peers: Vec::new(),
            ports: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub pod_selector: Selector,
    /// `Some` when the policy isolates ingress; the rules that allow (empty: deny all).
    pub ingress: Option<Vec<Rule>>,
    /// `Some` when the policy isolates egress.
    pub egress: Option<Vec<Rule>>,
    /// `policyTypes` was not written: Kubernetes derived it (Ingress, plus Egress when there
    /// are egress rules), so an egress-only policy isolates ingress too, perhaps unknowingly.
    pub implicit_types: bool,
}

impl Policy {
    /// `namespace/name` with `{podSelector: {}, policyTypes: [Ingress]}`: every pod of its
    /// namespace isolated for ingress, nothing allowed in.
    pub fn deny_all_ingress(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            labels: Labels::new(),
            annotations: BTreeMap::new(),
            pod_selector: Selector::everything(),
            ingress: Some(vec![]),
            egress: None,
            implicit_types: false,
        }
    }

    pub fn id(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// Every rule with its direction and index: ingress rules first, then egress.
    pub fn all_rules(&self) -> impl Iterator<Item = (Direction, usize, &Rule)> {
        [Direction::Ingress, Direction::Egress]
            .into_iter()
            .flat_map(move |d| {
                self.rules(d)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(move |(i, r)| (d, i, r))
            })
    }

    pub fn isolates(&self, direction: Direction) -> bool {
        self.rules(direction).is_some()
    }

    pub fn compile(np: &NetworkPolicy) -> Result<Self, PolicyError> {
        let spec = np.spec.clone().unwrap_or_default();
        let pod_selector = match &spec.pod_selector {
            Some(s) => Selector::compile(s)
                .map_err(|e| PolicyError::new("spec.podSelector", e.to_string()))?,
            None => Selector::everything(),
        };
        let has_egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        let (isolate_ingress, isolate_egress) = match &spec.policy_types {
            None => (true, has_egress_rules),
            Some(types) => {
                let mut flags = (false, false);
                for (i, t) in types.iter().enumerate() {
                    match t.as_str() {
                        "Ingress" => flags.0 = true,
                        "Egress" => flags.1 = true,
                        other => {
                            return Err(PolicyError::new(
                                format!("spec.policyTypes[{i}]"),
                                format!("unknown policy type {other:?} (use Ingress or Egress)"),
                            ));
                        }
                    }
                }
                flags
            }
        };

        let ingress = if isolate_ingress {
            let mut rules = Vec::new();
            for (i, r) in spec.ingress.iter().flatten().enumerate() {
                let at = format!("spec.ingress[{i}]");
                rules.push(Rule {
                    peers: compile_peers(r.from.as_deref(), &format!("{at}.from"))?,
                    ports: compile_ports(r.ports.as_deref(), &format!("{at}.ports"))?,
                });
            }
            Some(rules)
        } else {
            None
        };
        let egress = if isolate_egress {
            let mut rules = Vec::new();
            for (i, r) in spec.egress.iter().flatten().enumerate() {
                let at = format!("spec.egress[{i}]");
                rules.push(Rule {
                    peers: compile_peers(r.to.as_deref(), &format!("{at}.to"))?,
                    ports: compile_ports(r.ports.as_deref(), &format!("{at}.ports"))?,
                });
            }
            Some(rules)
        } else {
            None
        };

        Ok(Self {
            namespace: np
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: np.metadata.name.clone().unwrap_or_default(),
            labels: np.metadata.labels.clone().unwrap_or_default(),
            annotations: np.metadata.annotations.clone().unwrap_or_default(),
            pod_selector,
            ingress,
            egress,
            implicit_types: spec.policy_types.is_none(),
        })
    }
}

fn compile_peers(peers: Option<&[NetworkPolicyPeer]>, at: &str) -> Result<Vec<Peer>, PolicyError> {
    let mut out = Vec::new();
    for (i, p) in peers.unwrap_or_default().iter().enumerate() {
        let at = format!("{at}[{i}]");
        let selector = |s, field: &str| {
            Selector::compile(s)
                .map_err(|e| PolicyError::new(format!("{at}.{field}"), e.to_string()))
        };
        let peer = match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
            (None, None, None) => {
                return Err(PolicyError::new(
                    at,
                    "a peer needs one of podSelector, namespaceSelector or ipBlock",
                ));
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(PolicyError::new(
                    at,
                    "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
                ));
            }
            (None, None, Some(b)) => Peer::IpBlock(compile_ip_block(b, &format!("{at}.ipBlock"))?),
            (pods, namespaces, None) => Peer::Pods {
                namespaces: match namespaces {
                    Some(s) => NamespaceScope::Matching(selector(s, "namespaceSelector")?),
                    None => NamespaceScope::Own,
                },
                pods: match pods {
                    Some(s) => selector(s, "podSelector")?,
                    None => Selector::everything(),
                },
            },
        };
        out.push(peer);
    }
    Ok(out)
}

pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| format!("{text:?} is not a CIDR (write it as 10.0.0.0/16 or fd00::/64)"))
}

fn compile_ip_block(b: &IPBlock, at: &str) -> Result<IpBlockPeer, PolicyError> {
    let cidr = parse_cidr(&b.cidr).map_err(|m| PolicyError::new(format!("{at}.cidr"), m))?;
    let mut except = Vec::new();
    for (i, e) in b.except.iter().flatten().enumerate() {
        let at = format!("{at}.except[{i}]");
        let net = parse_cidr(e).map_err(|m| PolicyError::new(at.clone(), m))?;
        if !cidr.contains(&net) {
            return Err(PolicyError::new(
                at,
                format!("{net} is not inside the block's cidr {cidr}"),
            ));
        }
        except.push(net);
    }
    Ok(IpBlockPeer { cidr, except })
}

fn compile_ports(
    ports: Option<&[NetworkPolicyPort]>,
    at: &str,
) -> Result<Vec<PortMatch>, PolicyError> {
    let mut out = Vec::new();
    for (i, p) in ports.unwrap_or_default().iter().enumerate() {
        let at = format!("{at}[{i}]");
        let protocol = Protocol::from_api(p.protocol.as_deref())
            .map_err(|m| PolicyError::new(format!("{at}.protocol"), m))?;
        let number = |n: i32, field: &str| {
            u16::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                PolicyError::new(
                    format!("{at}.{field}"),
                    format!("{n} is not a port (1-65535)"),
                )
            })
        };
        let port = match (&p.port, p.end_port) {
            (None, None) => PortSpec::Any,
            (None, Some(_)) => {
                return Err(PolicyError::new(
                    format!("{at}.endPort"),
                    "endPort needs port",
                ));
            }
            (Some(IntOrString::Int(n)), end) => {
                let start = number(*n, "port")?;
                let end = end
                    .map(|e| number(e, "endPort"))
                    .transpose()?
                    .unwrap_or(start);
                if end < start {
                    return Err(PolicyError::new(
                        format!("{at}.endPort"),
                        format!("endPort {end} is below port {start}"),
                    ));
                }
                PortSpec::Range(start, end)
            }
            (Some(IntOrString::String(s)), end) => {
                if let Ok(n) = s.parse::<i32>() {
                    // The API accepts "80" as a number-valued string only through IntOrString; treat it as the number.
                    let start = number(n, "port")?;
                    let end = end
                        .map(|e| number(e, "endPort"))
                        .transpose()?
                        .unwrap_or(start);
                    PortSpec::Range(start, end.max(start))
                } else if end.is_some() {
                    return Err(PolicyError::new(
                        format!("{at}.endPort"),
                        "endPort cannot be used with a named port",
                    ));
                } else if s.is_empty() || s.len() > 15 {
                    return Err(PolicyError::new(
                        format!("{at}.port"),
                        format!("{s:?} is not a valid port name"),
                    ));
                } else {
                    PortSpec::Named(s.clone())
                }
            }
        };
        out.push(PortMatch { protocol, port });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{
        NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicySpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn np(spec: NetworkPolicySpec) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(spec),
        }
    }

    #[test]
    fn audit_mode_comes_from_the_annotation_or_the_namespace_label() {
        let mut p = Policy::compile(&np(NetworkPolicySpec::default())).unwrap();
        let audit = |k: &str| -> Labels { [(k.to_string(), AUDIT_MODE.to_string())].into() };
        let plain = Labels::new();
        assert_eq!(AuditMode::of(&p, &plain), None);
        assert_eq!(
            AuditMode::of(&p, &audit(MODE_LABEL)),
            Some(AuditMode::NamespaceLabel)
        );
        // Another value, or the label of another key, enforces.
        let enforce: Labels = [(MODE_LABEL.to_string(), "enforce".to_string())].into();
        assert_eq!(AuditMode::of(&p, &enforce), None);
        assert_eq!(AuditMode::of(&p, &audit("palisade.dev/audit")), None);
        p.annotations = audit(MODE_ANNOTATION);
        assert_eq!(AuditMode::of(&p, &plain), Some(AuditMode::Annotation));
        assert_eq!(AuditMode::of(&p, &audit(MODE_LABEL)), Some(AuditMode::Both));
    }

    #[test]
    fn audit_mode_says_why_and_how_to_promote() {
        let mut p = Policy::compile(&np(NetworkPolicySpec::default())).unwrap();
        assert_eq!(
            AuditMode::Annotation.why(&p),
            "annotated palisade.dev/mode: audit"
        );
        assert_eq!(
            AuditMode::NamespaceLabel.why(&p),
            "namespace ns is labelled palisade.dev/mode=audit"
        );
        assert_eq!(
            AuditMode::Annotation.promote(&p),
            "remove the annotation palisade.dev/mode"
        );
        assert_eq!(
            AuditMode::Both.promote(&p),
            "remove the annotation palisade.dev/mode and remove the label palisade.dev/mode from namespace ns"
        );
        // A NetworkBaseline's policy: the operator would put the annotation back.
        p.labels
            .insert("palisade.dev/baseline".into(), "default".into());
        assert_eq!(
            AuditMode::Annotation.why(&p),
            "NetworkBaseline default is in Audit mode"
        );
        assert_eq!(
            AuditMode::Annotation.promote(&p),
            "set NetworkBaseline default to mode Enforce"
        );
    }

    #[test]
    fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
        let p = Policy::compile(&np(NetworkPolicySpec::default())).unwrap();
        assert_eq!(p.ingress, Some(vec![]));
        assert_eq!(p.egress, None);

        let p = Policy::compile(&np(NetworkPolicySpec {
            egress: Some(vec![NetworkPolicyEgressRule::default()]),
            ..Default::default()
        }))
        .unwrap();
        assert!(p.isolates(Direction::Ingress));
        assert_eq!(p.egress, Some(vec![Rule::allow_all()]));

        // An empty egress list is not "egress rules": egress stays open.
        let p = Policy::compile(&np(NetworkPolicySpec {
            egress: Some(vec![]),
            ..Default::default()
        }))
        .unwrap();
        assert!(!p.isolates(Direction::Egress));
    }

    #[test]
    fn explicit_policy_types_ignore_rules_of_the_other_direction() {
        let p = Policy::compile(&np(NetworkPolicySpec {
            policy_types: Some(vec!["Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule::default()]),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(p.ingress, None);
        assert_eq!(p.egress, Some(vec![]));
    }

    #[test]
    fn mistakes_are_reported_with_their_path() {
        let bad_type = Policy::compile(&np(NetworkPolicySpec {
            policy_types: Some(vec!["Ingres".into()]),
            ..Default::default()
        }));
        assert_eq!(
            bad_type.unwrap_err().to_string(),
            "spec.policyTypes[0]: unknown policy type \"Ingres\" (use Ingress or Egress)"
        );

        let ingress = |peer: NetworkPolicyPeer, port: Option<NetworkPolicyPort>| {
            Policy::compile(&np(NetworkPolicySpec {
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![peer]),
                    ports: port.map(|p| vec![p]),
                }]),
                ..Default::default()
            }))
        };
        let block = |cidr: &str, except: &[&str]| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.into(),
                except: Some(except.iter().map(|e| e.to_string()).collect()),
            }),
            ..Default::default()
        };
        assert_eq!(
            ingress(block("10.0.0.300/8", &[]), None)
                .unwrap_err()
                .to_string(),
            "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.300/8\" is not a CIDR (write it as 10.0.0.0/16 or fd00::/64)"
        );
        assert_eq!(
            ingress(block("10.0.0.0/8", &["192.168.0.0/16"]), None)
                .unwrap_err()
                .to_string(),
            "spec.ingress[0].from[0].ipBlock.except[0]: 192.168.0.0/16 is not inside the block's cidr 10.0.0.0/8"
        );
        assert_eq!(
            ingress(NetworkPolicyPeer::default(), None)
                .unwrap_err()
                .path,
            "spec.ingress[0].from[0]"
        );
        let port = |port: IntOrString, end: Option<i32>| NetworkPolicyPort {
            port: Some(port),
            end_port: end,
            protocol: None,
        };
        assert_eq!(
            ingress(
                block("10.0.0.0/8", &[]),
                Some(port(IntOrString::Int(70000), None))
            )
            .unwrap_err()
            .to_string(),
            "spec.ingress[0].ports[0].port: 70000 is not a port (1-65535)"
        );
        assert_eq!(
            ingress(
                block("10.0.0.0/8", &[]),
                Some(port(IntOrString::Int(90), Some(80)))
            )
            .unwrap_err()
            .to_string(),
            "spec.ingress[0].ports[0].endPort: endPort 80 is below port 90"
        );
        assert_eq!(
            ingress(
                block("10.0.0.0/8", &[]),
                Some(port(IntOrString::String("http".into()), Some(80)))
            )
            .unwrap_err()
            .to_string(),
            "spec.ingress[0].ports[0].endPort: endPort cannot be used with a named port"
        );
    }

    #[test]
    fn ip_block_excludes_its_exceptions_and_normalises_host_bits() {
        let b = compile_ip_block(
            &IPBlock {
                cidr: "10.1.2.3/16".into(),
                except: Some(vec!["10.1.5.0/24".into()]),
            },
            "x",
        )
        .unwrap();
        assert_eq!(b.cidr.to_string(), "10.1.0.0/16");
        assert!(b.contains("10.1.4.9".parse().unwrap()));
        assert!(!b.contains("10.1.5.9".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
    }
}
