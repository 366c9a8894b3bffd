//! Palisade's operator: default-deny baselines in every namespace that opts in by label,
//! configured by the cluster-scoped `NetworkBaseline` resource.

pub mod crd_upgrade;
pub mod leader;
pub mod metrics;
pub mod ownership;
pub mod reconcile;
pub mod webhook_health;
