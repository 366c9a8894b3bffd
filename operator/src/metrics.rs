//! Prometheus metrics: reconciles by controller and result, their duration, namespaces covered
//! per baseline, and whether this replica leads.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BaselineLabels {
    baseline: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    covered: Family<BaselineLabels, Gauge>,
    leader: Gauge,
    webhook_available: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0])
        });
        let covered = Family::<BaselineLabels, Gauge>::default();
        let leader = Gauge::default();
        let webhook_available = Gauge::default();
        registry.register(
            "webhook_available",
            "1 while Palisade's webhook has a ready endpoint, 0 while the apiserver cannot reach it (measured by the leader)",
            webhook_available.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by controller (namespace, baseline) and result (ok, error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile, by controller",
            duration.clone(),
        );
        registry.register(
            "namespaces_covered",
            "Namespaces a baseline is applied to",
            covered.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reconciles,
            duration,
            covered,
            leader,
            webhook_available,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        self.duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    pub fn set_covered(&self, baseline: &str, namespaces: usize) {
        self.covered
            .get_or_create(&BaselineLabels {
                baseline: baseline.into(),
            })
            .set(namespaces as i64);
    }

    pub fn forget_baseline(&self, baseline: &str) {
        self.covered.remove(&BaselineLabels {
            baseline: baseline.into(),
        });
    }

    pub fn set_webhook_available(&self, available: bool) {
        self.webhook_available.set(i64::from(available));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        palisade_runtime::process::encode(&registry)
    }
}
