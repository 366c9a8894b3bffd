//! `palisade-cni`, a chained CNI plugin: in ADD it tells the node's enforcer the new pod's
//! namespace, name and addresses (from the previous plugin's result) and returns only once the
//! enforcer says the pod's rules are in the kernel, so a pod whose policies deny traffic never
//! sends or receives a denied packet. When the enforcer does not confirm within the plugin's
//! timeout (down, restarting, upgrading) ADD fails: the pod stays without network and the
//! kubelet shows the reason in the pod's events and tries again (fail closed).
//!
//! The pure parts live here ([`args`], [`netconf`], [`protocol`], [`error`], [`plugin`]); the
//! binary only wires them to the process's environment, stdin, stdout and the enforcer's socket
//! ([`client`]).

pub mod args;
pub mod client;
pub mod error;
pub mod netconf;
pub mod plugin;
pub mod protocol;

pub use error::PluginError;
pub use protocol::{PodRef, Reply, Request};
