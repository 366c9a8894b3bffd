//! Each check firing and not firing, with the exact text users read.

mod common;

use common::{cluster, inputs};
use palisade_policy::checks::{
    self, CheckConfig, CheckId, Context, Enforcement, Mode, NodeEnforcement, Report, Severity,
};

const WORLD: &str = include_str!("fixtures/tutorial/world.yaml");

/// Runs the checks on the last policy of `policies`, in the tutorial world.
fn review(policies: &str) -> Report {
    review_with(policies, None, &CheckConfig::default())
}

fn review_with(policies: &str, enforcement: Option<&Enforcement>, config: &CheckConfig) -> Report {
    common::review_last(&format!("{WORLD}\n---\n{policies}"), enforcement, config)
}

fn only(report: &Report, check: CheckId) -> Vec<&checks::Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.check == check)
        .collect()
}

const GOOD_BACKEND: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend, namespace: production}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: 8080}]
"#;

#[test]
fn a_correct_policy_has_no_findings() {
    let r = review(GOOD_BACKEND);
    assert_eq!(r.findings, vec![]);
    assert!(!r.denied());
}

#[test]
fn enforcement_fires_when_a_ready_node_has_a_non_enforcing_cni_and_no_enforcer() {
    let nodes = |enforcer_active| Enforcement {
        nodes: vec![
            NodeEnforcement {
                node: "node-1".into(),
                ready: true,
                cni: Some("flannel".into()),
                cni_enforces: Some(false),
                enforcer_active,
                enforcer_silent_secs: None,
                enforced_families: vec![],
                cluster_policies: None,
            },
            NodeEnforcement {
                node: "node-2".into(),
                ready: true,
                cni: Some("calico".into()),
                cni_enforces: Some(true),
                enforcer_active: false,
                enforcer_silent_secs: None,
                enforced_families: vec![],
                cluster_policies: None,
            },
            NodeEnforcement {
                node: "node-3".into(),
                ready: false,
                cni: Some("flannel".into()),
                cni_enforces: Some(false),
                enforcer_active: false,
                enforcer_silent_secs: None,
                enforced_families: vec![],
                cluster_policies: None,
            },
        ],
    };
    let open = nodes(false);
    let r = review_with(GOOD_BACKEND, Some(&open), &CheckConfig::default());
    let f = only(&r, CheckId::Enforcement);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Deny);
    assert_eq!(
        f[0].summary,
        "not enforced on 1 of 2 ready nodes (CNI flannel, no Palisade enforcer)"
    );
    assert_eq!(
        f[0].message,
        "NetworkPolicy production/backend would be stored but not enforced: on 1 of 2 ready nodes the CNI ignores \
         NetworkPolicy and no Palisade enforcer is active, so pods there stay reachable by everyone.\n\
         Evidence:\n  node node-1: CNI flannel (does not enforce NetworkPolicy), Palisade enforcer: not active\n\
         Fix: run Palisade's enforcer on these nodes:\n  helm upgrade palisade charts/palisade -n palisade-system \
         --reuse-values --set enforcer.mode=auto\nor move the cluster to a CNI that enforces NetworkPolicy (Calico, \
         Cilium, Antrea).\nTo accept this policy anyway, annotate it palisade.dev/skip-checks: \"enforcement\"."
    );

    let covered = nodes(true);
    assert_eq!(
        only(
            &review_with(GOOD_BACKEND, Some(&covered), &CheckConfig::default()),
            CheckId::Enforcement
        )
        .len(),
        0
    );
    // An enforcer whose status went stale is not counted, and the refusal says so.
    let mut silent = nodes(false);
    silent.nodes[0].enforcer_silent_secs = Some(720);
    let r = review_with(GOOD_BACKEND, Some(&silent), &CheckConfig::default());
    let f = only(&r, CheckId::Enforcement);
    assert_eq!(
        f[0].summary,
        "not enforced on 1 of 2 ready nodes (CNI flannel, Palisade enforcer silent)"
    );
    assert!(
        f[0].message.contains(
            "  node node-1: CNI flannel (does not enforce NetworkPolicy), Palisade enforcer: silent: its last \
             status is 12m old, older than 90s, so it is not counted as enforcing (it may have stopped, or \
             cannot reach the API server)\n\
             Fix: see why the enforcer there stopped reporting (its pod's state and log):\n  \
             kubectl get pods -A -l app.kubernetes.io/component=enforcer -o wide\n"
        ),
        "{}",
        f[0].message
    );
    let unknown = review(GOOD_BACKEND);
    assert_eq!(unknown.not_evaluated[0].0, CheckId::Enforcement);
}

