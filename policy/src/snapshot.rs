//! The cluster objects a component evaluates, built one way: the webhook (for its checks) and
//! the enforcer (for its rules) hand their caches' objects here, so both read NetworkPolicies
//! and ClusterNetworkPolicies alike (the latter through
//! [`crate::cluster_policy_reading`], which the CLI uses too).

use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_api::ClusterNetworkPolicy;

use crate::cluster::Cluster;
use crate::cluster_policy_reading::{self, ClusterPolicies};
use crate::model::{Namespace, Pod, Workload};
use crate::policy::Policy;

/// The cluster as one component's caches have it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Namespaces, pods, workloads and the NetworkPolicies understood; the ClusterNetworkPolicy
    /// tiers are added by [`Snapshot::with_tiers`] (the enforcer adds them only on a node that
    /// enforces them).
    pub cluster: Cluster,
    /// The NetworkPolicies that cannot be understood, each as `namespace/name: why`.
    pub policy_errors: Vec<String>,
    /// The ClusterNetworkPolicies as Palisade reads them.
    pub cluster_policies: ClusterPolicies,
}

impl Snapshot {
    /// Builds the snapshot of the objects given, in any order.
    pub fn build<'a>(
        namespaces: impl IntoIterator<Item = Namespace>,
        pods: Vec<Pod>,
        workloads: Vec<Workload>,
        network_policies: impl IntoIterator<Item = &'a NetworkPolicy>,
        cluster_policies: impl IntoIterator<Item = &'a ClusterNetworkPolicy>,
    ) -> Self {
        let mut policy_errors = Vec::new();
        let policies = network_policies
            .into_iter()
            .filter_map(|np| match Policy::compile(np) {
                Ok(p) => Some(p),
                Err(e) => {
                    policy_errors.push(format!(
                        "{}/{}: {e}",
                        np.metadata.namespace.as_deref().unwrap_or_default(),
                        np.metadata.name.as_deref().unwrap_or_default()
                    ));
                    None
                }
            })
            .collect();
        Snapshot {
            cluster: Cluster::new(namespaces, pods, workloads, policies),
            policy_errors,
            cluster_policies: cluster_policy_reading::read_all(cluster_policies),
        }
    }

    /// The cluster with the ClusterNetworkPolicy tiers, as Palisade evaluates them.
    pub fn with_tiers(self) -> Cluster {
        self.cluster
            .with_cluster_policies(self.cluster_policies.policies)
    }
}
