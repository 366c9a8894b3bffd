//! Kubernetes Events on the denied pod, aggregated as kubelet does: one Event per pod, peer,
//! port, kind and policies per minute, with a count, so `kubectl events -n NS --for pod/NAME`
//! answers "why can't I reach it".
//!
//! Bounded so a scan cannot flood etcd: at most `max_new_per_minute` new Events a minute from
//! one node (a key first seen beyond that is counted, not written), and each Event is written
//! at most once per flush (creation, then a patch of its count and last time), so a node
//! writes at most `max_new_per_minute × (1 + 60 s / flush)` times a minute. The aggregation
//! itself is pure ([`Aggregator`]); [`write`] does the API calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::record::{Kind, Record};

/// How long one Event gathers the repeats of its key (and then until its count is written).
pub const WINDOW: Duration = Duration::from_secs(60);
/// The Event's reason for each kind of record, and who writes them: the names `palisade denials`
/// reads.
pub use palisade_api::{AUDIT_REASON, DENIAL_EVENT_COMPONENT as COMPONENT, DENIED_REASON};

/// What makes two records the same Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub pod: String,
    pub kind: Kind,
    pub direction: &'static str,
    /// The other end (`ns/pod` or an address).
    pub peer: String,
    pub protocol: &'static str,
    pub port: u16,
    pub policies: Vec<String>,
}

impl Key {
    /// The Event key of a record; `None` for a record that names no pod (nothing to attach
    /// an Event to).
    pub fn of(record: &Record) -> Option<Key> {
        let (namespace, pod) = record.pod.as_deref()?.split_once('/')?;
        let peer = if record.direction == "egress" {
            &record.destination
        } else {
            &record.source
        };
        Some(Key {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            kind: record.kind,
            direction: record.direction,
            peer: peer.clone(),
            protocol: record.protocol,
            port: record.port,
            policies: record.policies.clone(),
        })
    }
}

/// One Event being gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered {
    /// The Event's object name, once it has been created.
    pub name: Option<String>,
    /// The message of its first record.
    pub message: String,
    pub first: Instant,
    pub first_time: String,
    pub last_time: String,
    pub count: u32,
    /// The count the API has.
    pub written: u32,
}

/// What a flush asks of the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Create {
        key: Key,
        event: Box<Event>,
    },
    Update {
        key: Key,
        name: String,
        count: u32,
        last_time: String,
    },
}

/// The Events of one node while they gather.
#[derive(Debug)]
pub struct Aggregator {
    node: String,
    max_new_per_minute: usize,
    gathering: HashMap<Key, Gathered>,
    /// The start of the current minute of the new-Event budget, and how much of it is used.
    minute: Option<Instant>,
    new_this_minute: usize,
    /// Records whose key did not fit into the budget, since the start.
    pub suppressed: u64,
    sequence: u64,
}

impl Aggregator {
    pub fn new(node: &str, max_new_per_minute: usize) -> Self {
        Aggregator {
            node: node.to_string(),
            max_new_per_minute,
            gathering: HashMap::new(),
            minute: None,
            new_this_minute: 0,
            suppressed: 0,
            sequence: 0,
        }
    }