#[test]
fn unmatched_pod_selector_lists_the_labels_that_exist() {
    let r = review(include_str!("fixtures/tutorial/typo-labels.yaml"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "podSelector app=backend matches no pod; nothing close; app=api serves 8080/TCP"
    );
    // Nothing is spelled like app=backend: which pods serve the port the policy allows is
    // evidence, not a label to paste; the fix names them and leaves the choice to the user.
    assert_eq!(
        f[0].message,
        "NetworkPolicy production/backend-ingress selects no pod: its podSelector app=backend matches no pod and \
         no workload pod template in namespace production, so the policy protects nothing.\n\
         Evidence: no pod has app=backend, nor a value spelled like it; 1 pod has app=api, 1 pod has app=database, \
         1 pod has app=frontend. Of these, only app=api serves 8080/TCP, which this policy allows.\n\
         Fix: select the labels of the pods this policy is for. The pods serving 8080/TCP, which this policy \
         allows, carry app=api: if it is for them, select that label (not offered to paste: it is not spelled \
         like app=backend, so it may name other pods than the ones meant). Otherwise see kubectl get pods \
         --show-labels, or create the workload first.\n\
         To accept this policy anyway, annotate it palisade.dev/skip-checks: \"unmatched-selector\"."
    );
}

#[test]
fn a_workload_template_counts_as_a_match() {
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: payments, namespace: production}
spec:
  selector: {matchLabels: {app: payments}}
  template:
    metadata: {labels: {app: payments}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: payments, namespace: production}
spec:
  podSelector: {matchLabels: {app: payments}}
  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}]}]
"#;
    assert_eq!(
        only(&review(deployment), CheckId::UnmatchedSelector).len(),
        0
    );
}

#[test]
fn namespace_selector_on_a_name_label_points_at_the_metadata_name_label() {
    let r = review(include_str!("fixtures/tutorial/namespace-name-label.yaml"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "ingress[0].from[0]: use kubernetes.io/metadata.name, not name"
    );
    assert!(f[0].message.contains(
        "Fix: select the label that exists, kubernetes.io/metadata.name=ingress-nginx:\n  - namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: ingress-nginx\n"
    ), "{}", f[0].message);
}

#[test]
fn a_lone_pod_selector_for_pods_of_another_namespace_gets_the_namespace_fix() {
    let r = review(include_str!("fixtures/tutorial/and-or-confusion.yaml"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "ingress[0].from[1]: app=prometheus pods are only in namespace monitoring"
    );
    assert!(f[0].message.contains(
        "  from:\n  - namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: monitoring\n    podSelector:\n      matchLabels:\n        app: prometheus\n"
    ));
}

#[test]
fn egress_lockdown_without_dns_is_denied_with_the_dns_rule_as_fix() {
    let r = review(include_str!("fixtures/tutorial/egress-without-dns.yaml"));
    let f = only(&r, CheckId::EgressDns);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Deny);
    assert_eq!(
        f[0].summary,
        "no DNS: frontend cannot resolve names; allow UDP+TCP 53 to kube-dns"
    );
    assert!(f[0].message.starts_with(
        "NetworkPolicy production/frontend-egress isolates egress of production/frontend and nothing allows DNS: \
         every name lookup from these pods will time out.\nEvidence: no egress rule of production/frontend-egress, \
         nor of another policy selecting these pods, allows UDP port 53 to the cluster DNS pods (kube-system/coredns) \
         or to a node-local DNS cache.\nFix: allow DNS to the cluster resolver"
    ));
}

fn egress_with(extra_rule: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: lockdown, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: frontend}}}}\n  policyTypes: [Egress]\n  egress:\n{extra_rule}"
    )
}

