//! `unmatched-selector`: a selector of the policy names no pod (or namespace), so the policy, or
//! one of its peers, does nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::likeness::{Likeness, RELEASE_LABELS, close, distance, likeness};
use super::{AT, Context, Issue, list_some, name, yaml};
use crate::policy::{Direction, NamespaceScope, Peer, Policy, PortMatch, PortSpec};
use crate::selector::{Labels, Requirement, Selector};

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    if !ctx.knows_pods {
        return Err("no Pods or workloads are known, so selectors cannot be matched".into());
    }
    let mut issues = Vec::new();
    let own = std::slice::from_ref(&policy.namespace);

    if !policy.pod_selector.is_everything() && !any_pod_matches(ctx, own, &policy.pod_selector) {
        let sel = &policy.pod_selector;
        let candidates = pod_labels(ctx, own);
        let serving = policy_serving(ctx, policy);
        let mut hint = suggest(sel, &candidates, own, serving.as_ref(), "pod");
        if let Some(found) = elsewhere(ctx, &policy.namespace, sel)
            && (found.exact || !hint.close)
        {
            let (ns, fixed) = (&found.namespace, &found.selector);
            hint = Hint {
                short: Some(format!("{fixed} runs in namespace {ns}")),
                evidence: format!("{} Pods with {fixed} run in namespace {ns}.", hint.evidence),
                fixed: None,
                note: None,
                close: false,
                swap: None,
                fix: Some(format!(
                    "Fix: a NetworkPolicy selects pods of its own namespace only; if you meant the \
                     pods with {fixed}, create the policy in namespace {ns}:\n  metadata:\n    \
                     namespace: {ns}\n  spec:\n    podSelector:\n{}",
                    yaml::selector(fixed, 6)
                )),
            };
        }
        let summary = format!(
            "podSelector {sel} matches no pod{}",
            hint.short
                .as_deref()
                .map(|s| format!("; {s}"))
                .unwrap_or_default()
        );
        let mut detail = format!(
            "NetworkPolicy {} selects no pod: its podSelector {sel} matches no pod and no workload pod \
             template in namespace {}, so the policy protects nothing.\nEvidence: {}\n",
            name(policy),
            policy.namespace,
            hint.evidence
        );
        detail.push_str(&hint.fix_text("spec:\n  podSelector:\n", 4));
        issues.push(Issue::new(summary, detail));
    }

    for (direction, r, rule) in policy.all_rules() {
        for (p, peer) in rule.peers.iter().enumerate() {
            let Peer::Pods { namespaces, pods } = peer else {
                continue;
            };
            let at = format!("{direction}[{r}].{}[{p}]", direction.peers_field());
            let scope: Vec<String> = match namespaces {
                NamespaceScope::Own => own.to_vec(),
                NamespaceScope::Matching(sel) => {
                    if !ctx.knows_namespaces {
                        continue;
                    }
                    let matched: Vec<String> = ctx
                        .cluster
                        .namespaces()
                        .filter(|n| sel.matches(&n.labels))
                        .map(|n| n.name.clone())
                        .collect();
                    if matched.is_empty() {
                        issues.push(namespace_issue(policy, ctx, sel).at(at));
                        continue;
                    }
                    matched
                }
            };
            if pods.is_everything() || any_pod_matches(ctx, &scope, pods) {
                continue;
            }
            let candidates = pod_labels(ctx, &scope);
            // An egress rule's ports are the peer's: the pods meant serve them.
            let serving = match direction {
                Direction::Egress => serving(ctx, &scope, &rule.ports.iter().collect::<Vec<_>>()),
                Direction::Ingress => None,
            };
            let hint = suggest(pods, &candidates, &scope, serving.as_ref(), "pod");
            if matches!(namespaces, NamespaceScope::Own)
                && let Some(found) = elsewhere(ctx, &policy.namespace, pods)
                && (found.exact || !hint.close)
            {
                issues.push(elsewhere_issue(policy, direction, pods, &found).at(at));
                continue;
            }
            let where_ = if scope.len() == 1 {
                format!("namespace {}", scope[0])
            } else {
                format!("namespaces {}", list_some(&scope, 5))
            };
            let summary = format!(
                "{AT}: podSelector {pods} matches no pod{}",
                hint.short
                    .as_deref()
                    .map(|s| format!("; {s}"))
                    .unwrap_or_default()
            );
            let mut detail = format!(
                "NetworkPolicy {} {AT}: podSelector {pods} matches no pod and no workload pod template \
                 in {where_}, so this peer allows nothing.\nEvidence: {}\n",
                name(policy),
                hint.evidence
            );
            detail.push_str(&hint.fix_text(
                &format!("{}:\n- podSelector:\n", direction.peers_field()),
                4,
            ));
            issues.push(Issue::new(summary, detail).at(at));
        }
    }
    Ok(issues)
}

