//! One admission review, decided as a pure function of the request body, the cluster state and
//! the configuration. The apiserver always gets a well-formed AdmissionReview back with its uid;
//! only a body that is not an AdmissionReview at all gets an HTTP error with the reason.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_policy::checks::{self, CheckConfig, CheckId, Context, Enforcement, Finding, Mode};
use palisade_policy::{Cluster, Policy};
use serde_json::{Value, json};

use crate::config::{WebhookConfig, managed_by_gitops};

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
}

/// The verdict, for the response, logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The AdmissionReview to send back.
    pub review: Value,
    pub allowed: bool,
    /// `namespace/name` of the object, when it was a NetworkPolicy that was judged.
    pub object: Option<String>,
    pub findings: Vec<Finding>,
    pub skipped: Vec<CheckId>,
    pub dry_run: bool,
}

const MAX_WARNING: usize = 119;

fn response(uid: &Value, allowed: bool, message: Option<String>, warnings: Vec<String>) -> Value {
    let mut r = json!({ "uid": uid, "allowed": allowed });
    if let Some(m) = message {
        r["status"] = json!({ "code": 403, "reason": "Forbidden", "message": m });
    }
    if !warnings.is_empty() {
        r["warnings"] = json!(warnings);
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r })
}

fn fit(line: String) -> String {
    if line.chars().count() <= MAX_WARNING {
        return line;
    }
    let cut: String = line.chars().take(MAX_WARNING - 3).collect();
    format!("{cut}...")
}

pub fn review(
    body: &[u8],
    state: &ClusterState,
    config: &WebhookConfig,
) -> Result<Decision, BadReview> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadReview::Empty);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| BadReview::Json(e.to_string()))?;
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" {
        return Err(BadReview::ApiVersion(api_version.to_string()));
    }
    let kind = v["kind"].as_str().unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(BadReview::Kind(kind.to_string()));
    }
    let request = v
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(BadReview::NoRequest)?;
    let uid = request
        .get("uid")
        .filter(|u| u.as_str().is_some_and(|s| !s.is_empty()))
        .ok_or(BadReview::NoUid)?;
    let dry_run = request["dryRun"].as_bool().unwrap_or(false);
    // A verdict without check findings: allowed when there is no message.
    let plain = |object: Option<String>, message: Option<String>| Decision {
        review: response(uid, message.is_none(), message.clone(), Vec::new()),
        allowed: message.is_none(),
        object,
        findings: Vec::new(),
        skipped: Vec::new(),
        dry_run,
    };

    let is_policy = request["kind"]["group"] == "networking.k8s.io"
        && request["kind"]["kind"] == "NetworkPolicy";
    let is_baseline =
        request["kind"]["group"] == "palisade.dev" && request["kind"]["kind"] == "NetworkBaseline";
    let judged = matches!(request["operation"].as_str(), Some("CREATE" | "UPDATE"));
    if is_baseline && judged {
        let (message, warnings) = crate::baseline::judge(&request["object"], &state.cluster);
        let object = request["name"].as_str().map(String::from);
        let warnings: Vec<String> = warnings.into_iter().map(fit).collect();
        return Ok(Decision {
            review: response(uid, message.is_none(), message.clone(), warnings),
            allowed: message.is_none(),
            object,
            findings: Vec::new(),
            skipped: Vec::new(),
            dry_run,
        });
    }
    if !is_policy || !judged {
        return Ok(plain(None, None));
    }
    let mut np: NetworkPolicy = match serde_json::from_value(request["object"].clone()) {
        Ok(np) => np,
        Err(e) => {
            return Ok(plain(
                None,
                Some(format!("Palisade cannot read this NetworkPolicy: {e}")),
            ));
        }
    };
    if np.metadata.namespace.is_none() {
        np.metadata.namespace = request["namespace"].as_str().map(String::from);
    }
    let object = format!(
        "{}/{}",
        np.metadata.namespace.as_deref().unwrap_or("default"),
        np.metadata
            .name
            .as_deref()
            .or(request["name"].as_str())
            .unwrap_or_default()
    );
    let policy = match Policy::compile(&np) {
        Ok(p) => p,
        Err(e) => {
            let message = format!("NetworkPolicy {object}: {e}");
            return Ok(plain(Some(object), Some(message)));
        }
    };

    let mut checks_config: CheckConfig = config.checks.clone();
    let gitops = managed_by_gitops(&policy.labels, &policy.annotations);
    if gitops.is_some() && checks_config.mode(CheckId::UnmatchedSelector) == Mode::Deny {
        checks_config
            .modes
            .insert(CheckId::UnmatchedSelector, config.gitops_unmatched_selector);
    }
    let ctx = Context {
        cluster: &state.cluster,
        enforcement: state.enforcement.as_ref(),
        knows_pods: true,
        knows_namespaces: true,
    };
    let report = checks::run(&policy, &ctx, &checks_config);

    let denials: Vec<String> = report
        .denials()
        .map(|f| format!("[{}] {}", f.check, f.message))
        .collect();
    let warnings: Vec<String> = report
        .warnings()
        .map(|f| match (f.check, gitops) {
            (CheckId::UnmatchedSelector, Some(tool)) => fit(format!(
                "[{}] {tool}-managed, so a warning: {}",
                f.check, f.summary
            )),
            _ => fit(format!("[{}] {}", f.check, f.summary)),
        })
        .collect();
    let allowed = denials.is_empty();
    let message = (!allowed).then(|| {
        let mut m = format!("Palisade refuses NetworkPolicy {object}:\n\n");
        m.push_str(&denials.join("\n\n"));
        m
    });
    Ok(Decision {
        review: response(uid, allowed, message, warnings),
        allowed,
        object: Some(object),
        findings: report.findings,
        skipped: report.skipped,
        dry_run,
    })
}
