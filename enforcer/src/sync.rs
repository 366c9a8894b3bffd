//! One sync of the node's rules, as a value: [`SyncStep::run`] detects the iptables backend,
//! decides whether to enforce, compiles the cluster's policies for this node, applies them,
//! cuts the connections they now deny, and says what happened as the NodeEnforcement status.
//!
//! What carries from one sync to the next (the backend found, the rules in force, whether the
//! last apply worked, the backoff) is the step's own state. The kernel is reached only through
//! [`Kernel`], so the step runs in tests without a kernel and without an async runtime; the
//! watches, the debounce and the status write stay in [`crate::event_loop`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_api::{ClusterNetworkPolicy, FirstPacketStatus, NodeEnforcementStatus};
use palisade_policy::{Cluster, IpFamily};

use crate::apply::{self, Applied, ApplyError};
use crate::backend::{self, Backend, BackendChoice, Chosen, Detection, NoBackend, Tables};
use crate::cluster_policies::{self, Warnings};
use crate::cni::{self, CniError, CniInfo};
use crate::compile::{CompileOptions, compile_families, local_pods, local_pods_of};
use crate::conntrack::{self, ConntrackError, Cut};
use crate::first_packet::FirstPacket;
use crate::metrics::Metrics;
use crate::mode::{Mode, decide};
use crate::ruleset::{Ruleset, Summary, Target};
use crate::status::now;

/// The wait before retrying a failed sync; it doubles with each failure in a row.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The first sync, and the one after a failed sync's wait.
    Start,
    /// Something the rules depend on changed in the caches.
    Change,
    /// The periodic check, which also repairs rules someone else changed.
    Timer,
}

/// The node's kernel, as a sync uses it. Every call blocks; [`Host`] runs the tools.
pub trait Kernel {
    /// Which iptables backend the node uses and which families work in it.
    fn detect(&mut self, choice: BackendChoice) -> Result<Detection, NoBackend>;
    /// Makes Palisade's rules in `backend` those of `rulesets` (one per family).
    fn apply(&mut self, backend: Backend, rulesets: &[Ruleset]) -> Result<Applied, ApplyError>;
    /// Removes Palisade's rules and sets from `backend`, for `families`.
    fn clean_up(&mut self, backend: Backend, families: &[IpFamily]) -> Result<Applied, ApplyError>;
    /// Removes Palisade's chains from a backend no longer in use.
    fn leave(&mut self, backend: Backend);
    /// The packets counted by the audit rules of `tables`, by rule comment.
    fn audit_counters(&mut self, tables: Tables) -> Result<BTreeMap<String, u64>, ApplyError>;
    /// Deletes the conntrack entries of the node's connections `cluster` denies.
    fn cut(
        &mut self,
        cluster: &Cluster,
        node: &str,
        families: &[IpFamily],
    ) -> Result<Cut, ConntrackError>;
}

/// The node's kernel through iptables, ipset and conntrack.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host;

impl Kernel for Host {
    fn detect(&mut self, choice: BackendChoice) -> Result<Detection, NoBackend> {
        backend::detect(choice)
    }

    fn apply(&mut self, backend: Backend, rulesets: &[Ruleset]) -> Result<Applied, ApplyError> {
        apply::sync_families(backend, rulesets)
    }

    fn clean_up(&mut self, backend: Backend, families: &[IpFamily]) -> Result<Applied, ApplyError> {
        apply::cleanup_families(backend, families)
    }

    fn leave(&mut self, backend: Backend) {
        backend::leave(backend);
    }

    fn audit_counters(&mut self, tables: Tables) -> Result<BTreeMap<String, u64>, ApplyError> {
        apply::audit_counters(tables)
    }

    fn cut(
        &mut self,
        cluster: &Cluster,
        node: &str,
        families: &[IpFamily],
    ) -> Result<Cut, ConntrackError> {
        conntrack::cut(cluster, node, families)
    }
}

/// The cluster as the caches have it when a sync starts.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Namespaces, pods and the NetworkPolicies understood (no ClusterNetworkPolicy yet: the
    /// step adds those when the node enforces them).
    pub cluster: Cluster,
    /// The NetworkPolicies that cannot be understood, each as `namespace/name: why`.
    pub policy_errors: Vec<String>,
    pub cluster_policies: Vec<Arc<ClusterNetworkPolicy>>,
    /// Why ClusterNetworkPolicies cannot be read, when they cannot (no CRD, a failing watch).
    pub cluster_policy_problem: Option<String>,
}