fn namespace_issue(policy: &Policy, ctx: &Context, sel: &Selector) -> Issue {
    let candidates: Vec<&Labels> = ctx.cluster.namespaces().map(|n| &n.labels).collect();
    let hint = suggest(sel, &candidates, &[], None, "namespace");
    let summary = match &hint.swap {
        Some(swap) => format!("{AT}: {swap}"),
        None => format!(
            "{AT}: no namespace has {sel}{}",
            hint.short
                .as_deref()
                .map(|s| format!("; {s}"))
                .unwrap_or_default()
        ),
    };
    let mut detail = format!(
        "NetworkPolicy {} {AT}: namespaceSelector {sel} matches none of the cluster's namespaces, so \
         this peer allows nothing. Every namespace carries the label \
         kubernetes.io/metadata.name=<its name>; a `name:` label exists only where someone added it.\n\
         Evidence: {}\n",
        name(policy),
        hint.evidence
    );
    detail.push_str(&hint.fix_text("- namespaceSelector:\n", 4));
    Issue::new(summary, detail)
}

/// The ports a selector's pods are meant to serve, and the labels of the pods (and workload
/// templates) in scope that declare one of them: the likeliest pods the selector was meant for.
pub(super) struct Serving<'a> {
    /// The ports, as messages show them (`8080/TCP`).
    ports: String,
    labels: Vec<&'a Labels>,
}

/// What the ports of the policy's ingress rules say about the pods its podSelector was meant for.
fn policy_serving<'a>(ctx: &Context<'a>, policy: &Policy) -> Option<Serving<'a>> {
    let rules = policy.ingress.as_deref().unwrap_or_default();
    let ports: Vec<&PortMatch> = rules.iter().flat_map(|r| r.ports.iter()).collect();
    serving(ctx, std::slice::from_ref(&policy.namespace), &ports)
}

/// The pods of `namespaces` declaring one of `ports`; `None` without ports (every port).
fn serving<'a>(
    ctx: &Context<'a>,
    namespaces: &[String],
    ports: &[&PortMatch],
) -> Option<Serving<'a>> {
    if ports.is_empty() {
        return None;
    }
    let declares = |declared: &[crate::ContainerPort]| {
        ports.iter().any(|m| {
            declared.iter().any(|c| {
                c.protocol == m.protocol
                    && match &m.port {
                        PortSpec::Range(lo, hi) => (*lo..=*hi).contains(&c.port),
                        PortSpec::Named(n) => c.name.as_deref() == Some(n.as_str()),
                        PortSpec::Any => false,
                    }
            })
        })
    };
    let cluster = ctx.cluster;
    let labels = namespaces
        .iter()
        .flat_map(|ns| {
            cluster
                .pods_in(ns)
                .filter(|p| p.is_target() && declares(&p.ports))
                .map(|p| &p.labels)
                .chain(
                    cluster
                        .workloads_in(ns)
                        .filter(|w| declares(&w.ports))
                        .map(|w| &w.template_labels),
                )
        })
        .collect();
    let mut text: Vec<String> = ports.iter().map(ToString::to_string).collect();
    text.dedup();
    Some(Serving {
        ports: list_some(&text, 3),
        labels,
    })
}

/// Where pods a selector of the policy's namespace was probably meant for live instead: the
/// namespace with the most pods (or workload templates) it matches, or, when none matches, one
/// whose pods match after a close respelling of one value. `exact` says which.
struct Elsewhere {
    namespace: String,
    /// The selector that matches there (the original one when `exact`).
    selector: Selector,
    exact: bool,
    count: usize,
}

