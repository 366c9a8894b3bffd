//! `one-sided` after the apply has settled. Whether a rule is one-sided depends on other
//! policies, and `kubectl apply -f` sends a file's objects one by one: at admission the
//! counterpart may still be coming. So admission says nothing about it; a while after a policy
//! is stored and its namespace has been quiet for a while, it is judged again on a fresh read of
//! the namespace (one read for every policy stored there meanwhile), and if it is still
//! one-sided a Warning Event `OneSided` lands on the NetworkPolicy
//! (`kubectl events --for networkpolicy/NAME`).
//! Only stored policies are judged (not dry runs; one deleted meanwhile is not found).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use palisade_policy::Policy;
use palisade_policy::checks::{self, CheckConfig, CheckId, Context, Finding, Mode};

use crate::config::WebhookConfig;
use crate::review::{ClusterState, Pending};
use crate::server::Confirm;

/// The Event's reason.
pub const REASON: &str = "OneSided";

/// Where a still one-sided policy is reported.
pub trait Publish: Send + Sync {
    fn warn<'a>(&'a self, policy: &'a Pending, note: String) -> BoxFuture<'a, ()>;
}

pub struct Settle {
    /// How long a namespace must be quiet (no NetworkPolicy stored) before its new policies
    /// are judged: long enough for the rest of a `kubectl apply` to arrive.
    pub delay: Duration,
    pub confirm: Arc<dyn Confirm>,
    pub publish: Arc<dyn Publish>,
    pub config: Arc<WebhookConfig>,
    /// Per namespace, its policies waiting to be judged.
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// A namespace's policies waiting to be judged.
struct Waiting {
    /// When the namespace will have been quiet long enough.
    deadline: Instant,
    /// When its first policy started waiting.
    since: Instant,
    batch: Vec<Pending>,
}

/// The longest a namespace's policies wait to be judged, in delays, however often it is written.
const MAX_WAITS: u32 = 10;

impl Settle {
    pub fn new(
        delay: Duration,
        confirm: Arc<dyn Confirm>,
        publish: Arc<dyn Publish>,
        config: Arc<WebhookConfig>,
    ) -> Self {
        Self {
            delay,
            confirm,
            publish,
            config,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Judges `pending` once its namespace has been quiet for the delay, in the background,
    /// together with the other policies stored there meanwhile: one fresh read per batch.
    pub fn schedule(self: &Arc<Self>, pending: Pending) {
        let namespace = pending.namespace.clone();
        let deadline = Instant::now() + self.delay;
        let first = {
            let Ok(mut waiting) = self.waiting.lock() else {
                return;
            };
            let now = Instant::now();
            let entry = waiting.entry(namespace.clone()).or_insert_with(|| Waiting {
                deadline,
                since: now,
                batch: Vec::new(),
            });
            let first = entry.batch.is_empty();
            // Each write moves the deadline, but a namespace written to without pause (a
            // controller, a GitOps loop) is still judged within MAX_WAITS delays.
            entry.deadline = deadline.min(entry.since + self.delay * MAX_WAITS);
            if !entry.batch.contains(&pending) {
                entry.batch.push(pending);
            }
            first
        };
        if !first {
            return; // the namespace's task is waiting already; its deadline moved
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let deadline = match this.waiting.lock() {
                    Ok(w) => w.get(&namespace).map(|w| w.deadline),
                    Err(_) => None,
                };
                let Some(deadline) = deadline else { return };
                if deadline <= Instant::now() {
                    break;
                }
                tokio::time::sleep_until(deadline.into()).await;
            }
            let batch = match this.waiting.lock() {
                Ok(mut w) => w.remove(&namespace).map(|w| w.batch).unwrap_or_default(),
                Err(_) => return,
            };
            this.judge(&namespace, batch).await;
        });
    }

    async fn judge(&self, namespace: &str, batch: Vec<Pending>) {
        let Some(state) = self.confirm.fresh(namespace).await else {
            return;
        };
        for pending in &batch {
            let Some(policy) = state
                .cluster
                .policies_in(namespace)
                .find(|p| p.name == pending.name)
            else {
                tracing::debug!(namespace, name = %pending.name, "gone before it settled");
                continue;
            };
            let findings = one_sided(policy, &state, &self.config.checks);
            if findings.is_empty() {
                continue;
            }
            tracing::info!(namespace, name = %pending.name, rules = findings.len(), "still one-sided after settling");
            self.publish.warn(pending, note(&findings)).await;
        }
    }
}

/// The `one-sided` findings of a stored policy, in the cluster as it is now.
pub fn one_sided(policy: &Policy, state: &ClusterState, config: &CheckConfig) -> Vec<Finding> {
    let mode = config.mode(CheckId::OneSided);
    if mode == Mode::Off {
        return Vec::new();
    }
    let only = CheckConfig {
        modes: CheckId::ALL
            .into_iter()
            .map(|c| {
                (
                    c,
                    if c == CheckId::OneSided {
                        mode
                    } else {
                        Mode::Off
                    },
                )
            })
            .collect(),
    };
    let ctx = Context {
        cluster: &state.cluster,
        enforcement: state.enforcement.as_ref(),
        knows_pods: true,
        knows_namespaces: true,
    };
    checks::run(policy, &ctx, &only).findings
}

/// The Event's note: each one-sided rule's explanation (the recorder bounds the length).
pub fn note(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
