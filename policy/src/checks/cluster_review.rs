//! The checks of a ClusterNetworkPolicy under review, judged with the cluster as it will be
//! once the policy is stored: NetworkPolicy rules it shadows (`admin-shadowed`), DNS it denies
//! (`egress-dns`), a subject that selects no pod (`unmatched-selector`), and a priority it
//! shares with another policy selecting the same pods (`equal-priority`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::admin_shadow::{Decider, shadow};
use super::unmatched::{Hint, pod_labels, suggest};
use super::{CheckConfig, CheckId, Context, Issue, Mode, Report, finish, list_some, skip_list_of};
use crate::cluster::{Cluster, Endpoint};
use crate::cluster_policy::{Action, ClusterPolicy, Subject, Tier};
use crate::model::{Pod, Protocol};
use crate::policy::Direction;
use crate::verdict::Decision;

/// NetworkPolicy rules named at most in a shadowing warning.
const MAX_SHADOWED: usize = 5;
/// NetworkPolicy rules examined at most when a ClusterNetworkPolicy is reviewed.
const MAX_RULES_EXAMINED: usize = 500;
/// Shadowed rules counted at most (the warning then says "at least").
const MAX_SHADOWED_COUNTED: usize = 20;
/// Distinct pods judged at most for DNS.
const MAX_DNS_PODS: usize = 2_000;
/// The address node-local-dns listens on by default.
const NODE_LOCAL_DNS: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 20, 10));

/// Runs the checks that apply to a ClusterNetworkPolicy, with the configured modes and the
/// object's `palisade.dev/skip-checks` annotation.
pub fn run_cluster_policy(
    policy: &ClusterPolicy,
    annotations: &BTreeMap<String, String>,
    ctx: &Context,
    config: &CheckConfig,
) -> Report {
    let (skip, unknown_skips) = skip_list_of(annotations);
    let mut report = Report {
        unknown_skips,
        ..Report::default()
    };
    // The cluster as it will be: this policy in place of its older version.
    let mut policies: Vec<ClusterPolicy> = ctx
        .cluster
        .cluster_policies()
        .iter()
        .filter(|p| p.name != policy.name)
        .cloned()
        .collect();
    policies.push(policy.clone());
    let cluster = ctx.cluster.clone().with_cluster_policies(policies);
    let ctx = Context {
        cluster: &cluster,
        ..*ctx
    };
    for check in [
        CheckId::Enforcement,
        CheckId::UnmatchedSelector,
        CheckId::EgressDns,
        CheckId::AdminShadowed,
        CheckId::EqualPriority,
    ] {
        let mode = config.mode(check);
        if mode == Mode::Off {
            continue;
        }
        if skip.contains(&check) {
            report.skipped.push(check);
            continue;
        }
        let issues = if !ctx.knows_pods {
            Err("no Pods are known, so the policy's subject cannot be matched".to_string())
        } else if check == CheckId::Enforcement {
            enforcement(policy, &ctx)
        } else {
            Ok(match check {
                CheckId::UnmatchedSelector => unmatched_subject(policy, &ctx),
                CheckId::EgressDns => dns(policy, &ctx),
                CheckId::AdminShadowed => shadowed(policy, &ctx),
                CheckId::EqualPriority => equal_priority(policy, &ctx),
                _ => Vec::new(),
            })
        };
        finish(&mut report, check, mode, issues);
    }
    report
}

