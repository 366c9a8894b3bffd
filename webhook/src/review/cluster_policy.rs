//! Review of ClusterNetworkPolicy CREATE and UPDATE: refused when Palisade cannot evaluate or
//! enforce it as written (each reason with where it is: an experimental peer, a value outside
//! the API); otherwise the checks across tiers (see `palisade_policy::checks`), judged with the
//! cluster as it will be once the policy is stored.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use palisade_api::ClusterNetworkPolicy;
use palisade_policy::checks::{self, Context};
use palisade_policy::cluster_policy::ClusterPolicy;

use super::{ClusterState, Verdict, object_as};
use crate::config::WebhookConfig;
use crate::messages;

pub(super) fn judge(
    request: &AdmissionRequest<DynamicObject>,
    state: &ClusterState,
    config: &WebhookConfig,
) -> Verdict {
    let name = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.clone())
        .unwrap_or_default();
    let refused = |message: String| Verdict {
        kind: "ClusterNetworkPolicy",
        object: Some(name.clone()),
        refusal: Some(message),
        ..Verdict::default()
    };
    let cnp: ClusterNetworkPolicy = match object_as(request) {
        Ok(c) => c,
        Err(e) => {
            return refused(format!(
                "Palisade cannot read ClusterNetworkPolicy {name}: {e}"
            ));
        }
    };
    let policy = match ClusterPolicy::from_api(&cnp) {
        Ok(p) => p,
        Err(errors) => {
            let shown: Vec<String> = errors
                .iter()
                .take(messages::SHORT_DENIALS)
                .map(|e| format!("  {e}"))
                .collect();
            let more = errors.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!("\n  ... and {more} more")
            } else {
                String::new()
            };
            return refused(format!(
                "Palisade refuses ClusterNetworkPolicy {name}: Palisade cannot evaluate or enforce \
                 it as written, and would otherwise leave it unenforced:\n{}{more}\nFix: change or \
                 remove what is named above (Palisade enforces ClusterNetworkPolicy v1beta1 and \
                 v1alpha2 with namespaces, pods and networks peers).",
                shown.join("\n")
            ));
        }
    };
    let annotations: BTreeMap<String, String> =
        cnp.metadata.annotations.clone().unwrap_or_default();
    let ctx = Context {
        cluster: &state.cluster,
        enforcement: state.enforcement.as_ref(),
        knows_pods: true,
        knows_namespaces: true,
    };
    let report = checks::run_cluster_policy(&policy, &annotations, &ctx, &config.checks);
    let warnings = messages::warnings(&name, &report, None);
    let message = report
        .denied()
        .then(|| messages::refusal_of("ClusterNetworkPolicy", &name, report.denials()));
    Verdict {
        kind: "ClusterNetworkPolicy",
        object: Some(name),
        refusal: message,
        warnings,
        report,
        settle: None,
    }
}