/// What one sync leaves for the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// To publish. A `None` `last_sync` keeps the one published before.
    pub status: NodeEnforcementStatus,
    /// After a failed sync, when to try again; `None` after a good one.
    pub retry: Option<Duration>,
}

/// Why a sync did not happen.
enum Failure {
    NoBackend(NoBackend),
    Apply(ApplyError),
}

/// One sync at a time, with what carries from one to the next.
pub struct SyncStep<K> {
    settings: Settings,
    kernel: K,
    metrics: Arc<Metrics>,
    /// The backend in use; `None` before the first detection.
    detection: Option<Result<Detection, NoBackend>>,
    /// Palisade's chains to remove from the backend not in use, after the next good sync.
    leave: Option<Backend>,
    /// The rules of the last good sync (none before it).
    installed: Option<Vec<Ruleset>>,
    /// The last sync worked, in the backend still in use: a change that compiles to the rules
    /// in place needs no look at the host.
    healthy: bool,
    /// When a sync last read the host's rules (and wrote what differed). Changes that compile
    /// to the rules in place skip the host, so under steady churn this, not the event loop's
    /// timer, says when the periodic check is due: a hand-flushed table is repaired within
    /// `resync` even while changes keep coming.
    host_read_at: Option<Instant>,
    backoff: Duration,
    /// Since when something changed that is not in the kernel yet.
    pending_since: Option<Instant>,
    cluster_policy_warnings: Warnings,
}

