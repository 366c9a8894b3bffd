//! The cluster's ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1, or v1alpha2), for the checks.
//! Where their CRD is not installed, nothing is cached and nothing is said but one info line
//! (see `palisade_runtime::optional_watch`); once the CRD is installed the policies are read.

use std::sync::Arc;

use kube::Client;
use palisade_api::ClusterNetworkPolicy;
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

    /// The cached policies, as written. The webhook's snapshot reads them as the enforcer
    /// and the CLI do ([`palisade_policy::snapshot::Snapshot::build`]), so a policy the
    /// enforcer enforces failing closed is judged failing closed here too, and one it leaves
    /// out is left out. (Such policies are refused at admission where the webhook runs; they
    /// exist where it did not, e.g. created before it was installed.)
    pub fn state(&self) -> Vec<Arc<ClusterNetworkPolicy>> {
        self.0.state()
    }
}
