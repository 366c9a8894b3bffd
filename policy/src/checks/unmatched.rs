//! `unmatched-selector`: a selector of the policy names no pod (or namespace), so the policy, or
//! one of its peers, does nothing.

use std::collections::BTreeMap;

use super::{Context, Issue, list_some, name, one_line, yaml};
use crate::policy::{Direction, NamespaceScope, Peer, Policy, PortMatch, PortSpec};
use crate::selector::{Labels, Requirement, Selector};

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    if !ctx.knows_pods {
        return Err("no Pods or workloads are known, so selectors cannot be matched".into());
    }
    let mut issues = Vec::new();
    let own = std::slice::from_ref(&policy.namespace);

    if !policy.pod_selector.is_everything() && !any_pod_matches(ctx, own, &policy.pod_selector) {
        let candidates = pod_labels(ctx, own);
        let serving = serving_labels(ctx, policy);
        let hint = suggest(&policy.pod_selector, &candidates, &serving, "pod");
        let summary = one_line(format!(
            "podSelector {} matches no pod in {}{}",
            policy.pod_selector,
            policy.namespace,
            hint.short
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ));
        let mut detail = format!(
            "NetworkPolicy {} selects no pod: its podSelector {} matches no pod and no workload pod \
             template in namespace {}, so the policy protects nothing.\nEvidence: {}\n",
            name(policy),
            policy.pod_selector,
            policy.namespace,
            hint.evidence
        );
        detail.push_str(&fix_text("spec:\n  podSelector:\n", hint.fixed.as_ref(), 4));
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
                        issues.push(namespace_issue(policy, ctx, &at, sel));
                        continue;
                    }
                    matched
                }
            };
            if pods.is_everything() || any_pod_matches(ctx, &scope, pods) {
                continue;
            }
            if matches!(namespaces, NamespaceScope::Own)
                && let Some(issue) = elsewhere_issue(policy, ctx, &at, direction, pods)
            {
                issues.push(issue);
                continue;
            }
            let candidates = pod_labels(ctx, &scope);
            let hint = suggest(pods, &candidates, &[], "pod");
            let where_ = if scope.len() == 1 {
                format!("namespace {}", scope[0])
            } else {
                format!("namespaces {}", list_some(&scope, 5))
            };
            let summary = one_line(format!(
                "{at}: podSelector {pods} matches no pod in {where_}{}",
                hint.short
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ));
            let mut detail = format!(
                "NetworkPolicy {}: peer {at} names no pod: podSelector {pods} matches no pod and no \
                 workload pod template in {where_}, so this peer allows nothing.\nEvidence: {}\n",
                name(policy),
                hint.evidence
            );
            detail.push_str(&fix_text(
                &format!("{}:\n- podSelector:\n", direction.peers_field()),
                hint.fixed.as_ref(),
                4,
            ));
            issues.push(Issue::new(summary, detail));
        }
    }
    Ok(issues)
}

fn namespace_issue(policy: &Policy, ctx: &Context, at: &str, sel: &Selector) -> Issue {
    let candidates: Vec<&Labels> = ctx.cluster.namespaces().map(|n| &n.labels).collect();
    let hint = suggest(sel, &candidates, &[], "namespace");
    let summary = one_line(format!(
        "{at}: no namespace has {sel}{}",
        hint.short
            .as_deref()
            .map(|s| format!("; {s}"))
            .unwrap_or_default()
    ));
    let mut detail = format!(
        "NetworkPolicy {}: peer {at} names no namespace: namespaceSelector {sel} matches none of the \
         cluster's namespaces, so this peer allows nothing. Every namespace carries the label \
         kubernetes.io/metadata.name=<its name>; a `name:` label exists only where someone added it.\n\
         Evidence: {}\n",
        name(policy),
        hint.evidence
    );
    detail.push_str(&fix_text("- namespaceSelector:\n", hint.fixed.as_ref(), 4));
    Issue::new(summary, detail)
}

fn fix_text(prefix: &str, fixed: Option<&Selector>, indent: usize) -> String {
    match fixed {
        Some(sel) => {
            let body = yaml::selector(sel, indent);
            let block: String = format!("{prefix}{body}")
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect();
            format!("Fix: select the labels that exist, e.g.\n{block}")
        }
        None => "Fix: change the selector to labels that the intended pods carry \
                 (kubectl get pods --show-labels), or create the workload first."
            .to_string(),
    }
}

/// Labels of the pods in the policy's namespace that declare a port its ingress rules name:
/// the likeliest pods the policy was meant for.
fn serving_labels<'a>(ctx: &Context<'a>, policy: &Policy) -> Vec<&'a Labels> {
    let rules = policy.ingress.as_deref().unwrap_or_default();
    let ports: Vec<&PortMatch> = rules.iter().flat_map(|r| r.ports.iter()).collect();
    if ports.is_empty() {
        return Vec::new();
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
    cluster
        .pods_in(&policy.namespace)
        .filter(|p| p.is_target() && declares(&p.ports))
        .map(|p| &p.labels)
        .chain(
            cluster
                .workloads_in(&policy.namespace)
                .filter(|w| declares(&w.ports))
                .map(|w| &w.template_labels),
        )
        .collect()
}