#[test]
fn the_usual_dns_allowances_are_recognised() {
    let forms = [
        // port-only rule
        "  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n",
        // kube-dns pods through namespace + pod selector
        "  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]\n    ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n",
        // a node-local cache by address
        "  - to: [{ipBlock: {cidr: 169.254.20.10/32}}]\n    ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n",
        // everything
        "  - {}\n",
    ];
    for form in forms {
        let r = review(&egress_with(form));
        assert_eq!(
            only(&r, CheckId::EgressDns),
            Vec::<&checks::Finding>::new(),
            "form: {form}"
        );
    }
}

#[test]
fn dns_allowed_by_another_policy_for_the_same_pods_counts() {
    let other = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: dns, namespace: production}\n\
                 spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n---\n";
    let r = review(&format!(
        "{other}{}",
        include_str!("fixtures/tutorial/egress-without-dns.yaml")
    ));
    assert_eq!(only(&r, CheckId::EgressDns).len(), 0);
}

#[test]
fn dns_over_udp_only_is_a_warning() {
    let r = review(&egress_with("  - ports: [{port: 53, protocol: UDP}]\n"));
    let f = only(&r, CheckId::EgressDns);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warn);
    assert_eq!(
        f[0].summary,
        "DNS over TCP blocked for frontend: large answers will fail; allow TCP 53 too"
    );
}

#[test]
fn peer_and_or_warns_on_a_lone_namespace_selector_next_to_a_lone_pod_selector() {
    let r = review(include_str!("fixtures/tutorial/and-or-confusion.yaml"));
    let f = only(&r, CheckId::PeerAndOr);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warn);
    assert_eq!(
        f[0].summary,
        "ingress[0].from: namespaceSelector OR podSelector (2 items); AND is one item"
    );
    assert!(f[0].summary.len() < 120);
    // The same selectors in one item: no warning.
    let and = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: m, namespace: production}\n\
               spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {purpose: monitoring}}\n      podSelector: {matchLabels: {app: prometheus}}\n";
    assert_eq!(only(&review(and), CheckId::PeerAndOr).len(), 0);
}

#[test]
fn named_port_warns_when_no_selected_pod_declares_it() {
    let policy = |port: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: production}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n  - ports: [{{port: {port}}}]\n"
        )
    };
    let r = review(&policy("http"));
    let f = only(&r, CheckId::NamedPort);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "ingress[0]: port name http/TCP is declared by none of the selected pods"
    );
    assert!(
        f[0].message.contains(
            "Evidence: the ports they declare are http-api (8080/TCP), metrics (9090/TCP)."
        )
    );
    assert_eq!(
        only(&review(&policy("http-api")), CheckId::NamedPort).len(),
        0
    );
}

#[test]
fn one_sided_warns_when_the_other_side_blocks() {
    let deny_db = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-closed, namespace: production}\n\
                   spec:\n  podSelector: {matchLabels: {app: database}}\n  ingress: []\n---\n";
    let egress = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api-out, namespace: production}\n\
                  spec:\n  podSelector: {matchLabels: {app: api}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: database}}}]\n    ports: [{port: 5432}]\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n";
    let r = review(&format!("{deny_db}{egress}"));
    let f = only(&r, CheckId::OneSided);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "egress[0] is one-sided: database ingress blocks backend -> database:5432/TCP"
    );
    assert!(f[0].message.contains(
        "  production/backend -> production/database on 5432/TCP: production/database ingress is isolated by production/db-closed and none of its rules allows it"
    ));
    // Without the closed database, the egress rule is effective.
    assert_eq!(only(&review(egress), CheckId::OneSided).len(), 0);
}

