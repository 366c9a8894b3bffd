//! First-packet isolation: a new pod whose policies deny traffic never sends or receives a
//! denied packet, from its first one.
//!
//! The chained CNI plugin `palisade-cni` (its own crate) asks, in ADD, this node's enforcer to
//! take the pod's addresses at once ([`server`]); the enforcer gives the pod those addresses in
//! its next snapshot ([`announcements`]) and answers once a sync that includes them is in the
//! kernel. Pods no policy can deny anything (no NetworkPolicy in their namespace, no
//! ClusterNetworkPolicy in the cluster) are answered at once. The [`installer`] puts the plugin
//! into the node's CNI configuration ([`conflist`]) and takes it out when Palisade is removed.
//!
//! The runtime loop's part is three calls: [`FirstPacket::attach`] once its caches are filled,
//! [`FirstPacket::overlay`] while taking its snapshot, [`FirstPacket::synced`] after each sync.

pub mod announcements;
pub mod conflist;
pub mod installer;
pub mod server;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use palisade_api::FirstPacketStatus;
use palisade_cni::protocol::{PodRef, Reply, Request};
use palisade_policy::Pod;
use palisade_runtime::watch::Compact;
use tokio::sync::{Notify, watch};

use crate::cluster_policies::ClusterPolicyWatch;
use announcements::Announcements;

/// How often the server looks for a pod the pod watch has not delivered yet.
const POD_POLL: Duration = Duration::from_millis(20);

/// What the server reads of the runtime loop's caches.
pub struct Caches {
    pub pods: Compact<Pod>,
    pub policies: Store<NetworkPolicy>,
    pub cluster_policies: ClusterPolicyWatch,
    /// Wakes the runtime loop.
    pub changed: Arc<Notify>,
}

impl Caches {
    /// Whether some policy may deny the traffic of a pod in `namespace`: a NetworkPolicy there
    /// (only those select its pods), or any ClusterNetworkPolicy (whose subjects and Deny peers
    /// may name it). Otherwise nothing depends on the enforcer knowing its address: every
    /// NetworkPolicy peer rule only allows, so an address missing from a peer set denies, and
    /// never allows, a packet.
    fn guarded(&self, namespace: &str) -> bool {
        self.policies
            .state()
            .iter()
            .any(|np| np.namespace().as_deref() == Some(namespace))
            || !self.cluster_policies.state().is_empty()
    }

    fn has_pod(&self, pod: &PodRef, node: &str) -> bool {
        self.pods.state().iter().any(|p| {
            p.namespace == pod.namespace && p.name == pod.name && p.node.as_deref() == Some(node)
        })
    }
}

/// What the last syncs did, for the requests waiting on them.
#[derive(Debug, Clone, Default)]
struct Synced {
    /// Every announcement up to this generation is in the kernel.
    confirmed: u64,
    /// Why the last sync failed, until one succeeds.
    error: Option<String>,
}

struct Inner {
    node: String,
    /// How long a request waits for its pod's rules (a little under the plugin's timeout, so
    /// the plugin can pass the reason on).
    wait: Duration,
    announcements: Mutex<Announcements>,
    caches: OnceLock<Caches>,
    attached: Notify,
    /// The generation the snapshot being synced includes.
    in_flight: AtomicU64,
    synced: watch::Sender<Synced>,
    install: Mutex<FirstPacketStatus>,
}

/// The shared state of first-packet isolation on this node (cheap to clone).
#[derive(Clone)]
pub struct FirstPacket {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FirstPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstPacket")
            .field("node", &self.inner.node)
            .field("wait", &self.inner.wait)
            .finish_non_exhaustive()
    }
}

/// A snapshot's view of the announcements, taken before it reads the pods.
pub struct Overlay {
    first_packet: FirstPacket,
    generation: u64,
}

impl Overlay {
    /// Gives the pods their announced addresses ([`Announcements::overlay`]); the sync of this
    /// snapshot confirms every announcement made before the overlay was taken.
    pub fn apply(self, pods: &mut [Pod]) {
        let inner = &self.first_packet.inner;
        inner
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overlay(pods, &inner.node, Instant::now());
        inner.in_flight.store(self.generation, Ordering::SeqCst);
    }
}

