//! Denials read from the kernel, attributed, where users look (issue 22 items 1 and 2).
//!
//! The compiler logs the first packet of each denied connection attempt (conntrack NEW: a TCP
//! SYN, a UDP flow's first datagram) and each audit would-drop to the enforcer's NFLOG group,
//! rate-limited in the kernel (`-m limit` per pod and direction, node-wide for
//! ClusterNetworkPolicy Deny rules). This module reads that group itself over netlink
//! ([`nflog`]), parses the packet ([`packet`]), explains it on the enforcer's current snapshot
//! in the words of `palisade reach --explain` ([`record`]), and reports each record three
//! ways: one JSON log line, the counters `palisade_enforcer_denied_total` /
//! `palisade_enforcer_audit_would_deny_total` (labels namespace, policy, direction), and
//! aggregated Kubernetes Events on the denied pod ([`events`]).
//!
//! Bounded at every step: the kernel's rate; a queue of [`QUEUE`] records between the socket
//! thread and the task (full: counted as lost, the dataplane never waits); at most
//! `records_per_second` records explained a second (beyond: counted as lost, "sampled"); at
//! most `max_events_per_minute` new Events a minute.

pub mod events;
pub mod nflog;
pub mod packet;
pub mod record;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kube::Client;
use palisade_policy::Cluster;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use events::Aggregator;
use nflog::Logged;
use record::{Kind, Prefix, Record, View};

/// Records waiting between the socket thread and the task.
pub const QUEUE: usize = 1024;
/// How often gathered Events are written.
pub const FLUSH: Duration = Duration::from_secs(10);

/// What the reader is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub node: String,
    pub nflog_group: u16,
    /// Write Kubernetes Events (else only logs and metrics).
    pub events: bool,
    /// New Events a minute from this node, at most.
    pub max_events_per_minute: usize,
    /// Records explained a second, at most (the rest are counted as lost).
    pub records_per_second: u32,
}

/// The enforcer's latest snapshot, for the reader: published by the sync loop, read here.
/// Nothing is copied until a reader asks for it ([`Latest::want`]).
#[derive(Debug, Default)]
pub struct Latest {
    wanted: AtomicBool,
    generation: AtomicU64,
    cluster: Mutex<Option<Arc<Cluster>>>,
}

impl Latest {
    /// A reader will ask: keep a copy of every snapshot from now on.
    pub fn want(&self) {
        self.wanted.store(true, Ordering::SeqCst);
    }

    /// The sync loop's snapshot, kept when a reader wants it.
    pub fn publish(&self, cluster: &Cluster) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let copy = Arc::new(cluster.clone());
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = Some(copy);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The latest snapshot and its generation (0: none yet).
    pub fn get(&self) -> (u64, Option<Arc<Cluster>>) {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (self.generation.load(Ordering::SeqCst), cluster)
    }
}

/// Starts the reader: a thread on the NFLOG socket and a task that explains and reports.
/// Returns once the socket is bound (an error when it cannot be: no CAP_NET_ADMIN, no
/// nfnetlink_log in the kernel, the group taken by another process).
pub fn start(
    client: Option<Client>,
    options: Options,
    metrics: Arc<Metrics>,
    node_addresses: Vec<IpAddr>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let socket = nflog::Socket::open(options.nflog_group, 1 << 20, Duration::from_millis(500))?;
    metrics.latest.want();
    let (tx, rx) = mpsc::channel::<Logged>(QUEUE);
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("palisade-nflog".into())
            .spawn(move || read_socket(&socket, &tx, &stopping, &metrics))?;
    }
    Ok(tokio::spawn(async move {
        let mut task = Task::new(options, metrics, node_addresses);
        tokio::pin!(stop);
        let mut rx = rx;
        let mut flush = tokio::time::interval(FLUSH);
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(logged) => {
                        task.take(&logged, Instant::now());
                    }
                    None => break,
                },
                _ = flush.tick() => {
                    if let Some(client) = &client {
                        task.flush(client, Instant::now()).await;
                    }
                }
                _ = &mut stop => break,
            }
        }
        stopping.store(true, Ordering::SeqCst);
        if let Some(client) = &client {
            task.flush(client, Instant::now()).await;
        }
    }))
}