/// A lone podSelector looks only in the policy's namespace; when its pods live elsewhere, the
/// fix is a namespaceSelector in the same peer.
fn elsewhere_issue(
    policy: &Policy,
    ctx: &Context,
    at: &str,
    direction: Direction,
    pods: &Selector,
) -> Option<Issue> {
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    for p in ctx
        .cluster
        .pods()
        .iter()
        .filter(|p| p.is_target() && pods.matches(&p.labels))
    {
        *found.entry(p.namespace.as_str()).or_default() += 1;
    }
    for w in ctx
        .cluster
        .workloads()
        .iter()
        .filter(|w| pods.matches(&w.template_labels))
    {
        *found.entry(w.namespace.as_str()).or_default() += 1;
    }
    let (ns, n) = found.iter().max_by_key(|(_, n)| **n)?;
    let summary = one_line(format!(
        "{at}: podSelector {pods} looks only in {}; the matching pods are in {ns}",
        policy.namespace
    ));
    let mut detail = format!(
        "NetworkPolicy {}: peer {at} has a podSelector ({pods}) without a namespaceSelector, which \
         selects pods of the policy's own namespace {} only, and there are none; {} with {pods} \
         in namespace {ns}.\nFix: name the namespace in the same peer item (no dash before podSelector):\n",
        name(policy),
        policy.namespace,
        if *n == 1 {
            "1 pod runs".to_string()
        } else {
            format!("{n} pods run")
        },
    );
    let ns_sel = Selector::from_labels(
        &[(
            crate::model::NAMESPACE_NAME_LABEL.to_string(),
            ns.to_string(),
        )]
        .into(),
    );
    let block = format!(
        "{}:
- namespaceSelector:
{}  podSelector:
{}",
        direction.peers_field(),
        yaml::selector(&ns_sel, 4),
        yaml::selector(pods, 4)
    );
    detail.extend(block.lines().map(|l| format!("  {l}\n")));
    Some(Issue::new(summary, detail))
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

fn pod_labels<'a>(ctx: &Context<'a>, namespaces: &[String]) -> Vec<&'a Labels> {
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
struct Hint {
    /// The evidence sentence: what the candidates carry instead.
    evidence: String,
    /// A few words for the one-line summary, e.g. `3 pods have app=api`.
    short: Option<String>,
    /// The selector with the failing requirement replaced by the nearest existing label.
    fixed: Option<Selector>,
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun} has")
    } else {
        format!("{n} {noun}s have")
    }
}

/// Finds the first requirement no candidate satisfies and the nearest labels the candidates do
/// carry: another value of the same key, or the same value under another key.
/// Candidates in `preferred` (pods that serve the ports the policy names) are suggested first.
fn suggest(sel: &Selector, candidates: &[&Labels], preferred: &[&Labels], noun: &str) -> Hint {
    if candidates.is_empty() {
        return Hint {
            evidence: format!("there is no {noun} in scope at all."),
            short: None,
            fixed: None,
        };
    }
    let failing = sel
        .requirements()
        .iter()
        .find(|r| !candidates.iter().any(|l| r.matches(l)));
    let Some(Requirement::In(key, values)) = failing else {
        return Hint {
            evidence: format!(
                "{} are in scope; none satisfies all of {sel}.",
                plural(candidates.len(), noun)
            ),
            short: None,
            fixed: None,
        };
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
        let serves = |v: &str| preferred.iter().any(|l| l.get(key).is_some_and(|x| x == v));
        ranked.sort_by_key(|(v, n)| (!serves(v), distance(v, wanted), std::cmp::Reverse(*n)));
        let shown: Vec<String> = ranked
            .iter()
            .take(5)
            .map(|(v, n)| format!("{} {key}={v}", plural(*n, noun)))
            .collect();
        let best = ranked[0].0;
        return Hint {
            evidence: format!("no {noun} has {key}={wanted}; {}.", shown.join(", ")),
            short: Some(format!("no {noun} has {key}={wanted}; {}", shown[0])),
            fixed: replace(sel, key, key, best),
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
            short: Some(format!("{} {k}={wanted}", plural(*n, noun))),
            fixed: replace(sel, key, k, wanted),
        };
    }
    if let Some((k, n)) = similar_keys.iter().max_by_key(|(_, n)| **n) {
        return Hint {
            evidence: format!(
                "no {noun} has the label key {key}; {} the key {k}.",
                plural(*n, noun)
            ),
            short: Some(format!("{} the key {k}", plural(*n, noun))),
            fixed: None,
        };
    }
    Hint {
        evidence: format!("no {noun} in scope has the label key {key}."),
        short: Some(format!("no {noun} has the label key {key}")),
        fixed: None,
    }
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
fn distance(a: &str, b: &str) -> usize {
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