impl FirstPacket {
    pub fn new(node: &str, wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                node: node.to_string(),
                wait,
                announcements: Mutex::new(Announcements::default()),
                caches: OnceLock::new(),
                attached: Notify::new(),
                in_flight: AtomicU64::new(0),
                synced: watch::Sender::new(Synced::default()),
                install: Mutex::new(FirstPacketStatus {
                    installed: false,
                    reason: "the installer has not run yet".into(),
                    config: None,
                }),
            }),
        }
    }

    /// The runtime loop's caches are filled: requests can be answered.
    pub fn attach(&self, caches: Caches) {
        if self.inner.caches.set(caches).is_ok() {
            self.inner.attached.notify_waiters();
        }
    }

    /// To be taken before the snapshot reads the pod cache, and applied to its pods.
    pub fn overlay(&self) -> Overlay {
        let generation = self
            .inner
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .generation();
        Overlay {
            first_packet: self.clone(),
            generation,
        }
    }

    /// After a sync: `None` when its rules are in the kernel (or the node enforces nothing),
    /// else why not.
    pub fn synced(&self, error: Option<String>) {
        let generation = self.inner.in_flight.load(Ordering::SeqCst);
        self.inner.synced.send_modify(|s| match error {
            None => {
                s.confirmed = s.confirmed.max(generation);
                s.error = None;
            }
            Some(e) => s.error = Some(e),
        });
    }

    /// The installer's state, for the NodeEnforcement status.
    pub fn status(&self) -> FirstPacketStatus {
        self.inner
            .install
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_status(&self, status: FirstPacketStatus) {
        *self
            .inner
            .install
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = status;
    }

    fn announce(&self, pod: &PodRef, container_id: &str, ips: Vec<IpAddr>) -> u64 {
        self.inner
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .announce(&pod.namespace, &pod.name, container_id, ips, Instant::now())
    }

    /// Answers one request of the plugin.
    pub async fn handle(&self, request: Request) -> Reply {
        let deadline = tokio::time::Instant::now() + self.inner.wait;
        let secs = self.inner.wait.as_secs();
        let caches = loop {
            // Created before the check: `notify_waiters` reaches it even if not polled yet.
            let attached = self.inner.attached.notified();
            if let Some(c) = self.inner.caches.get() {
                break c;
            }
            if tokio::time::timeout_at(deadline, attached).await.is_err() {
                return Reply::Refused {
                    reason: format!(
                        "the enforcer is starting and has not read the cluster's pods and policies yet (waited {secs}s)"
                    ),
                };
            }
        };
        match request {
            Request::Del { pod, container_id } => {
                let forgot = self
                    .inner
                    .announcements
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .forget(&pod.namespace, &pod.name, &container_id);
                if forgot {
                    caches.changed.notify_one();
                }
                Reply::Ready { isolated: false }
            }
            Request::Add {
                pod,
                container_id,
                ips,
            } => {
                if !caches.guarded(&pod.namespace) {
                    self.announce(&pod, &container_id, ips);
                    caches.changed.notify_one();
                    return Reply::Ready { isolated: false };
                }
                // Its labels come from the pod watch, which may be a moment behind the kubelet.
                while !caches.has_pod(&pod, &self.inner.node) {
                    if tokio::time::Instant::now() + POD_POLL > deadline {
                        return Reply::Refused {
                            reason: format!(
                                "the enforcer's pod watch did not show the pod on this node within {secs}s"
                            ),
                        };
                    }
                    tokio::time::sleep(POD_POLL).await;
                }
                let generation = self.announce(&pod, &container_id, ips);
                let mut synced = self.inner.synced.subscribe();
                caches.changed.notify_one();
                let confirmed = tokio::time::timeout_at(
                    deadline,
                    synced.wait_for(|s| s.confirmed >= generation),
                )
                .await;
                match confirmed {
                    Ok(Ok(_)) => Reply::Ready { isolated: true },
                    _ => {
                        let why = match &self.inner.synced.borrow().error {
                            Some(e) => format!(": the last sync failed: {e}"),
                            None => String::new(),
                        };
                        Reply::Refused {
                            reason: format!("its rules were not in the kernel within {secs}s{why}"),
                        }
                    }
                }
            }
        }
    }
}

/// First-packet isolation as the enforcer's flags configure it.
#[derive(Debug, Clone)]
pub struct Options {
    pub enabled: bool,
    /// The socket the plugin asks on: the same path in the enforcer and on the node (the chart
    /// mounts the node's directory at the same place).
    pub socket: PathBuf,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The plugin binary to install.
    pub plugin: PathBuf,
    /// How long the plugin waits for an answer.
    pub timeout: Duration,
    pub node: String,
    pub mode: crate::mode::Mode,
    /// Keeps the installer from putting the plugin back after [`Options::uninstall`].
    pub gate: installer::Gate,
}

impl Options {
    fn installer(&self) -> installer::Installer {
        installer::Installer {
            conf_dir: self.conf_dir.clone(),
            bin_dir: self.bin_dir.clone(),
            plugin: self.plugin.clone(),
            entry: conflist::Entry {
                socket: self.socket.display().to_string(),
                node_name: self.node.clone(),
                timeout_seconds: self.timeout.as_secs().max(1),
            },
            mode: self.mode,
        }
    }

    /// Starts the socket server and the installer. Disabled (or without a socket), it removes
    /// what an earlier enforcer installed instead, so no pod waits for an answer that never
    /// comes, and returns `None`.
    pub fn start(
        &self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<FirstPacket> {
        let installer = self.installer();
        let remove = move |why: &'static str| {
            tokio::task::spawn_blocking(move || match installer.remove() {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "{why}: removed the CNI plugin"),
                Err(e) => tracing::warn!(error = %e, "{why}: cannot remove the CNI plugin"),
            });
        };
        if !self.enabled {
            remove("first-packet isolation is disabled");
            return None;
        }
        // The server answers a little before the plugin gives up, so the plugin passes on why.
        let wait = self
            .timeout
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_millis(500));
        let first_packet = FirstPacket::new(&self.node, wait);
        match server::listen(&self.socket) {
            Ok(listener) => {
                tokio::spawn(server::serve(
                    listener,
                    self.socket.clone(),
                    first_packet.clone(),
                    stop,
                ));
                tokio::spawn(installer::keep_installed(
                    self.installer(),
                    first_packet.clone(),
                    self.gate.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "first-packet isolation cannot start");
                first_packet.set_status(FirstPacketStatus {
                    installed: false,
                    reason: e.to_string(),
                    config: None,
                });
                remove("the enforcer cannot listen for the plugin");
            }
        }
        Some(first_packet)
    }

    /// Removes the plugin from the node (Palisade is being uninstalled).
    pub async fn uninstall(&self) {
        let installer = self.installer();
        match self.gate.retire(move || installer.remove()).await {
            Ok(Ok(n)) => {
                tracing::info!(
                    files = n,
                    "removed the CNI plugin and its configuration entry"
                )
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the CNI plugin"),
            Err(e) => tracing::error!(error = %e, "the CNI plugin removal task"),
        }
    }
}
