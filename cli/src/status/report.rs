//! `palisade status`: for one policy, the nodes where the pods it selects run and whether each
//! of them enforces it, in a line (and, where not every node enforces it, a line per kind of
//! answer). Whether a node enforces is the one decision the `enforcement` check makes
//! ([`NodeEnforcement::network_policy`], [`NodeEnforcement::cluster_policy`]), said in the words
//! of `reach --explain` ([`describe_for`]). Pure: the CLI reads the cluster.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use palisade_policy::checks::{Enforced, Enforcement, NodeEnforcement, list_some};
use palisade_policy::cluster::Cluster;
use palisade_policy::cluster_policy::ClusterPolicy;
use palisade_policy::model::{IpFamily, Phase, Pod};
use palisade_policy::node_enforcement::{Reported, describe_for, human_duration};
use palisade_policy::policy::{MODE_ANNOTATION, Policy};

/// Nodes named at most in one line, then "and K more".
pub const MAX_NODES: usize = 5;
/// Pods named at most per node where a policy is not enforced.
pub const MAX_PODS: usize = 3;

/// Stands for the node names in a node's words until the nodes alike are known.
const NODES: &str = "\u{0}";

/// What is known about the nodes, and the time to measure ages with.
pub struct Nodes<'a> {
    by_name: HashMap<&'a str, &'a NodeEnforcement>,
    reported: &'a BTreeMap<String, Reported>,
    now: Timestamp,
}

impl<'a> Nodes<'a> {
    pub fn new(
        enforcement: &'a Enforcement,
        reported: &'a BTreeMap<String, Reported>,
        now: Timestamp,
    ) -> Self {
        Self {
            by_name: enforcement
                .nodes
                .iter()
                .map(|n| (n.node.as_str(), n))
                .collect(),
            reported,
            now,
        }
    }
}

/// A policy's answer, worst first: the CLI's exit code follows the worst of its policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// On some node where a pod it selects runs, it is not enforced.
    NotEnforced,
    /// On some such node, nothing certain is known.
    Unknown,
    /// Enforced wherever a pod it selects runs.
    Enforced,
    /// It selects no pod that runs on a node: nothing to enforce.
    NothingSelected,
}

impl Outcome {
    fn of(verdict: Enforced) -> Self {
        match verdict {
            Enforced::Yes => Outcome::Enforced,
            Enforced::No => Outcome::NotEnforced,
            Enforced::Unknown => Outcome::Unknown,
        }
    }
}

/// One policy's status: the answer, and the lines that say it (the first one alone when every
/// node answers alike; then one indented line per kind of answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    pub outcome: Outcome,
    pub lines: Vec<String>,
}

/// What one node answers for a policy.
struct NodeAnswer<'a> {
    node: &'a str,
    verdict: Enforced,
    /// The node's words, with [`NODES`] where its name goes.
    words: String,
    /// How long ago its enforcer last synced, where it reports and is not silent.
    age: Option<Duration>,
    pods: Vec<&'a Pod>,
}

/// A NetworkPolicy's status.
pub fn network_policy(cluster: &Cluster, policy: &Policy, nodes: &Nodes) -> PolicyStatus {
    let selected = cluster
        .pods_in(&policy.namespace)
        .filter(|p| Cluster::selects(policy, p) && runs(p));
    let audit = cluster.audit_mode(policy);
    let title = format!(
        "{}/{}{}",
        policy.namespace,
        policy.name,
        audit.map_or(String::new(), |mode| format!(
            " in audit mode ({})",
            mode.why(policy)
        ))
    );
    let answers = by_node(selected, |node, pods| {
        let families = families(pods);
        let Some(ne) = find(nodes, node) else {
            return not_listed();
        };
        let reported = nodes.reported.get(node);
        let verdict = ne.network_policy(&families);
        let mut words = describe_for(&anonymous(ne), reported, &families);
        if audit.is_some() && verdict == Enforced::Yes {
            words.push_str(&audit_on_node(ne));
        }
        let age = reporter(reported, nodes.now, &mut words);
        (verdict, words, age)
    });
    render(title, answers)
}

/// A ClusterNetworkPolicy's status.
pub fn cluster_policy(cluster: &Cluster, policy: &ClusterPolicy, nodes: &Nodes) -> PolicyStatus {
    let selected = cluster
        .pods()
        .iter()
        .filter(|p| cluster.cluster_policy_selects(policy, p) && runs(p));
    let title = format!(
        "ClusterNetworkPolicy {} ({}, priority {})",
        policy.name, policy.tier, policy.priority
    );
    let answers = by_node(selected, |node, _| {
        let Some(ne) = find(nodes, node) else {
            return not_listed();
        };
        let (verdict, mut words) = cluster_policy_on(ne, &policy.name);
        let age = reporter(nodes.reported.get(node), nodes.now, &mut words);
        (verdict, words, age)
    });
    render(title, answers)
}