impl<K: Kernel> SyncStep<K> {
    pub fn new(settings: Settings, kernel: K, metrics: Arc<Metrics>) -> Self {
        Self {
            settings,
            kernel,
            metrics,
            detection: None,
            leave: None,
            installed: None,
            healthy: false,
            host_read_at: None,
            backoff: FIRST_BACKOFF,
            pending_since: Some(Instant::now()),
            cluster_policy_warnings: Warnings::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// How long until the periodic check of the host's rules is due (zero: now).
    pub fn host_check_due_in(&self) -> Duration {
        self.host_read_at.map_or(Duration::ZERO, |t| {
            self.settings.resync.saturating_sub(t.elapsed())
        })
    }

    /// The backend in use, when one works.
    pub fn detection(&self) -> Option<&Detection> {
        self.detection.as_ref().and_then(|d| d.as_ref().ok())
    }

    /// Something changed at `at`: the time from then to the rules in the kernel is measured.
    pub fn changed(&mut self, at: Instant) {
        self.pending_since.get_or_insert(at);
    }

    /// One sync. `last_sync_due`: the published `lastSync` is to be renewed even if no rule
    /// changes (none was published yet, or the refresh period is up).
    pub fn run(&mut self, wake: Wake, observed: Observed, last_sync_due: bool) -> Outcome {
        let started = Instant::now();
        self.detect_backend(wake);
        let in_use = self.detection().cloned();
        let cni = cni::detect(&self.settings.cni_dir);
        let (mut enforcing, mut reason) = decide(self.settings.mode, &cni);
        if let Some(Err(e)) = &self.detection {
            if enforcing {
                reason = format!("{reason}, but {e}");
            }
            enforcing = false;
        }
        let families: Vec<IpFamily> = in_use
            .as_ref()
            .map(|d| d.families.clone())
            .unwrap_or_default();

        // ClusterNetworkPolicies: all of the tiers or none (never half of them).
        let (cnps, cnp_refused) = cluster_policies::understand(&observed.cluster_policies);
        let (cnp_enforced, cnp_reason) =
            cluster_policies::decide(self.settings.mode, &cni, enforcing);
        self.cluster_policy_warnings.note(
            cnp_enforced,
            &cnp_reason,
            observed.cluster_policies.len(),
            &cnp_refused,
        );
        let cnp_status = cluster_policies::summarize(
            cnp_enforced,
            cnp_reason,
            observed.cluster_policy_problem,
            observed.cluster_policies.len(),
            &cnp_refused,
        );
        let cluster =
            observed
                .cluster
                .with_cluster_policies(if cnp_enforced { cnps } else { Vec::new() });
        self.metrics.latest.publish(&cluster); // for the denial reader (crate::denials)
        self.metrics.forget_denials_of_the_gone(&cluster);
        let node = &self.settings.node;
        let rulesets = if enforcing {
            compile_families(&cluster, node, &self.settings.options, &families)
        } else {
            Vec::new()
        };
        let local = local_pods(&cluster, node).count();
        // Pods with IPv6 addresses on a node whose ip6tables does not work: said in the status.
        let local_v6 = if families.contains(&IpFamily::V6) {
            0
        } else {
            local_pods_of(&cluster, node, IpFamily::V6).count()
        };

        let result = self.apply(wake, in_use.as_ref(), enforcing, &rulesets, &families);

        let mut status = NodeEnforcementStatus {
            mode: self.settings.mode.as_str().into(),
            enforcing,
            reason,
            local_pods: local as u32,
            deny_action: Some(self.settings.options.deny_action.as_str().into()),
            cluster_network_policy: Some(cnp_status),
            first_packet: Some(
                self.settings
                    .first_packet
                    .as_ref()
                    .map_or_else(FirstPacketStatus::disabled, FirstPacket::status),
            ),
            ..NodeEnforcementStatus::default()
        };
        describe_node(&mut status, in_use.as_ref(), &cni, enforcing, local_v6);
        let retry = match result {
            Ok(applied) => {
                let summary = summary_of(&rulesets);
                self.metrics.synced(
                    if applied.wrote() {
                        "written"
                    } else {
                        "unchanged"
                    },
                    started.elapsed(),
                );
                if let Some(since) = self.pending_since.take() {
                    self.metrics.event_to_rule(since.elapsed());
                }
                self.metrics.installed(summary, local, enforcing);
                if applied.wrote() && enforcing && self.settings.cut_denied_connections {
                    self.cut(&cluster, &families);
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
                self.count_audits(&rulesets, in_use.as_ref());
                // A new lastSync when the rules changed, and at least every STATUS_REFRESH: the
                // webhook counts a node whose lastSync is older than STALE_AFTER as not enforced.
                if applied.wrote() || last_sync_due {
                    status.last_sync = Some(now());
                }
                set_sizes(&mut status, summary);
                status.last_error = (!observed.policy_errors.is_empty()).then(|| {
                    format!(
                        "policies not understood: {}",
                        observed.policy_errors.join("; ")
                    )
                });
                self.installed = Some(rulesets);
                self.healthy = true;
                self.backoff = FIRST_BACKOFF;
                None
            }
            Err(Failure::NoBackend(e)) => {
                // Logged when detected; the status says it, and detection is tried again.
                self.metrics.synced("error", started.elapsed());
                self.metrics.installed(Summary::default(), local, false);
                status.last_error = Some(e.to_string());
                Some(self.back_off())
            }
            Err(Failure::Apply(e)) => {
                self.metrics.synced("error", started.elapsed());
                tracing::warn!(error = %e, retry_in = ?self.backoff, "sync failed; the previous rules stay in force");
                status.last_error = Some(e.to_string());
                if let Some(previous) = &self.installed {
                    set_sizes(&mut status, summary_of(previous));
                }
                // Something changed that is not in the kernel yet: keep measuring from then.
                self.pending_since.get_or_insert(started);
                Some(self.back_off())
            }
        };
        Outcome { status, retry }
    }

    /// Detects the backend at start; again while a retry is due or while nothing showed which
    /// backend the node uses (kube-proxy may write its first rules after the enforcer started).
    fn detect_backend(&mut self, wake: Wake) {
        let now = match &self.detection {
            None => true,
            Some(Err(_)) => wake != Wake::Change,
            Some(Ok(d)) => d.chosen == Chosen::Default && wake == Wake::Timer,
        };
        if !now {
            return;
        }
        let found = self.kernel.detect(self.settings.iptables_backend);
        let adopted = backend::adopt(self.detection.as_ref(), found);
        if adopted.moved {
            self.healthy = false;
        }
        self.leave = adopted.leave.or(self.leave);
        self.detection = Some(adopted.current);
    }

    /// Puts `rulesets` in the kernel (or, not enforcing, takes Palisade's rules out), then
    /// leaves the backend no longer in use. A change that compiles to the rules in place needs
    /// no look at the host.
    fn apply(
        &mut self,
        wake: Wake,
        in_use: Option<&Detection>,
        enforcing: bool,
        rulesets: &[Ruleset],
        families: &[IpFamily],
    ) -> Result<Applied, Failure> {
        if let Some(Err(e)) = &self.detection {
            let e = e.clone();
            // Nothing to read: the next look (and detection) is a resync away.
            self.host_read_at = Some(Instant::now());
            return self.synced(Err(Failure::NoBackend(e)));
        }
        if wake == Wake::Change
            && self.healthy
            && self.installed.as_deref() == Some(rulesets)
            && !self.host_check_due_in().is_zero()
        {
            return self.synced(Ok(Applied::default()));
        }
        self.host_read_at = Some(Instant::now());
        let backend = in_use.map_or(Backend::Nft, |d| d.backend);
        let result = if enforcing {
            self.kernel.apply(backend, rulesets)
        } else {
            self.kernel.clean_up(backend, families)
        };
        if result.is_ok()
            && let Some(left) = self.leave.take()
        {
            self.kernel.leave(left);
        }
        self.synced(result.map_err(Failure::Apply))
    }

    /// Tells first-packet isolation whether this sync's rules are in the kernel.
    fn synced(&mut self, result: Result<Applied, Failure>) -> Result<Applied, Failure> {
        if result.is_err() {
            self.healthy = false;
        }
        if let Some(fp) = &self.settings.first_packet {
            fp.synced(match &result {
                Ok(_) => None,
                Err(Failure::NoBackend(e)) => Some(e.to_string()),
                Err(Failure::Apply(e)) => Some(e.to_string()),
            });
        }
        result
    }

    /// After rules that changed are in: the connections they deny are cut, counted and logged
    /// (the rules are in force either way).
    fn cut(&mut self, cluster: &Cluster, families: &[IpFamily]) {
        let started = Instant::now();
        let result = self.kernel.cut(cluster, &self.settings.node, families);
        conntrack::report(&result, started.elapsed().as_millis() as u64, &self.metrics);
    }

    /// Counters are read only where audit rules exist: one more iptables-save.
    fn count_audits(&mut self, rulesets: &[Ruleset], in_use: Option<&Detection>) {
        let audits = rulesets.iter().any(|r| {
            r.chains
                .values()
                .flatten()
                .any(|line| matches!(&line.target, Target::Nflog { prefix, .. } if prefix.starts_with(crate::ruleset::AUDIT_PREFIX)))
        });
        if !audits {
            self.metrics.audit(&Default::default());
            return;
        }
        let Some(d) = in_use else { return };
        let mut all = BTreeMap::new();
        for tables in d.tables() {
            match self.kernel.audit_counters(tables) {
                Ok(counters) => {
                    for (comment, packets) in counters {
                        *all.entry(comment).or_insert(0) += packets;
                    }
                }
                Err(_) => return,
            }
        }
        self.metrics.audit(&all);
    }

    /// The wait before the next try, doubling the one after it.
    fn back_off(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }
}

/// What the status says of the node: the backend, the families enforced, the CNI.
fn describe_node(
    status: &mut NodeEnforcementStatus,
    in_use: Option<&Detection>,
    cni: &Result<CniInfo, CniError>,
    enforcing: bool,
    local_v6: usize,
) {
    if let Some(d) = in_use {
        status.iptables_backend = Some(d.backend.as_str().into());
        status.iptables_backend_source = Some(d.chosen.as_str().into());
        if enforcing {
            status.families = d.families.iter().map(|f| f.as_str().into()).collect();
            if let (Some(e), true) = (&d.v6_error, local_v6 > 0) {
                status.reason = format!(
                    "{}; IPv6 is not enforced ({local_v6} local pods have IPv6 addresses): {e}",
                    status.reason
                );
            }
        }
    }
    if let Ok(info) = cni {
        status.cni = Some(info.cni.clone());
        status.cni_config = Some(info.file.display().to_string());
        status.cni_plugins = info.plugins.clone();
        status.cni_enforces = info.enforces;
    }
}

fn set_sizes(status: &mut NodeEnforcementStatus, summary: Summary) {
    status.chains = summary.chains as u32;
    status.rules = summary.rules as u32;
    status.sets = summary.sets as u32;
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