    /// Takes a record in at `now`: counted into its key's Event, or a new Event within the
    /// budget; false when it is suppressed (or names no pod).
    pub fn observe(&mut self, record: &Record, now: Instant) -> bool {
        let Some(key) = Key::of(record) else {
            return false;
        };
        // Past its minute, an Event still takes repeats until its count is written: a new
        // Event in its place would lose the repeats not yet written.
        if let Some(g) = self.gathering.get_mut(&key)
            && (now.duration_since(g.first) < WINDOW || g.count > g.written)
        {
            g.count += 1;
            g.last_time = record.time.clone();
            return true;
        }
        if self
            .minute
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            self.minute = Some(now);
            self.new_this_minute = 0;
        }
        if self.new_this_minute >= self.max_new_per_minute {
            self.suppressed += 1;
            return false;
        }
        self.new_this_minute += 1;
        let message = message(record);
        self.gathering.insert(
            key,
            Gathered {
                name: None,
                message,
                first: now,
                first_time: record.time.clone(),
                last_time: record.time.clone(),
                count: 1,
                written: 0,
            },
        );
        true
    }

    /// The writes due at `now`: a creation for every new Event, an update for every Event
    /// whose count rose; Events whose minute is over and whose count is written are let go.
    pub fn flush(&mut self, now: Instant) -> Vec<Write> {
        let mut out = Vec::new();
        self.gathering
            .retain(|_, g| g.count > g.written || now.duration_since(g.first) < WINDOW);
        let mut keys: Vec<&Key> = self.gathering.keys().collect();
        keys.sort_by(|a, b| (&a.namespace, &a.pod, a.port).cmp(&(&b.namespace, &b.pod, b.port)));
        let keys: Vec<Key> = keys.into_iter().cloned().collect();
        for key in keys {
            let Some(g) = self.gathering.get_mut(&key) else {
                continue;
            };
            if g.count == g.written {
                continue;
            }
            match &g.name {
                None => {
                    self.sequence += 1;
                    let name = format!(
                        "{}.palisade.{:x}",
                        key.pod,
                        unique(&self.node, self.sequence)
                    );
                    g.name = Some(name.clone());
                    out.push(Write::Create {
                        event: Box::new(event(&self.node, &key, g, &name)),
                        key: key.clone(),
                    });
                }
                Some(name) => out.push(Write::Update {
                    key: key.clone(),
                    name: name.clone(),
                    count: g.count,
                    last_time: g.last_time.clone(),
                }),
            }
            g.written = g.count;
        }
        out
    }

    /// Forgets that a write reached the API (it failed): the next flush tries again, as a
    /// creation if the Event was never created.
    pub fn failed(&mut self, write: &Write) {
        let key = match write {
            Write::Create { key, .. } => {
                if let Some(g) = self.gathering.get_mut(key) {
                    g.name = None;
                }
                key
            }
            Write::Update { key, .. } => key,
        };
        if let Some(g) = self.gathering.get_mut(key) {
            g.written = 0;
        }
    }

    /// Events being gathered now.
    pub fn len(&self) -> usize {
        self.gathering.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gathering.is_empty()
    }
}

/// A name suffix unique to this node and process: the start time and a sequence number.
fn unique(node: &str, sequence: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut h);
    std::process::id().hash(&mut h);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    started.hash(&mut h);
    (h.finish() & 0xffff_ffff_0000_0000) | (sequence & 0xffff_ffff)
}

/// The Event's message: the record's explanation, with the peer's address where it was a pod.
fn message(record: &Record) -> String {
    let verb = match record.kind {
        Kind::Denied => "denied",
        Kind::AuditWouldDeny => "would be denied (audit)",
    };
    let mut m = format!(
        "{} to {}:{}/{} {verb}: {}",
        record.source, record.destination, record.port, record.protocol, record.reason
    );
    if m.len() > 1024 {
        m = crate::compile::truncate(&m, 1024);
    }
    m
}

fn parse_time(text: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    text.parse().ok()
}

/// The core/v1 Event of a gathered key.
fn event(node: &str, key: &Key, g: &Gathered, name: &str) -> Event {
    let first = parse_time(&g.first_time);
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(key.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(key.namespace.clone()),
            name: Some(key.pod.clone()),
            ..ObjectReference::default()
        },
        reason: Some(
            match key.kind {
                Kind::Denied => DENIED_REASON,
                Kind::AuditWouldDeny => AUDIT_REASON,
            }
            .into(),
        ),
        message: Some(g.message.clone()),
        type_: Some("Warning".into()),
        count: Some(g.count as i32),
        first_timestamp: first.map(Time),
        last_timestamp: parse_time(&g.last_time).map(Time),
        event_time: None::<MicroTime>,
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(node.to_string()),
        action: Some(
            match key.kind {
                Kind::Denied => "Deny",
                Kind::AuditWouldDeny => "AuditDeny",
            }
            .into(),
        ),
        ..Event::default()
    }
}

