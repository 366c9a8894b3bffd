//! Review of ClusterNetworkPolicy CREATE and UPDATE: refused when Palisade cannot evaluate or
//! enforce it as written (each reason with where it is: an experimental peer, a value outside
//! the API); otherwise the checks across tiers (see `palisade_policy::checks`), judged with the
//! cluster as it will be once the policy is stored.

use std::collections::BTreeMap;

use palisade_api::ClusterNetworkPolicy;
use palisade_policy::checks::{self, Context, Report};
use palisade_policy::cluster_policy::ClusterPolicy;
use serde_json::Value;

use crate::config::WebhookConfig;
use crate::messages;
use crate::review::ClusterState;

/// What the webhook answers about one ClusterNetworkPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub name: String,
    /// The refusal, when refused.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub report: Report,
}

pub fn judge(object: &Value, state: &ClusterState, config: &WebhookConfig) -> Judgement {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let refused = |message: String| Judgement {
        name: name.clone(),
        message: Some(message),
        warnings: Vec::new(),
        report: Report::default(),
    };
    let cnp: ClusterNetworkPolicy = match serde_json::from_value(object.clone()) {
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
                 remove what is named above (Palisade enforces the standard channel of \
                 ClusterNetworkPolicy v1alpha2: namespaces, pods and networks peers).",
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
    Judgement {
        name,
        message,
        warnings,
        report,
    }
}
