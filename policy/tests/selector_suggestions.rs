//! `unmatched-selector`'s suggestions: which value is offered to paste, when none is, and what
//! the port evidence adds, with the exact text users read.

mod common;

use palisade_policy::checks::{CheckConfig, CheckId, Finding};

/// Namespace `shop` (team=shop): two frontend pods of the Helm release `web` serving 8080, an
/// api serving 9000, a cart in two versions serving 7000, and orders whose old version serves
/// nothing.
const SHOP: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: frontend-1, namespace: shop, labels: {app: frontend, app.kubernetes.io/instance: web}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: frontend-2, namespace: shop, labels: {app: frontend, app.kubernetes.io/instance: web}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: api, namespace: shop, labels: {app: api}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 9000}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: cart, namespace: shop, labels: {app: cart}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 7000}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: cart-v1, namespace: shop, labels: {app: cart-v1}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 7000}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: orders, namespace: shop, labels: {app: orders}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 7100}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: orders-v1, namespace: shop, labels: {app: orders-v1}}, spec: {containers: [{name: c, image: i}]}}
";

/// The `unmatched-selector` findings of the last policy in `policies`, in the shop world.
fn findings(policies: &str) -> Vec<Finding> {
    common::review_last(
        &format!("{SHOP}---\n{policies}"),
        None,
        &CheckConfig::default(),
    )
    .findings
    .into_iter()
    .filter(|f| f.check == CheckId::UnmatchedSelector)
    .collect()
}

/// A policy for `app: <app>` allowing ingress on `port` (`None`: on every port).
fn for_app(app: &str, port: Option<u16>) -> String {
    let rule = port.map_or("{}".to_string(), |p| format!("{{ports: [{{port: {p}}}]}}"));
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: shop}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  ingress: [{rule}]\n"
    )
}

/// The one finding about `app: <app>` allowing `port`.
fn one(app: &str, port: Option<u16>) -> Finding {
    let mut f = findings(&for_app(app, port));
    assert_eq!(f.len(), 1, "{app}: {f:#?}");
    f.remove(0)
}

const PASTE_FRONTEND: &str =
    "  spec:\n    podSelector:\n      matchLabels:\n        app: frontend\n";

#[test]
fn a_value_with_a_decoration_copied_from_another_name_gets_the_plain_value() {
    let table = [
        ("frontend-svc", "-svc"),
        ("frontend-service", "-service"),
        ("frontend-deployment", "-deployment"),
        ("frontend-deploy", "-deploy"),
        ("frontend-pod", "-pod"),
        ("frontend-app", "-app"),
        ("frontend-v1", "-v1"),
        ("frontend-v2.1", "-v2.1"),
        ("Frontend-SVC", "-svc"),
        // The namespace's name, then the pods' Helm release, as a prefix.
        ("shop-frontend", "shop-"),
        ("web-frontend", "web-"),
        ("web-frontend-svc", "-svc and web-"),
        ("frontend-svc-v2", "-v2 and -svc"),
    ];
    for (app, removed) in table {
        let f = one(app, Some(8080));
        assert_eq!(
            f.summary,
            format!("podSelector app={app} matches no pod; did you mean app=frontend?"),
            "{app}"
        );
        assert!(
            f.message.contains(&format!(
                "Fix: did you mean app=frontend (app={app} without {removed})? Its 2 pods serve \
                 8080/TCP, which this policy allows. Select it:\n{PASTE_FRONTEND}"
            )),
            "{app}: {}",
            f.message
        );
    }
}

#[test]
fn the_service_name_case_reads_whole() {
    let f = one("frontend-svc", Some(8080));
    assert_eq!(
        f.message,
        "NetworkPolicy shop/np selects no pod: its podSelector app=frontend-svc matches no pod and no workload \
         pod template in namespace shop, so the policy protects nothing.\n\
         Evidence: no pod has app=frontend-svc; 2 pods have app=frontend, 1 pod has app=api, 1 pod has app=cart, \
         1 pod has app=cart-v1, 1 pod has app=orders and 1 more. Of these, only app=frontend serves 8080/TCP, \
         which this policy allows.\n\
         Fix: did you mean app=frontend (app=frontend-svc without -svc)? Its 2 pods serve 8080/TCP, which this \
         policy allows. Select it:\n\
         \x20 spec:\n    podSelector:\n      matchLabels:\n        app: frontend\n\
         To accept this policy anyway, annotate it palisade.dev/skip-checks: \"unmatched-selector\"."
    );
}

#[test]
fn a_prefix_that_names_no_namespace_or_release_is_no_decoration() {
    let f = one("billing-frontend", Some(8080));
    assert_eq!(
        f.summary,
        "podSelector app=billing-frontend matches no pod; nothing close; app=frontend serves 8080/TCP"
    );
    assert!(!f.message.contains("matchLabels"), "{}", f.message);
}

#[test]
fn when_the_suggested_pods_do_not_serve_the_policys_ports_the_fix_says_so() {
    // 9000 is the api's port: the spelling says frontend, the ports say api. Both are said.
    let f = one("frontend-svc", Some(9000));
    assert_eq!(
        f.summary,
        "podSelector app=frontend-svc matches no pod; did you mean app=frontend?"
    );
    assert!(
        f.message.contains(
            "Of these, only app=api serves 9000/TCP, which this policy allows.\n\
             Fix: did you mean app=frontend (app=frontend-svc without -svc)? Select it:\n\
             \x20 spec:\n    podSelector:\n      matchLabels:\n        app: frontend\n\
             But no pod with app=frontend serves 9000/TCP, which this policy allows: check the policy's ports, \
             or select the pods it is for.\n"
        ),
        "{}",
        f.message
    );
    // Without ports (every port allowed) there is no port evidence either way.
    let f = one("frontend-svc", None);
    assert!(
        f.message.contains(
            "Fix: did you mean app=frontend (app=frontend-svc without -svc)? Select it:\n"
        ),
        "{}",
        f.message
    );
}

