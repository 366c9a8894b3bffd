//! The node's `NodeEnforcement` object: what this enforcer found and does, for the webhook's
//! `enforcement` check and for people. Written only when it changes.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use palisade_operator::crd::{NodeEnforcement, NodeEnforcementSpec, NodeEnforcementStatus};

pub const FIELD_MANAGER: &str = "palisade-enforcer";

pub struct StatusWriter {
    api: Api<NodeEnforcement>,
    node: String,
    /// The object exists with its owner reference to the Node.
    created: bool,
    written: Option<NodeEnforcementStatus>,
}

impl StatusWriter {
    pub fn new(client: Client, node: &str) -> Self {
        Self {
            api: Api::all(client),
            node: node.to_string(),
            created: false,
            written: None,
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