/// The socket thread: datagrams to parsed packets onto the queue, never waiting for it.
fn read_socket(
    socket: &nflog::Socket,
    tx: &mpsc::Sender<Logged>,
    stopping: &AtomicBool,
    metrics: &Metrics,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stopping.load(Ordering::Relaxed) && !tx.is_closed() {
        let got = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // The kernel dropped messages for this socket: how many, it does not say.
                metrics.denials_lost("socket-overrun", 1);
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the NFLOG group; denials are no longer reported");
                return;
            }
        };
        match nflog::parse_datagram(&buf[..got], SystemTime::now()) {
            Ok(packets) => {
                for logged in packets {
                    if tx.try_send(logged).is_err() {
                        metrics.denials_lost("queue-full", 1);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "an NFLOG message not understood"),
        }
    }
}

/// The explaining and reporting half, without I/O but the Event writes.
pub struct Task {
    options: Options,
    metrics: Arc<Metrics>,
    node_addresses: Vec<IpAddr>,
    view: Option<(u64, View)>,
    aggregator: Aggregator,
    budget: Budget,
    suppressed_counted: u64,
}

impl Task {
    pub fn new(options: Options, metrics: Arc<Metrics>, node_addresses: Vec<IpAddr>) -> Self {
        let aggregator = Aggregator::new(&options.node, options.max_events_per_minute);
        let budget = Budget::new(options.records_per_second);
        Task {
            options,
            metrics,
            node_addresses,
            view: None,
            aggregator,
            budget,
            suppressed_counted: 0,
        }
    }

    /// One logged packet: its record, logged, counted and gathered into its Event. The
    /// record, or `None` when the packet is not Palisade's, has no ports, is over the rate,
    /// or came before the first snapshot.
    pub fn take(&mut self, logged: &Logged, now: Instant) -> Option<Record> {
        let prefix = Prefix::parse(&logged.prefix)?;
        let packet = match packet::parse(&logged.payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, prefix = %logged.prefix, "a logged packet without ports");
                return None;
            }
        };
        if !self.budget.take(now) {
            self.metrics.denials_lost("sampled", 1);
            return None;
        }
        let (generation, cluster) = self.metrics.latest.get();
        if self.view.as_ref().is_none_or(|(g, _)| *g != generation)
            && let Some(cluster) = cluster
        {
            self.view = Some((
                generation,
                View::new(&cluster, &self.options.node, self.node_addresses.clone()),
            ));
        }
        let Some((_, view)) = &self.view else {
            self.metrics.denials_lost("no-snapshot", 1);
            return None;
        };
        let record = view.record(&prefix, &packet, logged.time);
        report(&record, &self.metrics);
        if self.options.events {
            self.aggregator.observe(&record, now);
        }
        Some(record)
    }

    /// Writes the Events due.
    pub async fn flush(&mut self, client: &Client, now: Instant) {
        let writes = self.aggregator.flush(now);
        if !writes.is_empty() {
            events::write(client, &mut self.aggregator, writes).await;
        }
        self.count_suppressed();
    }

    /// Records kept out of Events since the last count, to the counter.
    fn count_suppressed(&mut self) {
        let new = self.aggregator.suppressed - self.suppressed_counted;
        if new > 0 {
            self.metrics.denials_lost("events-over-budget", new);
        }
        self.suppressed_counted = self.aggregator.suppressed;
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }
}

/// The log line and the counters of one record.
pub fn report(record: &Record, metrics: &Metrics) {
    let policies = record.policies.join(",");
    tracing::info!(
        target: "palisade::denial",
        time = %record.time,
        node = %record.node,
        kind = record.kind.as_str(),
        direction = record.direction,
        pod = record.pod.as_deref().unwrap_or(""),
        source = %record.source,
        destination = %record.destination,
        source_ip = %record.source_ip,
        destination_ip = %record.destination_ip,
        protocol = record.protocol,
        port = record.port,
        policies = %policies,
        reason = %record.reason,
        "{}",
        match record.kind {
            Kind::Denied => "connection denied",
            Kind::AuditWouldDeny => "connection would be denied (audit)",
        }
    );
    let namespace = record.namespace();
    if record.policies.is_empty() {
        metrics.denied(record.kind, namespace, "", record.direction);
    }
    for policy in &record.policies {
        // A NetworkPolicy by its name (its namespace is the label's), a ClusterNetworkPolicy
        // as `ClusterNetworkPolicy NAME`.
        let name = policy
            .split_once('/')
            .filter(|_| !policy.starts_with("ClusterNetworkPolicy "))
            .map_or(policy.as_str(), |(_, n)| n);
        metrics.denied(record.kind, namespace, name, record.direction);
    }
}