fn elsewhere(ctx: &Context, own: &str, sel: &Selector) -> Option<Elsewhere> {
    let cluster = ctx.cluster;
    let labels: Vec<(&str, &Labels)> = cluster
        .pods()
        .iter()
        .filter(|p| p.is_target() && p.namespace != own)
        .map(|p| (p.namespace.as_str(), &p.labels))
        .chain(
            cluster
                .workloads()
                .iter()
                .filter(|w| w.namespace != own)
                .map(|w| (w.namespace.as_str(), &w.template_labels)),
        )
        .collect();
    let mut exact: BTreeMap<&str, usize> = BTreeMap::new();
    for (ns, l) in &labels {
        if sel.matches(l) {
            *exact.entry(ns).or_default() += 1;
        }
    }
    if let Some((ns, n)) = exact.iter().max_by_key(|(_, n)| **n) {
        return Some(Elsewhere {
            namespace: ns.to_string(),
            selector: sel.clone(),
            exact: true,
            count: *n,
        });
    }
    let (_, ns, fixed) = labels
        .iter()
        .filter_map(|(ns, l)| close_fix(sel, l).map(|(d, fixed)| (d, *ns, fixed)))
        .min_by_key(|(d, ns, _)| (*d, *ns))?;
    let count = labels
        .iter()
        .filter(|(n, l)| *n == ns && fixed.matches(l))
        .count();
    Some(Elsewhere {
        namespace: ns.to_string(),
        selector: fixed,
        exact: false,
        count,
    })
}

/// `sel` with its one failing `key: value` respelled as the close value `labels` carry, when
/// that makes it match them; with the distance of the respelling.
fn close_fix(sel: &Selector, labels: &Labels) -> Option<(usize, Selector)> {
    let failing: Vec<&Requirement> = sel
        .requirements()
        .iter()
        .filter(|r| !r.matches(labels))
        .collect();
    let [Requirement::In(key, values)] = failing[..] else {
        return None;
    };
    let wanted = values.first()?;
    let have = labels.get(key)?;
    if !close(have, wanted) {
        return None;
    }
    let fixed = replace(sel, key, key, have)?;
    Some((
        distance(&have.to_lowercase(), &wanted.to_lowercase()),
        fixed,
    ))
}

/// A lone podSelector looks only in the policy's namespace; when its pods live elsewhere, the
/// fix is a namespaceSelector in the same peer.
fn elsewhere_issue(
    policy: &Policy,
    direction: Direction,
    pods: &Selector,
    found: &Elsewhere,
) -> Issue {
    let (ns, fixed) = (&found.namespace, &found.selector);
    let runs = if found.count == 1 {
        "1 pod runs".to_string()
    } else {
        format!("{} pods run", found.count)
    };
    let (summary, mut detail) = if found.exact {
        (
            format!("{AT}: {pods} pods are only in namespace {ns}"),
            format!(
                "NetworkPolicy {} {AT} has a podSelector ({pods}) without a namespaceSelector, which \
                 selects pods of the policy's own namespace {} only, and there are none; {runs} with \
                 {pods} in namespace {ns}.\nFix: name the namespace in the same peer item (no dash \
                 before podSelector):\n",
                name(policy),
                policy.namespace,
            ),
        )
    } else {
        (
            format!("{AT}: podSelector {pods} matches no pod; {fixed} runs in namespace {ns}"),
            format!(
                "NetworkPolicy {} {AT} has a podSelector ({pods}) without a namespaceSelector, which \
                 selects pods of the policy's own namespace {} only, and there are none. No pod \
                 anywhere has {pods}, but {runs} with {fixed}, spelled close to it, in namespace \
                 {ns}.\nFix: if you meant those, correct the label and name the namespace in the same \
                 peer item (no dash before podSelector):\n",
                name(policy),
                policy.namespace,
            ),
        )
    };
    let ns_sel = Selector::from_labels(
        &[(
            crate::model::NAMESPACE_NAME_LABEL.to_string(),
            ns.to_string(),
        )]
        .into(),
    );
    let block = format!(
        "{}:\n- namespaceSelector:\n{}  podSelector:\n{}",
        direction.peers_field(),
        yaml::selector(&ns_sel, 4),
        yaml::selector(fixed, 4)
    );
    detail.extend(block.lines().map(|l| format!("  {l}\n")));
    Issue::new(summary, detail)
}

fn any_pod_matches(ctx: &Context, namespaces: &[String], sel: &Selector) -> bool {
    namespaces.iter().any(|ns| {
        ctx.cluster
            .pods_in(ns)
            .any(|p| p.is_target() && sel.matches(&p.labels))
            || ctx
                .cluster
                .workloads_in(ns)
                .any(|w| sel.matches(&w.template_labels))
    })
}

