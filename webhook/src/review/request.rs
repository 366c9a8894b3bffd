//! The AdmissionReview on the wire: the body read into kube's typed request, each way of not
//! being one named in its own words, and the typed response written back.

use kube::core::DynamicObject;
use kube::core::Status;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND,
};
use serde::Deserialize;
use serde_json::Value;

use super::BadReview;

/// The request of an `admission.k8s.io/v1` AdmissionReview.
///
/// The envelope is checked on the JSON first: kube's types would answer a wrong apiVersion, a
/// missing request or a missing uid with a generic "missing field", where the apiserver's
/// operator needs to be told which of them it is (and `admissionReviewVersions` to set).
pub fn read(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadReview::Empty);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| BadReview::Json(e.to_string()))?;
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    if api_version != META_API_VERSION_V1 {
        return Err(BadReview::ApiVersion(api_version.to_string()));
    }
    let kind = v["kind"].as_str().unwrap_or_default();
    if kind != META_KIND {
        return Err(BadReview::Kind(kind.to_string()));
    }
    let request = v.get("request").filter(|r| r.is_object());
    let request = request.ok_or(BadReview::NoRequest)?;
    if request["uid"].as_str().is_none_or(str::is_empty) {
        return Err(BadReview::NoUid);
    }
    let review = AdmissionReview::<DynamicObject>::deserialize(v)
        .map_err(|e| BadReview::Request(e.to_string()))?;
    // Checked above: there is a request; `try_into` carries the review's apiVersion and kind
    // into it, for the answer to echo.
    review.try_into().map_err(|_| BadReview::NoRequest)
}

/// The AdmissionReview answering `request`: its uid and apiVersion echoed, refused with a 403
/// status carrying `refusal`, and `warnings` for kubectl to print.
pub fn answer(
    request: &AdmissionRequest<DynamicObject>,
    refusal: Option<String>,
    warnings: Vec<String>,
) -> Value {
    let mut response = AdmissionResponse::from(request);
    if let Some(message) = refusal {
        response.allowed = false;
        response.result = Status {
            code: 403,
            reason: "Forbidden".into(),
            message,
            ..Status::default()
        };
    }
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    let uid = response.uid.clone();
    let allowed = response.allowed;
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_else(|e| {
        // Strings, booleans and a status of both: serde_json cannot fail on them.
        tracing::error!(error = %e, "could not write the AdmissionReview response");
        serde_json::json!({
            "apiVersion": META_API_VERSION_V1, "kind": META_KIND,
            "response": {"uid": uid, "allowed": allowed},
        })
    });
    // kube always writes `status`, as `{}` on an allow; Palisade's allows have never carried
    // one, and the apiserver reads none as none.
    if let Some(response) = review["response"].as_object_mut()
        && response
            .get("status")
            .is_some_and(|s| s == &serde_json::json!({}))
    {
        response.remove("status");
    }
    review
}
