//! Palisade's validating admission webhook: refuses NetworkPolicies that would silently do
//! nothing, with the reason and the fix, and warns where a rule is only suspicious.

pub mod baseline;
pub mod caches;
pub mod config;
pub mod metrics;
pub mod review;
pub mod run;
pub mod server;
