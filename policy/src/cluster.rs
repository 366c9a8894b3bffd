//! The cluster state policies are judged against, and the one evaluation of NetworkPolicy and
//! ClusterNetworkPolicy semantics that every component uses.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::cluster_policy::{Action, ClusterPeer, ClusterPolicy, ClusterRule, Subject, Tier};
use crate::model::{IpFamily, Namespace, Pod, Protocol, Workload};
use crate::policy::{
    AuditMode, Direction, NamespaceScope, Peer, Policy, PortMatch, PortSpec, Rule,
};
use crate::selector::Labels;
use crate::verdict::{Decision, Verdict};

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    Pod(&'a Pod),
    /// An address outside the pod network.
    External(IpAddr),
    /// A node's own address (kubelet, host processes).
    Node {
        name: &'a str,
        ip: Option<IpAddr>,
    },
}

impl Endpoint<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Pod(p) => p.ip,
            Endpoint::External(ip) => Some(*ip),
            Endpoint::Node { ip, .. } => *ip,
        }
    }
}

/// Namespaces, pods, workloads and policies, indexed by namespace, each kept sorted by
/// namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    namespaces: BTreeMap<String, Namespace>,
    pods: Vec<Pod>,
    workloads: Vec<Workload>,
    policies: Vec<Policy>,
    /// In Palisade's order: tier, priority, name.
    cluster_policies: Vec<ClusterPolicy>,
    /// Per namespace, the ClusterNetworkPolicies (indices, in order) whose subject's namespace
    /// selector matches it: the only ones that can select its pods.
    cluster_policies_by_ns: HashMap<String, Vec<usize>>,
    pods_by_ns: HashMap<String, Vec<usize>>,
    workloads_by_ns: HashMap<String, Vec<usize>>,
    policies_by_ns: HashMap<String, Vec<usize>>,
}