/// Whether `ne` enforces the ClusterNetworkPolicy `name`, and its words.
fn cluster_policy_on(ne: &NodeEnforcement, name: &str) -> (Enforced, String) {
    let cni = ne.cni.as_deref();
    match ne.cluster_policy() {
        (Enforced::Yes, _) => {
            let by_enforcer = ne.cluster_policies.as_ref().filter(|c| c.enforced);
            let listed = by_enforcer.and_then(|c| c.not_enforced.iter().find(|p| p.name == name));
            match (by_enforcer, listed) {
                (_, Some(p)) => (
                    Enforced::No,
                    format!("NOT enforced as written on {NODES}: {}", p.reason),
                ),
                (Some(c), None) if c.not_enforced_count as usize > c.not_enforced.len() => (
                    Enforced::Unknown,
                    format!(
                        "unknown whether it is enforced as written on {NODES}: its Palisade enforcer \
                         does not enforce {} ClusterNetworkPolicies as written and names only {}",
                        c.not_enforced_count,
                        c.not_enforced.len()
                    ),
                ),
                (Some(_), None) => (
                    Enforced::Yes,
                    format!("enforced on {NODES} by the Palisade enforcer"),
                ),
                (None, None) => (
                    Enforced::Yes,
                    format!("enforced on {NODES} by {}", cni.unwrap_or("its CNI")),
                ),
            }
        }
        (Enforced::No, why) => (
            Enforced::No,
            format!(
                "NOT enforced on {NODES}: {}",
                why.unwrap_or_else(|| "no reason given".into())
            ),
        ),
        (Enforced::Unknown, _) => (
            Enforced::Unknown,
            format!(
                "unknown whether anything enforces ClusterNetworkPolicy on {NODES}: {}, and no \
                 Palisade enforcer there reports on ClusterNetworkPolicy",
                cni.unwrap_or("an unknown CNI")
            ),
        ),
    }
}

/// Pods that run or will: on a node or waiting for one, not finished.
fn runs(pod: &Pod) -> bool {
    !matches!(pod.phase, Phase::Succeeded | Phase::Failed)
}

fn find<'a>(nodes: &Nodes<'a>, node: &str) -> Option<&'a NodeEnforcement> {
    nodes.by_name.get(node).copied()
}

/// The node with its name left out, to be said of every node alike.
fn anonymous(ne: &NodeEnforcement) -> NodeEnforcement {
    NodeEnforcement {
        node: NODES.into(),
        ..ne.clone()
    }
}

fn not_listed() -> (Enforced, String, Option<Duration>) {
    (
        Enforced::Unknown,
        format!("unknown whether anything enforces it on {NODES}: not in the cluster's node list"),
        None,
    )
}

/// The families of the pods' addresses (none for pods without one yet).
fn families(pods: &[&Pod]) -> Vec<IpFamily> {
    let mut out: Vec<IpFamily> = pods.iter().flat_map(|p| p.families()).collect();
    out.sort();
    out.dedup();
    out
}

/// Appends what the node's enforcer says of itself (mode, and whether it ever synced) to
/// `words`, and returns how long ago it last synced where that is not already said (a silent
/// enforcer's words say how long it has been silent).
fn reporter(reported: Option<&Reported>, now: Timestamp, words: &mut String) -> Option<Duration> {
    let r = reported?;
    let mode = r.mode.as_deref().unwrap_or("unknown");
    match r.last_sync {
        _ if r.silent_for.is_some() => {
            words.push_str(&format!("; enforcer mode {mode}"));
            None
        }
        Some(t) => {
            words.push_str(&format!("; enforcer mode {mode}"));
            Some(Duration::try_from(now.duration_since(t)).unwrap_or_default())
        }
        None => {
            words.push_str(&format!("; enforcer mode {mode}, never synced"));
            None
        }
    }
}

/// What audit mode means on a node that enforces the policy.
fn audit_on_node(ne: &NodeEnforcement) -> String {
    if ne.cni_enforces == Some(true) {
        format!(
            "; {} does not read {MODE_ANNOTATION}: it drops what the policy denies",
            ne.cni.as_deref().unwrap_or("its CNI")
        )
    } else {
        "; in audit mode there: what it denies is logged and counted, not dropped".into()
    }
}

/// The pods by node (in node order), each node's answer; pods not on a node yet are counted
/// apart, under the name "".
fn by_node<'a>(
    pods: impl Iterator<Item = &'a Pod>,
    mut answer: impl FnMut(&str, &[&'a Pod]) -> (Enforced, String, Option<Duration>),
) -> Vec<NodeAnswer<'a>> {
    let mut on: BTreeMap<&'a str, Vec<&'a Pod>> = BTreeMap::new();
    for p in pods {
        on.entry(p.node.as_deref().unwrap_or(""))
            .or_default()
            .push(p);
    }
    on.into_iter()
        .map(|(node, pods)| {
            if node.is_empty() {
                return NodeAnswer {
                    node,
                    verdict: Enforced::Yes,
                    words: String::new(),
                    age: None,
                    pods,
                };
            }
            let (verdict, words, age) = answer(node, &pods);
            NodeAnswer {
                node,
                verdict,
                words,
                age,
                pods,
            }
        })
        .collect()
}

