//! Requests in, AdmissionReviews (or reasons) out, through the real router.

use std::sync::{Arc, RwLock};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use palisade_policy::input::Inputs;
use palisade_webhook::config::WebhookConfig;
use palisade_webhook::metrics::Metrics;
use palisade_webhook::review::ClusterState;
use palisade_webhook::server::{AppState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const WORLD: &str = include_str!("../../policy/tests/fixtures/tutorial/world.yaml");

fn app() -> (axum::Router, Arc<Metrics>) {
    let mut inputs = Inputs::default();
    inputs.add_text("world.yaml", WORLD).unwrap();
    let state = ClusterState {
        cluster: inputs.cluster(),
        enforcement: None,
    };
    let metrics = Arc::new(Metrics::default());
    let app = router(AppState {
        cluster: Arc::new(RwLock::new(Arc::new(state))),
        config: Arc::new(WebhookConfig::default()),
        metrics: metrics.clone(),
        confirm: None,
        settle: None,
    });
    (app, metrics)
}

/// A NetworkPolicy from YAML, as the apiserver puts it in a review.
fn policy(yaml: &str) -> Value {
    let doc = palisade_policy::input::parse_documents(yaml)
        .unwrap()
        .pop()
        .unwrap();
    doc.to_json()
}

fn review(object: Value, operation: &str, dry_run: bool) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
            "namespace": object["metadata"]["namespace"],
            "name": object["metadata"]["name"],
            "operation": operation,
            "userInfo": {"username": "dev"},
            "object": object,
            "dryRun": dry_run
        }
    })
    .to_string()
}

async fn send(app: axum::Router, body: impl Into<Body>) -> (StatusCode, String) {
    let req = Request::post("/validate")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn decide(object: Value, operation: &str, dry_run: bool) -> Value {
    let (status, body) = send(app().0, review(object, operation, dry_run)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    v["response"].clone()
}

const GOOD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: backend, namespace: production}\n\
                    spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: frontend}}}]\n    ports: [{port: 8080}]\n";

#[tokio::test]
async fn a_correct_policy_is_allowed_without_warnings() {
    let r = decide(policy(GOOD), "CREATE", false).await;
    assert_eq!(
        r,
        json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true})
    );
}

#[tokio::test]
async fn an_egress_lockdown_without_dns_is_denied_with_the_explanation() {
    let r = decide(
        policy(include_str!(
            "../../policy/tests/fixtures/tutorial/egress-without-dns.yaml"
        )),
        "CREATE",
        false,
    )
    .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.starts_with(
        "Palisade refuses NetworkPolicy production/frontend-egress:\n\n[egress-dns] NetworkPolicy production/frontend-egress \
         isolates egress of production/frontend and nothing allows DNS: every name lookup from these pods will time out.\n"
    ), "{message}");
    assert!(
        message.ends_with(
            "To accept this policy anyway, annotate it palisade.dev/skip-checks: \"egress-dns\"."
        ),
        "{message}"
    );
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let object = policy(include_str!(
        "../../policy/tests/fixtures/tutorial/typo-labels.yaml"
    ));
    let real = decide(object.clone(), "CREATE", false).await;
    let dry = decide(object, "CREATE", true).await;
    assert_eq!(real, dry);
    assert_eq!(real["allowed"], false);
}

#[tokio::test]
async fn suspicious_rules_are_warnings_of_one_short_line() {
    let and_or = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: m, namespace: production}\n\
                  spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {purpose: monitoring}}\n    - podSelector: {matchLabels: {app: frontend}}\n";
    let r = decide(policy(and_or), "UPDATE", false).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"],
        json!([
            "[peer-and-or] m: ingress[0].from: namespaceSelector OR podSelector (2 items); AND is one item"
        ])
    );
}

#[tokio::test]
async fn a_helm_managed_policy_for_a_workload_not_yet_deployed_is_admitted_with_a_warning() {
    let helm = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: payments, namespace: production, labels: {app.kubernetes.io/managed-by: Helm}}\n\
                spec:\n  podSelector: {matchLabels: {app: payments}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}]}]\n";
    let r = decide(policy(helm), "CREATE", false).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            "[unmatched-selector] payments: Helm-managed, so a warning, not a refusal (Helm may apply workloads later)",
            "[unmatched-selector] payments: podSelector app=payments matches no pod; nothing close; pods: app=api +2"
        ])
    );
    for w in r["warnings"].as_array().unwrap() {
        assert!(w.as_str().unwrap().chars().count() <= 119, "{w}");
    }
    // Without the Helm label the same policy is refused.
    let plain = helm.replace(", labels: {app.kubernetes.io/managed-by: Helm}", "");
    assert_eq!(
        decide(policy(&plain), "CREATE", false).await["allowed"],
        false
    );
}