impl Cluster {
    pub fn new(
        namespaces: impl IntoIterator<Item = Namespace>,
        pods: Vec<Pod>,
        workloads: Vec<Workload>,
        mut policies: Vec<Policy>,
    ) -> Self {
        // Sorted, so verdicts and messages never depend on the order objects arrived in.
        let mut pods = pods;
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut workloads = workloads;
        workloads.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });
        // A policy given twice counts once, with its last definition, as `kubectl apply`
        // leaves it: reversed, the stable sort puts the last first, and dedup keeps the first.
        policies.reverse();
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        policies.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
        let mut c = Self {
            namespaces: namespaces
                .into_iter()
                .map(|n| (n.name.clone(), n))
                .collect(),
            pods,
            workloads,
            policies,
            ..Default::default()
        };
        // Namespaces known only because objects live in them still exist, with the name label.
        let implied: Vec<String> = (c.pods.iter().map(|p| &p.namespace))
            .chain(c.workloads.iter().map(|w| &w.namespace))
            .chain(c.policies.iter().map(|p| &p.namespace))
            .filter(|n| !c.namespaces.contains_key(*n))
            .cloned()
            .collect();
        for name in implied {
            c.namespaces
                .entry(name.clone())
                .or_insert_with(|| Namespace::new(name, Labels::new()));
        }
        for (i, p) in c.pods.iter().enumerate() {
            c.pods_by_ns.entry(p.namespace.clone()).or_default().push(i);
        }
        for (i, w) in c.workloads.iter().enumerate() {
            c.workloads_by_ns
                .entry(w.namespace.clone())
                .or_default()
                .push(i);
        }
        for (i, p) in c.policies.iter().enumerate() {
            c.policies_by_ns
                .entry(p.namespace.clone())
                .or_default()
                .push(i);
        }
        c
    }

    /// The cluster with these ClusterNetworkPolicies, kept in Palisade's order: tier (Admin,
    /// then Baseline), priority ascending, then name (upstream leaves the order of equal
    /// priorities undefined). A policy given twice counts once, with its last definition.
    pub fn with_cluster_policies(mut self, mut policies: Vec<ClusterPolicy>) -> Self {
        policies.reverse();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        policies.dedup_by(|a, b| a.name == b.name);
        policies.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        self.cluster_policies_by_ns = self
            .namespaces
            .values()
            .map(|ns| {
                let candidates = policies
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| match &p.subject {
                        Subject::Namespaces(sel)
                        | Subject::Pods {
                            namespaces: sel, ..
                        } => sel.matches(&ns.labels),
                    })
                    .map(|(i, _)| i)
                    .collect();
                (ns.name.clone(), candidates)
            })
            .collect();
        self.cluster_policies = policies;
        self
    }

    /// The ClusterNetworkPolicies in the order they are evaluated.
    pub fn cluster_policies(&self) -> &[ClusterPolicy] {
        &self.cluster_policies
    }

    /// Whether `policy`'s subject names `pod` (never a host-network pod).
    pub fn cluster_policy_selects(&self, policy: &ClusterPolicy, pod: &Pod) -> bool {
        self.subject_selects(&policy.subject, pod)
    }

    pub fn subject_selects(&self, subject: &Subject, pod: &Pod) -> bool {
        pod.is_target() && subject.matches(pod, &self.namespace_labels(&pod.namespace))
    }

    /// Whether a ClusterNetworkPolicy peer names the endpoint: pods that can be peers (never
    /// host-network ones), or any address inside its networks (pods' included).
    pub fn cluster_peer_matches(&self, peer: &ClusterPeer, endpoint: &Endpoint) -> bool {
        let labels = match endpoint {
            Endpoint::Pod(pod) => Some(self.namespace_labels(&pod.namespace)),
            _ => None,
        };
        cluster_peer_matches_in(peer, endpoint, labels.as_deref())
    }

    /// The ClusterNetworkPolicies (indices into [`Cluster::cluster_policies`], in order) whose
    /// subject names `pod` and that have rules for `direction`.
    pub fn cluster_selecting<'a>(
        &'a self,
        pod: &'a Pod,
        direction: Direction,
    ) -> impl Iterator<Item = usize> + 'a {
        // A pod of a namespace the cluster does not know is matched against every policy;
        // otherwise only the policies whose namespace selector matches its namespace are asked.
        let known = self.cluster_policies_by_ns.get(&pod.namespace);
        let unknown = known.is_none().then(|| {
            (
                0..self.cluster_policies.len(),
                self.namespace_labels(&pod.namespace),
            )
        });
        let labels = unknown.as_ref().map(|(_, l)| l.clone());
        known
            .into_iter()
            .flatten()
            .copied()
            .chain(unknown.into_iter().flat_map(|(all, _)| all))
            .filter(move |&i| {
                let p = &self.cluster_policies[i];
                !p.rules(direction).is_empty()
                    && pod.is_target()
                    && match (&p.subject, &labels) {
                        (subject, Some(labels)) => subject.matches(pod, labels),
                        (Subject::Namespaces(_), None) => true,
                        (Subject::Pods { pods, .. }, None) => pods.matches(&pod.labels),
                    }
            })
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The cluster as packets of one IP family see it: every pod with only its address of that
    /// family (pods without one take part in no traffic of it). NetworkPolicy decides each
    /// family's packets separately, and an ipBlock only ever matches addresses of its own family,
    /// so a dual-stack cluster's answers are this cluster's answers, family by family.
    pub fn in_family(&self, family: IpFamily) -> Cluster {
        Cluster {
            pods: self.pods.iter().map(|p| p.in_family(family)).collect(),
            ..self.clone()
        }
    }
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values()
    }
    pub fn has_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name)
    }

    pub fn pods_in<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.pods[i])
    }
    pub fn workloads_in<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Workload> + 'a {
        self.workloads_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.workloads[i])
    }
    pub fn policies_in<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Policy> + 'a {
        self.policies_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.policies[i])
    }

    /// A namespace's labels; one known only by name still has the name label the apiserver sets.
    pub fn namespace_labels(&self, name: &str) -> Cow<'_, Labels> {
        match self.namespaces.get(name) {
            Some(ns) => Cow::Borrowed(&ns.labels),
            None => Cow::Owned(Namespace::new(name, Labels::new()).labels),
        }
    }

    /// Whether `policy` is in audit mode, and why: annotated so, or its namespace labelled so
    /// (see [`AuditMode::of`]).
    pub fn audit_mode(&self, policy: &Policy) -> Option<AuditMode> {
        AuditMode::of(policy, &self.namespace_labels(&policy.namespace))
    }

    /// Whether policies isolate `pod` in `direction` and every one of them is in audit mode:
    /// then what they deny is only reported, never dropped.
    pub fn audit_only(&self, pod: &Pod, direction: Direction) -> bool {
        let mut isolating = self.isolating(pod, direction).peekable();
        isolating.peek().is_some() && isolating.all(|(_, p)| self.audit_mode(p).is_some())
    }

    /// Whether `policy` applies to `pod` (ignoring direction).
    pub fn selects(policy: &Policy, pod: &Pod) -> bool {
        pod.is_target()
            && policy.namespace == pod.namespace
            && policy.pod_selector.matches(&pod.labels)
    }

    /// Whether a peer of a policy in `policy_ns` names the endpoint.
    pub fn peer_matches(&self, policy_ns: &str, peer: &Peer, endpoint: &Endpoint) -> bool {
        match peer {
            Peer::Pods { namespaces, pods } => {
                let Endpoint::Pod(pod) = endpoint else {
                    return false;
                };
                pod.is_peer()
                    && match namespaces {
                        NamespaceScope::Own => pod.namespace == policy_ns,
                        NamespaceScope::Matching(sel) => {
                            sel.matches(&self.namespace_labels(&pod.namespace))
                        }
                    }
                    && pods.matches(&pod.labels)
            }
            Peer::IpBlock(block) => endpoint.ip().is_some_and(|ip| block.contains(ip)),
        }
    }

    /// Whether a rule's peers name the endpoint (no peers: everyone).
    pub fn rule_peers_match(&self, policy_ns: &str, rule: &Rule, endpoint: &Endpoint) -> bool {
        rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|p| self.peer_matches(policy_ns, p, endpoint))
    }

    /// The policies that isolate `pod` in `direction`, with their index in [`Cluster::policies`].
    pub fn isolating<'a>(
        &'a self,
        pod: &'a Pod,
        direction: Direction,
    ) -> impl Iterator<Item = (usize, &'a Policy)> + 'a {
        self.policies_by_ns
            .get(&pod.namespace)
            .into_iter()
            .flatten()
            .map(|&i| (i, &self.policies[i]))
            .filter(move |(_, p)| p.isolates(direction) && Self::selects(p, pod))
    }

    /// The verdict for a connection from `src` to `dst` on `port`/`protocol`: per direction,
    /// the Admin tier, then NetworkPolicy, then the Baseline tier (see
    /// [`crate::cluster_policy`]). A pod's connection to its own IP never leaves the pod and is
    /// allowed ([`Decision::ToItself`]).
    pub fn evaluate(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        protocol: Protocol,
    ) -> Verdict {
        if let (Endpoint::Pod(s), Endpoint::Pod(d)) = (src, dst)
            && s.is_target()
            && same_pod(s, d)
        {
            return Verdict::to_itself();
        }
        self.evaluate_forwarded(src, dst, port, protocol)
    }

    /// The verdict for a packet from `src` to `dst` that a node forwards, as the node's rules
    /// judge it: as [`Cluster::evaluate`], except that a pod reaching itself through the node
    /// (a Service IP that DNATs back to the pod: the packet leaves the pod, hairpins through the
    /// node and is judged there) is judged as a connection from the pod to the pod, by both
    /// tiers.
    pub fn evaluate_forwarded(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        protocol: Protocol,
    ) -> Verdict {
        let dst_pod = match dst {
            Endpoint::Pod(p) => Some(*p),
            _ => None,
        };
        let side = |pod: &Pod, direction: Direction, peer: &Endpoint| {
            let selecting: Vec<usize> = self.cluster_selecting(pod, direction).collect();
            // The peer's namespace labels, looked up once for every rule.
            let peer_labels = match (selecting.is_empty(), peer) {
                (false, Endpoint::Pod(p)) => Some(self.namespace_labels(&p.namespace)),
                _ => None,
            };
            let outcome = tiered(
                &self.cluster_policies,
                direction,
                &selecting,
                |_, _, rule| {
                    rule.ports_match(port, protocol, dst_pod)
                        && rule
                            .peers
                            .iter()
                            .any(|p| cluster_peer_matches_in(p, peer, peer_labels.as_deref()))
                },
                || {
                    decide(
                        direction,
                        self.isolating(pod, direction),
                        |_, policy, rule| {
                            rule_ports_match(rule, port, protocol, dst_pod)
                                && self.rule_peers_match(&policy.namespace, rule, peer)
                        },
                    )
                    .as_enforced(|| self.audit_only(pod, direction))
                },
            );
            self.decision(outcome, pod, direction)
        };
        let egress = match src {
            Endpoint::Pod(pod) if pod.is_target() => side(pod, Direction::Egress, dst),
            _ => Decision::NotApplicable,
        };
        let ingress = match dst {
            Endpoint::Pod(pod) if pod.is_target() => match src {
                Endpoint::Node { name, .. } if pod.node.as_deref() == Some(*name) => {
                    Decision::FromOwnNode
                }
                _ => side(pod, Direction::Ingress, src),
            },
            _ => Decision::NotApplicable,
        };
        Verdict { egress, ingress }
    }

    /// Turns a compact outcome for `pod` into a decision that names policies.
    pub(crate) fn decision(&self, outcome: Outcome, pod: &Pod, direction: Direction) -> Decision {
        match outcome {
            Outcome::ToItself => Decision::ToItself,
            Outcome::NotIsolated => Decision::NotIsolated,
            Outcome::Allowed { policy, rule } => Decision::Allowed {
                by: self.policies[policy].id(),
                rule,
            },
            Outcome::Denied => Decision::Denied {
                isolated_by: self
                    .isolating(pod, direction)
                    .map(|(_, p)| p.id())
                    .collect(),
            },
            Outcome::AuditWouldDeny => Decision::AuditWouldDeny {
                isolated_by: self
                    .isolating(pod, direction)
                    .map(|(_, p)| p.id())
                    .collect(),
            },
            Outcome::Cluster {
                policy,
                rule,
                action,
            } => {
                let p = &self.cluster_policies[policy as usize];
                let rule = rule as usize;
                Decision::Cluster {
                    tier: p.tier,
                    policy: p.name.clone(),
                    priority: p.priority,
                    rule,
                    rule_name: p.rules(direction).get(rule).and_then(|r| r.name.clone()),
                    action,
                }
            }
        }
    }
}

