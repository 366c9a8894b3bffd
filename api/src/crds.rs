//! Palisade's CustomResourceDefinitions, generated from the types.

use crate::{NetworkBaseline, NodeEnforcement};

/// The annotation on Palisade's CRDs naming the Palisade version whose types generated them.
pub const VERSION_ANNOTATION: &str = "palisade.dev/version";

/// Palisade's CustomResourceDefinitions, generated from the types and stamped with this
/// version (`VERSION_ANNOTATION`).
pub fn crds()
-> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 2]
{
    use kube::CustomResourceExt;
    let mut crds = [NetworkBaseline::crd(), NodeEnforcement::crd()];
    for crd in &mut crds {
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(VERSION_ANNOTATION.into(), env!("CARGO_PKG_VERSION").into());
    }
    crds
}

/// Palisade's CustomResourceDefinitions as YAML, as `crdgen` prints them and the chart ships
/// them.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let [baselines, nodes] = crds();
    Ok(format!(
        "---\n{}---\n{}",
        serde_saphyr::to_string(&baselines)?,
        serde_saphyr::to_string(&nodes)?
    ))
}