#[test]
fn two_equally_close_values_are_both_named_and_neither_offered() {
    // cart-v2 is cart with a version, and cart-v1 respelt by one letter; both serve 7000.
    let f = one("cart-v2", Some(7000));
    assert_eq!(
        f.summary,
        "podSelector app=cart-v2 matches no pod; equally close: app=cart, app=cart-v1"
    );
    assert!(
        f.message.contains(
            "Fix: app=cart-v2 is equally close to app=cart (without -v2) and app=cart-v1 (one letter off); each has \
             pods serving 7000/TCP, which this policy allows, so none is offered to paste: select the labels of \
             the pods this policy is for (kubectl get pods -l 'app in (cart, cart-v1)' --show-labels).\n"
        ),
        "{}",
        f.message
    );
    assert!(!f.message.contains("matchLabels"), "{}", f.message);
    assert!(!f.message.contains("spelled like"), "{}", f.message);
}

#[test]
fn the_port_evidence_settles_a_tie_in_spelling_and_says_what_it_set_aside() {
    // orders-v2: orders (without -v2) and orders-v1 (one letter off); only orders serves 7100.
    let f = one("orders-v2", Some(7100));
    assert_eq!(
        f.summary,
        "podSelector app=orders-v2 matches no pod; did you mean app=orders?"
    );
    assert!(
        f.message.contains(
            "Fix: did you mean app=orders (app=orders-v2 without -v2)? Its pod serves 7100/TCP, which this \
             policy allows; those with app=orders-v1, as close, do not. Select it:\n"
        ),
        "{}",
        f.message
    );
    // Without ports to tell them apart, the two are equally good.
    let f = one("orders-v2", None);
    assert_eq!(
        f.summary,
        "podSelector app=orders-v2 matches no pod; equally close: app=orders, app=orders-v1"
    );
}

#[test]
fn a_far_value_with_serving_pods_names_them_and_lets_the_user_choose() {
    let f = one("payments", Some(9000));
    assert_eq!(
        f.summary,
        "podSelector app=payments matches no pod; nothing close; app=api serves 9000/TCP"
    );
    let fix = f.message.lines().find(|l| l.starts_with("Fix:")).unwrap();
    assert_eq!(
        fix,
        "Fix: select the labels of the pods this policy is for. The pods serving 9000/TCP, which this policy \
         allows, carry app=api: if it is for them, select that label (not offered to paste: it is not spelled \
         like app=payments, so it may name other pods than the ones meant). Otherwise see kubectl get pods \
         --show-labels, or create the workload first."
    );
    assert!(!f.message.contains("no label to suggest"), "{}", f.message);
    assert!(!f.message.contains("matchLabels"), "{}", f.message);
}

#[test]
fn an_egress_peer_is_judged_by_the_ports_its_pods_serve() {
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n\
                  spec:\n  podSelector: {matchLabels: {app: api}}\n  policyTypes: [Egress]\n  egress:\n  \
                  - to: [{podSelector: {matchLabels: {app: frontend-svc}}}]\n    ports: [{port: 8080}]\n";
    let f = findings(policy);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        f[0].summary,
        "egress[0].to[0]: podSelector app=frontend-svc matches no pod; did you mean app=frontend?"
    );
    assert!(
        f[0].message.contains(
            "Fix: did you mean app=frontend (app=frontend-svc without -svc)? Its 2 pods serve 8080/TCP, which \
             this policy allows. Select it:\n  to:\n  - podSelector:\n      matchLabels:\n        app: frontend\n"
        ),
        "{}",
        f[0].message
    );
}

/// A policy for the api with one ingress peer selecting namespaces by `labels`.
fn from_namespaces(labels: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: shop}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{{labels}}}}}}}]\n"
    )
}

#[test]
fn namespace_selectors_get_the_same_suggestions() {
    let f = findings(&from_namespaces("team: shop-v2"));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        f[0].summary,
        "ingress[0].from[0]: no namespace has team=shop-v2; did you mean team=shop?"
    );
    assert!(
        f[0].message.contains(
            "Fix: did you mean team=shop (team=shop-v2 without -v2)? Select it:\n  - namespaceSelector:\n      \
             matchLabels:\n        team: shop\n"
        ),
        "{}",
        f[0].message
    );
    let f = findings(&from_namespaces("kubernetes.io/metadata.name: shop-svc"));
    assert_eq!(
        f[0].summary,
        "ingress[0].from[0]: no namespace has kubernetes.io/metadata.name=shop-svc; did you mean shop?"
    );
    assert!(
        f[0].message.contains(
            "Fix: did you mean kubernetes.io/metadata.name=shop (kubernetes.io/metadata.name=shop-svc without \
             -svc)? Select it:\n"
        ),
        "{}",
        f[0].message
    );
}

#[test]
fn namespace_selectors_name_equally_close_values_and_offer_none() {
    let more = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop-next, labels: {team: shop-v1}}\n---\n";
    let f = findings(&format!("{more}{}", from_namespaces("team: shop-v2")));
    assert_eq!(
        f[0].summary,
        "ingress[0].from[0]: no namespace has team=shop-v2; equally close: team=shop, team=shop-v1"
    );
    assert!(
        f[0].message.contains(
            "Fix: team=shop-v2 is equally close to team=shop (without -v2) and team=shop-v1 (one letter off), so none \
             is offered to paste: select the labels of the namespaces this policy is for (kubectl get namespaces \
             -l 'team in (shop, shop-v1)' --show-labels).\n"
        ),
        "{}",
        f[0].message
    );
}