/// `enforcement`: ready nodes where pods the policy selects run and nothing enforces
/// ClusterNetworkPolicy: its Palisade enforcer reports it does not (and why), or none reports
/// and the CNI is known not to. Nodes Palisade knows nothing certain about are left out.
fn enforcement(policy: &ClusterPolicy, ctx: &Context) -> Result<Vec<Issue>, String> {
    let Some(enf) = ctx.enforcement else {
        return Err("nothing is known about the nodes' CNI".into());
    };
    let mut pods_on: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for pod in selected(ctx.cluster, &policy.subject) {
        if let Some(node) = pod.node.as_deref() {
            pods_on.entry(node).or_default().push(pod.key());
        }
    }
    let ready: Vec<&super::NodeEnforcement> = enf
        .nodes
        .iter()
        .filter(|n| n.ready && pods_on.contains_key(n.node.as_str()))
        .collect();
    let mut open: Vec<(&super::NodeEnforcement, String)> = Vec::new();
    for n in &ready {
        if let (super::Enforced::No, Some(why)) = n.cluster_policy() {
            open.push((n, why));
        }
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    open.sort_by(|a, b| a.0.node.cmp(&b.0.node));
    let summary = format!(
        "not enforced on {} of {} ready nodes running its pods",
        open.len(),
        ready.len()
    );
    let mut detail = format!(
        "{} would be stored but not enforced on {} of {} ready nodes where pods it selects run:          traffic of those pods passes as if the policy did not exist.
Evidence:
",
        cnp(policy),
        open.len(),
        ready.len()
    );
    for (n, why) in open.iter().take(10) {
        let pods = pods_on
            .get(n.node.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        detail.push_str(&format!(
            "  node {} ({}): {why}
",
            n.node,
            list_some(pods, 3)
        ));
    }
    if open.len() > 10 {
        detail.push_str(&format!(
            "  ... and {} more nodes
",
            open.len() - 10
        ));
    }
    detail.push_str(
        "Fix: let Palisade's enforcer enforce on these nodes (it does where the CNI does not          enforce NetworkPolicy: helm upgrade palisade charts/palisade -n palisade-system          --reuse-values --set enforcer.mode=auto), or use a CNI that enforces          ClusterNetworkPolicy (Calico, Antrea); each node's reason:
  kubectl get nodeenforcement NODE -o yaml",
    );
    Ok(vec![Issue::new(summary, detail)])
}

/// `ClusterNetworkPolicy NAME`, as messages name it.
fn cnp(policy: &ClusterPolicy) -> String {
    format!("ClusterNetworkPolicy {}", policy.name)
}

fn subject_text(subject: &Subject) -> String {
    match subject {
        Subject::Namespaces(ns) => format!("namespaces {ns}"),
        Subject::Pods { namespaces, pods } => format!("pods {pods} in namespaces {namespaces}"),
    }
}

/// The pods the subject selects now (host-network pods never count).
fn selected<'a>(cluster: &'a Cluster, subject: &'a Subject) -> impl Iterator<Item = &'a Pod> + 'a {
    cluster
        .pods()
        .iter()
        .filter(move |p| cluster.subject_selects(subject, p))
}

fn unmatched_subject(policy: &ClusterPolicy, ctx: &Context) -> Vec<Issue> {
    let cluster = ctx.cluster;
    if selected(cluster, &policy.subject).next().is_some() {
        return Vec::new();
    }
    let (namespaces, pods) = match &policy.subject {
        Subject::Namespaces(ns) => (ns, None),
        Subject::Pods { namespaces, pods } => (namespaces, Some(pods)),
    };
    let in_scope: Vec<String> = cluster
        .namespaces()
        .filter(|n| namespaces.matches(&n.labels))
        .map(|n| n.name.clone())
        .collect();
    // Workloads that will create pods there count as matched (their pods are coming).
    let templates = in_scope.iter().any(|ns| {
        cluster
            .workloads_in(ns)
            .any(|w| pods.is_none_or(|p| p.matches(&w.template_labels)))
    });
    if templates {
        return Vec::new();
    }
    let (hint, what): (Hint, String) = if in_scope.is_empty() {
        let candidates: Vec<&crate::Labels> = cluster.namespaces().map(|n| &n.labels).collect();
        (
            suggest(namespaces, &candidates, &[], None, "namespace"),
            format!("no namespace matches {namespaces}"),
        )
    } else {
        match pods {
            Some(pods) => (
                suggest(pods, &pod_labels(ctx, &in_scope), &in_scope, None, "pod"),
                format!(
                    "no pod with {pods} runs in {} (namespaces matching {namespaces})",
                    list_some(&in_scope, 5)
                ),
            ),
            None => (
                Hint::plain(
                    format!("{} match but hold no pod.", list_some(&in_scope, 5)),
                    None,
                ),
                format!(
                    "the namespaces it matches ({}) hold no pod",
                    list_some(&in_scope, 5)
                ),
            ),
        }
    };
    let summary = match &hint.short {
        Some(s) => format!("subject selects no pod; {s}"),
        None => "subject selects no pod: the policy does nothing yet".to_string(),
    };
    let fix = if hint.fixed.is_some() || hint.fix.is_some() {
        hint.fix_text("", 4)
    } else {
        "Fix: select the labels the intended namespaces or pods carry (kubectl get namespaces \
         --show-labels, kubectl get pods -A --show-labels), or create the workloads first."
            .to_string()
    };
    let detail = format!(
        "{} ({}) selects no pod: {what}, so none of its rules applies to anything.\nEvidence: {}\n{fix}",
        cnp(policy),
        subject_text(&policy.subject),
        hint.evidence
    );
    vec![Issue::warning(summary, detail)]
}

/// `egress-dns`: an Admin-tier Deny of this policy cuts pods off from the cluster DNS, over
/// UDP (refused) or over TCP only (warned), as the NetworkPolicy check judges it.
fn dns(policy: &ClusterPolicy, ctx: &Context) -> Vec<Issue> {
    if policy.tier != Tier::Admin {
        return Vec::new();
    }
    let cluster = ctx.cluster;
    let resolvers: Vec<&Pod> = cluster
        .pods_in(super::dns::DNS_NAMESPACE)
        .filter(|p| p.labels.get("k8s-app").is_some_and(|v| v == "kube-dns") && p.is_peer())
        .collect();
    if resolvers.is_empty() {
        return Vec::new();
    }
    let is_resolver = |p: &Pod| {
        resolvers
            .iter()
            .any(|r| r.namespace == p.namespace && r.name == p.name)
    };
    // The pods this policy can cut off: its subject (egress), or everyone when it selects a
    // resolver (ingress).
    let guards_resolvers = !policy.ingress.is_empty()
        && resolvers
            .iter()
            .any(|r| cluster.cluster_policy_selects(policy, r));
    let mut seen = std::collections::HashSet::new();
    let clients: Vec<&Pod> = cluster
        .pods()
        .iter()
        .filter(|p| p.is_target() && !is_resolver(p))
        .filter(|p| guards_resolvers || cluster.cluster_policy_selects(policy, p))
        .filter(|p| seen.insert((&p.namespace, &p.labels)))
        .take(MAX_DNS_PODS)
        .collect();
    let denied_by_this = |d: &Decision| matches!(d, Decision::Cluster { tier: Tier::Admin, policy: p, action: Action::Deny, .. } if *p == policy.name);
    // Cut off when this policy denies every resolver, and node-local DNS too.
    let cut_off = |pod: &Pod, protocol: Protocol| -> Option<Decider> {
        let mut decider = None;
        for r in &resolvers {
            let v = cluster.evaluate(&Endpoint::Pod(pod), &Endpoint::Pod(r), 53, protocol);
            let (d, direction) = if denied_by_this(&v.egress) {
                (&v.egress, Direction::Egress)
            } else if denied_by_this(&v.ingress) {
                (&v.ingress, Direction::Ingress)
            } else {
                return None;
            };
            if decider.is_none() {
                decider = decider_of(d, direction);
            }
        }
        let local = cluster.evaluate(
            &Endpoint::Pod(pod),
            &Endpoint::External(NODE_LOCAL_DNS),
            53,
            protocol,
        );
        if local.egress.allows() {
            return None;
        }
        decider
    };
    let (mut udp, mut tcp): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut deciders = Vec::new();
    for pod in clients {
        if let Some(d) = cut_off(pod, Protocol::Udp) {
            udp.push(pod.key());
            deciders.push(d);
        } else if let Some(d) = cut_off(pod, Protocol::Tcp) {
            tcp.push(pod.key());
            deciders.push(d);
        }
    }
    deciders.sort();
    deciders.dedup();
    let evidence: Vec<String> = deciders.iter().map(Decider::describe).collect();
    let resolver_text = list_some(&resolvers.iter().map(|p| p.key()).collect::<Vec<_>>(), 3);
    let fix = format!(
        "Fix: put an Admin rule that accepts DNS before the Deny in {}, e.g.\n  egress:\n  - name: allow-dns\n    action: Accept\n    to:\n    - pods:\n        namespaceSelector:\n          matchLabels:\n            kubernetes.io/metadata.name: kube-system\n        podSelector:\n          matchLabels:\n            k8s-app: kube-dns\n    protocols:\n    - udp: {{destinationPort: {{number: 53}}}}\n    - tcp: {{destinationPort: {{number: 53}}}}\n(or the same as an ingress rule when the Deny is in ingress of the DNS pods).",
        policy.name
    );
    let mut issues = Vec::new();
    if !udp.is_empty() {
        issues.push(Issue::new(
            format!("no DNS: denies UDP 53 to kube-dns for {}", list_some(&udp, 1)),
            format!(
                "{} denies DNS: {} cannot reach the cluster DNS pods ({resolver_text}) on UDP port 53, \
                 and the Admin tier decides before any NetworkPolicy could allow it, so every name \
                 lookup from these pods will time out.\nEvidence: decided by {}.\n{fix}",
                cnp(policy),
                list_some(&udp, 5),
                list_some(&evidence, 3)
            ),
        ));
    }
    if !tcp.is_empty() {
        issues.push(Issue::warning(
            format!(
                "DNS over TCP denied for {}; answers too large for UDP fail",
                list_some(&tcp, 1)
            ),
            format!(
                "{}: {} may send DNS over UDP but not over TCP port 53 to the cluster DNS pods \
                 ({resolver_text}); answers too large for UDP are retried over TCP and will fail.\n\
                 Evidence: decided by {}.\n{fix}",
                cnp(policy),
                list_some(&tcp, 5),
                list_some(&evidence, 3)
            ),
        ));
    }
    issues
}

fn decider_of(d: &Decision, direction: Direction) -> Option<Decider> {
    match d {
        Decision::Cluster {
            policy,
            priority,
            rule,
            rule_name,
            action,
            ..
        } => Some(Decider {
            policy: policy.clone(),
            priority: *priority,
            direction,
            rule: *rule,
            rule_name: rule_name.clone(),
            action: *action,
        }),
        _ => None,
    }
}

/// `admin-shadowed`, from the ClusterNetworkPolicy's side: the NetworkPolicy rules it leaves
/// with nothing to decide. Always a warning: those policies belong to others, and are not
/// wrong on their own.
fn shadowed(policy: &ClusterPolicy, ctx: &Context) -> Vec<Issue> {
    if policy.tier != Tier::Admin {
        return Vec::new();
    }
    let cluster = ctx.cluster;
    let mut found: Vec<(String, Vec<Decider>)> = Vec::new();
    let mut examined = 0usize;
    let mut complete = true;
    'policies: for np in cluster.policies() {
        let touches = cluster
            .pods_in(&np.namespace)
            .any(|p| Cluster::selects(np, p) && cluster.cluster_policy_selects(policy, p));
        if !touches {
            continue;
        }
        for (direction, r, rule) in np.all_rules() {
            if policy.rules(direction).is_empty() {
                continue;
            }
            examined += 1;
            if examined > MAX_RULES_EXAMINED || found.len() >= MAX_SHADOWED_COUNTED {
                complete = false;
                break 'policies;
            }
            if let Some(deciders) = shadow(cluster, np, direction, rule) {
                let ours: Vec<Decider> = deciders
                    .into_iter()
                    .filter(|d| d.policy == policy.name)
                    .collect();
                if !ours.is_empty() {
                    found.push((
                        format!("{}/{} {direction}[{r}]", np.namespace, np.name),
                        ours,
                    ));
                }
            }
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let n = found.len();
    let places: Vec<String> = found.iter().map(|(p, _)| p.clone()).collect();
    let mut deciders: Vec<Decider> = found.into_iter().flat_map(|(_, d)| d).collect();
    deciders.sort();
    deciders.dedup();
    let denies = deciders.iter().any(|d| d.action == Action::Deny);
    let at_least = if complete { "" } else { "at least " };
    let rules = if n == 1 { "rule" } else { "rules" };
    let summary = format!(
        "shadows {at_least}{n} NetworkPolicy {rules}: {}",
        list_some(&places, 1)
    );
    let evidence: Vec<String> = deciders.iter().map(Decider::describe).collect();
    let detail = format!(
        "{} decides, in the Admin tier, all the traffic that {at_least}{n} NetworkPolicy {rules} \
         allow{}, so {} never decide anything: {}.\nEvidence: {}.\n{}",
        cnp(policy),
        if n == 1 { "s" } else { "" },
        if n == 1 { "it" } else { "they" },
        list_some(&places, MAX_SHADOWED),
        list_some(&evidence, 3),
        if denies {
            "Fix: if that traffic must flow, add an Admin rule `action: Pass` for it above the Deny \
             (NetworkPolicy then decides); tell the owners of those policies otherwise."
        } else {
            "Fix: nothing is blocked; if those policies should decide, make the rule `action: \
             Pass` instead of Accept."
        }
    );
    vec![Issue::warning(summary, detail)]
}

/// `equal-priority`: another policy of the same tier with the same priority selects some of
/// the same pods. Upstream leaves their order undefined; Palisade orders them by name.
fn equal_priority(policy: &ClusterPolicy, ctx: &Context) -> Vec<Issue> {
    let cluster = ctx.cluster;
    let mut issues = Vec::new();
    for other in cluster.cluster_policies() {
        if other.name == policy.name
            || other.tier != policy.tier
            || other.priority != policy.priority
        {
            continue;
        }
        let both: Vec<String> = selected(cluster, &policy.subject)
            .filter(|p| cluster.cluster_policy_selects(other, p))
            .map(Pod::key)
            .collect();
        if both.is_empty() {
            continue;
        }
        let (first, second) = if policy.name < other.name {
            (&policy.name, &other.name)
        } else {
            (&other.name, &policy.name)
        };
        issues.push(Issue::warning(
            format!(
                "same {} priority {} as {}; Palisade runs {first} first",
                policy.tier, policy.priority, other.name
            ),
            format!(
                "{} and ClusterNetworkPolicy {} are both {} tier with priority {} and both select \
                 {}: which one decides their shared traffic is undefined upstream. Palisade \
                 evaluates equal priorities by name ({first} before {second}); other \
                 implementations may choose either, and may change their choice.\nFix: give \
                 them different priorities (lower comes first).",
                cnp(policy),
                other.name,
                policy.tier,
                policy.priority,
                list_some(&both, 3)
            ),
        ));
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Severity;
    use crate::checks::admin_shadow::tests::{
        cluster, cnp, from_ns, metrics_policy, ns_sel, rule, sel,
    };
    use crate::cluster_policy::{ClusterPeer, ClusterPort};

    fn review(c: &Cluster, policy: &ClusterPolicy, check: CheckId) -> Vec<super::super::Finding> {
        let ctx = Context {
            cluster: c,
            enforcement: None,
            knows_pods: true,
            knows_namespaces: true,
        };
        run_cluster_policy(policy, &BTreeMap::new(), &ctx, &CheckConfig::default())
            .findings
            .into_iter()
            .filter(|f| f.check == check)
            .collect()
    }

    /// A new Admin Deny that leaves an existing NetworkPolicy rule nothing to decide: a
    /// warning naming the rule (the ClusterNetworkPolicy is not wrong; the rule is now moot).
    #[test]
    fn a_cluster_policy_that_shadows_network_policy_rules_is_warned_about_naming_them() {
        let c = cluster(vec![], vec![metrics_policy()]);
        let deny = cnp(
            "no-monitoring",
            10,
            vec![rule(Action::Deny, from_ns("monitoring"), None)],
            vec![],
        );
        let found = review(&c, &deny, CheckId::AdminShadowed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Warn);
        assert_eq!(
            found[0].summary,
            "shadows 1 NetworkPolicy rule: shop/metrics ingress[0]"
        );
        assert!(
            found[0]
                .message
                .contains("add an Admin rule `action: Pass`"),
            "{}",
            found[0].message
        );
        // Deny of other traffic: nothing.
        let other = cnp(
            "no-shop",
            10,
            vec![rule(Action::Deny, from_ns("shop"), None)],
            vec![],
        );
        assert_eq!(review(&c, &other, CheckId::AdminShadowed), vec![]);
    }

    /// An Admin Deny of all egress cuts the selected pods off from DNS: refused as egress-dns
    /// refuses a NetworkPolicy without DNS; an Accept of DNS above it settles it.
    #[test]
    fn an_admin_deny_of_dns_is_refused_unless_dns_is_accepted_first() {
        let c = cluster(vec![], vec![]);
        let everything = vec![ClusterPeer::Networks(vec!["0.0.0.0/0".parse().unwrap()])];
        let mut lockdown = cnp(
            "lockdown",
            10,
            vec![],
            vec![rule(Action::Deny, everything.clone(), None)],
        );
        lockdown.subject = Subject::Namespaces(ns_sel("shop"));
        let found = review(&c, &lockdown, CheckId::EgressDns);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Deny);
        assert_eq!(
            found[0].summary,
            "no DNS: denies UDP 53 to kube-dns for shop/api-1 and 1 more"
        );
        assert!(
            found[0].message.starts_with(
                "ClusterNetworkPolicy lockdown denies DNS: shop/api-1, shop/web-1 cannot reach the cluster DNS pods (kube-system/coredns-1) on UDP port 53"
            ),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .message
                .contains("egress rule 0 \"deny-rule\": Deny"),
            "{}",
            found[0].message
        );
        let dns = |protocol| ClusterPort::Ports {
            protocol,
            first: 53,
            last: 53,
        };
        let mut fixed = lockdown.clone();
        fixed.egress.insert(
            0,
            rule(
                Action::Accept,
                vec![ClusterPeer::Pods {
                    namespaces: ns_sel("kube-system"),
                    pods: sel(&[("k8s-app", "kube-dns")]),
                }],
                Some(vec![dns(Protocol::Udp), dns(Protocol::Tcp)]),
            ),
        );
        assert_eq!(review(&c, &fixed, CheckId::EgressDns), vec![]);
        // UDP only: a warning about TCP.
        let mut udp_only = lockdown.clone();
        udp_only.egress[0] = rule(Action::Deny, everything, Some(vec![dns(Protocol::Tcp)]));
        let found = review(&c, &udp_only, CheckId::EgressDns);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Warn);
        assert!(
            found[0]
                .summary
                .starts_with("DNS over TCP denied for shop/api-1"),
            "{}",
            found[0].summary
        );
    }

    /// A subject that selects no pod: a warning, with a respelling only where a close label
    /// exists.
    #[test]
    fn a_subject_selecting_no_pod_is_warned_about_with_a_true_suggestion() {
        let c = cluster(vec![], vec![]);
        let mut typo = cnp("shop-guard", 10, vec![], vec![]);
        typo.subject = Subject::Namespaces(sel(&[("team", "shopp")]));
        let found = review(&c, &typo, CheckId::UnmatchedSelector);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Warn);
        assert_eq!(
            found[0].summary,
            "subject selects no pod; did you mean team=shop?"
        );
        assert!(
            found[0].message.starts_with(
                "ClusterNetworkPolicy shop-guard (namespaces team=shopp) selects no pod: no namespace matches team=shopp"
            ),
            "{}",
            found[0].message
        );
        let mut far = typo.clone();
        far.subject = Subject::Pods {
            namespaces: ns_sel("shop"),
            pods: sel(&[("app", "database")]),
        };
        let found = review(&c, &far, CheckId::UnmatchedSelector);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            !found[0].message.contains("did you mean"),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .message
                .contains("no pod with app=database runs in shop"),
            "{}",
            found[0].message
        );
        let mut right = typo;
        right.subject = Subject::Namespaces(sel(&[("team", "shop")]));
        assert_eq!(review(&c, &right, CheckId::UnmatchedSelector), vec![]);
    }

    /// Nodes where pods of the subject run and ClusterNetworkPolicy is not enforced (their
    /// enforcer says so, or the CNI is known not to and no enforcer says otherwise): refused,
    /// naming each with its reason. Nodes that enforce it, or whose CNI does, are fine.
    #[test]
    fn nodes_that_do_not_enforce_cluster_network_policy_are_named() {
        use crate::checks::admin_shadow::tests::{labels, pod};
        use crate::checks::{ClusterPolicyEnforcement, Enforcement, NodeEnforcement};
        let on = |mut p: Pod, node: &str| {
            p.node = Some(node.into());
            p
        };
        let c = Cluster::new(
            [crate::Namespace::new("shop", labels(&[("team", "shop")]))],
            vec![
                on(pod("shop", "a", "api", "10.0.0.1"), "n1"),
                on(pod("shop", "b", "api", "10.0.0.2"), "n2"),
                on(pod("shop", "c", "api", "10.0.0.3"), "n3"),
                on(pod("shop", "d", "api", "10.0.0.4"), "n4"),
            ],
            vec![],
            vec![],
        );
        let node = |name: &str, cni: &str, reported: Option<(bool, &str)>| NodeEnforcement {
            node: name.into(),
            ready: true,
            cni: Some(cni.into()),
            cni_enforces: Some(cni != "flannel"),
            cluster_policies: reported.map(|(enforced, reason)| ClusterPolicyEnforcement {
                not_enforced_count: 0,
                not_enforced: Vec::new(),
                enforced,
                reason: reason.into(),
            }),
            ..Default::default()
        };
        let enforcement = Enforcement {
            nodes: vec![
                node("n1", "flannel", Some((true, "enforced with NetworkPolicy"))),
                node(
                    "n2",
                    "cilium",
                    Some((
                        false,
                        "cilium enforces NetworkPolicy but not ClusterNetworkPolicy",
                    )),
                ),
                node("n3", "calico", None),
                node("n4", "flannel", None),
            ],
        };
        let ctx = Context {
            cluster: &c,
            enforcement: Some(&enforcement),
            knows_pods: true,
            knows_namespaces: true,
        };
        let policy = cnp(
            "guard",
            10,
            vec![rule(Action::Deny, from_ns("monitoring"), None)],
            vec![],
        );
        let found: Vec<_> =
            run_cluster_policy(&policy, &BTreeMap::new(), &ctx, &CheckConfig::default())
                .findings
                .into_iter()
                .filter(|f| f.check == CheckId::Enforcement)
                .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Deny);
        assert_eq!(
            found[0].summary,
            "not enforced on 2 of 4 ready nodes running its pods"
        );
        assert!(
            found[0].message.contains(
                "  node n2 (shop/b): its Palisade enforcer: cilium enforces NetworkPolicy but not ClusterNetworkPolicy\n  \
                 node n4 (shop/d): CNI flannel does not enforce ClusterNetworkPolicy, and no Palisade enforcer there reports enforcing it\n"
            ),
            "{}",
            found[0].message
        );
    }

    /// Two Admin policies with the same priority over the same pods: a warning that says
    /// Palisade's order and that others may differ. Different pods or tiers: nothing.
    #[test]
    fn equal_priorities_over_the_same_pods_are_warned_about() {
        let existing = cnp(
            "b-existing",
            10,
            vec![rule(Action::Deny, from_ns("monitoring"), None)],
            vec![],
        );
        let c = cluster(vec![existing], vec![]);
        let new = cnp(
            "a-new",
            10,
            vec![rule(Action::Accept, from_ns("monitoring"), None)],
            vec![],
        );
        let found = review(&c, &new, CheckId::EqualPriority);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].summary,
            "same Admin priority 10 as b-existing; Palisade runs a-new first"
        );
        assert!(
            found[0].message.contains("Palisade evaluates equal priorities by name (a-new before b-existing); other implementations may choose either"),
            "{}",
            found[0].message
        );
        let mut elsewhere = new.clone();
        elsewhere.subject = Subject::Namespaces(ns_sel("nowhere"));
        assert_eq!(review(&c, &elsewhere, CheckId::EqualPriority), vec![]);
        let mut later = new;
        later.priority = 11;
        assert_eq!(review(&c, &later, CheckId::EqualPriority), vec![]);
    }
}
