//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas only
//! one writes. The rules are client-go's: a holder renews well within the lease duration; a
//! candidate takes the lease over only after it has seen the same record unchanged for a whole
//! duration by its own clock (so clock skew between nodes cannot cause two leaders); every
//! write is a compare-and-swap on the resourceVersion. A leader that cannot renew in time stops
//! acting as leader.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity in the Lease (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews, and a candidate retries.
    pub retry: Duration,
}

/// The record a candidate last saw, and when it first saw it.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    since: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn seconds(&self) -> i32 {
        self.config.duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }

    /// One attempt to take or keep the lease: `Ok(true)` when this replica holds it now.
    pub async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let me = self.config.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let held_by_me = holder.as_deref() == Some(me.as_str());
        if !held_by_me && holder.is_some() {
            let same = self
                .observed
                .as_ref()
                .is_some_and(|o| o.holder == holder && o.renew == spec.renew_time);
            if !same {
                self.observed = Some(Observed {
                    holder,
                    renew: spec.renew_time.clone(),
                    since: Instant::now(),
                });
            }
            let duration = spec
                .lease_duration_seconds
                .map(|s| Duration::from_secs(s.max(1) as u64))
                .unwrap_or(self.config.duration);
            let expired = self
                .observed
                .as_ref()
                .is_some_and(|o| o.since.elapsed() > duration);
            if !expired {
                return Ok(false);
            }
        }
        if !held_by_me {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            tracing::info!(lease = %self.config.name, previous = ?spec.holder_identity, "taking over the lease");
        }
        spec.holder_identity = Some(me);
        spec.lease_duration_seconds = Some(self.seconds());
        spec.renew_time = Some(now());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote first: not ours this round.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease. `on_attempt` reports whether the API answered.
    pub async fn acquire(&mut self, mut on_attempt: impl FnMut(bool)) {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    on_attempt(true);
                    return;
                }
                Ok(false) => on_attempt(true),
                Err(e) => {
                    on_attempt(false);
                    tracing::warn!(error = %e, "cannot read or write the leader Lease");
                }
            }
            tokio::time::sleep(self.config.retry).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease lasts, or another
    /// replica holds it; returns then (the caller must stop writing).
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry).await;
            match self.try_acquire().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.config.name, "another replica holds the lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
            }
            // Stop before the lease can have expired for the others.
            if renewed.elapsed() + self.config.retry > self.config.duration {
                tracing::error!(lease = %self.config.name, "could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (on graceful shutdown), so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "cannot release the leader Lease");
        }
    }
}
