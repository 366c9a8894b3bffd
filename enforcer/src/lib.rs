//! Palisade's per-node enforcer: makes NetworkPolicies real on nodes whose CNI ignores them.
//!
//! The pure half lives here and is tested without a kernel:
//! - [`cni`] reads the node's CNI configuration and says whether its plugins enforce policy;
//! - [`compile`] turns a cluster snapshot into a [`Ruleset`] (chains and ipsets) for one node,
//!   with exactly the semantics of [`palisade_policy::Cluster::evaluate`];
//! - [`render`] turns a ruleset into `ipset restore` and `iptables-restore --noflush` input that
//!   rewrites only what changed, and parses what the host has back for comparison;
//! - [`interpret`] runs a packet through a ruleset, so tests can prove compiler and semantics
//!   agree;
//! - [`sync`] is one sync of the node's rules as a value, with the kernel behind a trait.
//!
//! [`event_loop`] watches the cluster and runs those syncs; [`apply`] and [`conntrack`] are
//! what they do in the kernel.

pub mod apply;
pub mod backend;
pub mod cluster_policies;
pub mod cni;
pub mod compile;
pub mod conntrack;
pub mod ctnetlink;
pub mod denials;
pub mod event_loop;
pub mod first_packet;
pub mod heap;
pub mod interpret;
pub mod lifecycle;
pub mod metrics;
pub mod mode;
pub mod nfnetlink;
pub mod render;
pub mod ruleset;
pub mod status;
pub mod sync;

pub use compile::{CompileOptions, compile};
pub use ruleset::{IpSet, Match, RuleLine, Ruleset, SetEntry, SetKind, Summary, Target};
