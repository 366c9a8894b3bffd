//! Prometheus metrics: reviews by check, result and severity; review latency; cache sizes;
//! when the served certificate expires.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::review::Decision;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    check: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BadLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    kind: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    reviews: Family<ReviewLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    bad: Family<BadLabels, Counter>,
    latency: Histogram,
    cache: Family<CacheLabels, Gauge>,
    certificate_expiry: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let findings = Family::<FindingLabels, Counter>::default();
        let bad = Family::<BadLabels, Counter>::default();
        let latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]);
        let cache = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "reviews",
            "NetworkPolicy reviews by result (allowed, denied)",
            reviews.clone(),
        );
        registry.register(
            "findings",
            "Check findings by check and severity",
            findings.clone(),
        );
        registry.register(
            "bad_requests",
            "Requests that were not an AdmissionReview, by reason",
            bad.clone(),
        );
        registry.register(
            "review_duration_seconds",
            "Time to decide one review",
            latency.clone(),
        );
        registry.register(
            "cache_objects",
            "Objects in the webhook's caches, by kind",
            cache.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "When the certificate this replica serves expires (Unix seconds)",
            certificate_expiry.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reviews,
            findings,
            bad,
            latency,
            cache,
            certificate_expiry,
        }
    }
}

impl Metrics {
    pub fn observe(&self, decision: &Decision, took: Duration) {
        if decision.object.is_none() {
            return;
        }
        let result = if decision.allowed {
            "allowed"
        } else {
            "denied"
        };
        self.reviews
            .get_or_create(&ReviewLabels {
                result: result.into(),
            })
            .inc();
        for f in &decision.findings {
            self.findings
                .get_or_create(&FindingLabels {
                    check: f.check.to_string(),
                    severity: f.severity.as_str().into(),
                })
                .inc();
        }
        self.latency.observe(took.as_secs_f64());
    }

    pub fn bad_request(&self, reason: &str) {
        self.bad
            .get_or_create(&BadLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn set_cache(&self, kind: &str, n: usize) {
        self.cache
            .get_or_create(&CacheLabels { kind: kind.into() })
            .set(n as i64);
    }

    /// The served certificate's notAfter (Unix seconds).
    pub fn set_certificate_expiry(&self, not_after: i64) {
        self.certificate_expiry.set(not_after);
    }

    /// The OpenMetrics text for `/metrics`.
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        palisade_runtime::process::encode(&registry)
    }
}