#[test]
fn skip_annotation_turns_named_checks_off_and_says_so() {
    let typo = include_str!("fixtures/tutorial/typo-labels.yaml")
        .replace("metadata: {name: backend-ingress, namespace: production}", "metadata: {name: backend-ingress, namespace: production, annotations: {palisade.dev/skip-checks: \"unmatched-selector, named-port\"}}");
    let r = review(&typo);
    assert_eq!(r.findings, vec![]);
    assert_eq!(
        r.skipped,
        vec![CheckId::UnmatchedSelector, CheckId::NamedPort]
    );
}

#[test]
fn modes_downgrade_or_turn_off_checks() {
    let warn = CheckConfig {
        modes: [(CheckId::EgressDns, Mode::Warn)].into(),
    };
    let r = review_with(
        include_str!("fixtures/tutorial/egress-without-dns.yaml"),
        None,
        &warn,
    );
    assert!(!r.denied());
    assert_eq!(only(&r, CheckId::EgressDns)[0].severity, Severity::Warn);
    assert!(
        !only(&r, CheckId::EgressDns)[0]
            .message
            .contains("To accept this policy anyway")
    );
    let off = CheckConfig {
        modes: [(CheckId::EgressDns, Mode::Off)].into(),
    };
    assert_eq!(
        review_with(
            include_str!("fixtures/tutorial/egress-without-dns.yaml"),
            None,
            &off
        )
        .findings,
        vec![]
    );
}

#[test]
fn every_summary_fits_one_kubectl_warning_line() {
    for f in [
        "typo-labels",
        "and-or-confusion",
        "egress-without-dns",
        "namespace-name-label",
    ] {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/tutorial/{f}.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for finding in review(&text).findings {
            assert!(
                finding.summary.chars().count() < 120,
                "{f}: {}",
                finding.summary
            );
            assert!(!finding.summary.contains('\n'));
        }
    }
}

/// Pods beyond the tutorial world: a cart in production, a gateway in namespace edge.
const MORE_PODS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: edge}\n---\n\
    apiVersion: v1\nkind: Pod\nmetadata: {name: gateway, namespace: edge, labels: {app: gateway}}\n\
    spec: {containers: [{name: c, image: i, ports: [{containerPort: 8443}]}]}\nstatus: {phase: Running, podIP: 10.0.4.10}\n---\n\
    apiVersion: v1\nkind: Pod\nmetadata: {name: cart, namespace: production, labels: {app: cart}}\n\
    spec: {containers: [{name: c, image: i, ports: [{containerPort: 8443}]}]}\nstatus: {phase: Running, podIP: 10.0.1.13}\n---\n";

fn selecting(app: &str) -> String {
    format!(
        "{MORE_PODS}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  ingress:\n  - ports: [{{port: 8443}}]\n"
    )
}