/// Nodes that answer alike: same verdict, same words.
struct Group<'a> {
    verdict: Enforced,
    words: String,
    answers: Vec<&'a NodeAnswer<'a>>,
}

fn render(title: String, answers: Vec<NodeAnswer>) -> PolicyStatus {
    let unscheduled = answers
        .iter()
        .find(|a| a.node.is_empty())
        .map_or(0, |a| a.pods.len());
    let placed: Vec<&NodeAnswer> = answers.iter().filter(|a| !a.node.is_empty()).collect();
    let pods = unscheduled + placed.iter().map(|a| a.pods.len()).sum::<usize>();
    let node_names: Vec<&str> = placed.iter().map(|a| a.node).collect();
    let selection = match (pods, placed.len()) {
        (0, _) => "selects no pod".to_string(),
        (n, 0) => format!("selects {}, none on a node yet", count(n, "pod")),
        (n, _) => {
            let waiting = if unscheduled > 0 {
                format!(" ({unscheduled} not on a node yet)")
            } else {
                String::new()
            };
            format!(
                "selects {} on {}{waiting}",
                count(n, "pod"),
                list_nodes(&node_names)
            )
        }
    };
    if placed.is_empty() {
        return PolicyStatus {
            outcome: Outcome::NothingSelected,
            lines: vec![format!("{title}  {selection}  nothing to enforce")],
        };
    }
    let mut groups: Vec<Group> = Vec::new();
    for a in &placed {
        match groups
            .iter_mut()
            .find(|g| g.verdict == a.verdict && g.words == a.words)
        {
            Some(g) => g.answers.push(a),
            None => groups.push(Group {
                verdict: a.verdict,
                words: a.words.clone(),
                answers: vec![a],
            }),
        }
    }
    // Not enforced first, then unknown, then enforced; alike groups by their first node.
    groups.sort_by_key(|g| (Outcome::of(g.verdict), g.answers[0].node));
    let outcome = groups
        .iter()
        .map(|g| Outcome::of(g.verdict))
        .min()
        .unwrap_or(Outcome::NothingSelected);
    let total = placed.len();
    // Every node answers alike: one line.
    if let [only] = groups.as_slice() {
        let nodes = match (only.verdict, total) {
            (Enforced::Yes, 2) => "both".into(),
            (Enforced::Yes, n) if n > 2 => format!("all {n}"),
            _ => names(only),
        };
        return PolicyStatus {
            outcome,
            lines: vec![format!("{title}  {selection}  {}", say(only, &nodes))],
        };
    }
    let not = |verdict: Enforced| -> Vec<&str> {
        placed
            .iter()
            .filter(|a| a.verdict == verdict)
            .map(|a| a.node)
            .collect()
    };
    let of_total = |n: usize| {
        if n == total {
            String::new()
        } else {
            format!(" ({n} of {total} nodes)")
        }
    };
    let summary = match outcome {
        Outcome::NotEnforced => {
            let n = not(Enforced::No);
            format!("NOT enforced on {}{}", list_nodes(&n), of_total(n.len()))
        }
        Outcome::Unknown => {
            let n = not(Enforced::Unknown);
            format!(
                "NOT known to be enforced on {}{}",
                list_nodes(&n),
                of_total(n.len())
            )
        }
        _ if total == 2 => "enforced on both nodes".into(),
        _ => format!("enforced on all {total} nodes"),
    };
    let mut lines = vec![format!("{title}  {selection}  {summary}")];
    for g in &groups {
        lines.push(format!("  {}", say(g, &names(g))));
    }
    PolicyStatus { outcome, lines }
}

/// A group's nodes; where it is not enforced, with the pods there (those it leaves open).
fn names(g: &Group) -> String {
    let names: Vec<String> = g
        .answers
        .iter()
        .map(|a| {
            if g.verdict == Enforced::Yes {
                a.node.to_string()
            } else {
                let pods: Vec<String> = a.pods.iter().map(|p| p.key()).collect();
                format!("{} ({})", a.node, list_some(&pods, MAX_PODS))
            }
        })
        .collect();
    list_nodes(&names)
}

/// A group's words with its nodes named, and when their enforcers last synced.
fn say(g: &Group, nodes: &str) -> String {
    let mut s = g.words.replace(NODES, nodes);
    let mut ages: Vec<Duration> = g.answers.iter().filter_map(|a| a.age).collect();
    ages.sort();
    match (ages.first(), ages.last()) {
        (Some(a), Some(b)) if human_duration(*a) == human_duration(*b) => {
            s.push_str(&format!(", last sync {} ago", human_duration(*a)));
        }
        (Some(a), Some(b)) => s.push_str(&format!(
            ", last syncs {} to {} ago",
            human_duration(*a),
            human_duration(*b)
        )),
        _ => {}
    }
    s
}

/// At most [`MAX_NODES`] names, then how many more.
fn list_nodes<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(MAX_NODES).map(AsRef::as_ref).collect();
    let mut s = shown.join(", ");
    if names.len() > MAX_NODES {
        s.push_str(&format!(" and {} more nodes", names.len() - MAX_NODES));
    }
    s
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests;
