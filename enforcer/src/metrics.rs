//! Prometheus metrics of one node's enforcer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ruleset::Summary;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct DenialLabels {
    namespace: String,
    policy: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    rule: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    syncs: Family<SyncLabels, Counter>,
    sync_duration: Histogram,
    event_to_rule: Histogram,
    chains: Gauge,
    rules: Gauge,
    sets: Gauge,
    set_entries: Gauge,
    local_pods: Gauge,
    enforcing: Gauge,
    audit: Family<AuditLabels, Gauge>,
    connections_cut: Family<ProtocolLabels, Counter>,
    denied: Family<DenialLabels, Counter>,
    audit_would_deny: Family<DenialLabels, Counter>,
    denials_lost: Family<LostLabels, Counter>,
    /// The label sets `denied` and `audit_would_deny` have, so those of namespaces and policies
    /// that are gone can be forgotten ([`Metrics::forget_denials_of_the_gone`]).
    denial_series: Mutex<BTreeSet<DenialLabels>>,
    /// The latest snapshot, for the denial reader ([`crate::denials`]).
    pub latest: crate::denials::Latest,
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade_enforcer");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            syncs: Family::default(),
            sync_duration: latency_buckets(),
            event_to_rule: latency_buckets(),
            chains: Gauge::default(),
            rules: Gauge::default(),
            sets: Gauge::default(),
            set_entries: Gauge::default(),
            local_pods: Gauge::default(),
            enforcing: Gauge::default(),
            audit: Family::default(),
            connections_cut: Family::default(),
            denied: Family::default(),
            audit_would_deny: Family::default(),
            denials_lost: Family::default(),
            denial_series: Mutex::default(),
            latest: Default::default(),
        };
        registry.register(
            "syncs",
            "Syncs by result: written (rules changed), unchanged, error",
            m.syncs.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Time of one sync: compile, read the host, write the difference",
            m.sync_duration.clone(),
        );
        registry.register(
            "event_to_rule_seconds",
            "Time from a Kubernetes change reaching the enforcer to the rules being in the kernel",
            m.event_to_rule.clone(),
        );
        registry.register("chains", "Palisade chains installed", m.chains.clone());
        registry.register("rules", "Palisade rules installed", m.rules.clone());
        registry.register("sets", "Palisade ipsets installed", m.sets.clone());
        registry.register(
            "set_entries",
            "Entries in Palisade's ipsets",
            m.set_entries.clone(),
        );
        registry.register(
            "local_pods",
            "Pods on this node the rules protect",
            m.local_pods.clone(),
        );
        registry.register(
            "enforcing",
            "1 while this enforcer programs rules (0: standing aside for the CNI, or mode off)",
            m.enforcing.clone(),
        );
        registry.register(
            "audit_would_drop",
            "Packets audit policies would have dropped, by audit rule (pod and policies), since the rule was installed",
            m.audit.clone(),
        );
        registry.register(
            "connections_cut",
            "Connections whose conntrack entries were deleted because a change made policy deny them, by protocol (TCP, UDP, SCTP)",
            m.connections_cut.clone(),
        );
        registry.register(
            "denied",
            "Denied connection attempts the kernel logged (first packets, within the denial log rate), by the denied pod's namespace, the policy that denied and direction",
            m.denied.clone(),
        );
        registry.register(
            "audit_would_deny",
            "Connection attempts audit policies would deny that the kernel logged (first packets, within the audit log rate), by namespace, policy and direction",
            m.audit_would_deny.clone(),
        );
        registry.register(
            "denials_lost",
            "Logged denials not reported: socket-overrun (the kernel dropped messages), queue-full, sampled (over the records-per-second rate), no-snapshot, events-over-budget (counted and logged, but no Event)",
            m.denials_lost.clone(),
        );
        registry.register(
            "heap_bytes",
            "Bytes the enforcer has allocated and not freed (its live heap; resident memory also counts what the allocator keeps and thread stacks)",
            crate::heap::HeapGauge,
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }
}

impl Metrics {
    pub fn synced(&self, result: &'static str, took: Duration) {
        self.syncs.get_or_create(&SyncLabels { result }).inc();
        self.sync_duration.observe(took.as_secs_f64());
    }

    pub fn event_to_rule(&self, took: Duration) {
        self.event_to_rule.observe(took.as_secs_f64());
    }

    pub fn installed(&self, summary: Summary, local_pods: usize, enforcing: bool) {
        self.chains.set(summary.chains as i64);
        self.rules.set(summary.rules as i64);
        self.sets.set(summary.sets as i64);
        self.set_entries.set(summary.set_entries as i64);
        self.local_pods.set(local_pods as i64);
        self.enforcing.set(i64::from(enforcing));
    }

    pub fn audit(&self, counters: &BTreeMap<String, u64>) {
        self.audit.clear();
        for (rule, packets) in counters {
            self.audit
                .get_or_create(&AuditLabels { rule: rule.clone() })
                .set(*packets as i64);
        }
    }