#[test]
fn a_far_value_gets_no_fix_to_paste_but_the_list_of_what_exists() {
    // Only app=cart serves the port here: evidence, but no correction to paste.
    let r = review(&selecting("invoicing-legacy"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "podSelector app=invoicing-legacy matches no pod; nothing close; app=cart serves 8443/TCP"
    );
    assert_eq!(
        f[0].message,
        "NetworkPolicy production/np selects no pod: its podSelector app=invoicing-legacy matches no pod and no \
         workload pod template in namespace production, so the policy protects nothing.\n\
         Evidence: no pod has app=invoicing-legacy, nor a value spelled like it; 1 pod has app=api, 1 pod has \
         app=cart, 1 pod has app=database, 1 pod has app=frontend. Of these, only app=cart serves 8443/TCP, which \
         this policy allows.\n\
         Fix: select the labels of the pods this policy is for. The pods serving 8443/TCP, which this policy \
         allows, carry app=cart: if it is for them, select that label (not offered to paste: it is not spelled \
         like app=invoicing-legacy, so it may name other pods than the ones meant). Otherwise see kubectl get \
         pods --show-labels, or create the workload first.\n\
         To accept this policy anyway, annotate it palisade.dev/skip-checks: \"unmatched-selector\"."
    );
    assert!(!f[0].message.contains("matchLabels"));
}

#[test]
fn a_close_value_in_another_namespace_is_named_with_where_it_lives() {
    // app=cart serves the port here, but app=gateway is one letter away, in namespace edge.
    let r = review(&selecting("gatway"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "podSelector app=gatway matches no pod; app=gateway runs in namespace edge"
    );
    assert!(
        f[0].message.contains(
            "Pods with app=gateway run in namespace edge.\nFix: a NetworkPolicy selects pods of its own namespace \
             only; if you meant the pods with app=gateway, create the policy in namespace edge:\n  metadata:\n    \
             namespace: edge\n  spec:\n    podSelector:\n      matchLabels:\n        app: gateway\n"
        ),
        "{}",
        f[0].message
    );
    assert!(!f[0].message.contains("app: cart"), "{}", f[0].message);
}

#[test]
fn a_close_value_in_scope_is_offered_as_the_correction() {
    let r = review(&selecting("fronted"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(
        f[0].summary,
        "podSelector app=fronted matches no pod; did you mean app=frontend?"
    );
    assert!(f[0].message.contains(
        "Fix: did you mean app=frontend? Select it:\n  spec:\n    podSelector:\n      matchLabels:\n        app: frontend\n"
    ));
    // A peer without namespaceSelector, respelled into another namespace: both corrections.
    let peer = format!(
        "{MORE_PODS}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: gatway}}}}}}]\n"
    );
    let r = review(&peer);
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(
        f[0].summary,
        "ingress[0].from[0]: podSelector app=gatway matches no pod; app=gateway runs in namespace edge"
    );
    assert!(f[0].message.contains(
        "but 1 pod runs with app=gateway, spelled close to it, in namespace edge.\nFix: if you meant those, correct \
         the label and name the namespace in the same peer item (no dash before podSelector):\n  from:\n  \
         - namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: edge\n    podSelector:\n      \
         matchLabels:\n        app: gateway\n"
    ), "{}", f[0].message);
}

/// A policy for app=api whose `n` ingress rules all name the same misspelt peer.
fn copied_typo(n: usize) -> String {
    let rules: String = (0..n)
        .map(|i| format!("  - from: [{{podSelector: {{matchLabels: {{app: frontnd}}}}}}]\n    ports: [{{port: {}}}]\n", 8000 + i))
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: api, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n{rules}"
    )
}

#[test]
fn one_typo_copied_into_many_rules_is_one_finding_naming_the_rules() {
    let r = review(&copied_typo(12));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "ingress[0].from[0] (+11 alike): podSelector app=frontnd matches no pod; did you mean app=frontend?"
    );
    assert!(f[0].message.starts_with(
        "NetworkPolicy production/api ingress[0].from[0], ingress[1].from[0], ingress[2].from[0], ingress[3].from[0], \
         ingress[4].from[0], ingress[5].from[0] and 6 more (12 places): podSelector app=frontnd matches no pod"
    ), "{}", f[0].message);
    assert_eq!(f[0].message.lines().count(), 8, "{}", f[0].message);
    // A thousand copies read the same.
    let r = review(&copied_typo(1000));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("and 994 more (1000 places)"));
    assert_eq!(f[0].message.lines().count(), 8);
}

#[test]
fn an_egress_lockdown_without_dns_and_without_known_pods_gets_one_finding() {
    let inputs = common::inputs(include_str!("fixtures/tutorial/egress-without-dns.yaml"));
    let c = cluster(&inputs);
    let ctx = Context {
        cluster: &c,
        enforcement: None,
        knows_pods: false,
        knows_namespaces: false,
    };
    let r = checks::run(&inputs.policies[0].policy, &ctx, &CheckConfig::default());
    let f = only(&r, CheckId::EgressDns);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Deny);
    assert_eq!(
        f[0].summary,
        "no DNS: pods app=frontend cannot resolve names; allow UDP+TCP 53 to kube-dns"
    );
    assert!(!f[0].message.contains("over TCP"));
}