#[tokio::test]
async fn the_skip_annotation_is_honoured() {
    let skipped = include_str!("../../policy/tests/fixtures/tutorial/typo-labels.yaml").replace(
        "metadata: {name: backend-ingress, namespace: production}",
        "metadata: {name: backend-ingress, namespace: production, annotations: {palisade.dev/skip-checks: unmatched-selector}}",
    );
    let r = decide(policy(&skipped), "CREATE", false).await;
    assert_eq!(
        r,
        json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true, "warnings": [
            "[skip-checks] backend-ingress: not checked for unmatched-selector (palisade.dev/skip-checks)"
        ]})
    );
    // A misspelt id skips nothing, and says so.
    let misspelt = skipped.replace(
        "skip-checks: unmatched-selector}",
        "skip-checks: unmatched-selectors}",
    );
    let r = decide(policy(&misspelt), "CREATE", false).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["warnings"],
        json!([
            "[skip-checks] backend-ingress: unknown check \"unmatched-selectors\", ignored; did you mean unmatched-selector?",
            "[skip-checks] backend-ingress: check ids: enforcement, unmatched-selector, egress-dns, peer-and-or, named-port, one-sided, implicit-ingress, admin-shadowed, equal-priority"
        ])
    );
}

/// A policy for app=api with one ingress rule per `peer`, each naming that pod label.
fn many_rules(peers: impl Iterator<Item = String>) -> Value {
    let rules: String = peers
        .map(|app| format!("  - from: [{{podSelector: {{matchLabels: {{app: {app}}}}}}}]\n"))
        .collect();
    policy(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: api, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n{rules}"
    ))
}

#[tokio::test]
async fn a_refusal_stays_readable_however_many_rules_are_wrong() {
    // One typo copied into twelve rules: one problem, naming the rules.
    let r = decide(
        many_rules((0..12).map(|_| "frontnd".into())),
        "CREATE",
        false,
    )
    .await;
    let message = r["status"]["message"].as_str().unwrap();
    assert_eq!(message.lines().count(), 10, "{message}");
    assert!(message.contains("NetworkPolicy production/api ingress[0].from[0], ingress[1].from[0], ingress[2].from[0], ingress[3].from[0], ingress[4].from[0], ingress[5].from[0] and 6 more (12 places): podSelector app=frontnd matches no pod"), "{message}");
    // A thousand different ones: three in full, ten in a line each, and the count of the rest.
    let r = decide(
        many_rules((0..1000).map(|i| format!("svc-{i}"))),
        "CREATE",
        false,
    )
    .await;
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.len() < 5000, "{} bytes", message.len());
    assert!(message.lines().count() < 45, "{message}");
    assert!(message.contains("\n\n997 more problems:\n  [unmatched-selector] ingress[3].from[0]: podSelector app=svc-3 matches no pod; nothing close; pods: app=api +2\n"), "{message}");
    assert!(
        message.ends_with("  ... and 987 more; `palisade check -f FILE` lists them all"),
        "{message}"
    );
}

#[tokio::test]
async fn warnings_are_bounded_and_the_last_line_counts_the_rest() {
    // Twenty rules, each a different port name nobody declares: twenty warnings.
    let rules: String = (0..20)
        .map(|i| format!("  - ports: [{{port: web-{i}}}]\n"))
        .collect();
    let np = policy(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: api, namespace: production}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n{rules}"
    ));
    let r = decide(np, "CREATE", false).await;
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 8, "{r}");
    assert_eq!(
        warnings[0],
        "[named-port] api: ingress[0]: port name web-0/TCP is declared by none of the selected pods"
    );
    assert_eq!(
        warnings[7],
        "[palisade] api: 13 more warnings; `palisade check -f FILE` lists them all"
    );
}

const CALICO_EGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
    metadata: {name: frontend-out, namespace: production}\nspec:\n  podSelector: {matchLabels: {app: frontend}}\n  \
    egress:\n  - to: [{podSelector: {matchLabels: {app: api}}}]\n    ports: [{port: 8080}]\n  \
    - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n";

