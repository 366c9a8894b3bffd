//! The reconcilers. Per namespace: make its managed NetworkPolicies exactly what its baseline
//! means (server-side apply, one field manager), and nothing when it opts out. Per baseline:
//! status and Events. Both write only when something differs, so at rest nothing is written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::metrics::Metrics;
use palisade_api::{BASELINE_LABEL, NetworkBaseline, NetworkBaselineStatus};
use palisade_policy::desired::{
    DENY_POLICY, MANAGED_BY, MANAGED_BY_LABEL, desired_policies, exclusion,
};

pub const FIELD_MANAGER: &str = "palisade-operator";
/// The condition on every NetworkBaseline saying whether the webhook can be reached.
pub const WEBHOOK_AVAILABLE: &str = "WebhookAvailable";
const LISTED_NAMESPACES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Palisade's own namespace, never given a baseline.
    pub own_namespace: String,
    /// The webhook's Service, when the webhook is installed: its availability is reported on
    /// every baseline.
    pub webhook: Option<crate::webhook_health::WebhookHealth>,
    /// Notified when the webhook's availability may have changed.
    pub webhook_changed: Arc<tokio::sync::Notify>,
}

impl Context {
    pub fn new(
        client: Client,
        own_namespace: String,
        instance: Option<String>,
        metrics: Arc<Metrics>,
        webhook: Option<(
            crate::webhook_health::WebhookHealth,
            Arc<tokio::sync::Notify>,
        )>,
    ) -> Self {
        let (webhook, webhook_changed) = match webhook {
            Some((w, changed)) => (Some(w), changed),
            None => (None, Arc::new(tokio::sync::Notify::new())),
        };
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            own_namespace,
            webhook,
            webhook_changed,
        }
    }

    async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        palisade_runtime::process::publish_event(
            &self.recorder,
            reference,
            type_,
            reason,
            "Reconcile",
            note,
        )
        .await;
    }
}

/// A reference to a Namespace whose Events are stored in that namespace itself, where its owner
/// looks (`kubectl events -n NAME`, `kubectl get events -n NAME`). Events about a cluster-scoped
/// object would otherwise go to `default`, and `kubectl describe namespace` shows no Events.
fn in_namespace(ns: &Namespace) -> ObjectReference {
    ObjectReference {
        namespace: Some(ns.name_any()),
        ..ns.object_ref(&())
    }
}

fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// Whether the stored policy already is what we would apply.
fn up_to_date(existing: &NetworkPolicy, desired: &NetworkPolicy) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let audit_key = palisade_policy::desired::MODE_ANNOTATION;
    let has_audit = |p: &NetworkPolicy| {
        p.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(audit_key))
    };
    existing.spec == desired.spec
        && subset(&desired.metadata.labels, &existing.metadata.labels)
        && subset(
            &desired.metadata.annotations,
            &existing.metadata.annotations,
        )
        && has_audit(existing) == has_audit(desired)
        && crate::ownership::owned_as_desired(existing, desired)
}

