//! Whether Palisade's webhook can answer the apiserver: ready endpoints behind its Service.
//! With `failurePolicy: Ignore` a webhook that is down (image not pulled, crash loop, network)
//! lets policies in unchecked and says nothing; the operator says it where admins look: a
//! `WebhookAvailable` condition on every NetworkBaseline, an Event when it changes, a metric.

use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use palisade_runtime::watch::watch_with;
use tokio::sync::Notify;

/// The webhook's Service, watched through its EndpointSlices.
pub struct WebhookHealth {
    /// `namespace/name` of the Service.
    service: String,
    slices: Store<EndpointSlice>,
}

/// What is known about the webhook: available or not, and why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub available: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Availability from the Service's EndpointSlices: available when at least one endpoint is
/// ready (what the apiserver needs to reach the webhook).
pub fn availability(service: &str, slices: &[Arc<EndpointSlice>]) -> Availability {
    let (mut ready, mut not_ready) = (0, 0);
    for endpoint in slices.iter().flat_map(|s| s.endpoints.iter()) {
        // Kubernetes: a nil `ready` means ready.
        let is_ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true);
        if is_ready {
            ready += 1;
        } else {
            not_ready += 1;
        }
    }
    if ready > 0 {
        Availability {
            available: true,
            reason: "EndpointsReady",
            message: format!("{ready} ready webhook endpoint(s) behind Service {service}"),
        }
    } else {
        let pods = if not_ready > 0 {
            format!("{not_ready} webhook pod(s) not ready")
        } else {
            "no webhook pod".to_string()
        };
        Availability {
            available: false,
            reason: "NoReadyEndpoints",
            message: format!(
                "no ready endpoint behind Service {service} ({pods}): the apiserver cannot reach \
                 Palisade's webhook, so NetworkPolicies are admitted unchecked (failurePolicy \
                 Ignore) or refused (Fail) until it is back; see kubectl get pods -n {}",
                service.split('/').next().unwrap_or_default()
            ),
        }
    }
}

impl WebhookHealth {
    /// Watches the EndpointSlices of Service `name` in `namespace`; `changed` hears every change.
    pub fn watch(client: &Client, namespace: &str, name: &str, changed: &Arc<Notify>) -> Self {
        let slices = watch_with(
            Api::<EndpointSlice>::namespaced(client.clone(), namespace),
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={name}")),
            changed,
        );
        Self {
            service: format!("{namespace}/{name}"),
            slices,
        }
    }

    /// The availability now; `None` until the first list of EndpointSlices arrived (an empty
    /// cache must not read as "no webhook pod").
    pub fn current(&self) -> Option<Availability> {
        use futures::FutureExt;
        self.slices.wait_until_ready().now_or_never()?.ok()?;
        Some(availability(&self.service, &self.slices.state()))
    }
}
