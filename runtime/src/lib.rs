//! What the Palisade processes (webhook, operator, enforcer) share: the admin port, logging,
//! signals, the Kubernetes client, Events, and reflectors that keep only what Palisade reads.

pub mod optional_watch;
pub mod process;
pub mod watch;
