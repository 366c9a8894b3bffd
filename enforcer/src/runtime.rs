//! The enforcer's loop: watch, debounce, compile, apply, report. One sync at a time; a failed
//! apply keeps the previous rules and is retried with backoff; a periodic check repairs rules
//! someone else changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use palisade_api::{FirstPacketStatus, NodeEnforcementStatus};
use palisade_policy::{Cluster, IpFamily, Policy};
use palisade_runtime::watch::{Compact, watch, watch_compact, watch_with};
use tokio::sync::Notify;

use crate::apply;
use crate::backend::{self, Backend, BackendChoice, Chosen, Detection, NoBackend};
use crate::cluster_policies::{self, ClusterPolicyWatch};
use crate::cni::{self, CniError, CniInfo};
use crate::compile::{CompileOptions, compile_families, local_pods, local_pods_of};
use crate::first_packet::{self, FirstPacket};
use crate::metrics::Metrics;
use crate::ruleset::{Ruleset, Summary};
use crate::status::{STATUS_REFRESH, StatusWriter, now};

/// Whether the enforcer programs rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Enforce only where the node's CNI does not enforce NetworkPolicy itself.
    Auto,
    /// Always enforce.
    Enforce,
    /// Never enforce; only report (existing Palisade rules are removed).
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Enforce => "enforce",
            Mode::Off => "off",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub cni_dir: PathBuf,
    /// First-packet isolation's shared state with the CNI plugin's server (`None`: disabled).
    pub first_packet: Option<FirstPacket>,
    pub mode: Mode,
    /// Which iptables backend Palisade's rules go to: detected, or the one named.
    pub iptables_backend: BackendChoice,
    /// How often the host's rules are compared with the desired ones even without a change.
    pub resync: Duration,
    /// How long to wait after a change for more, so a burst becomes one sync.
    pub debounce: Duration,
    pub options: CompileOptions,
    /// After rules change, delete the conntrack entries of connections policy now denies.
    pub cut_denied_connections: bool,
}

