//! `one-sided` after the apply has settled. Whether a rule is one-sided depends on other
//! policies, and `kubectl apply -f` sends a file's objects one by one: at admission the
//! counterpart may still be coming. So admission says nothing about it; a while after a policy
//! is stored, it is judged again on a fresh read of its namespace, and if it is still one-sided
//! a Warning Event `OneSided` lands on the NetworkPolicy (`kubectl events --for networkpolicy/NAME`).
//! Only stored policies are judged (not dry runs; one deleted meanwhile is not found).

use std::sync::Arc;
use std::time::Duration;

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
    /// How long after a policy is stored it is judged again: long enough for the rest of its
    /// `kubectl apply` to arrive.
    pub delay: Duration,
    pub confirm: Arc<dyn Confirm>,
    pub publish: Arc<dyn Publish>,
    pub config: Arc<WebhookConfig>,
}

impl Settle {
    /// Judges `pending` again after the delay, in the background.
    pub fn schedule(self: &Arc<Self>, pending: Pending) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.delay).await;
            this.judge(pending).await;
        });
    }

    async fn judge(&self, pending: Pending) {
        let Some(state) = self.confirm.fresh(&pending.namespace).await else {
            return;
        };
        let Some(policy) = state
            .cluster
            .policies_in(&pending.namespace)
            .find(|p| p.name == pending.name)
        else {
            tracing::debug!(namespace = %pending.namespace, name = %pending.name, "gone before it settled");
            return;
        };
        let findings = one_sided(policy, &state, &self.config.checks);
        if findings.is_empty() {
            return;
        }
        tracing::info!(namespace = %pending.namespace, name = %pending.name, rules = findings.len(), "still one-sided after settling");
        self.publish.warn(&pending, note(&findings)).await;
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
