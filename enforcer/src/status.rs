//! The node's `NodeEnforcement` object: what this enforcer found and does, for the webhook's
//! `enforcement` check and for people. Written when it changes, and at least every
//! [`STATUS_REFRESH`] (a new `lastSync`) so the webhook can tell a running enforcer from one
//! that went silent: one small write per node per period, whatever the cluster does.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use palisade_api::{NodeEnforcement, NodeEnforcementSpec, NodeEnforcementStatus};
pub use palisade_policy::node_enforcement::STATUS_REFRESH;

pub const FIELD_MANAGER: &str = "palisade-enforcer";

pub struct StatusWriter {
    api: Api<NodeEnforcement>,
    node: String,
    /// The object exists with its owner reference to the Node.
    created: bool,
    written: Option<NodeEnforcementStatus>,
    /// When the `lastSync` in `written` was written.
    synced_at: Option<Instant>,
}

/// Whether a `lastSync` written at `written` (never: `None`) is due to be refreshed at `now`.
/// A second early counts: a timer of exactly the period must not miss it by a hair.
pub fn refresh_due(written: Option<Instant>, now: Instant) -> bool {
    written
        .is_none_or(|t| now.saturating_duration_since(t) + Duration::from_secs(1) >= STATUS_REFRESH)
}

impl StatusWriter {
    pub fn new(client: Client, node: &str) -> Self {
        Self {
            api: Api::all(client),
            node: node.to_string(),
            created: false,
            written: None,
            synced_at: None,
        }
    }

    /// Creates the object, owned by the Node so that it goes when the node goes.
    async fn ensure(&mut self, node: Option<&Node>) -> Result<(), kube::Error> {
        if self.created {
            return Ok(());
        }
        let owner = node.and_then(|n| {
            Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: n.name_any(),
                uid: n.meta().uid.clone()?,
                ..OwnerReference::default()
            })
        });
        let object = NodeEnforcement {
            metadata: ObjectMeta {
                name: Some(self.node.clone()),
                owner_references: owner.map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: NodeEnforcementSpec {
                node: self.node.clone(),
            },
            status: None,
        };
        let owned = object.metadata.owner_references.is_some();
        self.api
            .patch(
                &self.node,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        // Until the Node is known, apply again on the next write to add the owner reference.
        self.created = owned;
        Ok(())
    }

    /// Whether a sync has been published yet (the first one always sets `lastSync`).
    pub fn has_synced(&self) -> bool {
        self.written.as_ref().is_some_and(|s| s.last_sync.is_some())
    }

    /// Whether the published `lastSync` should be refreshed now, although nothing changed.
    pub fn refresh_due(&self) -> bool {
        refresh_due(self.synced_at, Instant::now())
    }

    /// Publishes `status` when it differs from what was last written. A `None` `last_sync`
    /// keeps the previous one, so an idle node writes nothing.
    pub async fn publish(&mut self, node: Option<&Node>, mut status: NodeEnforcementStatus) {
        if status.last_sync.is_none() {
            status.last_sync = self.written.as_ref().and_then(|p| p.last_sync.clone());
        }
        if self.written.as_ref() == Some(&status) {
            return;
        }
        if let Err(e) = self.write(node, &status).await {
            tracing::warn!(error = %e, node = %self.node, "cannot publish the NodeEnforcement status");
            return;
        }
        if status.last_sync != self.written.as_ref().and_then(|w| w.last_sync.clone()) {
            self.synced_at = Some(Instant::now());
        }
        self.written = Some(status);
    }

    async fn write(
        &mut self,
        node: Option<&Node>,
        status: &NodeEnforcementStatus,
    ) -> Result<(), kube::Error> {
        self.ensure(node).await?;
        let patch = serde_json::json!({
            "apiVersion": "palisade.dev/v1alpha1",
            "kind": "NodeEnforcement",
            "status": status,
        });
        self.api
            .patch_status(
                &self.node,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_sync_is_refreshed_once_a_period() {
        let t = Instant::now();
        assert!(refresh_due(None, t));
        assert!(!refresh_due(Some(t), t));
        assert!(!refresh_due(Some(t), t + STATUS_REFRESH / 2));
        // Woken by a timer of the period itself, a little early or late: due.
        assert!(refresh_due(
            Some(t),
            t + STATUS_REFRESH - Duration::from_millis(10)
        ));
        assert!(refresh_due(Some(t), t + STATUS_REFRESH * 2));
    }
}
