//! A reflector over a kind whose CRD may not be installed (e.g. ClusterNetworkPolicy): where the
//! API answers 404 that is said once, at info level, and the list is retried on the watch's
//! backoff (0.8 s doubling to at most 30 s) without warnings and without waking the caller's
//! loop each time; once the CRD is installed the objects are read.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// The cluster's objects of `K`, and whether their CRD is installed.
pub struct OptionalWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    /// The last list or watch said the CRD is not installed (404).
    missing: Arc<AtomicBool>,
    /// A first list is complete.
    listed: Arc<AtomicBool>,
    /// The last watch error other than a 404, until the next event that is not an error.
    error: Arc<Mutex<Option<String>>>,
    /// Woken on every event, so [`OptionalWatch::wait_until_ready`] sees a 404.
    answered: Arc<Notify>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for OptionalWatch<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            missing: self.missing.clone(),
            listed: self.listed.clone(),
            error: self.error.clone(),
            answered: self.answered.clone(),
        }
    }
}

impl<K> OptionalWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching; `changed` is notified on every event that is not a 404, and once when the
    /// CRD is found missing.
    pub fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        let (store, writer) = reflector::store();
        let watch = Self {
            store,
            missing: Arc::new(AtomicBool::new(false)),
            listed: Arc::new(AtomicBool::new(false)),
            error: Arc::new(Mutex::new(None)),
            answered: Arc::new(Notify::new()),
        };
        let seen = Arc::new(AtomicBool::new(false));
        let backoff = AnsweredBackoff {
            inner: watcher::DefaultBackoff::default(),
            seen: seen.clone(),
        };
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<K>::all(client.clone()),
                watcher::Config::default().any_semantic(),
            )
            .inspect(move |e| {
                if matches!(e, Ok(event) if !matches!(event, watcher::Event::Init)) {
                    seen.store(true, Ordering::SeqCst);
                }
            })
            .backoff(backoff)
            .modify(|o: &mut K| o.managed_fields_mut().clear()),
        );
        let changed = changed.clone();
        let w = watch.clone();
        tokio::spawn(async move {
            let (kind, api_version) = (K::kind(&()), K::api_version(&()));
            stream
                .for_each(|event| {
                    match &event {
                        Err(e) if not_installed(e) => {
                            if !w.missing.swap(true, Ordering::SeqCst) {
                                tracing::info!(
                                    "the {kind} CRD is not installed or does not serve {api_version}: no {kind}s to take into account; asking again about every 30 s"
                                );
                                changed.notify_one();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                            *w.error.lock().unwrap_or_else(PoisonError::into_inner) =
                                Some(e.to_string());
                            changed.notify_one();
                        }
                        // The start of a list, before the apiserver answered: says nothing.
                        Ok(watcher::Event::Init) => {}
                        Ok(event) => {
                            w.error.lock().unwrap_or_else(PoisonError::into_inner).take();
                            if matches!(event, watcher::Event::InitDone) {
                                w.listed.store(true, Ordering::SeqCst);
                            }
                            if w.missing.swap(false, Ordering::SeqCst) {
                                tracing::info!("the {kind} CRD is installed now: reading {kind}s");
                            }
                            changed.notify_one();
                        }
                    }
                    w.answered.notify_waiters();
                    futures::future::ready(())
                })
                .await;
        });
        watch
    }

    /// Resolves once the first list is complete, the CRD is known not to be installed, or the
    /// watch failed (the caller can say so), so a watch that cannot work (e.g. no permission)
    /// does not hold the caller up forever.
    pub async fn wait_until_ready(&self) {
        loop {
            let answered = self.answered.notified();
            if self.installed().is_some() || self.error().is_some() {
                return;
            }
            answered.await;
        }
    }

    /// Whether the CRD is installed; `None` before the first answer.
    pub fn installed(&self) -> Option<bool> {
        if self.missing.load(Ordering::SeqCst) {
            return Some(false);
        }
        self.listed.load(Ordering::SeqCst).then_some(true)
    }

    /// Why the watch does not work, while it does not.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The objects as the store has them (none where the CRD is not installed).
    pub fn state(&self) -> Vec<Arc<K>> {
        if self.missing.load(Ordering::SeqCst) {
            return Vec::new();
        }
        self.store.state()
    }
}

/// The watch's default backoff (0.8 s doubling to 30 s), reset only by an event that shows the
/// API answered: the watcher's `Init`, sent before every list attempt, would otherwise reset it
/// each time, and a missing CRD would be listed about once a second forever.
struct AnsweredBackoff {
    inner: watcher::DefaultBackoff,
    seen: Arc<AtomicBool>,
}

impl Iterator for AnsweredBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl kube::runtime::utils::Backoff for AnsweredBackoff {
    fn reset(&mut self) {
        if self.seen.swap(false, Ordering::SeqCst) {
            self.inner.reset();
        }
    }
}

/// A watch error that means the API does not exist: the CRD is not installed.
fn not_installed(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}
