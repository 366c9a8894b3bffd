//! The cluster's ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2), for the checks.
//! Where their CRD is not installed, nothing is cached and nothing is said but one info line
//! (see `palisade_runtime::optional_watch`); once the CRD is installed the policies are read.

use std::sync::Arc;

use kube::{Client, ResourceExt};
use palisade_api::ClusterNetworkPolicy;
use palisade_policy::cluster_policy::ClusterPolicy;
use palisade_runtime::optional_watch::OptionalWatch;
use tokio::sync::Notify;

/// The cached ClusterNetworkPolicies (none while their CRD is not installed).
#[derive(Clone)]
pub struct ClusterPolicyWatch(OptionalWatch<ClusterNetworkPolicy>);

impl ClusterPolicyWatch {
    /// Starts the reflector; `changed` is notified on every event and when the CRD goes.
    pub fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        Self(OptionalWatch::start(client, changed))
    }

    /// How many are cached.
    pub fn len(&self) -> usize {
        self.0.state().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached policies Palisade can evaluate. Those it cannot were refused at admission
    /// where the webhook ran; the enforcer reports them in its status.
    pub fn compiled(&self) -> Vec<ClusterPolicy> {
        self.0
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