/// Whether `a` and `b` are the same pod (namespace and name).
pub fn same_pod(a: &Pod, b: &Pod) -> bool {
    a.namespace == b.namespace && a.name == b.name
}

/// Whether a ClusterNetworkPolicy peer names the endpoint, whose namespace (when it is a pod)
/// has `labels`.
fn cluster_peer_matches_in(
    peer: &ClusterPeer,
    endpoint: &Endpoint,
    labels: Option<&Labels>,
) -> bool {
    match (peer, endpoint) {
        (ClusterPeer::Namespaces(ns), Endpoint::Pod(pod)) => {
            pod.is_peer() && labels.is_some_and(|l| ns.matches(l))
        }
        (ClusterPeer::Pods { namespaces, pods }, Endpoint::Pod(pod)) => {
            pod.is_peer()
                && labels.is_some_and(|l| namespaces.matches(l))
                && pods.matches(&pod.labels)
        }
        (ClusterPeer::Namespaces(_) | ClusterPeer::Pods { .. }, _) => false,
        (ClusterPeer::Networks(nets), _) => endpoint
            .ip()
            .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
    }
}

/// A direction's decision without names, cheap enough to keep for every cell of a large matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    NotIsolated,
    Allowed {
        policy: usize,
        rule: usize,
    },
    Denied,
    /// No rule of the isolating policies allows, and every one of them is in audit mode: let
    /// through, reported as a would-be denial.
    AuditWouldDeny,
    /// Decided by rule `rule` (of the direction) of ClusterNetworkPolicy `policy` (an index into
    /// [`Cluster::cluster_policies`]).
    Cluster {
        policy: u32,
        rule: u32,
        action: Action,
    },
    /// A pod to its own IP: never leaves the pod, always allowed (see [`Decision::ToItself`]).
    ToItself,
}