/// Whether to enforce given the mode and what the CNI configuration says, and why in words.
pub fn decide(mode: Mode, cni: &Result<CniInfo, CniError>) -> (bool, String) {
    match (mode, cni) {
        (Mode::Off, _) => (false, "mode off: reporting only".into()),
        (Mode::Enforce, _) => (true, "mode enforce".into()),
        (Mode::Auto, Ok(info)) => match info.enforces {
            Some(true) => (
                false,
                format!("{} enforces NetworkPolicy itself; standing aside", info.cni),
            ),
            Some(false) => (true, format!("{} does not enforce NetworkPolicy", info.cni)),
            None => (
                true,
                format!(
                    "CNI {} is not known to enforce NetworkPolicy; enforcing",
                    info.cni
                ),
            ),
        },
        (Mode::Auto, Err(e)) => (true, format!("{e}; enforcing")),
    }
}

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
    let mut errors = Vec::new();
    let compiled = policies
        .state()
        .iter()
        .filter_map(|np| match Policy::compile(np) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!(
                    "{}/{}: {e}",
                    np.namespace().unwrap_or_default(),
                    np.name_any()
                ));
                None
            }
        })
        .collect();
    let cluster = Cluster::new(
        namespaces
            .state()
            .iter()
            .map(|n| palisade_policy::Namespace::from_k8s(n)),
        pod_list,
        Vec::new(),
        compiled,
    );
    (cluster, errors)
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

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Start,
    Change,
    Timer,
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
    let mut installed: Option<Vec<Ruleset>> = None;
    let mut pending_since: Option<Instant> = Some(Instant::now());
    let mut backoff = Duration::from_secs(1);
    let mut wake = Wake::Start;
    let mut healthy = false;
    let mut detection: Option<Result<Detection, NoBackend>> = None;
    // Palisade's chains to remove from the backend not in use, after the next good sync.
    let mut leave: Option<Backend> = None;
    let mut cnp_warnings = cluster_policies::Warnings::default();
    loop {
        let started = Instant::now();
        // Detected at start; again while a retry is due or while nothing showed which backend
        // the node uses (kube-proxy may write its first rules after the enforcer started).
        let detect_now = match &detection {
            None => true,
            Some(Err(_)) => wake != Wake::Change,
            Some(Ok(d)) => d.chosen == Chosen::Default && wake == Wake::Timer,
        };
        if detect_now {
            let choice = settings.iptables_backend;
            let found = tokio::task::spawn_blocking(move || backend::detect(choice))
                .await
                .unwrap_or_else(|e| Err(NoBackend(format!("the detection task: {e}"))));
            let adopted = backend::adopt(detection.as_ref(), found);
            if adopted.moved {
                healthy = false;
            }
            leave = adopted.leave.or(leave);
            detection = Some(adopted.current);
        }
        let in_use = detection.as_ref().and_then(|d| d.as_ref().ok()).cloned();
        let cni = cni::detect(&settings.cni_dir);
        let (mut enforcing, mut reason) = decide(settings.mode, &cni);
        if let Some(Err(e)) = &detection {
            if enforcing {
                reason = format!("{reason}, but {e}");
            }
            enforcing = false;
        }
        let families: Vec<IpFamily> = in_use
            .as_ref()
            .map(|d| d.families.clone())
            .unwrap_or_default();
        let (cluster, policy_errors) = snapshot(
            &w.pods,
            &w.namespaces,
            &w.policies,
            settings.first_packet.as_ref(),
        );
        // ClusterNetworkPolicies: all of the tiers or none (never half of them).
        let cnp_objects = w.cluster_policies.state();
        let (cnps, cnp_refused) = cluster_policies::understand(&cnp_objects);
        let (cnp_enforced, cnp_reason) = cluster_policies::decide(settings.mode, &cni, enforcing);
        cnp_warnings.note(cnp_enforced, &cnp_reason, cnp_objects.len(), &cnp_refused);
        let cnp_status = cluster_policies::report(
            cnp_enforced,
            cnp_reason,
            &w.cluster_policies,
            cnp_objects.len(),
            &cnp_refused,
        );
        drop(cnp_objects);
        let cluster = cluster.with_cluster_policies(if cnp_enforced { cnps } else { Vec::new() });
        metrics.latest.publish(&cluster); // for the denial reader (crate::denials)
        let rulesets = if enforcing {
            compile_families(&cluster, &settings.node, &settings.options, &families)
        } else {
            Vec::new()
        };
        let local = local_pods(&cluster, &settings.node).count();
        // Pods with IPv6 addresses on a node whose ip6tables does not work: said in the status.
        let local_v6 = if families.contains(&IpFamily::V6) {
            0
        } else {
            local_pods_of(&cluster, &settings.node, IpFamily::V6).count()
        };
        // Kept only to judge the node's connections after rules that changed are in.
        let cut_with = (enforcing && settings.cut_denied_connections).then_some(cluster);

        // A change that compiles to the rules in place needs no look at the host.
        let result = if let Some(Err(e)) = &detection {
            Err(NoBackendOrApply::NoBackend(e.clone()))
        } else if wake == Wake::Change && healthy && installed.as_ref() == Some(&rulesets) {
            Ok(apply::Applied::default())
        } else {
            let to_apply = rulesets.clone();
            let backend = in_use.as_ref().map_or(Backend::Nft, |d| d.backend);
            let families = families.clone();
            let left = leave;
            tokio::task::spawn_blocking(move || {
                let result = if enforcing {
                    apply::sync_families(backend, &to_apply)
                } else {
                    apply::cleanup_families(backend, &families)
                };
                if let (Ok(_), Some(left)) = (&result, left) {
                    backend::leave(left);
                }
                result.map_err(NoBackendOrApply::Apply)
            })
            .await
            .unwrap_or_else(|e| {
                Err(NoBackendOrApply::Apply(apply::ApplyError::Failed {
                    what: "the sync task".into(),
                    stderr: e.to_string(),
                }))
            })
        };

        let node = w.node.get(&ObjectRef::new(&settings.node));
        let mut report = NodeEnforcementStatus {
            mode: settings.mode.as_str().into(),
            enforcing,
            reason,
            local_pods: local as u32,
            deny_action: Some(settings.options.deny_action.as_str().into()),
            cluster_network_policy: Some(cnp_status),
            first_packet: Some(
                settings
                    .first_packet
                    .as_ref()
                    .map_or_else(FirstPacketStatus::disabled, FirstPacket::status),
            ),
            ..NodeEnforcementStatus::default()
        };
        if let Some(d) = &in_use {
            report.iptables_backend = Some(d.backend.as_str().into());
            report.iptables_backend_source = Some(d.chosen.as_str().into());
            if enforcing {
                report.families = d.families.iter().map(|f| f.as_str().into()).collect();
                if let (Some(e), true) = (&d.v6_error, local_v6 > 0) {
                    report.reason = format!(
                        "{}; IPv6 is not enforced ({local_v6} local pods have IPv6 addresses): {e}",
                        report.reason
                    );
                }
            }
        }
        if let Ok(info) = &cni {
            report.cni = Some(info.cni.clone());
            report.cni_config = Some(info.file.display().to_string());
            report.cni_plugins = info.plugins.clone();
            report.cni_enforces = info.enforces;
        }
        let retry = match result {
            Ok(applied) => {
                leave = None;
                if let Some(fp) = &settings.first_packet {
                    fp.synced(None);
                }
                let summary = summary_of(&rulesets);
                metrics.synced(
                    if applied.wrote() {
                        "written"
                    } else {
                        "unchanged"
                    },
                    started.elapsed(),
                );
                if let Some(since) = pending_since.take() {
                    metrics.event_to_rule(since.elapsed());
                }
                metrics.installed(summary, local, enforcing);
                if let (true, Some(cluster)) = (applied.wrote(), cut_with) {
                    let node = settings.node.clone();
                    crate::conntrack::after_sync(cluster, node, families.clone(), &metrics).await;
                }
                if applied.wrote() {
                    tracing::info!(
                        chains = summary.chains,
                        rules = summary.rules,
                        sets = summary.sets,
                        local_pods = local,
                        took_ms = started.elapsed().as_millis() as u64,
                        "rules synced"
                    );
                }
                // Counters are read only where audit rules exist: one more iptables-save.
                let audits = rulesets.iter().any(|r| {
                    r.chains
                        .values()
                        .flatten()
                        .any(|line| matches!(line.target, crate::ruleset::Target::Nflog { .. }))
                });
                if !audits {
                    metrics.audit(&Default::default());
                } else if let Some(d) = &in_use
                    && let Ok(counters) = audit_counters(d)
                {
                    metrics.audit(&counters);
                }
                // A new lastSync when the rules changed, and at least every STATUS_REFRESH: the
                // webhook counts a node whose lastSync is older than STALE_AFTER as not enforced.
                if applied.wrote() || !status.has_synced() || status.refresh_due() {
                    report.last_sync = Some(now());
                }
                report.chains = summary.chains as u32;
                report.rules = summary.rules as u32;
                report.sets = summary.sets as u32;
                report.last_error = (!policy_errors.is_empty())
                    .then(|| format!("policies not understood: {}", policy_errors.join("; ")));
                installed = Some(rulesets);
                healthy = true;
                ready.store(true, Ordering::SeqCst);
                backoff = Duration::from_secs(1);
                None
            }
            Err(NoBackendOrApply::NoBackend(e)) => {
                if let Some(fp) = &settings.first_packet {
                    fp.synced(Some(e.to_string()));
                }
                // Logged when detected; the status says it, and detection is tried again.
                metrics.synced("error", started.elapsed());
                metrics.installed(Default::default(), local, false);
                healthy = false;
                report.last_error = Some(e.to_string());
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                Some(wait)
            }
            Err(NoBackendOrApply::Apply(e)) => {
                if let Some(fp) = &settings.first_packet {
                    fp.synced(Some(e.to_string()));
                }
                metrics.synced("error", started.elapsed());
                healthy = false;
                tracing::warn!(error = %e, retry_in = ?backoff, "sync failed; the previous rules stay in force");
                report.last_error = Some(e.to_string());
                if let Some(previous) = &installed {
                    let summary = summary_of(previous);
                    report.chains = summary.chains as u32;
                    report.rules = summary.rules as u32;
                    report.sets = summary.sets as u32;
                }
                // Something changed that is not in the kernel yet: keep measuring from then.
                pending_since.get_or_insert(started);
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                Some(wait)
            }
        };
        status.publish(node.as_deref(), report).await;
        release_free_memory();

        // Wake at least once a refresh period, so the status is refreshed even with a long resync.
        let next = retry.unwrap_or(settings.resync.min(STATUS_REFRESH));
        wake = tokio::select! {
            _ = changed.notified() => Wake::Change,
            _ = tokio::time::sleep(next) => if retry.is_some() { Wake::Start } else { Wake::Timer },
            _ = &mut shutdown => break,
        };
        if wake == Wake::Change {
            pending_since.get_or_insert_with(Instant::now);
            tokio::time::sleep(settings.debounce).await;
        }
    }
    tracing::info!("stopping; the rules stay in force");
    detection.and_then(Result::ok)
}

/// The sizes of the rulesets of every family, added up.
fn summary_of(rulesets: &[Ruleset]) -> Summary {
    rulesets
        .iter()
        .map(Ruleset::summary)
        .fold(Summary::default(), |a, b| Summary {
            chains: a.chains + b.chains,
            rules: a.rules + b.rules,
            sets: a.sets + b.sets,
            set_entries: a.set_entries + b.set_entries,
        })
}

/// The audit rules' counters of every family of the backend in use, added up.
fn audit_counters(d: &Detection) -> Result<BTreeMap<String, u64>, apply::ApplyError> {
    let mut all = BTreeMap::new();
    for tables in d.tables() {
        for (comment, packets) in apply::audit_counters(tables)? {
            *all.entry(comment).or_insert(0) += packets;
        }
    }
    Ok(all)
}

/// Why a sync did not happen.
enum NoBackendOrApply {
    NoBackend(NoBackend),
    Apply(apply::ApplyError),
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
