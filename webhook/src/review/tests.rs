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
