//! One admission review, decided as a pure function of the request body, the cluster state and
//! the configuration. The apiserver always gets a well-formed AdmissionReview back with its uid;
//! only a body that is not an AdmissionReview at all gets an HTTP error with the reason.
//!
//! The body is read into kube's typed `AdmissionReview` (`request.rs`), and each kind Palisade
//! judges has its module: `network_policy.rs`, `baseline.rs` (NetworkBaseline) and
//! `cluster_policy.rs` (ClusterNetworkPolicy). Every other kind and operation is allowed as is.

mod baseline;
mod cluster_policy;
mod network_policy;
mod request;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use palisade_policy::Cluster;
use palisade_policy::checks::{CheckId, Enforcement, Finding, Report};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::WebhookConfig;

/// What the webhook judges against.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    pub cluster: Cluster,
    /// `None` until node enforcement is known: the `enforcement` check does not run meanwhile.
    pub enforcement: Option<Enforcement>,
}

/// A body that is not an AdmissionReview v1: answered with HTTP 400 and this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("empty request body: expected an AdmissionReview (admission.k8s.io/v1) as JSON")]
    Empty,
    #[error("the request body is not JSON: {0}")]
    Json(String),
    #[error(
        "unsupported apiVersion {0:?}: Palisade reads admission.k8s.io/v1 (set admissionReviewVersions: [v1])"
    )]
    ApiVersion(String),
    #[error("expected kind AdmissionReview, got {0:?}")]
    Kind(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the AdmissionReview request has no uid")]
    NoUid,
    /// A request without a field admission.k8s.io/v1 requires (kind, resource, operation,
    /// userInfo), or with one of the wrong type.
    #[error("the AdmissionReview request is not one of admission.k8s.io/v1: {0}")]
    Request(String),
}

/// The verdict, for the response, logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The AdmissionReview to send back.
    pub review: Value,
    pub allowed: bool,
    /// `namespace/name` of the object (`name` of a cluster-scoped one), when it was judged.
    pub object: Option<String>,
    /// The kind of the judged object (`NetworkPolicy`, `ClusterNetworkPolicy`,
    /// `NetworkBaseline`); empty when nothing was judged.
    pub kind: &'static str,
    pub findings: Vec<Finding>,
    pub skipped: Vec<CheckId>,
    pub dry_run: bool,
    /// A stored policy whose `one-sided` check waits until the apply it came with has settled.
    pub settle: Option<Pending>,
}

/// A policy to check again once its counterparts may have arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

pub fn review(
    body: &[u8],
    state: &ClusterState,
    config: &WebhookConfig,
) -> Result<Decision, BadReview> {
    let request = request::read(body)?;
    let judged = matches!(request.operation, Operation::Create | Operation::Update);
    let verdict = match (request.kind.group.as_str(), request.kind.kind.as_str()) {
        _ if !judged => Verdict::untouched(),
        ("networking.k8s.io", "NetworkPolicy") => network_policy::judge(&request, state, config),
        ("palisade.dev", "NetworkBaseline") => baseline::judge(&request, &state.cluster),
        ("policy.networking.k8s.io", "ClusterNetworkPolicy") => {
            cluster_policy::judge(&request, state, config)
        }
        _ => Verdict::untouched(),
    };
    Ok(verdict.decision(&request))
}

/// What one kind's module decides about one request.
#[derive(Debug, Default)]
struct Verdict {
    /// The kind judged; empty when nothing was.
    kind: &'static str,
    /// `namespace/name` (or `name`) of the judged object.
    object: Option<String>,
    /// The refusal, when refused.
    refusal: Option<String>,
    warnings: Vec<String>,
    report: Report,
    settle: Option<Pending>,
}

impl Verdict {
    /// Allowed without a look: another kind, or an operation Palisade does not judge.
    fn untouched() -> Self {
        Self::default()
    }

    /// Refused because the object is not of the kind the request says it is.
    fn unreadable(refusal: String) -> Self {
        Self {
            refusal: Some(refusal),
            ..Self::default()
        }
    }

    fn decision(self, request: &AdmissionRequest<DynamicObject>) -> Decision {
        Decision {
            review: request::answer(request, self.refusal.clone(), self.warnings),
            allowed: self.refusal.is_none(),
            object: self.object,
            kind: self.kind,
            findings: self.report.findings,
            skipped: self.report.skipped,
            dry_run: request.dry_run,
            settle: self.settle,
        }
    }
}

/// The request's object as the kind it claims to be, or serde's reason why it is not one (a
/// missing object reads as `null`, so its reason is serde's too).
fn object_as<K: DeserializeOwned>(
    request: &AdmissionRequest<DynamicObject>,
) -> Result<K, serde_json::Error> {
    serde_json::to_value(&request.object).and_then(serde_json::from_value)
}

#[cfg(test)]
mod tests;
