//! Uninstalling: rules stay in force across restarts and upgrades, and go with the DaemonSet.
//!
//! `helm uninstall` deletes the DaemonSet, then the chart's RBAC, and only then does the garbage
//! collector stop the enforcer pods. So the enforcer watches its own DaemonSet from the start:
//! when it stops it already knows whether the DaemonSet was deleted, even if it can no longer
//! ask the API. No hook Job is needed, so an uninstall never waits on an image that cannot be
//! pulled.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use palisade_runtime::watch::watch_with;
use tokio::sync::Notify;

use crate::backend::Detection;

/// The enforcer's view of its own DaemonSet.
pub struct OwnDaemonSet {
    name: String,
    api: Api<DaemonSet>,
    store: Store<DaemonSet>,
}

impl OwnDaemonSet {
    /// Starts watching the DaemonSet `name` in `namespace` (RBAC: get, list, watch on that
    /// name only).
    pub fn watch(client: &Client, namespace: &str, name: &str) -> Self {
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
        let store = watch_with(
            api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
            &Arc::new(Notify::new()),
        );
        Self {
            name: name.to_string(),
            api,
            store,
        }
    }

    /// Whether the DaemonSet is gone or being deleted: from the watch when it has synced, else
    /// from the API; `None` when neither can tell.
    pub async fn uninstalled(&self) -> Option<bool> {
        if self.store.wait_until_ready().now_or_never().is_some() {
            return Some(
                self.store
                    .state()
                    .iter()
                    .all(|ds| ds.metadata.deletion_timestamp.is_some()),
            );
        }
        match self.api.get_opt(&self.name).await {
            Ok(ds) => Some(ds.is_none_or(|ds| ds.metadata.deletion_timestamp.is_some())),
            Err(e) => {
                tracing::warn!(error = %e, daemonset = %self.name, "cannot read the DaemonSet");
                None
            }
        }
    }

    /// Called when the enforcer stops: if its DaemonSet is gone or being deleted, Palisade is
    /// being uninstalled and this node's rules are removed from the backend in use; otherwise (a restart, an upgrade)
    /// they stay.
    pub async fn clean_up_if_uninstalled(&self, detection: Detection) {
        match self.uninstalled().await {
            Some(false) => {
                tracing::info!("the rules stay in force until the next enforcer replaces them")
            }
            Some(true) => {
                tracing::info!(daemonset = %self.name, "the DaemonSet is gone: removing Palisade's rules from this node");
                match tokio::task::spawn_blocking(move || {
                    crate::apply::cleanup_families(detection.backend, &detection.families)
                })
                .await
                {
                    Ok(Ok(_)) => tracing::info!("rules and sets removed"),
                    Ok(Err(e)) => tracing::error!(error = %e, "cleanup failed"),
                    Err(e) => tracing::error!(error = %e, "cleanup task"),
                }
            }
            // Unknown: keeping the rules is the safe side.
            None => {
                tracing::warn!("cannot tell whether Palisade is being uninstalled; the rules stay")
            }
        }
    }
}