#[tokio::test]
async fn egress_rules_without_policy_types_as_written_get_the_implicit_ingress_warning() {
    // What the apiserver sends: policyTypes filled in, and what kubectl applied alongside.
    let as_stored = |written: Value, managed: Value| {
        let mut object = policy(CALICO_EGRESS);
        object["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
        if !written.is_null() {
            object["metadata"]["annotations"] = json!({
                "kubectl.kubernetes.io/last-applied-configuration": written.to_string()
            });
        }
        object["metadata"]["managedFields"] = managed;
        object
    };
    let warning = json!([
        "[implicit-ingress] frontend-out: no policyTypes: ingress to frontend is denied too; write policyTypes: [Egress]"
    ]);
    // kubectl apply (client side): the annotation holds the file as written.
    let r = decide(as_stored(policy(CALICO_EGRESS), json!([])), "CREATE", false).await;
    assert_eq!(r["warnings"], warning, "{r}");
    // kubectl apply --server-side: the applied fields do not include policyTypes.
    let ssa = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "networking.k8s.io/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:egress": {}, "f:podSelector": {}}}}]);
    let r = decide(as_stored(Value::Null, ssa), "CREATE", false).await;
    assert_eq!(r["warnings"], warning, "{r}");
    // Written by the user: no warning.
    let mut written = policy(CALICO_EGRESS);
    written["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
    let r = decide(as_stored(written, json!([])), "CREATE", false).await;
    assert_eq!(r.get("warnings"), None, "{r}");
    // Cannot tell (kubectl create): no warning.
    let create = json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "networking.k8s.io/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:egress": {}, "f:policyTypes": {}}}}]);
    let r = decide(as_stored(Value::Null, create), "CREATE", false).await;
    assert_eq!(r.get("warnings"), None, "{r}");
}

#[tokio::test]
async fn one_sided_is_not_judged_at_admission() {
    // The database's ingress is closed, so this egress rule is one-sided now; but its
    // counterpart could come later in the same apply: admission says nothing.
    let closed = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-closed, namespace: production}\n\
                  spec:\n  podSelector: {matchLabels: {app: database}}\n  policyTypes: [Ingress]\n";
    let mut inputs = Inputs::default();
    inputs.add_text("world.yaml", WORLD).unwrap();
    inputs.add_text("closed.yaml", closed).unwrap();
    let state = ClusterState {
        cluster: inputs.cluster(),
        enforcement: None,
    };
    let out = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api-out, namespace: production}\n\
               spec:\n  podSelector: {matchLabels: {app: api}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: database}}}]\n    ports: [{port: 5432}]\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n";
    let body = review(policy(out), "CREATE", false);
    let decision =
        palisade_webhook::review::review(body.as_bytes(), &state, &WebhookConfig::default())
            .unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.review["response"].get("warnings"), None);
    assert_eq!(
        decision.settle,
        Some(palisade_webhook::review::Pending {
            namespace: "production".into(),
            name: "api-out".into(),
            uid: None
        })
    );
    // What the settled judgement finds, on the same state: the Event's note.
    let stored =
        palisade_policy::Policy::compile(&serde_json::from_value(policy(out)).unwrap()).unwrap();
    let findings = palisade_webhook::settle::one_sided(&stored, &state, &Default::default());
    assert_eq!(findings.len(), 1);
    assert!(palisade_webhook::settle::note(&findings).starts_with(
        "NetworkPolicy production/api-out egress[0] allows connections that the destinations' ingress policies block"
    ));
    // A dry run is never followed up.
    let dry = review(policy(out), "CREATE", true);
    let decision =
        palisade_webhook::review::review(dry.as_bytes(), &state, &WebhookConfig::default())
            .unwrap();
    assert_eq!(decision.settle, None);
}

#[tokio::test]
async fn deletes_and_other_kinds_are_allowed_untouched() {
    let r = decide(
        policy(include_str!(
            "../../policy/tests/fixtures/tutorial/typo-labels.yaml"
        )),
        "DELETE",
        false,
    )
    .await;
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn malformed_requests_get_400_with_the_reason() {
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty request body: expected an AdmissionReview (admission.k8s.io/v1) as JSON\n"),
        ("{\"apiVersion\": ".into(), "the request body is not JSON: EOF while parsing a value at line 1 column 15\n"),
        (
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}).to_string(),
            "unsupported apiVersion \"admission.k8s.io/v1beta1\": Palisade reads admission.k8s.io/v1 (set admissionReviewVersions: [v1])\n",
        ),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).to_string(), "expected kind AdmissionReview, got \"Pod\"\n"),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(), "the AdmissionReview has no request\n"),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}).to_string(),
            "the AdmissionReview request has no uid\n",
        ),
    ];
    let (app, metrics) = app();
    for (body, want) in cases {
        let (status, text) = send(app.clone(), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(text, want);
    }
    assert!(
        metrics
            .render()
            .contains("palisade_webhook_bad_requests_total{reason=\"malformed\"} 6"),
        "{}",
        metrics.render()
    );
}

#[tokio::test]
async fn a_ten_mebibyte_body_gets_413() {
    let body = vec![b' '; 10 << 20];
    let (status, text) = send(app().0, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text, "the request body is larger than 8388608 bytes\n");
}

