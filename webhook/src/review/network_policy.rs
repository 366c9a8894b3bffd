//! Review of NetworkPolicy CREATE and UPDATE: refused when it cannot be read or compiled, or
//! when a check in deny mode finds it ineffective; warned about where a rule is only
//! suspicious. `one-sided` is left to `settle`, once the apply it came with has arrived.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use palisade_policy::Policy;
use palisade_policy::checks::{self, CheckConfig, CheckId, Context, Mode};
use serde_json::Value;

use super::{ClusterState, Pending, Verdict, object_as};
use crate::config::{WebhookConfig, managed_by_gitops};
use crate::messages;

pub(super) fn judge(
    request: &AdmissionRequest<DynamicObject>,
    state: &ClusterState,
    config: &WebhookConfig,
) -> Verdict {
    let mut np: NetworkPolicy = match object_as(request) {
        Ok(np) => np,
        Err(e) => {
            return Verdict::unreadable(format!("Palisade cannot read this NetworkPolicy: {e}"));
        }
    };
    if np.metadata.namespace.is_none() {
        np.metadata.namespace = request.namespace.clone();
    }
    let object = format!(
        "{}/{}",
        np.metadata.namespace.as_deref().unwrap_or("default"),
        np.metadata.name.as_deref().unwrap_or(&request.name)
    );
    let policy = match Policy::compile(&np) {
        Ok(mut p) => {
            // The apiserver has filled in policyTypes by now; what the user wrote says whether
            // they were chosen.
            if let Some(written) = policy_types_written(&np.metadata) {
                p.implicit_types = !written;
            }
            p
        }
        Err(e) => {
            return Verdict {
                kind: "NetworkPolicy",
                refusal: Some(format!("NetworkPolicy {object}: {e}")),
                object: Some(object),
                ..Verdict::default()
            };
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
    let audit = state.cluster.audit_mode(&policy);
    let warnings = messages::policy_warnings(&policy, audit, &report, gitops);
    let allowed = !report.denied();
    let refusal = (!allowed).then(|| messages::refusal(&object, report.denials()));
    let settle = (allowed
        && !request.dry_run
        && one_sided != Mode::Off
        && !checks::skip_list(&policy).0.contains(&CheckId::OneSided)
        && policy.all_rules().any(|(_, _, r)| !r.peers.is_empty()))
    .then(|| Pending {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        uid: np.metadata.uid.clone(),
    });
    Verdict {
        kind: "NetworkPolicy",
        object: Some(object),
        refusal,
        warnings,
        report,
        settle,
    }
}

/// Whether the user wrote `spec.policyTypes`, from what kubectl recorded of the applied object:
/// the last-applied-configuration annotation (client-side apply), or the managed fields of a
/// server-side apply. `None`: cannot tell (e.g. `kubectl create`).
fn policy_types_written(meta: &ObjectMeta) -> Option<bool> {
    if let Some(applied) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/last-applied-configuration"))
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
    {
        return Some(!applied["spec"]["policyTypes"].is_null());
    }
    let managed = meta.managed_fields.as_ref()?;
    if managed.is_empty()
        || managed
            .iter()
            .any(|m| m.operation.as_deref() != Some("Apply"))
    {
        return None;
    }
    Some(managed.iter().any(|m| {
        m.fields_v1
            .as_ref()
            .is_some_and(|f| !f.0["f:spec"]["f:policyTypes"].is_null())
    }))
}
