//! Uninstalling: rules stay in force across restarts and upgrades, and go with the DaemonSet.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{pods} enforcer pods still running after {waited:?}")]
    Timeout { pods: usize, waited: Duration },
}

/// Called when the enforcer stops: if its DaemonSet is gone or being deleted, Palisade is being
/// uninstalled and this node's rules are removed; otherwise (a restart, an upgrade) they stay.
pub async fn clean_up_if_uninstalled(client: Client, namespace: &str, daemonset: &str) {
    let api: Api<DaemonSet> = Api::namespaced(client, namespace);
    match api.get_opt(daemonset).await {
        Ok(Some(ds)) if ds.metadata.deletion_timestamp.is_none() => {
            tracing::info!("the rules stay in force until the next enforcer replaces them");
        }
        Ok(_) => {
            tracing::info!(%daemonset, "the DaemonSet is gone: removing Palisade's rules from this node");
            match tokio::task::spawn_blocking(crate::apply::cleanup).await {
                Ok(Ok(_)) => tracing::info!("rules and sets removed"),
                Ok(Err(e)) => tracing::error!(error = %e, "cleanup failed"),
                Err(e) => tracing::error!(error = %e, "cleanup task"),
            }
        }
        // Unknown: keeping the rules is the safe side.
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether Palisade is being uninstalled; the rules stay")
        }
    }
}

/// Deletes the enforcer DaemonSet and waits until none of its pods is left.
pub async fn uninstall(
    client: Client,
    namespace: &str,
    daemonset: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let Some(ds) = api.get_opt(daemonset).await? else {
        tracing::info!(%daemonset, "no enforcer DaemonSet: nothing to do");
        return Ok(());
    };
    let selector = ds
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    match api.delete(daemonset, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(%daemonset, "deleted; waiting for the enforcers to remove their rules");
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let start = Instant::now();
    loop {
        let left = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .len();
        if left == 0 {
            tracing::info!("every enforcer has finished");
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                pods: left,
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
