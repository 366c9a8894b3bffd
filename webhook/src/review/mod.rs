//! One admission review, decided as a pure function of the request body, the cluster state and
//! the configuration. The apiserver always gets a well-formed AdmissionReview back with its uid;
//! only a body that is not an AdmissionReview at all gets an HTTP error with the reason.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_policy::checks::{self, CheckConfig, CheckId, Context, Enforcement, Finding, Mode};
use palisade_policy::{Cluster, Policy};
use serde_json::{Value, json};

use crate::config::{WebhookConfig, managed_by_gitops};
use crate::messages;

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
        kind: if object.is_some() {
            "NetworkPolicy"
        } else {
            ""
        },
        object,
        findings: Vec::new(),
        skipped: Vec::new(),
        dry_run,
        settle: None,
    };

    let is_policy = request["kind"]["group"] == "networking.k8s.io"
        && request["kind"]["kind"] == "NetworkPolicy";
    let is_baseline =
        request["kind"]["group"] == "palisade.dev" && request["kind"]["kind"] == "NetworkBaseline";
    let judged = matches!(request["operation"].as_str(), Some("CREATE" | "UPDATE"));
    if is_baseline && judged {
        let (message, warnings) = crate::baseline::judge(&request["object"], &state.cluster);
        let object = request["name"].as_str().map(String::from);
        let name = object.clone().unwrap_or_default();
        let warnings: Vec<String> = warnings
            .iter()
            .map(|w| messages::warning_line("NetworkBaseline", &name, w))
            .collect();
        return Ok(Decision {
            review: response(uid, message.is_none(), message.clone(), warnings),
            allowed: message.is_none(),
            object,
            kind: "NetworkBaseline",
            findings: Vec::new(),
            skipped: Vec::new(),
            dry_run,
            settle: None,
        });
    }
    let is_cluster_policy = request["kind"]["group"] == "policy.networking.k8s.io"
        && request["kind"]["kind"] == "ClusterNetworkPolicy";
    if is_cluster_policy && judged {
        let j = crate::cluster_review::judge(&request["object"], state, config);
        let allowed = j.message.is_none();
        return Ok(Decision {
            review: response(uid, allowed, j.message, j.warnings),
            allowed,
            object: Some(j.name),
            kind: "ClusterNetworkPolicy",
            findings: j.report.findings,
            skipped: j.report.skipped,
            dry_run,
            settle: None,
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
        Ok(mut p) => {
            // The apiserver has filled in policyTypes by now; what the user wrote says whether
            // they were chosen.
            if let Some(written) = policy_types_written(&request["object"]) {
                p.implicit_types = !written;
            }
            p
        }
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
    // `one-sided` depends on other policies, which may come later in the same `kubectl apply`:
    // it is not decided now, but once the apply has settled (see `settle`).
    let one_sided = checks_config.mode(CheckId::OneSided);
    checks_config.modes.insert(CheckId::OneSided, Mode::Off);
    let report = checks::run(&policy, &ctx, &checks_config);

    // kubectl prints each warning just before the object's own `.../NAME created` line.
    let warnings = messages::warnings(&policy.name, &report, gitops);
    let allowed = !report.denied();
    let message = (!allowed).then(|| messages::refusal(&object, report.denials()));
    let settle = (allowed
        && !dry_run
        && one_sided != Mode::Off
        && !checks::skip_list(&policy).0.contains(&CheckId::OneSided)
        && policy.all_rules().any(|(_, _, r)| !r.peers.is_empty()))
    .then(|| Pending {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        uid: np.metadata.uid.clone(),
    });
    Ok(Decision {
        review: response(uid, allowed, message, warnings),
        allowed,
        object: Some(object),
        kind: "NetworkPolicy",
        findings: report.findings,
        skipped: report.skipped,
        dry_run,
        settle,
    })
}

/// Whether the user wrote `spec.policyTypes`, from what kubectl recorded of the applied object:
/// the last-applied-configuration annotation (client-side apply), or the managed fields of a
/// server-side apply. `None`: cannot tell (e.g. `kubectl create`).
fn policy_types_written(object: &Value) -> Option<bool> {
    let meta = &object["metadata"];
    if let Some(applied) = meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
    {
        return Some(!applied["spec"]["policyTypes"].is_null());
    }
    let managed = meta["managedFields"].as_array()?;
    if managed.is_empty() || managed.iter().any(|m| m["operation"] != "Apply") {
        return None;
    }
    Some(
        managed
            .iter()
            .any(|m| !m["fieldsV1"]["f:spec"]["f:policyTypes"].is_null()),
    )
}
