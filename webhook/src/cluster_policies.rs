//! The cluster's ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2), for the checks.
//! Where their CRD is not installed the watch answers 404: that is said once, at info level,
//! and the watch retries on its backoff (at most every 30 s) without a warning; once the CRD
//! is installed the policies are read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use palisade_api::ClusterNetworkPolicy;
use palisade_policy::cluster_policy::ClusterPolicy;
use tokio::sync::Notify;

/// The reflector over ClusterNetworkPolicies, and whether their CRD is installed.
#[derive(Clone)]
pub struct ClusterPolicyWatch {
    store: Store<ClusterNetworkPolicy>,
    /// The last answer was 404: the CRD is not installed.
    missing: Arc<AtomicBool>,
}

/// Whether a watch error means the API does not exist (the CRD is not installed).
fn not_installed(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

impl ClusterPolicyWatch {
    /// Starts the reflector; `changed` is notified on every event and when the CRD comes or goes.
    pub fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        let (store, writer) = reflector::store();
        let watch = Self {
            store,
            missing: Arc::new(AtomicBool::new(false)),
        };
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<ClusterNetworkPolicy>::all(client.clone()),
                watcher::Config::default().any_semantic(),
            )
            .default_backoff()
            .modify(|o: &mut ClusterNetworkPolicy| o.managed_fields_mut().clear()),
        );
        let (missing, changed) = (watch.missing.clone(), changed.clone());
        tokio::spawn(async move {
            stream
                .for_each(|event| {
                    match &event {
                        Err(e) if not_installed(e) => {
                            if !missing.swap(true, Ordering::SeqCst) {
                                tracing::info!(
                                    "the ClusterNetworkPolicy CRD (policy.networking.k8s.io) is not installed: no ClusterNetworkPolicies to take into account; asking again about every 30 s"
                                );
                                changed.notify_one();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(kind = "ClusterNetworkPolicy", error = %e, "watch failed; retrying with backoff");
                        }
                        Ok(_) => {
                            if missing.swap(false, Ordering::SeqCst) {
                                tracing::info!("the ClusterNetworkPolicy CRD is installed now: reading ClusterNetworkPolicies");
                            }
                            changed.notify_one();
                        }
                    }
                    futures::future::ready(())
                })
                .await;
        });
        watch
    }

    /// How many are cached (none while the CRD is not installed).
    pub fn len(&self) -> usize {
        if self.missing.load(Ordering::SeqCst) {
            0
        } else {
            self.store.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached policies Palisade can evaluate. Those it cannot were refused at admission
    /// where the webhook ran; the enforcer reports them in its status.
    pub fn compiled(&self) -> Vec<ClusterPolicy> {
        if self.missing.load(Ordering::SeqCst) {
            return Vec::new();
        }
        self.store
            .state()
            .iter()
            .filter_map(|cnp| match ClusterPolicy::from_api(cnp) {
                Ok(p) => Some(p),
                Err(errors) => {
                    tracing::debug!(policy = %cnp.name_any(), errors = errors.len(), "ClusterNetworkPolicy not evaluated: Palisade cannot read it as written");
                    None
                }
            })
            .collect()
    }
}
