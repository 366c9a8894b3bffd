//! The enforcer's loop: watch, debounce, sync, publish. One sync at a time ([`SyncStep`]); a
//! failed sync keeps the previous rules and is retried with backoff; a periodic sync repairs
//! rules someone else changed and renews the status's `lastSync`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use palisade_policy::Cluster;
use palisade_policy::snapshot::Snapshot;
use palisade_runtime::watch::{Compact, watch, watch_compact, watch_with};
use tokio::sync::Notify;

use crate::backend::Detection;
use crate::cluster_policies::ClusterPolicyWatch;
use crate::first_packet::{self, FirstPacket};
use crate::metrics::Metrics;
use crate::status::{STATUS_REFRESH, StatusWriter};
use crate::sync::{Host, MAX_BACKOFF, Observed, Settings, SyncStep, Wake};

/// The cluster as the stores have it, with the policies that cannot be understood named.
pub fn snapshot(
    pods: &Compact<palisade_policy::Pod>,
    namespaces: &Store<Namespace>,
    policies: &Store<NetworkPolicy>,
    first_packet: Option<&FirstPacket>,
) -> (Cluster, Vec<String>) {
    // Taken before the pods are read: this snapshot's sync confirms the announcements before it.
    let overlay = first_packet.map(FirstPacket::overlay);
    let mut pod_list: Vec<palisade_policy::Pod> =
        pods.state().iter().map(|p| p.as_ref().clone()).collect();
    if let Some(overlay) = overlay {
        overlay.apply(&mut pod_list);
    }
    // The webhook builds its snapshot the same way; the ClusterNetworkPolicies are read by the
    // sync step (through the same reading) only where this node enforces them.
    let snapshot = Snapshot::build(
        namespaces
            .state()
            .iter()
            .map(|n| palisade_policy::Namespace::from_k8s(n)),
        pod_list,
        Vec::new(),
        policies.state().iter().map(AsRef::as_ref),
        [],
    );
    (snapshot.cluster, snapshot.policy_errors)
}

struct Watches {
    /// Only what the semantics read of each pod: 10,000 k8s Pods would be most of the memory.
    pods: Compact<palisade_policy::Pod>,
    namespaces: Store<Namespace>,
    policies: Store<NetworkPolicy>,
    node: Store<Node>,
    /// ClusterNetworkPolicies; none where the CRD is not installed.
    cluster_policies: ClusterPolicyWatch,
}

impl Watches {
    /// What a sync reads of the caches.
    fn observe(&self, first_packet: Option<&FirstPacket>) -> Observed {
        let (cluster, policy_errors) =
            snapshot(&self.pods, &self.namespaces, &self.policies, first_packet);
        let cluster_policy_problem = match (
            self.cluster_policies.installed(),
            self.cluster_policies.error(),
        ) {
            (Some(false), _) => Some("the ClusterNetworkPolicy CRD is not installed".to_string()),
            (_, Some(e)) => Some(format!("cannot read ClusterNetworkPolicies: {e}")),
            _ => None,
        };
        Observed {
            cluster,
            policy_errors,
            cluster_policies: self.cluster_policies.state(),
            cluster_policy_problem,
        }
    }
}