impl Outcome {
    pub(crate) fn allows(self) -> bool {
        !matches!(
            self,
            Outcome::Denied
                | Outcome::Cluster {
                    action: Action::Deny,
                    ..
                }
        )
    }

    /// A NetworkPolicy denial as the node enforces it: [`Outcome::AuditWouldDeny`] when
    /// `audit_only` (asked only for a denial) says every isolating policy is in audit mode.
    pub(crate) fn as_enforced(self, audit_only: impl FnOnce() -> bool) -> Outcome {
        match self {
            Outcome::Denied if audit_only() => Outcome::AuditWouldDeny,
            other => other,
        }
    }
}

/// The first rule of the `tier` policies among `selecting` (indices into `policies`, in order)
/// that matches, as an outcome.
fn first_match(
    policies: &[ClusterPolicy],
    direction: Direction,
    tier: Tier,
    selecting: &[usize],
    rule_matches: &mut impl FnMut(usize, usize, &ClusterRule) -> bool,
) -> Option<Outcome> {
    for &k in selecting {
        let policy = &policies[k];
        if policy.tier != tier {
            continue;
        }
        for (r, rule) in policy.rules(direction).iter().enumerate() {
            if rule_matches(k, r, rule) {
                return Some(Outcome::Cluster {
                    policy: k as u32,
                    rule: r as u32,
                    action: rule.action,
                });
            }
        }
    }
    None
}

