//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1beta1` or `v1alpha2`) compiled into the form the
//! semantics work on: selectors, CIDRs and ports parsed, every mistake reported with where it is.
//!
//! Palisade's order of evaluation, per direction: the Admin tier's policies by ascending
//! priority, policies of equal priority by name (upstream leaves their order undefined), each
//! policy's rules top to bottom, the first matching rule deciding (Accept, Deny; Pass skips the
//! rest of the tier); then NetworkPolicy (a pod a NetworkPolicy isolates in that direction is
//! decided by NetworkPolicy alone); then the Baseline tier in the same order (Pass there skips
//! to the default); then the default, allow.

use std::fmt;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_api::{
    ClusterNetworkPolicy, ClusterNetworkPolicyEgressPeer, ClusterNetworkPolicyIngressPeer,
    ClusterNetworkPolicyPort, ClusterNetworkPolicyProtocol, NamespacedPod,
};

use crate::model::{Pod, Protocol};
use crate::policy::{Direction, parse_cidr};
use crate::selector::{Labels, Selector};

/// The highest priority value the API admits (lowest precedence).
pub const MAX_PRIORITY: i32 = 1000;
/// The most rules, peers, protocols or networks one list may hold.
pub const MAX_ITEMS: usize = 25;

/// A tier: Admin policies come before NetworkPolicy, Baseline policies after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Admin,
    Baseline,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Accept,
    Deny,
    /// Skips the rest of the tier: to NetworkPolicy from Admin, to the default from Baseline.
    Pass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pods a policy is about. Host-network pods are never subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every pod in the namespaces whose labels match.
    Namespaces(Selector),
    /// Pods whose labels match `pods`, in namespaces whose labels match `namespaces`.
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
}

impl Subject {
    /// Whether the subject names `pod`, whose namespace has `namespace_labels`.
    pub fn matches(&self, pod: &Pod, namespace_labels: &Labels) -> bool {
        pod.is_target()
            && match self {
                Subject::Namespaces(ns) => ns.matches(namespace_labels),
                Subject::Pods { namespaces, pods } => {
                    namespaces.matches(namespace_labels) && pods.matches(&pod.labels)
                }
            }
    }
}

/// A peer: pods (never host-network ones) or, for egress, networks (any address in them,
/// pod addresses included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterPeer {
    Namespaces(Selector),
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    Networks(Vec<IpNet>),
}

/// A port a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterPort {
    /// `first`..=`last` of `protocol` (a number is a range of one).
    Ports {
        protocol: Protocol,
        first: u16,
        last: u16,
    },
    /// A container port name, resolved on the destination pod to its number and protocol;
    /// never matches a destination that is not a pod.
    Named(String),
}

impl ClusterPort {
    /// Whether traffic to `port`/`protocol` at `dst` (the destination pod, if it is one) matches.
    pub fn matches(&self, port: u16, protocol: Protocol, dst: Option<&Pod>) -> bool {
        match self {
            ClusterPort::Ports {
                protocol: p,
                first,
                last,
            } => *p == protocol && (*first..=*last).contains(&port),
            ClusterPort::Named(name) => {
                dst.filter(|d| !d.host_network)
                    .and_then(|d| d.resolve_named_port(name, protocol))
                    == Some(port)
            }
        }
    }
}

impl fmt::Display for ClusterPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterPort::Ports {
                protocol,
                first,
                last,
            } if first == last => write!(f, "{first}/{protocol}"),
            ClusterPort::Ports {
                protocol,
                first,
                last,
            } => write!(f, "{first}-{last}/{protocol}"),
            ClusterPort::Named(name) => write!(f, "{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRule {
    pub name: Option<String>,
    pub action: Action,
    /// Never empty; any one matching is enough.
    pub peers: Vec<ClusterPeer>,
    /// `None`: every protocol and port (ICMP too).
    pub ports: Option<Vec<ClusterPort>>,
}

impl ClusterRule {
    /// Whether the rule's ports admit `port`/`protocol` towards `dst`.
    pub fn ports_match(&self, port: u16, protocol: Protocol, dst: Option<&Pod>) -> bool {
        self.ports
            .as_ref()
            .is_none_or(|ports| ports.iter().any(|p| p.matches(port, protocol, dst)))
    }
}