pub(super) fn pod_labels<'a>(ctx: &Context<'a>, namespaces: &[String]) -> Vec<&'a Labels> {
    let cluster = ctx.cluster;
    namespaces
        .iter()
        .flat_map(|ns| {
            cluster
                .pods_in(ns)
                .filter(|p| p.is_target())
                .map(|p| &p.labels)
                .chain(cluster.workloads_in(ns).map(|w| &w.template_labels))
        })
        .collect()
}

/// What a person needs to repair a selector that matches nothing.
pub(super) struct Hint {
    /// The evidence sentence: what the candidates carry instead.
    pub(super) evidence: String,
    /// A few words for the one-line summary, e.g. `did you mean app=api?`.
    pub(super) short: Option<String>,
    /// A selector to paste, and the sentence that introduces it.
    pub(super) fixed: Option<(String, Selector)>,
    /// A sentence after the selector to paste: what to check before pasting it.
    note: Option<String>,
    /// A fix in words, when there is nothing safe to paste.
    pub(super) fix: Option<String>,
    /// Whether the values in scope explain the mistake (a respelling or decoration offered, or
    /// several equally likely): then they beat a near match in another namespace.
    close: bool,
    /// The whole story in a few words when only the key is wrong, e.g. `use
    /// kubernetes.io/metadata.name, not name` (label keys are long; a summary is short).
    swap: Option<String>,
}

impl Hint {
    pub(super) fn plain(evidence: String, short: Option<String>) -> Self {
        Self {
            evidence,
            short,
            fixed: None,
            note: None,
            fix: None,
            close: false,
            swap: None,
        }
    }

    /// The `Fix:` text; a selector to paste is shown under `prefix`, indented by `indent`.
    pub(super) fn fix_text(&self, prefix: &str, indent: usize) -> String {
        match (&self.fixed, &self.fix) {
            (Some((lead, sel)), _) => {
                let body = yaml::selector(sel, indent);
                let block: String = format!("{prefix}{body}")
                    .lines()
                    .map(|l| format!("  {l}\n"))
                    .collect();
                let note = self
                    .note
                    .as_deref()
                    .map(|n| format!("{n}\n"))
                    .unwrap_or_default();
                format!("Fix: {lead}\n{block}{note}")
            }
            (None, Some(fix)) => fix.clone(),
            (None, None) => "Fix: change the selector to labels that the intended pods carry \
                             (kubectl get pods --show-labels), or create the workload first."
                .to_string(),
        }
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun} has")
    } else {
        format!("{n} {noun}s have")
    }
}

/// Finds the first requirement no candidate satisfies and what the candidates carry instead.
/// A value is offered to paste only when it is likely what was meant (a close respelling, or the
/// wanted value without a decoration: see `likeness`) and no other value is as likely;
/// `namespaces` are the namespaces in scope, whose names may prefix a value. Which values the
/// pods serving the policy's ports (`serving`) carry is evidence, for or against.
pub(super) fn suggest(
    sel: &Selector,
    candidates: &[&Labels],
    namespaces: &[String],
    serving: Option<&Serving>,
    noun: &str,
) -> Hint {
    if candidates.is_empty() {
        return Hint::plain(format!("there is no {noun} in scope at all."), None);
    }
    let failing = sel
        .requirements()
        .iter()
        .find(|r| !candidates.iter().any(|l| r.matches(l)));
    let Some(Requirement::In(key, values)) = failing else {
        let n = candidates.len();
        return Hint::plain(
            format!(
                "{n} {noun}{} in scope; none satisfies all of {sel}.",
                if n == 1 { " is" } else { "s are" }
            ),
            None,
        );
    };
    let wanted = Wanted {
        sel,
        key,
        value: values.first().map(String::as_str).unwrap_or_default(),
        noun,
    };
    let seen = seen(key, candidates, serving);
    if seen.is_empty() {
        return suggest_key(&wanted, candidates);
    }
    suggest_value(&wanted, &seen, namespaces, serving)
}

/// The failing requirement `key: value` of `sel`, and what it was meant to select (`pod`,
/// `namespace`).
struct Wanted<'s> {
    sel: &'s Selector,
    key: &'s str,
    value: &'s str,
    noun: &'s str,
}

impl Wanted<'_> {
    fn label(&self) -> String {
        format!("{}={}", self.key, self.value)
    }
}