    /// Counts connections cut because policy denies them now ([`crate::conntrack`]).
    pub fn connections_cut(&self, protocol: palisade_policy::Protocol, n: u64) {
        let protocol = match protocol {
            palisade_policy::Protocol::Tcp => "TCP",
            palisade_policy::Protocol::Udp => "UDP",
            palisade_policy::Protocol::Sctp => "SCTP",
        };
        self.connections_cut
            .get_or_create(&ProtocolLabels { protocol })
            .inc_by(n);
    }

    /// Counts one denial record for `policy` (empty when none denies any more).
    pub fn denied(
        &self,
        kind: crate::denials::record::Kind,
        namespace: &str,
        policy: &str,
        direction: &'static str,
    ) {
        let labels = DenialLabels {
            namespace: namespace.to_string(),
            policy: policy.to_string(),
            direction,
        };
        match kind {
            crate::denials::record::Kind::Denied => self.denied.get_or_create(&labels).inc(),
            crate::denials::record::Kind::AuditWouldDeny => {
                self.audit_would_deny.get_or_create(&labels).inc()
            }
        };
        self.denial_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(labels);
    }

    /// Forgets the denial counters of namespaces and policies `cluster` no longer has: where
    /// namespaces come and go (one per review app, per CI run) they would otherwise pile up for
    /// as long as the enforcer runs, in its memory and in every scrape.
    pub fn forget_denials_of_the_gone(&self, cluster: &palisade_policy::Cluster) {
        let namespaces: BTreeSet<&str> = cluster.namespaces().map(|n| n.name.as_str()).collect();
        let exists = |l: &DenialLabels| {
            namespaces.contains(l.namespace.as_str())
                && (l.policy.is_empty()
                    || match l.policy.strip_prefix("ClusterNetworkPolicy ") {
                        Some(name) => cluster.cluster_policies().iter().any(|c| c.name == name),
                        None => cluster
                            .policies_in(&l.namespace)
                            .any(|p| p.name == l.policy),
                    })
        };
        self.denial_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| {
                let keep = exists(l);
                if !keep {
                    self.denied.remove(l);
                    self.audit_would_deny.remove(l);
                }
                keep
            });
    }

    /// Counts denials that were logged but not reported, and why.
    pub fn denials_lost(&self, reason: &'static str, n: u64) {
        self.denials_lost
            .get_or_create(&LostLabels { reason })
            .inc_by(n);
    }

    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        palisade_runtime::process::encode(&registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denials::record::Kind;
    use palisade_policy::{Cluster, Labels, Namespace, Policy};

    fn cluster(namespaces: &[&str], policies: Vec<Policy>) -> Cluster {
        Cluster::new(
            namespaces.iter().map(|n| Namespace::new(*n, Labels::new())),
            vec![],
            vec![],
            policies,
        )
    }

    /// The denial counters' lines, sorted (a family's order is a hash map's).
    fn series(m: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = m
            .render()
            .lines()
            .filter(|l| {
                l.starts_with("palisade_enforcer_denied_total{")
                    || l.starts_with("palisade_enforcer_audit_would_deny_total{")
            })
            .map(String::from)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn the_denial_counters_of_gone_namespaces_and_policies_are_forgotten() {
        let m = Metrics::default();
        m.denied(Kind::Denied, "review-41", "deny-all", "ingress");
        m.denied(Kind::Denied, "shop", "deny-all", "ingress");
        m.denied(Kind::Denied, "shop", "old", "egress");
        m.denied(Kind::Denied, "shop", "", "ingress");
        m.denied(
            Kind::AuditWouldDeny,
            "shop",
            "ClusterNetworkPolicy gone",
            "ingress",
        );
        assert_eq!(series(&m).len(), 5);
        // review-41 deleted with its policy; shop/old and the ClusterNetworkPolicy deleted.
        m.forget_denials_of_the_gone(&cluster(
            &["shop"],
            vec![Policy::deny_all_ingress("shop", "deny-all")],
        ));
        assert_eq!(
            series(&m),
            [
                r#"palisade_enforcer_denied_total{namespace="shop",policy="",direction="ingress"} 1"#,
                r#"palisade_enforcer_denied_total{namespace="shop",policy="deny-all",direction="ingress"} 1"#,
            ]
        );
        // A counter that is kept goes on counting; one forgotten starts again if it comes back.
        m.denied(Kind::Denied, "shop", "deny-all", "ingress");
        m.denied(Kind::Denied, "review-41", "deny-all", "ingress");
        let text = series(&m).join("\n");
        assert!(
            text.contains(r#"namespace="shop",policy="deny-all",direction="ingress"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"namespace="review-41",policy="deny-all",direction="ingress"} 1"#),
            "{text}"
        );
    }
}