/// Makes one namespace's managed policies match its baseline.
pub async fn reconcile_namespace(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &name);
    let existing = policies
        .list(&ListParams::default().labels(&managed_selector()))
        .await?
        .items;

    let desired = match ns.labels().get(BASELINE_LABEL) {
        None => Vec::new(),
        Some(wanted) if ns.meta().deletion_timestamp.is_some() => {
            tracing::debug!(namespace = %name, baseline = %wanted, "namespace is terminating");
            Vec::new()
        }
        Some(wanted) => match Api::<NetworkBaseline>::all(ctx.client.clone())
            .get_opt(wanted)
            .await?
        {
            None => {
                ctx.event(
                    &in_namespace(&ns),
                    EventType::Warning,
                    "BaselineNotFound",
                    format!("{BASELINE_LABEL}={wanted}, but there is no NetworkBaseline {wanted}: nothing applied (kubectl get networkbaselines)"),
                )
                .await;
                Vec::new()
            }
            Some(b) if b.meta().deletion_timestamp.is_some() => Vec::new(),
            Some(b) => match exclusion(&b.spec, &name, &ctx.own_namespace) {
                Some(_) => Vec::new(), // the baseline's status lists it as a conflict
                None => match desired_policies(wanted, &b.spec, &name) {
                    Ok(mut p) => {
                        let deny = existing
                            .iter()
                            .find(|e| e.metadata.name.as_deref() == Some(DENY_POLICY))
                            .filter(|_| {
                                p.iter()
                                    .any(|d| d.metadata.name.as_deref() == Some(DENY_POLICY))
                            });
                        crate::ownership::set_owners(&mut p, &b, deny);
                        p
                    }
                    // An invalid baseline changes nothing; its status says why.
                    Err(_) => return Ok(Action::await_change()),
                },
            },
        },
    };

    // Allows before the deny when adding, the deny first when removing: no moment where the
    // namespace is denied what its baseline allows (and the webhook sees the DNS allowance
    // before the deny that needs it).
    let is_deny = |p: &NetworkPolicy| p.metadata.name.as_deref() == Some(DENY_POLICY);
    let ordered = desired
        .iter()
        .filter(|p| !is_deny(p))
        .chain(desired.iter().filter(|p| is_deny(p)));
    for want in ordered {
        let policy_name = want.metadata.name.clone().unwrap_or_default();
        let current = existing
            .iter()
            .find(|e| e.metadata.name.as_deref() == Some(&policy_name));
        if current.is_some_and(|c| up_to_date(c, want)) {
            continue;
        }
        let applied = policies
            .patch(
                &policy_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(want),
            )
            .await
            .map_err(|e| (policy_name.clone(), e));
        if let Err((policy, e)) = applied {
            // Refused by admission (a webhook, a ValidatingAdmissionPolicy, a quota): say so
            // where the namespace's owner looks, not only in the operator's log.
            if let kube::Error::Api(refusal) = &e {
                ctx.event(
                    &in_namespace(&ns),
                    EventType::Warning,
                    "ApplyFailed",
                    format!(
                        "baseline policy {policy} could not be applied: {}",
                        refusal.message
                    ),
                )
                .await;
            }
            return Err(e.into());
        }
        tracing::info!(namespace = %name, policy = %policy_name, repaired = current.is_some(), "applied baseline policy");
    }
    let stale = existing
        .iter()
        .filter(|e| !desired.iter().any(|d| d.metadata.name == e.metadata.name));
    for stale in stale
        .clone()
        .filter(|p| is_deny(p))
        .chain(stale.filter(|p| !is_deny(p)))
    {
        let policy_name = stale.name_any();
        match policies
            .delete(&policy_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = %name, policy = %policy_name, "removed baseline policy")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time when the status did not change, so status stays stable at rest.
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The `WebhookAvailable` condition of a baseline, with an Event when it changes (and a Warning
/// the first time the webhook is seen down); `None` when no webhook is watched. While the
/// webhook's endpoints are not known yet, the previous condition stays.
async fn webhook_condition(
    baseline: &NetworkBaseline,
    ctx: &Context,
    previous: &[Condition],
    generation: Option<i64>,
) -> Option<Condition> {
    let webhook = ctx.webhook.as_ref()?;
    let before = previous.iter().find(|c| c.type_ == WEBHOOK_AVAILABLE);
    let Some(now) = webhook.current() else {
        return before.cloned();
    };
    let was = before.map(|c| c.status == "True");
    if was != Some(now.available) && (was.is_some() || !now.available) {
        let (type_, reason) = if now.available {
            (EventType::Normal, "WebhookAvailable")
        } else {
            (EventType::Warning, "WebhookUnavailable")
        };
        ctx.event(
            &baseline.object_ref(&()),
            type_,
            reason,
            now.message.clone(),
        )
        .await;
    }
    Some(condition(
        WEBHOOK_AVAILABLE,
        now.available,
        now.reason,
        now.message,
        generation,
        previous,
    ))
}

/// Status and Events of one baseline.
pub async fn reconcile_baseline(
    baseline: Arc<NetworkBaseline>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = baseline.name_any();
    let namespaces = Api::<Namespace>::all(ctx.client.clone())
        .list(&ListParams::default().labels(&format!("{BASELINE_LABEL}={name}")))
        .await?
        .items;
    let previous = baseline.status.clone().unwrap_or_default();
    let generation = baseline.meta().generation;
    let mut covered = Vec::new();
    let mut conflicts = Vec::new();
    let invalid = desired_policies(&name, &baseline.spec, "validation").err();
    for ns in &namespaces {
        let n = ns.name_any();
        match exclusion(&baseline.spec, &n, &ctx.own_namespace) {
            Some(why) => conflicts.push(why),
            None if invalid.is_none() => covered.push(n),
            None => {}
        }
    }
    covered.sort();
    conflicts.sort();
    ctx.metrics.set_covered(&name, covered.len());
    let ready = match &invalid {
        Some(e) => condition(
            "Ready",
            false,
            "InvalidSpec",
            format!("the baseline cannot be applied: {e}"),
            generation,
            &previous.conditions,
        ),
        None => condition(
            "Ready",
            true,
            "Applied",
            format!("applied to {} namespaces", covered.len()),
            generation,
            &previous.conditions,
        ),
    };
    let degraded = match (&invalid, conflicts.is_empty()) {
        (Some(e), _) => condition(
            "Degraded",
            true,
            "InvalidSpec",
            e.to_string(),
            generation,
            &previous.conditions,
        ),
        (None, false) => condition(
            "Degraded",
            true,
            "Conflicts",
            conflicts.join("; "),
            generation,
            &previous.conditions,
        ),
        (None, true) => condition(
            "Degraded",
            false,
            "NoConflicts",
            "every labelled namespace is covered".into(),
            generation,
            &previous.conditions,
        ),
    };
    let mut conditions = vec![ready, degraded];
    conditions.extend(webhook_condition(&baseline, &ctx, &previous.conditions, generation).await);
    let status = NetworkBaselineStatus {
        observed_generation: generation,
        conditions,
        namespace_count: covered.len() as u32,
        namespaces: covered.iter().take(LISTED_NAMESPACES).cloned().collect(),
        conflicts,
    };
    if baseline.status.as_ref() != Some(&status) {
        if let Some(e) = &invalid
            && previous
                .conditions
                .iter()
                .all(|c| c.reason != "InvalidSpec")
        {
            ctx.event(
                &baseline.object_ref(&()),
                EventType::Warning,
                "InvalidSpec",
                e.to_string(),
            )
            .await;
        }
        let api: Api<NetworkBaseline> = Api::all(ctx.client.clone());
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// Runs a reconcile and records its result and duration.
async fn measured<K, F>(
    controller: &'static str,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error>
where
    F: std::future::Future<Output = Result<Action, Error>>,
{
    let start = std::time::Instant::now();
    let result = reconcile(object, ctx.clone()).await;
    ctx.metrics
        .reconciled(controller, result.is_ok(), start.elapsed());
    result
}

fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Runs both controllers until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let namespaces = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    );
    let ns_store = namespaces.store();
    let namespaces = namespaces
        .watches(
            Api::<NetworkBaseline>::all(client.clone()),
            watcher::Config::default(),
            move |b: NetworkBaseline| {
                let name = b.name_any();
                ns_store
                    .state()
                    .iter()
                    .filter(|ns| ns.labels().get(BASELINE_LABEL) == Some(&name))
                    .map(|ns| ObjectRef::from_obj(ns.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<NetworkPolicy>::all(client.clone()),
            watcher::Config::default().labels(&managed_selector()),
            |p: NetworkPolicy| p.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
        )
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(
            |ns, ctx| measured("namespace", reconcile_namespace, ns, ctx),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "namespace reconcile");
            }
            futures::future::ready(())
        });

    let baselines = Controller::new(
        Api::<NetworkBaseline>::all(client.clone()),
        watcher::Config::default(),
    );
    // The webhook's availability changed: the metric follows at once (also with no baseline),
    // and every baseline's condition.
    let webhook_trigger = futures::stream::unfold(ctx.clone(), |ctx| async move {
        ctx.webhook_changed.notified().await;
        if let Some(now) = ctx.webhook.as_ref().and_then(|w| w.current()) {
            ctx.metrics.set_webhook_available(now.available);
        }
        Some(((), ctx))
    });
    let baseline_store = baselines.store();
    // A namespace that drops its label no longer names its old baseline: recompute every
    // baseline's status (there are few; the controller's queue coalesces the requests).
    let baselines = baselines
        .watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            move |_: Namespace| {
                baseline_store
                    .state()
                    .iter()
                    .map(|b| ObjectRef::from_obj(b.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(webhook_trigger)
        .graceful_shutdown_on(stopped(stop_rx))
        .run(
            |b, ctx| measured("baseline", reconcile_baseline, b, ctx),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| {
            match r {
                // A deleted baseline covers nothing any more.
                Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                    ctx.metrics.forget_baseline(&gone.name)
                }
                Err(e) => tracing::debug!(error = %e, "baseline reconcile"),
                Ok(_) => {}
            }
            futures::future::ready(())
        });
    futures::join!(namespaces, baselines);
}