#[tokio::test]
async fn metrics_count_reviews_and_findings() {
    let (app, metrics) = app();
    let body = review(
        policy(include_str!(
            "../../policy/tests/fixtures/tutorial/egress-without-dns.yaml"
        )),
        "CREATE",
        false,
    );
    let (status, _) = send(app, body).await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.render();
    assert!(
        text.contains("palisade_webhook_reviews_total{result=\"denied\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("palisade_webhook_findings_total{check=\"egress-dns\",severity=\"deny\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("palisade_webhook_review_duration_seconds_count 1"),
        "{text}"
    );
}

#[tokio::test]
async fn an_object_that_is_not_a_network_policy_is_refused_with_the_reason() {
    let object = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "odd", "namespace": "production"}, "spec": "not a spec"});
    let r = decide(object, "CREATE", false).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        "Palisade cannot read this NetworkPolicy: invalid type: string \"not a spec\", expected NetworkPolicySpec"
    );
    let bad_type = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "odd", "namespace": "production"}, "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}});
    let r = decide(bad_type, "CREATE", false).await;
    assert_eq!(
        r["status"]["message"],
        "NetworkPolicy production/odd: spec.policyTypes[0]: unknown policy type \"Sideways\" (use Ingress or Egress)"
    );
}

async fn decide_baseline(spec: Value) -> Value {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b1",
            "kind": {"group": "palisade.dev", "version": "v1alpha1", "kind": "NetworkBaseline"},
            "resource": {"group": "palisade.dev", "version": "v1alpha1", "resource": "networkbaselines"},
            "name": "default",
            "operation": "CREATE",
            "userInfo": {"username": "platform"},
            "object": {"apiVersion": "palisade.dev/v1alpha1", "kind": "NetworkBaseline",
                       "metadata": {"name": "default"}, "spec": spec}
        }
    })
    .to_string();
    let (status, text) = send(app().0, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["response"].clone()
}

#[tokio::test]
async fn a_baseline_the_operator_could_not_apply_is_refused_with_the_reason() {
    let r = decide_baseline(json!({"allow": {"egress": [{"ports": ["443"]}]}})).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        "Palisade refuses NetworkBaseline default: spec.allow.egress[0]: give a cidr, namespaces, or both. No namespace could be given this baseline."
    );
}

#[tokio::test]
async fn a_baseline_naming_what_does_not_exist_is_admitted_with_warnings() {
    // The tutorial world has `monitoring` but no `ingress` namespace, and its DNS pods run in
    // kube-system with k8s-app=kube-dns (the default).
    let r = decide_baseline(json!({"allow": {"fromNamespaces": ["monitoring", "ingress"]}})).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"],
        json!([
            "[NetworkBaseline] default: spec.allow.fromNamespaces: namespace ingress does not exist (yet)"
        ])
    );
    let r = decide_baseline(json!({"dns": {"podSelector": {"k8s-app": "coredns"}}})).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"],
        json!([
            "[NetworkBaseline] default: spec.dns matches no running pod: DNS lookups will fail in opted-in namespaces"
        ])
    );
    let r = decide_baseline(json!({})).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r.get("warnings"), None);
}

#[tokio::test]
async fn every_tutorial_finding_as_a_warning_names_its_policy_and_fits_the_line_uncut() {
    // Every check in warn mode: each finding of the tutorial mistakes becomes a kubectl line.
    let config = WebhookConfig {
        checks: palisade_policy::checks::CheckConfig {
            modes: palisade_policy::checks::CheckId::ALL
                .into_iter()
                .map(|c| (c, palisade_policy::checks::Mode::Warn))
                .collect(),
        },
        ..WebhookConfig::default()
    };
    let mut inputs = Inputs::default();
    inputs.add_text("world.yaml", WORLD).unwrap();
    let state = ClusterState {
        cluster: inputs.cluster(),
        enforcement: None,
    };
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/tests/fixtures/tutorial"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in palisade_policy::input::parse_documents(&text).unwrap() {
            let object = doc.to_json();
            if object["kind"] != "NetworkPolicy" {
                continue;
            }
            let name = format!(
                "{}/{}",
                object["metadata"]["namespace"].as_str().unwrap(),
                object["metadata"]["name"].as_str().unwrap()
            );
            let body = review(object, "CREATE", false);
            let d = palisade_webhook::review::review(body.as_bytes(), &state, &config).unwrap();
            for w in d.review["response"]["warnings"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let w = w.as_str().unwrap();
                seen += 1;
                assert!(w.chars().count() <= 119, "{}: {w}", path.display());
                assert!(
                    w.contains(&format!("] {}: ", name.split('/').nth(1).unwrap())),
                    "{w}"
                );
                assert!(!w.ends_with("..."), "{w}");
            }
        }
    }
    assert!(seen >= 5, "only {seen} warnings");
}