/// The one tiered decision of a direction: the Admin tier's first matching rule decides if it
/// accepts or denies (a Pass skips the rest of the tier); then NetworkPolicy (`network_policy`),
/// if it isolates the pod; then the Baseline tier's first matching rule; then the default. An
/// Admin Pass that nothing after it decides stays the outcome (it allows), so explanations can
/// name it.
pub(crate) fn tiered(
    policies: &[ClusterPolicy],
    direction: Direction,
    selecting: &[usize],
    mut rule_matches: impl FnMut(usize, usize, &ClusterRule) -> bool,
    network_policy: impl FnOnce() -> Outcome,
) -> Outcome {
    let admin = first_match(
        policies,
        direction,
        Tier::Admin,
        selecting,
        &mut rule_matches,
    );
    if let Some(o @ Outcome::Cluster { action, .. }) = admin
        && action != Action::Pass
    {
        return o;
    }
    let np = network_policy();
    if np != Outcome::NotIsolated {
        return np;
    }
    first_match(
        policies,
        direction,
        Tier::Baseline,
        selecting,
        &mut rule_matches,
    )
    .or(admin)
    .unwrap_or(Outcome::NotIsolated)
}

/// The one decision of a direction: not isolated when no policy isolates; otherwise allowed by
/// the first (policy, rule) in policy order whose matcher holds, or denied.
pub(crate) fn decide<'a>(
    direction: Direction,
    isolating: impl Iterator<Item = (usize, &'a Policy)>,
    mut rule_allows: impl FnMut((usize, usize), &Policy, &Rule) -> bool,
) -> Outcome {
    let mut isolated = false;
    for (index, policy) in isolating {
        isolated = true;
        let rules = policy.rules(direction).unwrap_or_default();
        if let Some(rule) = rules
            .iter()
            .enumerate()
            .position(|(r, rule)| rule_allows((index, r), policy, rule))
        {
            return Outcome::Allowed {
                policy: index,
                rule,
            };
        }
    }
    if isolated {
        Outcome::Denied
    } else {
        Outcome::NotIsolated
    }
}

/// Whether a rule's ports admit `port`/`protocol` towards `dst` (named ports resolve on the
/// destination pod and never match anything else).
pub fn rule_ports_match(rule: &Rule, port: u16, protocol: Protocol, dst: Option<&Pod>) -> bool {
    rule.ports.is_empty()
        || rule
            .ports
            .iter()
            .any(|m| port_matches(m, port, protocol, dst))
}

pub fn port_matches(m: &PortMatch, port: u16, protocol: Protocol, dst: Option<&Pod>) -> bool {
    m.protocol == protocol
        && match &m.port {
            PortSpec::Any => true,
            PortSpec::Range(lo, hi) => (*lo..=*hi).contains(&port),
            PortSpec::Named(name) => {
                dst.and_then(|p| p.resolve_named_port(name, protocol)) == Some(port)
            }
        }
}