const CALICO_EGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
    metadata: {name: frontend-out, namespace: production}\nspec:\n  podSelector: {matchLabels: {app: frontend}}\n  \
    egress:\n  - to: [{podSelector: {matchLabels: {app: api}}}]\n    ports: [{port: 8080}]\n  \
    - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n";

#[test]
fn egress_rules_without_policy_types_warn_that_ingress_is_denied_too() {
    let r = review(CALICO_EGRESS);
    let f = only(&r, CheckId::ImplicitIngress);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warn);
    assert_eq!(
        f[0].summary,
        "no policyTypes: ingress to frontend is denied too; write policyTypes: [Egress]"
    );
    assert_eq!(
        f[0].message,
        "NetworkPolicy production/frontend-out has egress rules and no policyTypes, so Kubernetes sets policyTypes \
         to [Ingress, Egress]: having no ingress rules, it denies all ingress to frontend (in namespace production), \
         not only egress.\nFix: if only egress was meant, say so:\n  spec:\n    policyTypes: [Egress]\n\
         If denying all ingress to these pods is intended, write policyTypes: [Ingress, Egress]."
    );
    // Written types, or pods whose ingress another policy isolates already: nothing new to say.
    let written = CALICO_EGRESS.replace("  egress:\n", "  policyTypes: [Egress]\n  egress:\n");
    assert_eq!(only(&review(&written), CheckId::ImplicitIngress).len(), 0);
    let both = CALICO_EGRESS.replace(
        "  egress:\n",
        "  policyTypes: [Ingress, Egress]\n  egress:\n",
    );
    assert_eq!(only(&review(&both), CheckId::ImplicitIngress).len(), 0);
    let isolated = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: frontend}}}}\n  ingress: [{{ports: [{{port: 80}}]}}]\n---\n{CALICO_EGRESS}"
    );
    assert_eq!(only(&review(&isolated), CheckId::ImplicitIngress).len(), 0);
}

#[test]
fn a_consistent_set_is_never_one_sided_whatever_the_order_of_its_files() {
    let set = include_str!("fixtures/tutorial/three-tier.yaml");
    let mut reversed: Vec<&str> = set.split("\n---\n").collect();
    reversed.reverse();
    for policies in [set.to_string(), reversed.join("\n---\n")] {
        let inputs = inputs(&format!("{WORLD}\n---\n{policies}"));
        let c = cluster(&inputs);
        let ctx = common::context(&c, None);
        assert_eq!(inputs.policies.len(), 5);
        for p in &inputs.policies {
            let r = checks::run(&p.policy, &ctx, &CheckConfig::default());
            assert_eq!(
                only(&r, CheckId::OneSided),
                Vec::<&checks::Finding>::new(),
                "{}",
                p.policy.name
            );
        }
    }
}

#[test]
fn labels_straight_under_a_namespace_selector_are_said_to_match_every_namespace() {
    let mut inputs = palisade_policy::input::Inputs::default();
    inputs
        .add_text(
            "ns.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  \
             podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector:\n        team: shop\n",
        )
        .unwrap();
    let messages: Vec<&str> = inputs.problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "spec.ingress[0].from[0].namespaceSelector.team: unknown field `team` in \
             `spec.ingress[0].from[0].namespaceSelector`: a label selector takes labels under `matchLabels:` \
             (write `matchLabels: {team: ...}`); without it the apiserver drops the label and the selector \
             matches every namespace"
        ]
    );
}