/// One value of the failing key in scope: how many candidates carry it, how many of those serve
/// the policy's ports, and the Helm releases they belong to (a release name may prefix a value).
struct Seen<'a> {
    value: &'a str,
    count: usize,
    serving: usize,
    releases: BTreeSet<&'a str>,
}

/// The values of `key` in scope, the most common first.
fn seen<'a>(key: &str, candidates: &[&'a Labels], serving: Option<&Serving<'a>>) -> Vec<Seen<'a>> {
    let mut by_value: BTreeMap<&str, Seen> = BTreeMap::new();
    for l in candidates {
        let Some(v) = l.get(key) else {
            continue;
        };
        let s = by_value.entry(v).or_insert_with(|| Seen {
            value: v,
            count: 0,
            serving: 0,
            releases: BTreeSet::new(),
        });
        s.count += 1;
        s.releases.extend(
            RELEASE_LABELS
                .iter()
                .filter_map(|r| l.get(*r).map(String::as_str)),
        );
    }
    for l in serving.map(|s| s.labels.as_slice()).unwrap_or_default() {
        if let Some(s) = l.get(key).and_then(|v| by_value.get_mut(v.as_str())) {
            s.serving = (s.serving + 1).min(s.count);
        }
    }
    let mut ranked: Vec<Seen> = by_value.into_values().collect();
    ranked.sort_by_key(|s| (Reverse(s.count), s.value));
    ranked
}

/// The values likeliest meant (equally likely, so one of them is an answer only when alone), and
/// those as well spelled whose pods do not serve the policy's ports when these do.
struct Likely<'s, 'a> {
    best: Vec<(Likeness, &'s Seen<'a>)>,
    unserving: Vec<&'s Seen<'a>>,
}

fn likely<'s, 'a>(
    wanted: &Wanted,
    seen: &'s [Seen<'a>],
    namespaces: &[String],
    ports_known: bool,
) -> Likely<'s, 'a> {
    let mut found: Vec<(Likeness, &Seen)> = seen
        .iter()
        .filter_map(|s| {
            let prefixes: Vec<&str> = namespaces
                .iter()
                .map(String::as_str)
                .chain(s.releases.iter().copied())
                .collect();
            likeness(wanted.value, s.value, &prefixes).map(|l| (l, s))
        })
        .collect();
    let rank = |(l, s): &(Likeness, &Seen)| (l.score(), ports_known && s.serving == 0);
    found.sort_by_key(|f| (rank(f), f.1.value));
    let Some(top) = found.first().map(rank) else {
        return Likely {
            best: Vec::new(),
            unserving: Vec::new(),
        };
    };
    let unserving = found
        .iter()
        .filter(|f| f.0.score() == top.0 && rank(f) != top)
        .map(|f| f.1)
        .collect();
    Likely {
        best: found.into_iter().filter(|f| rank(f) == top).collect(),
        unserving,
    }
}

/// The key exists in scope: offer the one likely value, name several equally likely ones, or
/// say what exists and which values the pods serving the policy's ports carry.
fn suggest_value(
    wanted: &Wanted,
    seen: &[Seen],
    namespaces: &[String],
    serving: Option<&Serving>,
) -> Hint {
    let (key, noun) = (wanted.key, wanted.noun);
    let shown: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {key}={}", plural(s.count, noun), s.value))
        .collect();
    let shown = list_some(&shown, 5);
    let serving_values: Vec<String> = seen
        .iter()
        .filter(|s| s.serving > 0)
        .map(|s| format!("{key}={}", s.value))
        .collect();
    let ports = serving.map(|s| s.ports.as_str());
    let serve_sentence = match (ports, &serving_values[..]) {
        (Some(ports), [one]) => {
            format!(" Of these, only {one} serves {ports}, which this policy allows.")
        }
        (Some(ports), [_, _, ..]) => format!(
            " Of these, {} serve {ports}, which this policy allows.",
            list_some(&serving_values, 3)
        ),
        _ => String::new(),
    };
    let likely = likely(wanted, seen, namespaces, ports.is_some());
    let evidence = format!("no {noun} has {}; {shown}.{serve_sentence}", wanted.label());
    match &likely.best[..] {
        [] => nothing_close(
            wanted,
            seen,
            &shown,
            &serving_values,
            ports,
            &serve_sentence,
        ),
        [(l, s)] => offer(wanted, l, s, &likely.unserving, ports, evidence),
        several => ambiguous(wanted, several, ports, evidence),
    }
}

