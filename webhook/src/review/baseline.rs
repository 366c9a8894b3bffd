//! Review of `NetworkBaseline` objects: what the CRD schema cannot know. A baseline the operator
//! could not turn into policies is refused with the operator's own reason; names that point at
//! nothing (namespaces that do not exist, DNS resolvers no pod matches) are warned about, since a
//! default deny without working DNS breaks every lookup in the namespaces that opt in.

use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use palisade_api::NetworkBaseline;
use palisade_policy::Cluster;
use palisade_policy::desired::desired_policies;

use super::{Verdict, object_as};
use crate::messages;

/// The verdict on one baseline: its refusal, if any, and its warnings, each naming it.
pub(super) fn judge(request: &AdmissionRequest<DynamicObject>, cluster: &Cluster) -> Verdict {
    let (refusal, warnings) = match object_as(request) {
        Ok(baseline) => judge_baseline(&baseline, cluster),
        Err(e) => (
            Some(format!("Palisade cannot read this NetworkBaseline: {e}")),
            Vec::new(),
        ),
    };
    let warnings = warnings
        .iter()
        .map(|w| messages::warning_line("NetworkBaseline", &request.name, w))
        .collect();
    Verdict {
        kind: "NetworkBaseline",
        object: Some(request.name.clone()),
        refusal,
        warnings,
        ..Verdict::default()
    }
}

/// The refusal (if any) and the warnings for one baseline object.
fn judge_baseline(baseline: &NetworkBaseline, cluster: &Cluster) -> (Option<String>, Vec<String>) {
    let name = baseline.metadata.name.clone().unwrap_or_default();
    let spec = &baseline.spec;
    if let Err(e) = desired_policies(&name, spec, "validation") {
        return (
            Some(format!(
                "Palisade refuses NetworkBaseline {name}: {e}. No namespace could be given this baseline."
            )),
            Vec::new(),
        );
    }
    let mut warnings = Vec::new();
    let named = spec
        .allow
        .from_namespaces
        .iter()
        .map(|n| ("spec.allow.fromNamespaces", n))
        .chain(spec.allow.egress.iter().flat_map(|e| {
            e.namespaces
                .iter()
                .map(|n| ("spec.allow.egress[].namespaces", n))
        }));
    for (field, ns) in named {
        if !cluster.has_namespace(ns) {
            warnings.push(format!("{field}: namespace {ns} does not exist (yet)"));
        }
    }
    if spec.dns.enabled && spec.dns.node_local_ip.is_none() {
        let resolvers = cluster.pods().iter().filter(|p| {
            p.is_peer()
                && spec
                    .dns
                    .pod_selector
                    .iter()
                    .all(|(k, v)| p.labels.get(k) == Some(v))
                && {
                    let labels = cluster.namespace_labels(&p.namespace);
                    spec.dns
                        .namespace_selector
                        .iter()
                        .all(|(k, v)| labels.get(k) == Some(v))
                }
        });
        if resolvers.count() == 0 {
            warnings.push(
                "spec.dns matches no running pod: DNS lookups will fail in opted-in namespaces"
                    .into(),
            );
        }
    }
    (None, warnings)
}
