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
    let inputs = inputs(&format!("{WORLD}\n---\n{policies}"));
    let c = cluster(&inputs);
    let ctx = Context {
        cluster: &c,
        enforcement,
        knows_pods: true,
        knows_namespaces: true,
    };
    let policy = &inputs.policies.last().expect("a policy").policy;
    checks::run(policy, &ctx, config)
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
            },
            NodeEnforcement {
                node: "node-2".into(),
                ready: true,
                cni: Some("calico".into()),
                cni_enforces: Some(true),
                enforcer_active: false,
            },
            NodeEnforcement {
                node: "node-3".into(),
                ready: false,
                cni: Some("flannel".into()),
                cni_enforces: Some(false),
                enforcer_active: false,
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
        "nothing enforces NetworkPolicy on 1 of 2 ready nodes (CNI flannel, no Palisade enforcer)"
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
    let unknown = review(GOOD_BACKEND);
    assert_eq!(unknown.not_evaluated[0].0, CheckId::Enforcement);
}

#[test]
fn unmatched_pod_selector_suggests_the_labels_that_exist() {
    let r = review(include_str!("fixtures/tutorial/typo-labels.yaml"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "podSelector app=backend matches no pod in production (no pod has app=backend; 1 pod has app=api)"
    );
    assert_eq!(
        f[0].message,
        "NetworkPolicy production/backend-ingress selects no pod: its podSelector app=backend matches no pod and \
         no workload pod template in namespace production, so the policy protects nothing.\n\
         Evidence: no pod has app=backend; 1 pod has app=api, 1 pod has app=frontend, 1 pod has app=database.\n\
         Fix: select the labels that exist, e.g.\n  spec:\n    podSelector:\n      matchLabels:\n        app: api\n\
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
        "ingress[0].from[0]: no namespace has name=ingress-nginx; 1 namespace has kubernetes.io/metadata.name=ingress-nginx"
    );
    assert!(f[0].message.contains(
        "Fix: select the labels that exist, e.g.\n  - namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: ingress-nginx\n"
    ));
}

#[test]
fn a_lone_pod_selector_for_pods_of_another_namespace_gets_the_namespace_fix() {
    let r = review(include_str!("fixtures/tutorial/and-or-confusion.yaml"));
    let f = only(&r, CheckId::UnmatchedSelector);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].summary,
        "ingress[0].from[1]: podSelector app=prometheus looks only in production; the matching pods are in monitoring"
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
        "egress lockdown without DNS: production/frontend cannot resolve names (allow UDP+TCP 53 to kube-dns)"
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
        "DNS over TCP blocked for production/frontend: large answers will fail (allow TCP 53 too)"
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
        "ingress[0].from: namespaceSelector and podSelector are separate items (OR); one item means AND"
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
        "ingress[0]: named port http/TCP is declared by none of the pods this policy selects"
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
        "egress[0] is one-sided: the destination's ingress still blocks production/backend -> production/database:5432/TCP"
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