/// One value is likeliest: offered to paste, with what the port evidence says of it.
fn offer(
    wanted: &Wanted,
    likeness: &Likeness,
    best: &Seen,
    unserving: &[&Seen],
    ports: Option<&str>,
    evidence: String,
) -> Hint {
    let key = wanted.key;
    let label = format!("{key}={}", best.value);
    let why = match likeness {
        Likeness::Respelt(_) => String::new(),
        Likeness::Decorated(_) => format!(" ({} {})", wanted.label(), likeness.describe()),
    };
    let question = format!("did you mean {label}{why}?");
    let (agrees, note) = match ports {
        Some(ports) if best.serving > 0 => (
            format!(
                " {} {ports}, which this policy allows{}.",
                pods_serving(best, wanted.noun),
                as_close_unserving(key, unserving)
            ),
            None,
        ),
        Some(ports) => (
            String::new(),
            Some(format!(
                "But no {} with {label} serves {ports}, which this policy allows: check the \
                 policy's ports, or select the {}s it is for.",
                wanted.noun, wanted.noun
            )),
        ),
        None => (String::new(), None),
    };
    Hint {
        evidence,
        short: Some(format!("did you mean {}?", brief(key, best.value))),
        fixed: replace(wanted.sel, key, key, best.value)
            .map(|s| (format!("{question}{agrees} Select it:"), s)),
        note,
        fix: None,
        close: true,
        swap: None,
    }
}

/// `key=value` for a summary, or the value alone under a long prefixed key such as
/// `kubernetes.io/metadata.name` (the summary names the key already, and must stay short).
fn brief(key: &str, value: &str) -> String {
    if key.contains('/') {
        value.to_string()
    } else {
        format!("{key}={value}")
    }
}

/// `Its 2 pods serve`, `1 of its 3 pods serves`.
fn pods_serving(s: &Seen, noun: &str) -> String {
    match (s.serving, s.count) {
        (1, 1) => format!("Its {noun} serves"),
        (n, m) if n == m => format!("Its {m} {noun}s serve"),
        (1, m) => format!("1 of its {m} {noun}s serves"),
        (n, m) => format!("{n} of its {m} {noun}s serve"),
    }
}

/// `; those with app=api-v2, as close, do not`: why an equally spelled value was not chosen.
fn as_close_unserving(key: &str, unserving: &[&Seen]) -> String {
    if unserving.is_empty() {
        return String::new();
    }
    let labels: Vec<String> = unserving
        .iter()
        .map(|s| format!("{key}={}", s.value))
        .collect();
    format!("; those with {}, as close, do not", list_some(&labels, 3))
}

/// Several values are equally likely: all are named, none is offered.
fn ambiguous(
    wanted: &Wanted,
    several: &[(Likeness, &Seen)],
    ports: Option<&str>,
    evidence: String,
) -> Hint {
    let (key, noun) = (wanted.key, wanted.noun);
    let labels: Vec<String> = several.iter().map(|(_, s)| brief(key, s.value)).collect();
    let named: Vec<String> = several
        .iter()
        .map(|(l, s)| format!("{key}={} ({})", s.value, l.describe()))
        .collect();
    let named = match &named[..] {
        [a, b] => format!("{a} and {b}"),
        _ => list_some(&named, 4),
    };
    let values: Vec<&str> = several.iter().map(|(_, s)| s.value).take(5).collect();
    let served = match ports {
        Some(ports) if several.iter().all(|(_, s)| s.serving > 0) => {
            format!("; each has {noun}s serving {ports}, which this policy allows")
        }
        Some(ports) => format!("; none of their {noun}s serves {ports}, which this policy allows"),
        None => String::new(),
    };
    Hint {
        evidence,
        short: Some(format!("equally close: {}", list_some(&labels, 3))),
        fixed: None,
        note: None,
        fix: Some(format!(
            "Fix: {} is equally close to {named}{served}, so none is offered to paste: select the \
             labels of the {noun}s this policy is for (kubectl get {noun}s -l '{key} in ({})' \
             --show-labels).",
            wanted.label(),
            values.join(", ")
        )),
        close: true,
        swap: None,
    }
}

