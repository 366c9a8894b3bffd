//! Reflectors that keep only what Palisade reads, shared by the webhook and the enforcer.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// Drops what the checks never read, so 10,000 cached pods stay small.
pub trait Slim {
    fn slim(&mut self) {}
}

impl Slim for Pod {
    fn slim(&mut self) {
        self.metadata.annotations = None;
        self.metadata.owner_references = None;
        if let Some(spec) = self.spec.as_mut() {
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let ports = c.ports.take();
                *c = k8s_openapi::api::core::v1::Container {
                    name: std::mem::take(&mut c.name),
                    ports,
                    ..Default::default()
                };
            }
            spec.volumes = None;
            spec.ephemeral_containers = None;
            spec.affinity = None;
            spec.tolerations = None;
        }
        if let Some(status) = self.status.as_mut() {
            status.container_statuses = None;
            status.init_container_statuses = None;
            status.conditions = None;
        }
    }
}
impl Slim for Namespace {}
impl Slim for k8s_openapi::api::discovery::v1::EndpointSlice {}
impl Slim for NetworkPolicy {}
impl Slim for Node {
    fn slim(&mut self) {
        if let Some(status) = self.status.as_mut() {
            status.images = None;
            status.volumes_attached = None;
            status.volumes_in_use = None;
        }
    }
}
impl Slim for DaemonSet {}
impl Slim for Deployment {}
impl Slim for StatefulSet {}
impl Slim for ReplicaSet {}
impl Slim for Job {}
impl Slim for CronJob {}

/// A reflector over every `K` in the cluster; `changed` is notified on every event.
pub fn watch<K>(client: &Client, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + Slim + 'static,
{
    watch_with(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed,
    )
}

/// A reflector over `api` with `config` (e.g. a field selector); `changed` is notified on every
/// event. Watch errors are logged and retried with backoff; the store keeps its last state.
pub fn watch_with<K>(api: Api<K>, config: watcher::Config, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + Slim + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, config.any_semantic())
            .default_backoff()
            .modify(|o: &mut K| {
                o.managed_fields_mut().clear();
                o.slim();
            }),
    );
    let changed = changed.clone();
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(e) = &event {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying with backoff");
                }
                changed.notify_one();
                futures::future::ready(())
            })
            .await;
    });
    reader
}
impl Slim for palisade_api::NodeEnforcement {}
