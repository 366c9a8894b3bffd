//! NetworkPolicy semantics for Palisade: one implementation that the webhook, the enforcer and
//! the `palisade` CLI (crate `palisade-cli`) share, so they never disagree about what a policy
//! means. Besides the semantics and the checks, the reader of YAML/JSON manifests ([`input`])
//! lives here: the webhook's, the enforcer's and the harness's tests and [`synthetic`] read
//! clusters through it.

pub mod checks;
pub mod cluster;
pub mod cluster_policy;
pub mod cluster_policy_reading;
pub mod desired;
pub mod input;
pub mod model;
pub mod node_enforcement;
pub mod policy;
pub mod reach;
pub mod selector;
pub mod snapshot;
#[cfg(feature = "strategies")]
pub mod strategies;
pub mod synthetic;
pub mod verdict;

pub use cluster::{Cluster, Endpoint};
pub use cluster_policy::{
    Action, ClusterPeer, ClusterPolicy, ClusterPolicyError, ClusterPort, ClusterRule, Subject, Tier,
};
pub use model::{ContainerPort, IpFamily, Namespace, Phase, Pod, Protocol, Workload};
pub use policy::{Direction, Peer, Policy, PolicyError, PolicyRef, Rule};
pub use selector::{Labels, Selector};
pub use verdict::{Decision, Verdict};