/// A token bucket: `per_second` records a second, as many in a burst.
#[derive(Debug)]
struct Budget {
    per_second: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Budget {
            per_second,
            tokens: per_second,
            at: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.per_second);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_lets_its_rate_through_and_no_more() {
        let mut b = Budget::new(100);
        let t0 = Instant::now();
        // 10,000 packets in one second: the burst of 100, then 100 more as the second goes by.
        let passed = (0..10_000u64)
            .filter(|i| b.take(t0 + Duration::from_micros(i * 100)))
            .count();
        assert!((199..=201).contains(&passed), "{passed}");
    }
}

#[cfg(test)]
mod task_tests {
    use super::*;

    fn options() -> Options {
        Options {
            node: "n1".into(),
            nflog_group: 100,
            events: true,
            max_events_per_minute: 30,
            records_per_second: 100,
        }
    }

    fn logged(prefix: &str, payload: Vec<u8>) -> Logged {
        let msg = nflog::tests::kernel_message(libc::AF_INET as u8, 100, prefix, &payload);
        nflog::parse_datagram(&msg, SystemTime::UNIX_EPOCH)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_logged_syn_becomes_a_record_counted_by_namespace_policy_and_direction() {
        let metrics = Arc::new(Metrics::default());
        metrics.latest.want();
        metrics.latest.publish(&record::tests::cluster());
        let mut task = Task::new(options(), metrics.clone(), vec![]);
        let syn = packet::tests::syn_v4([10, 0, 1, 2], 40000, [10, 0, 2, 3], 80);
        let r = task
            .take(
                &logged("palisade-deny y/b ingress", syn.clone()),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(r.pod.as_deref(), Some("y/b"));
        task.take(&logged("palisade-deny y/b ingress", syn), Instant::now());
        let text = metrics.render();
        assert!(
            text.contains(
                r#"palisade_enforcer_denied_total{namespace="y",policy="deny-all",direction="ingress"} 2"#
            ),
            "{text}"
        );
        // No pod or address in any label.
        assert!(!text.contains("10.0.") && !text.contains("pod="), "{text}");
        // One Event gathers both.
        assert_eq!(task.aggregator().len(), 1);
        // Not Palisade's prefix: no record.
        assert_eq!(
            task.take(&logged("someone-else", vec![0x45; 40]), Instant::now()),
            None
        );
    }

    #[test]
    fn before_the_first_snapshot_a_record_is_counted_as_lost() {
        let metrics = Arc::new(Metrics::default());
        let mut task = Task::new(options(), metrics.clone(), vec![]);
        let syn = packet::tests::syn_v4([10, 0, 1, 2], 40000, [10, 0, 2, 3], 80);
        assert_eq!(
            task.take(&logged("palisade-deny y/b ingress", syn), Instant::now()),
            None
        );
        assert!(
            metrics
                .render()
                .contains(r#"palisade_enforcer_denials_lost_total{reason="no-snapshot"} 1"#)
        );
    }

    #[test]
    fn a_flood_is_sampled_to_the_records_rate() {
        let metrics = Arc::new(Metrics::default());
        metrics.latest.want();
        metrics.latest.publish(&record::tests::cluster());
        let mut task = Task::new(options(), metrics.clone(), vec![]);
        let t0 = Instant::now();
        let mut records = 0;
        for i in 0..1000u16 {
            let syn = packet::tests::syn_v4([10, 0, 1, 2], 1000 + i, [10, 0, 2, 3], 80);
            if task
                .take(&logged("palisade-deny y/b ingress", syn), t0)
                .is_some()
            {
                records += 1;
            }
        }
        assert_eq!(records, 100);
        assert!(
            metrics
                .render()
                .contains(r#"palisade_enforcer_denials_lost_total{reason="sampled"} 900"#)
        );
    }
}