/// Runs until `shutdown` resolves. Rules stay in force when it returns, in the backend it
/// returns (none when no backend worked or the caches never synced).
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Option<Detection> {
    tokio::pin!(shutdown);
    let changed = Arc::new(Notify::new());
    let w = Watches {
        pods: watch_compact(&client, &changed, palisade_policy::Pod::from_k8s),
        namespaces: watch(&client, &changed),
        policies: watch(&client, &changed),
        node: watch_with(
            Api::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", settings.node)),
            &changed,
        ),
        cluster_policies: ClusterPolicyWatch::start(&client, &changed),
    };
    tokio::select! {
        _ = async { futures::join!(
            w.pods.wait_until_ready(),
            w.namespaces.wait_until_ready(),
            w.policies.wait_until_ready(),
            w.node.wait_until_ready(),
            w.cluster_policies.wait_until_ready(),
        ) } => {}
        _ = &mut shutdown => return None,
    }
    tracing::info!(node = %settings.node, "caches synced");
    if let Some(fp) = &settings.first_packet {
        fp.attach(first_packet::Caches {
            pods: w.pods.clone(),
            policies: w.policies.clone(),
            cluster_policies: w.cluster_policies.clone(),
            changed: changed.clone(),
        });
    }

    let mut status = StatusWriter::new(client, &settings.node);
    // Shared with the blocking task each sync runs in (the kernel's tools block). A sync that
    // panicked leaves the state of the syncs before it, still the best known: hence
    // `PoisonError::into_inner`.
    let step = Arc::new(Mutex::new(SyncStep::new(settings.clone(), Host, metrics)));
    let mut wake = Wake::Start;
    let mut last_sync_done: Instant;
    loop {
        let observed = w.observe(settings.first_packet.as_ref());
        let last_sync_due = !status.has_synced() || status.refresh_due();
        let task = step.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            task.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .run(wake, observed, last_sync_due)
        })
        .await;
        let retry = match outcome {
            Ok(outcome) => {
                if outcome.retry.is_none() {
                    ready.store(true, Ordering::SeqCst);
                }
                let node = w.node.get(&ObjectRef::new(&settings.node));
                status.publish(node.as_deref(), outcome.status).await;
                outcome.retry
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?MAX_BACKOFF, "the sync task failed; the previous rules stay in force");
                Some(MAX_BACKOFF)
            }
        };
        release_free_memory();
        last_sync_done = Instant::now();

        // Wake when the host's rules are due for their periodic check (counted from the last
        // sync that read them, so steady churn does not put it off), and at least once a
        // refresh period, so the status is refreshed even with a long resync.
        let check_due_in = step
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .host_check_due_in();
        let next = retry.unwrap_or(check_due_in.min(STATUS_REFRESH));
        wake = tokio::select! {
            _ = changed.notified() => Wake::Change,
            _ = tokio::time::sleep(next) => if retry.is_some() { Wake::Start } else { Wake::Timer },
            _ = &mut shutdown => break,
        };
        if wake == Wake::Change {
            step.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .changed(Instant::now());
            tokio::time::sleep(debounce_wait(last_sync_done.elapsed(), settings.debounce)).await;
        }
    }
    tracing::info!("stopping; the rules stay in force");
    step.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .detection()
        .cloned()
}

/// How long to wait after a change before syncing: a change after a quiet period (no sync for
/// a whole debounce) is synced at once, so a `kubectl apply` holds as soon as the sync is done;
/// changes that follow a sync closely wait for the rest of the debounce, so a burst (an apply
/// of many objects, a rollout) costs at most one sync per debounce.
fn debounce_wait(since_last_sync: Duration, debounce: Duration) -> Duration {
    debounce.saturating_sub(since_last_sync)
}

/// Hands memory freed by the sync (the snapshot, the host's rules as text) back to the system,
/// so the resident size stays that of the caches.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::debounce_wait;
    use std::time::Duration;

    const DEBOUNCE: Duration = Duration::from_millis(100);

    #[test]
    fn a_change_after_a_quiet_period_is_synced_at_once() {
        assert_eq!(
            debounce_wait(Duration::from_secs(30), DEBOUNCE),
            Duration::ZERO
        );
        assert_eq!(debounce_wait(DEBOUNCE, DEBOUNCE), Duration::ZERO);
    }

    #[test]
    fn a_change_right_after_a_sync_waits_for_the_rest_of_the_debounce() {
        assert_eq!(debounce_wait(Duration::ZERO, DEBOUNCE), DEBOUNCE);
        assert_eq!(
            debounce_wait(Duration::from_millis(30), DEBOUNCE),
            Duration::from_millis(70)
        );
    }
}
