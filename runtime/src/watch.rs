//! Reflectors that keep only what Palisade reads, shared by the webhook and the enforcer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// Drops what the checks never read from each cached object. Pods, the many, are not cached as
/// k8s objects at all: see [`Compact`].
pub trait Slim {
    fn slim(&mut self) {}
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

/// A cache of compact values made from the watched objects, for kinds with many objects: only
/// what the reader needs stays resident (a k8s-openapi `Pod`, even slimmed, is several KiB
/// inline; what the semantics read of it is a few hundred bytes). Keyed by namespace and name.
pub struct Compact<V> {
    shared: Arc<Shared<V>>,
}

struct Shared<V> {
    objects: RwLock<HashMap<Key, Arc<V>>>,
    ready: AtomicBool,
    became_ready: Notify,
}

/// Namespace (none for cluster-scoped objects) and name.
type Key = (Option<String>, String);

impl<V> Clone for Compact<V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<V> Compact<V> {
    fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                objects: RwLock::new(HashMap::new()),
                ready: AtomicBool::new(false),
                became_ready: Notify::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<V>>> {
        self.shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every cached value, in no particular order.
    pub fn state(&self) -> Vec<Arc<V>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Resolves once the first list is complete (as a reflector's `Store::wait_until_ready`).
    pub async fn wait_until_ready(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches it even if not polled yet.
            let notified = self.shared.became_ready.notified();
            if self.shared.ready.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Applies watcher events to a [`Compact`] cache, as kube-runtime's reflector writer does to a
/// `Store`: a relist (`Init`, `InitApply`…, `InitDone`) replaces the whole set at once, so an
/// object deleted while the watch was down is gone after it.
pub struct CompactWriter<K, V> {
    store: Compact<V>,
    convert: fn(&K) -> V,
    /// The objects of a relist in progress.
    buffer: Option<HashMap<Key, Arc<V>>>,
}

impl<K: Resource, V: PartialEq> CompactWriter<K, V> {
    pub fn new(convert: fn(&K) -> V) -> Self {
        Self {
            store: Compact::new(),
            convert,
            buffer: None,
        }
    }

    /// The cache this writer fills.
    pub fn reader(&self) -> Compact<V> {
        self.store.clone()
    }

    /// Applies one event; true when what readers see changed (an update of a field the compact
    /// value does not keep changes nothing).
    pub fn apply(&mut self, event: watcher::Event<K>) -> bool {
        let key = |o: &K| -> Key {
            (
                o.meta().namespace.clone(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        let write = || {
            self.store
                .shared
                .objects
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        };
        match event {
            watcher::Event::Apply(o) => {
                let value = (self.convert)(&o);
                let mut objects = write();
                match objects.get(&key(&o)) {
                    Some(old) if **old == value => false,
                    _ => {
                        objects.insert(key(&o), Arc::new(value));
                        true
                    }
                }
            }
            watcher::Event::Delete(o) => write().remove(&key(&o)).is_some(),
            watcher::Event::Init => {
                self.buffer = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
                let value = Arc::new((self.convert)(&o));
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(key(&o), value);
                false
            }
            watcher::Event::InitDone => {
                let listed = self.buffer.take().unwrap_or_default();
                *write() = listed;
                if !self.store.shared.ready.swap(true, Ordering::SeqCst) {
                    self.store.shared.became_ready.notify_waiters();
                }
                true
            }
        }
    }
}

/// A [`Compact`] cache of every `K` in the cluster, each kept as `convert` makes it; `changed`
/// is notified when what the cache holds changed, after a relist, and on watch errors. Watch
/// errors are logged and retried with backoff; the cache keeps its last state.
pub fn watch_compact<K, V>(
    client: &Client,
    changed: &Arc<Notify>,
    convert: fn(&K) -> V,
) -> Compact<V>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    V: PartialEq + Send + Sync + 'static,
{
    let mut writer = CompactWriter::new(convert);
    let reader = writer.reader();
    let events = watcher(
        Api::<K>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff();
    let changed = changed.clone();
    tokio::spawn(async move {
        events
            .for_each(|event| {
                let notify = match event {
                    Ok(event) => writer.apply(event),
                    Err(e) => {
                        tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying with backoff");
                        true
                    }
                };
                if notify {
                    changed.notify_one();
                }
                futures::future::ready(())
            })
            .await;
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(namespace: &str, name: &str, app: &str, node: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The compact value of the tests: namespace/name and the `app` label.
    fn compact(p: &Pod) -> String {
        format!(
            "{}/{} app={}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default(),
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map_or("", String::as_str)
        )
    }

    fn sorted(store: &Compact<String>) -> Vec<String> {
        let mut all: Vec<String> = store.state().iter().map(|v| v.to_string()).collect();
        all.sort();
        all
    }

    fn relist(writer: &mut CompactWriter<Pod, String>, pods: &[Pod]) -> bool {
        let mut changed = writer.apply(watcher::Event::Init);
        for p in pods {
            changed |= writer.apply(watcher::Event::InitApply(p.clone()));
        }
        changed | writer.apply(watcher::Event::InitDone)
    }

    #[test]
    fn ready_and_filled_only_when_the_first_list_is_complete() {
        let mut writer = CompactWriter::new(compact);
        let store = writer.reader();
        assert!(store.wait_until_ready().now_or_never().is_none());
        assert!(!writer.apply(watcher::Event::Init));
        assert!(!writer.apply(watcher::Event::InitApply(pod("a", "p1", "web", "n1"))));
        assert!(store.is_empty(), "a list in progress is not visible");
        assert!(store.wait_until_ready().now_or_never().is_none());
        assert!(writer.apply(watcher::Event::InitDone));
        assert!(store.wait_until_ready().now_or_never().is_some());
        assert_eq!(sorted(&store), ["a/p1 app=web"]);
    }

    #[test]
    fn applies_adds_updates_and_deletes() {
        let mut writer = CompactWriter::new(compact);
        let store = writer.reader();
        relist(&mut writer, &[pod("a", "p1", "web", "n1")]);
        assert!(writer.apply(watcher::Event::Apply(pod("a", "p2", "db", "n1"))));
        assert!(writer.apply(watcher::Event::Apply(pod("b", "p1", "web", "n2"))));
        assert_eq!(
            sorted(&store),
            ["a/p1 app=web", "a/p2 app=db", "b/p1 app=web"]
        );
        assert!(writer.apply(watcher::Event::Apply(pod("a", "p1", "api", "n1"))));
        assert_eq!(
            sorted(&store),
            ["a/p1 app=api", "a/p2 app=db", "b/p1 app=web"]
        );
        // A change of what the compact value does not keep (here the node) is no change.
        assert!(!writer.apply(watcher::Event::Apply(pod("a", "p1", "api", "n3"))));
        assert!(writer.apply(watcher::Event::Delete(pod("a", "p2", "db", "n1"))));
        assert!(!writer.apply(watcher::Event::Delete(pod("a", "p2", "db", "n1"))));
        assert_eq!(sorted(&store), ["a/p1 app=api", "b/p1 app=web"]);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_relist_replaces_the_set_so_pods_deleted_meanwhile_vanish() {
        let mut writer = CompactWriter::new(compact);
        let store = writer.reader();
        relist(
            &mut writer,
            &[pod("a", "p1", "web", "n1"), pod("a", "p2", "db", "n1")],
        );
        writer.apply(watcher::Event::Apply(pod("a", "p3", "web", "n1")));
        // The watch was down: p2 and p3 were deleted, p1 relabelled, p4 created meanwhile.
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(pod("a", "p1", "api", "n1")));
        assert_eq!(
            sorted(&store),
            ["a/p1 app=web", "a/p2 app=db", "a/p3 app=web"],
            "readers keep the last complete state during the relist"
        );
        writer.apply(watcher::Event::InitApply(pod("b", "p4", "web", "n2")));
        assert!(writer.apply(watcher::Event::InitDone));
        assert_eq!(sorted(&store), ["a/p1 app=api", "b/p4 app=web"]);
        assert!(store.wait_until_ready().now_or_never().is_some());
    }
}
