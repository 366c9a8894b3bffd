//! `unmatched-selector`: a selector of the policy names no pod (or namespace), so the policy, or
//! one of its peers, does nothing.

use std::collections::BTreeMap;

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
        let serving = serving(ctx, policy);
        let mut hint = suggest(sel, &candidates, serving.as_ref(), "pod");
        if let Some(found) = elsewhere(ctx, &policy.namespace, sel)
            && (found.exact || !hint.close)
        {
            let (ns, fixed) = (&found.namespace, &found.selector);
            hint = Hint {
                short: Some(format!("{fixed} runs in namespace {ns}")),
                evidence: format!("{} Pods with {fixed} run in namespace {ns}.", hint.evidence),
                fixed: None,
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
            let hint = suggest(pods, &candidates, None, "pod");
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
    let hint = suggest(sel, &candidates, None, "namespace");
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

/// The ports the policy's ingress rules name, and the labels of the pods (and workload
/// templates) of its namespace that declare one of them: the likeliest pods it was meant for.
fn serving<'a>(ctx: &Context<'a>, policy: &Policy) -> Option<(String, Vec<&'a Labels>)> {
    let rules = policy.ingress.as_deref().unwrap_or_default();
    let ports: Vec<&PortMatch> = rules.iter().flat_map(|r| r.ports.iter()).collect();
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
    let labels = cluster
        .pods_in(&policy.namespace)
        .filter(|p| p.is_target() && declares(&p.ports))
        .map(|p| &p.labels)
        .chain(
            cluster
                .workloads_in(&policy.namespace)
                .filter(|w| declares(&w.ports))
                .map(|w| &w.template_labels),
        )
        .collect();
    let mut text: Vec<String> = ports.iter().map(ToString::to_string).collect();
    text.dedup();
    Some((list_some(&text, 3), labels))
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
    /// A fix in words, when there is nothing safe to paste.
    pub(super) fix: Option<String>,
    /// Whether `fixed` is a close respelling (then it beats a near match in another namespace).
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
                format!("Fix: {lead}\n{block}")
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

/// Whether `have` is spelled close enough to `wanted` to be offered as what was meant: the same
/// but for case, one edit (3 characters or more), or two edits in a long value.
fn close(have: &str, wanted: &str) -> bool {
    let (a, b) = (have.to_lowercase(), wanted.to_lowercase());
    let longest = a.chars().count().max(b.chars().count());
    match distance(&a, &b) {
        0 => true,
        1 => longest >= 3,
        2 => longest >= 8,
        _ => false,
    }
}

/// Finds the first requirement no candidate satisfies and what the candidates carry instead.
/// Only a close respelling is offered to paste; otherwise the message says nothing close exists
/// and lists what does (bounded), and which value the pods serving the policy's ports carry
/// (`serving`), when that is one.
pub(super) fn suggest(
    sel: &Selector,
    candidates: &[&Labels],
    serving: Option<&(String, Vec<&Labels>)>,
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
    let wanted = values.first().map(String::as_str).unwrap_or_default();

    let mut by_value: BTreeMap<&str, usize> = BTreeMap::new();
    for l in candidates {
        if let Some(v) = l.get(key) {
            *by_value.entry(v).or_default() += 1;
        }
    }
    if !by_value.is_empty() {
        let mut ranked: Vec<(&str, usize)> = by_value.into_iter().collect();
        ranked.sort_by_key(|(v, n)| (std::cmp::Reverse(*n), *v));
        let shown: Vec<String> = ranked
            .iter()
            .map(|(v, n)| format!("{} {key}={v}", plural(*n, noun)))
            .collect();
        let shown = list_some(&shown, 5);
        let mut near: Vec<(usize, &str)> = ranked
            .iter()
            .filter(|(v, _)| close(v, wanted))
            .map(|(v, _)| (distance(&v.to_lowercase(), &wanted.to_lowercase()), *v))
            .collect();
        near.sort();
        if let Some((_, best)) = near.first() {
            return Hint {
                evidence: format!("no {noun} has {key}={wanted}; {shown}."),
                short: Some(format!("did you mean {key}={best}?")),
                fixed: replace(sel, key, key, best)
                    .map(|s| (format!("did you mean {key}={best}? Select it:"), s)),
                fix: None,
                close: true,
                swap: None,
            };
        }
        // Who serves the ports the policy allows is evidence, not a correction: a far value
        // pasted in would select other pods than the ones meant.
        let serves = serving.and_then(|(ports, serving)| {
            let mut values: Vec<&str> = serving
                .iter()
                .filter_map(|l| l.get(key).map(String::as_str))
                .collect();
            values.sort();
            values.dedup();
            match values[..] {
                [v] => Some(format!("{key}={v} serves {ports}")),
                _ => None,
            }
        });
        let values: Vec<String> = ranked.iter().map(|(v, _)| format!("{key}={v}")).collect();
        return Hint {
            evidence: format!(
                "no {noun} has {key}={wanted}, nor a value spelled like it; {shown}.{}",
                serves
                    .as_deref()
                    .map(|s| format!(" Of these, only {s}, which this policy allows."))
                    .unwrap_or_default()
            ),
            short: Some(format!(
                "nothing close; {}",
                serves.clone().unwrap_or_else(|| match &values[..] {
                    [first, rest @ ..] if !rest.is_empty() => {
                        format!("{noun}s: {first} +{}", rest.len())
                    }
                    _ => format!("{noun}s: {}", values.join(", ")),
                })
            )),
            fixed: None,
            fix: Some(format!(
                "Fix: nothing in scope is spelled like {key}={wanted}, so there is no label to \
                 suggest: select the labels the intended {noun}s carry (kubectl get {noun}s \
                 --show-labels), or create the workload first."
            )),
            close: false,
            swap: None,
        };
    }
    // The key itself is missing: look for the wanted value under another key (a `name: x`
    // namespace label where the apiserver sets kubernetes.io/metadata.name=x), then for a
    // similarly spelled key.
    let mut same_value: BTreeMap<&str, usize> = BTreeMap::new();
    let mut similar_keys: BTreeMap<&str, usize> = BTreeMap::new();
    for l in candidates {
        for (k, v) in l.iter() {
            if v == wanted {
                *same_value.entry(k).or_default() += 1;
            } else if distance(k, key) <= 3 || k.ends_with(&format!("/{key}")) {
                *similar_keys.entry(k).or_default() += 1;
            }
        }
    }
    if let Some((k, n)) = same_value
        .iter()
        .max_by_key(|(k, n)| (**n, std::cmp::Reverse(distance(k, key))))
    {
        return Hint {
            evidence: format!(
                "no {noun} has the label key {key}; {} {k}={wanted}.",
                plural(*n, noun)
            ),
            short: Some(format!("did you mean {k}?")),
            fixed: replace(sel, key, k, wanted)
                .map(|s| (format!("select the label that exists, {k}={wanted}:"), s)),
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

/// Levenshtein distance, for "did you mean".
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
