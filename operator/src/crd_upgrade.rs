//! Helm installs a chart's `crds/` on the first install only and never upgrades them. So the
//! operator brings Palisade's CRDs to its own version when it starts leading: it server-side
//! applies the CRDs its types generate (stamped `palisade.dev/version`), which keeps every stored
//! NetworkBaseline, and it refuses to run against CRDs stamped by a newer Palisade, whose schema
//! it does not know: an old replica or a rollback must not strip fields that stored objects use.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use palisade_api::{VERSION_ANNOTATION, crds};

const FIELD_MANAGER: &str = "palisade-operator";

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error(
        "the cluster's CRD {crd} comes from Palisade {theirs}, newer than this operator ({ours}), \
         whose schema it does not know; this operator will not run against it. Run Palisade \
         {theirs} or later (helm upgrade), or, to go back to {ours} on purpose, remove the \
         annotation {VERSION_ANNOTATION} from the CRD"
    )]
    Newer {
        crd: String,
        theirs: String,
        ours: String,
    },
    #[error("updating the CRD {crd}: {source}")]
    Kube {
        crd: String,
        #[source]
        source: kube::Error,
    },
}

/// Whether version `a` is newer than `b`, comparing dotted numbers (`0.10.0` > `0.9.3`); a
/// part that is not a number counts as 0.
pub fn newer(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parts(a) > parts(b)
}

/// Refuses when the CRD in the cluster (its version annotation, if any) is newer than `ours`.
pub fn check(crd: &str, in_cluster: Option<&str>, ours: &str) -> Result<(), CrdError> {
    match in_cluster {
        Some(theirs) if newer(theirs, ours) => Err(CrdError::Newer {
            crd: crd.into(),
            theirs: theirs.into(),
            ours: ours.into(),
        }),
        _ => Ok(()),
    }
}

/// Applies Palisade's CRDs unless the cluster's are newer; retried a few times on API errors.
pub async fn bring_up_to_date(client: &Client) -> Result<(), CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ours = env!("CARGO_PKG_VERSION");
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let existing = api.get_opt(&name).await?;
                let theirs = existing.as_ref().and_then(|c| {
                    c.metadata
                        .annotations
                        .as_ref()?
                        .get(VERSION_ANNOTATION)
                        .cloned()
                });
                Ok::<_, kube::Error>(theirs)
            }
            .await;
            let outcome = match result {
                Ok(theirs) => {
                    check(&name, theirs.as_deref(), ours)?;
                    api.patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&crd),
                    )
                    .await
                    .map(|_| theirs)
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(theirs) => {
                    tracing::info!(crd = %name, from = theirs.as_deref().unwrap_or("unknown"), to = ours, "CRD up to date");
                    break;
                }
                Err(source) if attempt >= 5 => {
                    return Err(CrdError::Kube { crd: name, source });
                }
                Err(e) => {
                    tracing::warn!(crd = %name, error = %e, attempt, "updating the CRD; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    Ok(())
}