/// A ClusterNetworkPolicy ready for evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPolicy {
    pub name: String,
    pub tier: Tier,
    pub priority: u16,
    pub subject: Subject,
    /// Empty: the policy leaves ingress alone.
    pub ingress: Vec<ClusterRule>,
    /// Empty: the policy leaves egress alone.
    pub egress: Vec<ClusterRule>,
}

/// A mistake in a ClusterNetworkPolicy, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ClusterPolicyError {
    /// JSON-path-like location, e.g. `spec.egress[2].to[1].domainNames`.
    pub path: String,
    pub message: String,
}

impl ClusterPolicyError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What a peer or port names, in words, for messages.
pub fn describe_rule(direction: Direction, index: usize, rule: &ClusterRule) -> String {
    match &rule.name {
        Some(name) => format!("{direction} rule {index} {name:?}"),
        None => format!("{direction} rule {index}"),
    }
}

impl ClusterPolicy {
    /// Palisade's order: tier, priority, then name.
    pub fn order_key(&self) -> (Tier, u16, &str) {
        (self.tier, self.priority, &self.name)
    }

    pub fn rules(&self, direction: Direction) -> &[ClusterRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// How messages name the policy: `ClusterNetworkPolicy deny-external (Admin, priority 10)`.
    pub fn describe(&self) -> String {
        format!(
            "ClusterNetworkPolicy {} ({}, priority {})",
            self.name, self.tier, self.priority
        )
    }

    /// Compiles the API object; every mistake found is returned, each with its path.
    pub fn from_api(cnp: &ClusterNetworkPolicy) -> Result<Self, Vec<ClusterPolicyError>> {
        let mut errors = Vec::new();
        let spec = &cnp.spec;
        let tier = match spec.tier.as_str() {
            "Admin" => Some(Tier::Admin),
            "Baseline" => Some(Tier::Baseline),
            other => {
                errors.push(ClusterPolicyError::new(
                    "spec.tier",
                    format!("unknown tier {other:?} (use Admin or Baseline)"),
                ));
                None
            }
        };
        let priority = match u16::try_from(spec.priority) {
            Ok(p) if spec.priority <= MAX_PRIORITY => Some(p),
            _ => {
                errors.push(ClusterPolicyError::new(
                    "spec.priority",
                    format!(
                        "priority {} is outside 0-{MAX_PRIORITY} (lower values come first)",
                        spec.priority
                    ),
                ));
                None
            }
        };
        let subject = {
            let s = &spec.subject;
            let at = "spec.subject";
            match (&s.namespaces, &s.pods) {
                (Some(ns), None) => {
                    selector(ns, &format!("{at}.namespaces"), &mut errors).map(Subject::Namespaces)
                }
                (None, Some(p)) => namespaced_pod(p, &format!("{at}.pods"), &mut errors)
                    .map(|(namespaces, pods)| Subject::Pods { namespaces, pods }),
                (None, None) => {
                    errors.push(ClusterPolicyError::new(
                        at,
                        "the subject needs one of namespaces or pods",
                    ));
                    None
                }
                (Some(_), Some(_)) => {
                    errors.push(ClusterPolicyError::new(
                        at,
                        "the subject has both namespaces and pods: give exactly one",
                    ));
                    None
                }
            }
        };
        let ingress_api = spec.ingress.as_deref().unwrap_or_default();
        let egress_api = spec.egress.as_deref().unwrap_or_default();
        for (field, n) in [("ingress", ingress_api.len()), ("egress", egress_api.len())] {
            if n > MAX_ITEMS {
                errors.push(ClusterPolicyError::new(
                    format!("spec.{field}"),
                    format!("{n} rules: at most {MAX_ITEMS} are allowed"),
                ));
            }
        }
        let mut ingress = Vec::new();
        for (i, r) in ingress_api.iter().enumerate() {
            let at = format!("spec.ingress[{i}]");
            let peers = list(
                &r.from,
                &format!("{at}.from"),
                "peer",
                &mut errors,
                ingress_peer,
            );
            if let Some(rule) = rule(
                r.name.as_deref(),
                &r.action,
                peers,
                r.protocols.as_deref(),
                &at,
                &mut errors,
            ) {
                ingress.push(rule);
            }
        }
        let mut egress = Vec::new();
        for (i, r) in egress_api.iter().enumerate() {
            let at = format!("spec.egress[{i}]");
            let peers = list(&r.to, &format!("{at}.to"), "peer", &mut errors, egress_peer);
            if let Some(rule) = rule(
                r.name.as_deref(),
                &r.action,
                peers,
                r.protocols.as_deref(),
                &at,
                &mut errors,
            ) {
                egress.push(rule);
            }
        }
        match (tier, priority, subject) {
            (Some(tier), Some(priority), Some(subject)) if errors.is_empty() => Ok(Self {
                name: cnp.metadata.name.clone().unwrap_or_default(),
                tier,
                priority,
                subject,
                ingress,
                egress,
            }),
            _ => Err(errors),
        }
    }
}

fn selector(s: &LabelSelector, at: &str, errors: &mut Vec<ClusterPolicyError>) -> Option<Selector> {
    Selector::compile(s)
        .map_err(|e| errors.push(ClusterPolicyError::new(at, e.to_string())))
        .ok()
}

fn namespaced_pod(
    p: &NamespacedPod,
    at: &str,
    errors: &mut Vec<ClusterPolicyError>,
) -> Option<(Selector, Selector)> {
    let namespaces = match &p.namespace_selector {
        Some(s) => selector(s, &format!("{at}.namespaceSelector"), errors),
        None => Some(Selector::everything()),
    };
    let pods = selector(&p.pod_selector, &format!("{at}.podSelector"), errors);
    Some((namespaces?, pods?))
}

/// Compiles a non-empty list of at most [`MAX_ITEMS`]; `None` when any item is wrong.
fn list<T, U>(
    items: &[T],
    at: &str,
    what: &str,
    errors: &mut Vec<ClusterPolicyError>,
    mut each: impl FnMut(&T, &str, &mut Vec<ClusterPolicyError>) -> Option<U>,
) -> Option<Vec<U>> {
    if items.is_empty() {
        errors.push(ClusterPolicyError::new(
            at,
            format!("the list is empty: give at least one {what}"),
        ));
        return None;
    }
    if items.len() > MAX_ITEMS {
        errors.push(ClusterPolicyError::new(
            at,
            format!("{} items: at most {MAX_ITEMS} are allowed", items.len()),
        ));
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match each(item, &format!("{at}[{i}]"), errors) {
            Some(u) => out.push(u),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn rule(
    name: Option<&str>,
    action: &str,
    peers: Option<Vec<ClusterPeer>>,
    protocols: Option<&[ClusterNetworkPolicyProtocol]>,
    at: &str,
    errors: &mut Vec<ClusterPolicyError>,
) -> Option<ClusterRule> {
    let action = match action {
        "Accept" => Some(Action::Accept),
        "Deny" => Some(Action::Deny),
        "Pass" => Some(Action::Pass),
        other => {
            let hint = if other == "Allow" {
                " (v1alpha1 AdminNetworkPolicy's Allow is Accept in v1alpha2)"
            } else {
                ""
            };
            errors.push(ClusterPolicyError::new(
                format!("{at}.action"),
                format!("unknown action {other:?}: use Accept, Deny or Pass{hint}"),
            ));
            None
        }
    };
    if let Some(n) = name
        && n.len() > 100
    {
        errors.push(ClusterPolicyError::new(
            format!("{at}.name"),
            format!("the name is {} characters long: at most 100", n.len()),
        ));
    }
    let ports = match protocols {
        None => Some(None),
        Some(list_) => list(
            list_,
            &format!("{at}.protocols"),
            "protocol (leave protocols out to match every protocol and port)",
            errors,
            protocol,
        )
        .map(Some),
    };
    Some(ClusterRule {
        name: name.map(str::to_string),
        action: action?,
        peers: peers?,
        ports: ports?,
    })
}

fn ingress_peer(
    p: &ClusterNetworkPolicyIngressPeer,
    at: &str,
    errors: &mut Vec<ClusterPolicyError>,
) -> Option<ClusterPeer> {
    egress_peer(
        &ClusterNetworkPolicyEgressPeer {
            namespaces: p.namespaces.clone(),
            pods: p.pods.clone(),
            ..Default::default()
        },
        at,
        errors,
    )
}

fn egress_peer(
    p: &ClusterNetworkPolicyEgressPeer,
    at: &str,
    errors: &mut Vec<ClusterPolicyError>,
) -> Option<ClusterPeer> {
    let given: Vec<&str> = [
        ("namespaces", p.namespaces.is_some()),
        ("pods", p.pods.is_some()),
        ("networks", p.networks.is_some()),
        ("nodes", p.nodes.is_some()),
        ("domainNames", p.domain_names.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match given.as_slice() {
        [] => {
            errors.push(ClusterPolicyError::new(
                at,
                "the peer names nothing Palisade knows: give one of namespaces, pods or networks \
                 (networks in egress only)",
            ));
            return None;
        }
        [_] => {}
        several => {
            errors.push(ClusterPolicyError::new(
                at,
                format!(
                    "the peer has {}: give exactly one per peer (list several peers instead)",
                    several.join(" and ")
                ),
            ));
            return None;
        }
    }
    if p.nodes.is_some() {
        errors.push(ClusterPolicyError::new(
            format!("{at}.nodes"),
            "nodes peers (experimental) are not enforced by Palisade",
        ));
        return None;
    }
    if p.domain_names.is_some() {
        errors.push(ClusterPolicyError::new(
            format!("{at}.domainNames"),
            "domainNames peers (experimental) are not enforced by Palisade",
        ));
        return None;
    }
    if let Some(ns) = &p.namespaces {
        return selector(ns, &format!("{at}.namespaces"), errors).map(ClusterPeer::Namespaces);
    }
    if let Some(pods) = &p.pods {
        return namespaced_pod(pods, &format!("{at}.pods"), errors)
            .map(|(namespaces, pods)| ClusterPeer::Pods { namespaces, pods });
    }
    let networks = p.networks.as_deref().unwrap_or_default();
    list(
        networks,
        &format!("{at}.networks"),
        "CIDR",
        errors,
        |cidr: &String, at, errors| {
            parse_cidr(cidr)
                .map_err(|m| errors.push(ClusterPolicyError::new(at, m)))
                .ok()
        },
    )
    .map(ClusterPeer::Networks)
}

fn protocol(
    p: &ClusterNetworkPolicyProtocol,
    at: &str,
    errors: &mut Vec<ClusterPolicyError>,
) -> Option<ClusterPort> {
    let given: Vec<(&str, Option<Protocol>)> = [
        ("tcp", p.tcp.is_some(), Some(Protocol::Tcp)),
        ("udp", p.udp.is_some(), Some(Protocol::Udp)),
        ("sctp", p.sctp.is_some(), Some(Protocol::Sctp)),
        (
            "destinationNamedPort",
            p.destination_named_port.is_some(),
            None,
        ),
    ]
    .into_iter()
    .filter_map(|(k, set, proto)| set.then_some((k, proto)))
    .collect();
    let (field, proto) = match given.as_slice() {
        [one] => *one,
        [] => {
            errors.push(ClusterPolicyError::new(
                at,
                "the protocol needs one of tcp, udp, sctp or destinationNamedPort",
            ));
            return None;
        }
        several => {
            let names: Vec<&str> = several.iter().map(|(k, _)| *k).collect();
            errors.push(ClusterPolicyError::new(
                at,
                format!(
                    "the protocol has {}: give exactly one per entry (list several entries instead)",
                    names.join(" and ")
                ),
            ));
            return None;
        }
    };
    let at = format!("{at}.{field}");
    let Some(protocol) = proto else {
        let name = p.destination_named_port.as_deref().unwrap_or_default();
        if name.is_empty() {
            errors.push(ClusterPolicyError::new(at, "the port name is empty"));
            return None;
        }
        return Some(ClusterPort::Named(name.to_string()));
    };
    let port = [&p.tcp, &p.udp, &p.sctp]
        .into_iter()
        .flatten()
        .next()
        .and_then(|pp| pp.destination_port.as_ref());
    let Some(port) = port else {
        errors.push(ClusterPolicyError::new(
            at,
            format!(
                "{field} needs a destinationPort (for every {protocol} port write \
                 destinationPort: {{range: {{start: 1, end: 65535}}}})"
            ),
        ));
        return None;
    };
    port_range(port, protocol, &format!("{at}.destinationPort"), errors)
}

fn port_range(
    port: &ClusterNetworkPolicyPort,
    protocol: Protocol,
    at: &str,
    errors: &mut Vec<ClusterPolicyError>,
) -> Option<ClusterPort> {
    let number = |n: i32, at: String, errors: &mut Vec<ClusterPolicyError>| {
        u16::try_from(n).ok().filter(|n| *n > 0).or_else(|| {
            errors.push(ClusterPolicyError::new(
                at,
                format!("port {n} is outside 1-65535"),
            ));
            None
        })
    };
    match (port.number, &port.range) {
        (Some(n), None) => {
            let n = number(n, format!("{at}.number"), errors)?;
            Some(ClusterPort::Ports {
                protocol,
                first: n,
                last: n,
            })
        }
        (None, Some(r)) => {
            let first = number(r.start, format!("{at}.range.start"), errors);
            let last = number(r.end, format!("{at}.range.end"), errors);
            let (first, last) = (first?, last?);
            if first >= last {
                errors.push(ClusterPolicyError::new(
                    format!("{at}.range"),
                    format!(
                        "start {first} must be less than end {last} (for one port write number: {first})"
                    ),
                ));
                return None;
            }
            Some(ClusterPort::Ports {
                protocol,
                first,
                last,
            })
        }
        (None, None) => {
            errors.push(ClusterPolicyError::new(
                at,
                "destinationPort needs one of number or range",
            ));
            None
        }
        (Some(_), Some(_)) => {
            errors.push(ClusterPolicyError::new(
                at,
                "destinationPort has both number and range: give exactly one",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(spec: serde_json::Value) -> Result<ClusterPolicy, Vec<String>> {
        let cnp: ClusterNetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": spec,
        }))
        .expect("reads");
        ClusterPolicy::from_api(&cnp).map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn compiles_a_policy() {
        let p = read(serde_json::json!({
            "tier": "Admin", "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
            "egress": [
                {"name": "dns", "action": "Accept", "to": [{"pods": {"podSelector": {}}}],
                 "protocols": [{"udp": {"destinationPort": {"number": 53}}},
                               {"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8080}}}},
                               {"destinationNamedPort": "web"}]},
                {"action": "Deny", "to": [{"networks": ["10.0.0.1/8", "::/0"]}]}
            ]
        }))
        .expect("compiles");
        assert_eq!(
            (p.tier, p.priority, p.name.as_str()),
            (Tier::Admin, 10, "p")
        );
        assert!(p.ingress.is_empty());
        assert_eq!(p.egress[0].name.as_deref(), Some("dns"));
        assert_eq!(
            p.egress[0].ports,
            Some(vec![
                ClusterPort::Ports {
                    protocol: Protocol::Udp,
                    first: 53,
                    last: 53
                },
                ClusterPort::Ports {
                    protocol: Protocol::Tcp,
                    first: 8000,
                    last: 8080
                },
                ClusterPort::Named("web".into()),
            ])
        );
        assert_eq!(
            p.egress[0].peers,
            vec![ClusterPeer::Pods {
                namespaces: Selector::everything(),
                pods: Selector::everything()
            }]
        );
        assert_eq!(
            p.egress[1].peers,
            vec![ClusterPeer::Networks(vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "::/0".parse().expect("cidr")
            ])]
        );
        assert_eq!(p.egress[1].ports, None);
        assert_eq!(
            describe_rule(Direction::Egress, 0, &p.egress[0]),
            "egress rule 0 \"dns\""
        );
        assert_eq!(
            describe_rule(Direction::Egress, 1, &p.egress[1]),
            "egress rule 1"
        );
        assert_eq!(p.describe(), "ClusterNetworkPolicy p (Admin, priority 10)");
    }

    #[test]
    fn every_mistake_is_named_with_its_path() {
        let errors = read(serde_json::json!({
            "tier": "Cluster", "priority": 1001,
            "subject": {},
            "ingress": [
                {"action": "Allow", "from": []},
                {"action": "Pass", "from": [{}], "protocols": [{"tcp": {}}]},
            ],
            "egress": [
                {"action": "Deny", "to": [{"nodes": {}}, {"domainNames": ["*.example.com"]},
                                         {"networks": ["10.0.0.0/33"]},
                                         {"pods": {"podSelector": {}}, "namespaces": {}}],
                 "protocols": [{"udp": {"destinationPort": {"number": 0}}},
                               {"tcp": {"destinationPort": {"range": {"start": 80, "end": 80}}}},
                               {"udp": {"destinationPort": {"number": 1}}, "destinationNamedPort": "x"},
                               {"sctp": {"destinationPort": {}}}]}
            ]
        }))
        .expect_err("refused");
        assert_eq!(
            errors,
            vec![
                "spec.tier: unknown tier \"Cluster\" (use Admin or Baseline)",
                "spec.priority: priority 1001 is outside 0-1000 (lower values come first)",
                "spec.subject: the subject needs one of namespaces or pods",
                "spec.ingress[0].from: the list is empty: give at least one peer",
                "spec.ingress[0].action: unknown action \"Allow\": use Accept, Deny or Pass (v1alpha1 AdminNetworkPolicy's Allow is Accept in v1alpha2)",
                "spec.ingress[1].from[0]: the peer names nothing Palisade knows: give one of namespaces, pods or networks (networks in egress only)",
                "spec.ingress[1].protocols[0].tcp: tcp needs a destinationPort (for every TCP port write destinationPort: {range: {start: 1, end: 65535}})",
                "spec.egress[0].to[0].nodes: nodes peers (experimental) are not enforced by Palisade",
                "spec.egress[0].to[1].domainNames: domainNames peers (experimental) are not enforced by Palisade",
                "spec.egress[0].to[2].networks[0]: \"10.0.0.0/33\" is not a CIDR (write it as 10.0.0.0/16 or fd00::/64)",
                "spec.egress[0].to[3]: the peer has namespaces and pods: give exactly one per peer (list several peers instead)",
                "spec.egress[0].protocols[0].udp.destinationPort.number: port 0 is outside 1-65535",
                "spec.egress[0].protocols[1].tcp.destinationPort.range: start 80 must be less than end 80 (for one port write number: 80)",
                "spec.egress[0].protocols[2]: the protocol has udp and destinationNamedPort: give exactly one per entry (list several entries instead)",
                "spec.egress[0].protocols[3].sctp.destinationPort: destinationPort needs one of number or range",
            ]
        );
    }

    #[test]
    fn priority_bounds_are_inclusive() {
        let spec = |priority: i32| {
            serde_json::json!({"tier": "Baseline", "priority": priority,
                "subject": {"pods": {"podSelector": {}}}})
        };
        assert_eq!(read(spec(0)).expect("0").priority, 0);
        assert_eq!(read(spec(1000)).expect("1000").priority, 1000);
        assert!(read(spec(-1)).is_err());
    }

    #[test]
    fn ports_match_inclusively_and_named_ports_on_the_destination() {
        let range = ClusterPort::Ports {
            protocol: Protocol::Tcp,
            first: 80,
            last: 81,
        };
        assert!(range.matches(80, Protocol::Tcp, None));
        assert!(range.matches(81, Protocol::Tcp, None));
        assert!(!range.matches(82, Protocol::Tcp, None));
        assert!(!range.matches(80, Protocol::Udp, None));
        let mut pod = Pod::running("a", "b", Labels::new(), "10.0.0.1".parse().expect("ip"));
        pod.ports.push(crate::ContainerPort {
            name: Some("dns".into()),
            port: 53,
            protocol: Protocol::Udp,
        });
        let named = ClusterPort::Named("dns".into());
        assert!(named.matches(53, Protocol::Udp, Some(&pod)));
        assert!(!named.matches(53, Protocol::Tcp, Some(&pod)));
        assert!(!named.matches(53, Protocol::Udp, None));
        pod.host_network = true;
        assert!(!named.matches(53, Protocol::Udp, Some(&pod)));
    }
}
