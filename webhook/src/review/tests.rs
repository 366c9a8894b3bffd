//! The envelope as kube's types read it: what is echoed, what is let through untouched, and
//! each way of not being an admission.k8s.io/v1 request named in its own words.

use serde_json::{Value, json};

use super::{BadReview, ClusterState, review};
use crate::config::WebhookConfig;

fn request(fields: Value) -> Value {
    let mut r = json!({
        "uid": "u-1",
        "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
        "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
        "namespace": "production",
        "name": "p",
        "operation": "CREATE",
        "userInfo": {"username": "dev"},
        "object": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "p"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    });
    for (k, v) in fields.as_object().into_iter().flatten() {
        if v.is_null() {
            r.as_object_mut().map(|o| o.remove(k));
        } else {
            r[k] = v.clone();
        }
    }
    r
}

fn decide(fields: Value) -> Result<super::Decision, BadReview> {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "request": request(fields)});
    review(
        body.to_string().as_bytes(),
        &ClusterState::default(),
        &WebhookConfig::default(),
    )
}

#[test]
fn the_answer_echoes_the_uid_and_the_api_version() {
    let d = decide(json!({})).unwrap();
    assert!(d.allowed);
    assert_eq!(
        d.review,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": "u-1", "allowed": true}})
    );
    assert_eq!(d.object.as_deref(), Some("production/p"));
}

#[test]
fn a_delete_carrying_only_the_old_object_is_allowed_untouched() {
    let old = request(json!({}))["object"].clone();
    let d = decide(json!({"operation": "DELETE", "object": null, "oldObject": old})).unwrap();
    assert!(d.allowed);
    assert_eq!(d.object, None);
    assert_eq!(d.review["response"], json!({"uid": "u-1", "allowed": true}));
}

#[test]
fn a_dry_run_is_judged_and_marked() {
    let d = decide(json!({"dryRun": true})).unwrap();
    assert!(d.dry_run);
    assert_eq!(d.kind, "NetworkPolicy");
}

#[test]
fn a_create_without_an_object_is_refused_as_unreadable() {
    let d = decide(json!({"object": null})).unwrap();
    assert!(!d.allowed);
    assert_eq!(
        d.review["response"]["status"],
        json!({"code": 403, "reason": "Forbidden",
               "message": "Palisade cannot read this NetworkPolicy: invalid type: null, expected NetworkPolicy"})
    );
}

#[test]
fn a_request_missing_what_v1_requires_is_named() {
    for (missing, field) in [
        ("userInfo", "userInfo"),
        ("operation", "operation"),
        ("resource", "resource"),
    ] {
        let Err(BadReview::Request(reason)) = decide(json!({ missing: null })) else {
            panic!("{missing} missing was read");
        };
        assert_eq!(reason, format!("missing field `{field}`"));
    }
    let Err(BadReview::Request(reason)) = decide(json!({"operation": "PATCH"})) else {
        panic!("an unknown operation was read");
    };
    assert!(reason.starts_with("unknown variant `PATCH`"), "{reason}");
}

/// A NetworkPolicy in audit mode, by its annotation or its namespace's label, is admitted with
/// a first warning saying why it is not enforced and how to enforce it.
#[test]
fn a_policy_in_audit_mode_is_warned_about_first() {
    use palisade_policy::{Cluster, Labels, Namespace};
    let warnings = |state: &ClusterState, annotations: Value| -> Vec<String> {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": request(json!({"object": {"apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "p", "annotations": annotations},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}}))});
        let d = review(
            body.to_string().as_bytes(),
            state,
            &WebhookConfig::default(),
        )
        .unwrap();
        assert!(d.allowed);
        d.review["response"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(String::from))
            .collect()
    };
    let plain = ClusterState::default();
    let audit_first = |lines: Vec<String>| lines.first().cloned().unwrap_or_default();
    assert!(!audit_first(warnings(&plain, json!({}))).starts_with("[audit]"));
    assert_eq!(
        audit_first(warnings(&plain, json!({"palisade.dev/mode": "audit"}))),
        "[audit] p: not enforced (annotated palisade.dev/mode: audit): what it denies is logged, not dropped; to enforce it, remove the annotation palisade.dev/mode"
    );
    let labelled = ClusterState {
        cluster: Cluster::new(
            [Namespace::new(
                "production",
                Labels::from([("palisade.dev/mode".to_string(), "audit".to_string())]),
            )],
            vec![],
            vec![],
            vec![],
        ),
        enforcement: None,
    };
    assert_eq!(
        audit_first(warnings(&labelled, json!({}))),
        "[audit] p: not enforced (namespace production is labelled palisade.dev/mode=audit): what it denies is logged, not dropped; to enforce it, remove the label palisade.dev/mode from namespace production"
    );
}