/// No value is likely meant. Which values the pods serving the policy's ports carry is said, and
/// left to the user to choose: a far value pasted in would select other pods than the ones meant.
fn nothing_close(
    wanted: &Wanted,
    seen: &[Seen],
    shown: &str,
    serving_values: &[String],
    ports: Option<&str>,
    serve_sentence: &str,
) -> Hint {
    let (key, noun, label) = (wanted.key, wanted.noun, wanted.label());
    let serves = match (ports, serving_values) {
        (Some(ports), [one]) => Some(format!("{one} serves {ports}")),
        _ => None,
    };
    let values: Vec<String> = seen.iter().map(|s| format!("{key}={}", s.value)).collect();
    let fix = match (ports, serving_values) {
        (Some(ports), [_, ..]) => {
            let (carry, pick, not) = match serving_values {
                [one] => (one.clone(), "select that label", "it is not"),
                _ => (
                    serving_values.join(" or "),
                    "select one of those",
                    "none is",
                ),
            };
            format!(
                "Fix: select the labels of the {noun}s this policy is for. The {noun}s serving \
                 {ports}, which this policy allows, carry {carry}: if it is for them, {pick} \
                 (not offered to paste: {not} spelled like {label}, so it may name other {noun}s \
                 than the ones meant). Otherwise see kubectl get {noun}s --show-labels, or create \
                 the workload first."
            )
        }
        _ => format!(
            "Fix: nothing in scope is spelled like {label}, so there is no label to suggest: \
             select the labels the intended {noun}s carry (kubectl get {noun}s --show-labels), \
             or create the workload first."
        ),
    };
    Hint {
        evidence: format!(
            "no {noun} has {label}, nor a value spelled like it; {shown}.{serve_sentence}"
        ),
        short: Some(format!(
            "nothing close; {}",
            serves.unwrap_or_else(|| match &values[..] {
                [first, rest @ ..] if !rest.is_empty() => {
                    format!("{noun}s: {first} +{}", rest.len())
                }
                _ => format!("{noun}s: {}", values.join(", ")),
            })
        )),
        fixed: None,
        note: None,
        fix: Some(fix),
        close: false,
        swap: None,
    }
}

/// The key itself is missing: look for the wanted value under another key (a `name: x`
/// namespace label where the apiserver sets kubernetes.io/metadata.name=x), then for a
/// similarly spelled key.
fn suggest_key(wanted: &Wanted, candidates: &[&Labels]) -> Hint {
    let (key, noun, value) = (wanted.key, wanted.noun, wanted.value);
    let mut same_value: BTreeMap<&str, usize> = BTreeMap::new();
    let mut similar_keys: BTreeMap<&str, usize> = BTreeMap::new();
    for l in candidates {
        for (k, v) in l.iter() {
            if v == value {
                *same_value.entry(k).or_default() += 1;
            } else if distance(k, key) <= 3 || k.ends_with(&format!("/{key}")) {
                *similar_keys.entry(k).or_default() += 1;
            }
        }
    }
    if let Some((k, n)) = same_value
        .iter()
        .max_by_key(|(k, n)| (**n, Reverse(distance(k, key))))
    {
        return Hint {
            evidence: format!(
                "no {noun} has the label key {key}; {} {k}={value}.",
                plural(*n, noun)
            ),
            short: Some(format!("did you mean {k}?")),
            fixed: replace(wanted.sel, key, k, value)
                .map(|s| (format!("select the label that exists, {k}={value}:"), s)),
            note: None,
            fix: None,
            close: true,
            swap: Some(format!("use {k}, not {key}")),
        };
    }
    if let Some((k, n)) = similar_keys.iter().max_by_key(|(_, n)| **n) {
        return Hint::plain(
            format!(
                "no {noun} has the label key {key}; {} the key {k}.",
                plural(*n, noun)
            ),
            Some(format!("{} the key {k}", plural(*n, noun))),
        );
    }
    Hint::plain(
        format!("no {noun} in scope has the label key {key}."),
        Some(format!("no {noun} has the label key {key}")),
    )
}

/// The selector with `key`'s requirement replaced; `None` for selectors with expressions, whose
/// fix a person should write.
fn replace(sel: &Selector, key: &str, new_key: &str, new_value: &str) -> Option<Selector> {
    let mut labels = Labels::new();
    for r in sel.requirements() {
        match r {
            Requirement::In(k, _) if k == key => {
                labels.insert(new_key.to_string(), new_value.to_string());
            }
            Requirement::In(k, v) if v.len() == 1 => {
                labels.insert(k.clone(), v[0].clone());
            }
            _ => return None,
        }
    }
    Some(Selector::from_labels(&labels))
}
