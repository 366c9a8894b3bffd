//! The ground the end-to-end tests stand on: the upstream kube-apiserver and etcd, started on
//! loopback with generated certificates, RBAC and service-account tokens.

pub mod admission_stub;
pub mod background;
pub mod chart;
pub mod control_plane;
pub mod demo;
pub mod handshakes;
pub mod long_lived;
pub mod machine;
pub mod netns;
pub mod network;
pub mod objects;
pub mod pod_starts;
pub mod real_nodes;
pub mod real_pods;
pub mod real_world;
pub mod soak;
pub mod tools;
pub mod util;
pub mod webhook_config;
pub mod world;

pub use control_plane::{ControlPlane, Error};
pub use network::{Answer, Network};
pub use real_nodes::RealCluster;