/// Does the writes; a failed one is given back to `aggregator` to try again. How many failed.
pub async fn write(client: &Client, aggregator: &mut Aggregator, writes: Vec<Write>) -> usize {
    let mut failed = 0;
    for w in writes {
        let result = match &w {
            Write::Create { key, event } => {
                let api: Api<Event> = Api::namespaced(client.clone(), &key.namespace);
                api.create(&PostParams::default(), event).await.map(|_| ())
            }
            Write::Update {
                key,
                name,
                count,
                last_time,
            } => {
                let api: Api<Event> = Api::namespaced(client.clone(), &key.namespace);
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": last_time,
                });
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            failed += 1;
            tracing::debug!(error = %e, "writing a denial Event");
            // A namespace being deleted, an Event expired: no point in trying again.
            let gone = matches!(&e, kube::Error::Api(r) if r.code == 404 || r.code == 403);
            if !gone {
                aggregator.failed(&w);
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pod: &str, peer: &str, port: u16) -> Record {
        Record {
            time: "2026-12-07T06:00:00Z".into(),
            node: "n1".into(),
            kind: Kind::Denied,
            direction: "ingress",
            pod: Some(pod.into()),
            source: peer.into(),
            destination: pod.into(),
            source_ip: "10.0.0.1".parse().unwrap(),
            destination_ip: "10.0.0.2".parse().unwrap(),
            protocol: "TCP",
            port,
            policies: vec!["y/deny-all".into()],
            reason: "ingress denied: y/b is isolated by y/deny-all and no rule allows x/a on 80/TCP; egress not isolated".into(),
        }
    }

    #[test]
    fn repeats_within_a_minute_are_one_event_with_a_count() {
        let mut a = Aggregator::new("n1", 10);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(a.observe(&record("y/b", "x/a", 80), t0 + Duration::from_secs(i)));
        }
        let writes = a.flush(t0 + Duration::from_secs(5));
        assert_eq!(writes.len(), 1);
        let Write::Create { event, .. } = &writes[0] else {
            panic!("{writes:?}")
        };
        assert_eq!(event.count, Some(5));
        assert_eq!(event.reason.as_deref(), Some(DENIED_REASON));
        assert_eq!(event.involved_object.name.as_deref(), Some("b"));
        assert_eq!(event.involved_object.namespace.as_deref(), Some("y"));
        assert!(
            event
                .message
                .as_deref()
                .unwrap()
                .contains("isolated by y/deny-all"),
            "{event:?}"
        );
        // Nothing new: nothing to write.
        assert!(a.flush(t0 + Duration::from_secs(10)).is_empty());
        // Two more within the minute: one update of the same Event.
        a.observe(&record("y/b", "x/a", 80), t0 + Duration::from_secs(20));
        a.observe(&record("y/b", "x/a", 80), t0 + Duration::from_secs(21));
        let writes = a.flush(t0 + Duration::from_secs(25));
        assert!(
            matches!(&writes[..], [Write::Update { count: 7, name, .. }] if Some(name) == event.metadata.name.as_ref()),
            "{writes:?}"
        );
        // After the minute: a new Event.
        a.observe(&record("y/b", "x/a", 80), t0 + Duration::from_secs(61));
        let writes = a.flush(t0 + Duration::from_secs(65));
        assert!(
            matches!(&writes[..], [Write::Create { event, .. }] if event.count == Some(1)),
            "{writes:?}"
        );
    }

    #[test]
    fn other_ports_and_peers_are_other_events() {
        let mut a = Aggregator::new("n1", 10);
        let t0 = Instant::now();
        a.observe(&record("y/b", "x/a", 80), t0);
        a.observe(&record("y/b", "x/a", 81), t0);
        a.observe(&record("y/b", "x/c", 80), t0);
        a.observe(&record("y/d", "x/a", 80), t0);
        assert_eq!(a.flush(t0).len(), 4);
    }

    #[test]
    fn a_scan_creates_at_most_the_budget_of_events_a_minute() {
        let mut a = Aggregator::new("n1", 30);
        let t0 = Instant::now();
        let mut writes = 0;
        let mut creates = 0;
        // A scan of 65,535 ports in 52 s, flushed every 10,000 ports.
        for port in 1..=65535u16 {
            let now = t0 + Duration::from_micros(u64::from(port) * 800);
            a.observe(&record("y/b", "x/a", port), now);
            if port % 10_000 == 0 {
                let w = a.flush(now);
                creates += w
                    .iter()
                    .filter(|w| matches!(w, Write::Create { .. }))
                    .count();
                writes += w.len();
            }
        }
        let w = a.flush(t0 + Duration::from_secs(60));
        creates += w
            .iter()
            .filter(|w| matches!(w, Write::Create { .. }))
            .count();
        writes += w.len();
        assert_eq!(creates, 30);
        assert_eq!(writes, 30);
        assert_eq!(a.suppressed, 65535 - 30);
        // The next minute has a budget of its own.
        assert!(a.observe(&record("y/b", "x/a", 1), t0 + Duration::from_secs(61)));
    }

    #[test]
    fn a_failed_creation_is_tried_again() {
        let mut a = Aggregator::new("n1", 10);
        let t0 = Instant::now();
        a.observe(&record("y/b", "x/a", 80), t0);
        let writes = a.flush(t0);
        a.failed(&writes[0]);
        let again = a.flush(t0 + Duration::from_secs(10));
        assert!(
            matches!(&again[..], [Write::Create { event, .. }] if event.count == Some(1)),
            "{again:?}"
        );
    }

    #[test]
    fn a_repeat_after_the_minute_does_not_lose_the_count_not_yet_written() {
        let mut a = Aggregator::new("n1", 10);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        a.observe(&record("y/b", "x/a", 80), at(0));
        let created = a.flush(at(55));
        let Some(Write::Create { event, .. }) = created.first() else {
            panic!("{created:?}")
        };
        a.observe(&record("y/b", "x/a", 80), at(58));
        a.observe(&record("y/b", "x/a", 80), at(61));
        let writes = a.flush(at(65));
        assert!(
            matches!(&writes[..], [Write::Update { count: 3, name, .. }] if Some(name) == event.metadata.name.as_ref()),
            "{writes:?}"
        );
        // Written: the next repeat starts a new Event.
        a.observe(&record("y/b", "x/a", 80), at(66));
        assert!(
            matches!(&a.flush(at(75))[..], [Write::Create { event, .. }] if event.count == Some(1))
        );
    }

    proptest::proptest! {
        /// Whatever the timing, every record taken in is in the last count written of an
        /// Event, or counted as suppressed.
        #[test]
        fn every_record_is_written_or_counted_suppressed(
            steps in proptest::collection::vec((0u16..6, 0u64..20_000, proptest::bool::ANY), 1..400),
            budget in 1usize..8,
        ) {
            let mut a = Aggregator::new("n1", budget);
            let t0 = Instant::now();
            let mut now = t0;
            let mut taken = 0u64;
            let mut written: HashMap<String, u32> = HashMap::new();
            let mut note = |writes: Vec<Write>| {
                for w in writes {
                    match w {
                        Write::Create { event, .. } => {
                            let name = event.metadata.name.clone().unwrap_or_default();
                            written.insert(name, u32::try_from(event.count.unwrap_or(0)).unwrap_or(0));
                        }
                        Write::Update { name, count, .. } => {
                            written.insert(name, count);
                        }
                    }
                }
            };
            for (port, after_ms, flush) in steps {
                now += Duration::from_millis(after_ms);
                a.observe(&record("y/b", "x/a", 80 + port), now);
                taken += 1;
                if flush {
                    note(a.flush(now));
                }
            }
            note(a.flush(now + WINDOW));
            let in_events: u64 = written.values().map(|c| u64::from(*c)).sum();
            proptest::prop_assert_eq!(in_events + a.suppressed, taken);
        }
    }

    #[test]
    fn records_without_a_pod_make_no_event() {
        let mut a = Aggregator::new("n1", 10);
        let mut r = record("y/b", "x/a", 80);
        r.pod = None;
        assert!(!a.observe(&r, Instant::now()));
        assert!(a.is_empty());
    }
}
