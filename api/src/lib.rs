//! The Kubernetes API types Palisade reads and writes: its own custom resources
//! (`palisade.dev/v1alpha1`) and the upstream APIs it implements. Every component depends on
//! this crate for them, never on another component.

pub mod cluster_network_policy;
pub mod crds;
pub mod denial_events;
pub mod network_baseline;
pub mod node_enforcement;

pub use cluster_network_policy::*;
pub use crds::{VERSION_ANNOTATION, crd_yaml, crds};
pub use denial_events::*;
pub use network_baseline::*;
pub use node_enforcement::*;
