//! The HTTP side: `POST /validate` reads the body itself (bounded in size and time) and always
//! answers an AdmissionReview, or 400/408/413 with a reason when the body is not one.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::config::WebhookConfig;
use crate::metrics::Metrics;
use crate::review::{ClusterState, review};

/// The apiserver sends at most 3 MiB objects; an AdmissionReview holds two of them.
pub const MAX_BODY: usize = 8 << 20;
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh view of one namespace, for confirming a denial the cache might owe to lag.
pub trait Confirm: Send + Sync {
    fn fresh<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<ClusterState>>;
}

#[derive(Clone)]
pub struct AppState {
    pub cluster: Arc<RwLock<Arc<ClusterState>>>,
    pub config: Arc<WebhookConfig>,
    pub metrics: Arc<Metrics>,
    /// Denials are decided again on live state when set (the webhook process); tests of the
    /// router alone leave it unset.
    pub confirm: Option<Arc<dyn Confirm>>,
    /// Judges `one-sided` once an apply has settled (the webhook process).
    pub settle: Option<Arc<crate::settle::Settle>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .with_state(state)
}

fn plain(status: StatusCode, reason: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        reason + "\n",
    )
        .into_response()
}

async fn validate(State(state): State<AppState>, body: Body) -> Response {
    let start = Instant::now();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Err(_) => {
            state.metrics.bad_request("timeout");
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
            );
        }
        Ok(Err(_)) => {
            state.metrics.bad_request("too-large");
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY} bytes"),
            );
        }
        Ok(Ok(b)) => b,
    };
    let snapshot = state
        .cluster
        .read()
        .map(|g| g.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    match review(&bytes, &snapshot, &state.config) {
        Err(bad) => {
            state.metrics.bad_request("malformed");
            tracing::warn!(reason = %bad, "refused a malformed admission request");
            plain(StatusCode::BAD_REQUEST, bad.to_string())
        }
        Ok(mut decision) => {
            // A denial may rest on a cache that has not yet seen an object created an instant
            // ago (kubectl apply sends a file's objects one after another): decide again on
            // the apiserver's current view of the namespace. Denials are rare; allows never wait.
            if let (false, Some(confirm), Some(object), "NetworkPolicy") = (
                decision.allowed,
                &state.confirm,
                decision.object.clone(),
                decision.kind,
            ) {
                let namespace = object.split('/').next().unwrap_or_default().to_string();
                if let Some(fresh) = confirm.fresh(&namespace).await
                    && let Ok(again) = review(&bytes, &fresh, &state.config)
                {
                    if again.allowed {
                        tracing::info!(policy = %object, "allowed after reading the namespace afresh");
                    }
                    decision = again;
                }
            }
            if let (Some(settle), Some(pending)) = (&state.settle, decision.settle.clone()) {
                settle.schedule(pending);
            }
            state.metrics.observe(&decision, start.elapsed());
            if let Some(object) = &decision.object {
                let checks: Vec<String> = decision
                    .findings
                    .iter()
                    .map(|f| format!("{}:{}", f.check, f.severity.as_str()))
                    .collect();
                let skipped: Vec<&str> = decision.skipped.iter().map(|c| c.as_str()).collect();
                // Denials, warnings and skips are worth a line; a clean allow is not at load.
                if decision.findings.is_empty() && decision.skipped.is_empty() {
                    tracing::debug!(kind = decision.kind, policy = %object, allowed = true, dry_run = decision.dry_run, "reviewed");
                } else {
                    tracing::info!(
                        kind = decision.kind,
                        policy = %object,
                        allowed = decision.allowed,
                        dry_run = decision.dry_run,
                        findings = %checks.join(","),
                        skipped = %skipped.join(","),
                        "reviewed"
                    );
                }
            }
            (StatusCode::OK, axum::Json(decision.review)).into_response()
        }
    }
}
