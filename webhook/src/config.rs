//! What the webhook is told: per-check modes, and how to treat objects deployed by tools that
//! apply policies before their workloads.

use std::collections::BTreeMap;

use palisade_policy::checks::{CheckConfig, Mode};

/// Labels and annotations that say an object comes from Helm, Argo CD or Flux.
const GITOPS_MARKERS: &[(&str, Option<&str>)] = &[
    ("app.kubernetes.io/managed-by", Some("Helm")),
    ("helm.sh/chart", None),
    ("argocd.argoproj.io/instance", None),
    ("argocd.argoproj.io/tracking-id", None),
    ("kustomize.toolkit.fluxcd.io/name", None),
    ("helm.toolkit.fluxcd.io/name", None),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub checks: CheckConfig,
    /// The `unmatched-selector` mode for objects managed by Helm, Argo CD or Flux, which apply
    /// policies before (or in other batches than) the workloads they select.
    pub gitops_unmatched_selector: Mode,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            checks: CheckConfig::default(),
            gitops_unmatched_selector: Mode::Warn,
        }
    }
}

/// Whether labels or annotations mark the object as deployed by Helm, Argo CD or Flux.
pub fn managed_by_gitops(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<&'static str> {
    for (key, value) in GITOPS_MARKERS {
        let found = labels.get(*key).or_else(|| annotations.get(*key));
        if let Some(v) = found
            && value.is_none_or(|want| want == v)
        {
            return Some(if key.contains("argocd") {
                "Argo CD"
            } else if key.contains("fluxcd") {
                "Flux"
            } else {
                "Helm"
            });
        }
    }
    None
}
