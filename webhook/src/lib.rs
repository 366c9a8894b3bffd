//! Palisade's validating admission webhook: refuses NetworkPolicies that would silently do
//! nothing, with the reason and the fix, and warns where a rule is only suspicious.

pub mod caches;
pub mod certs;
pub mod cluster_policies;
pub mod config;
pub mod messages;
pub mod metrics;
pub mod review;
pub mod run;
pub mod selftest;
pub mod server;
pub mod settle;
