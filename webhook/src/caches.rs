//! What the webhook knows about the cluster: kube-runtime reflectors for the objects the checks
//! need, turned into a [`ClusterState`] snapshot whenever something changes.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use palisade_api::NodeEnforcement as NodeEnforcementObject;
use palisade_policy::Workload;
use palisade_policy::checks::Enforcement;
use palisade_policy::node_enforcement::{self, Reported};
use palisade_policy::snapshot::Snapshot;
use palisade_runtime::watch::{Compact, watch, watch_compact};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::review::ClusterState;

/// One namespace's objects as the apiserver has them now.
pub struct LiveNamespace {
    pub namespace: String,
    pods: Vec<Pod>,
    policies: Vec<NetworkPolicy>,
    deployments: Vec<Deployment>,
    statefulsets: Vec<StatefulSet>,
    daemonsets: Vec<DaemonSet>,
    replicasets: Vec<ReplicaSet>,
    jobs: Vec<Job>,
    cronjobs: Vec<CronJob>,
    namespaces: Vec<Namespace>,
}

/// Cached objects, with those of `namespace` taken from `live` instead when given.
fn merged<'a, K: ResourceExt>(
    cached: &'a [Arc<K>],
    live: Option<&'a [K]>,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = &'a K> + 'a {
    let replaced = move |o: &K| live.is_some() && o.namespace().as_deref() == namespace;
    cached
        .iter()
        .map(|o| o.as_ref())
        .filter(move |o| !replaced(o))
        .chain(live.unwrap_or_default().iter())
}

pub struct Caches {
    client: Client,
    /// Only what the checks read of each pod: 10,000 k8s Pods would be most of the memory.
    pub pods: Compact<palisade_policy::Pod>,
    pub namespaces: Store<Namespace>,
    pub policies: Store<NetworkPolicy>,
    pub nodes: Store<Node>,
    /// What each node's enforcer reports; not waited for (the CRD may not be installed).
    pub node_enforcements: Store<NodeEnforcementObject>,
    pub daemonsets: Store<DaemonSet>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    pub replicasets: Store<ReplicaSet>,
    pub jobs: Store<Job>,
    pub cronjobs: Store<CronJob>,
    /// ClusterNetworkPolicies; not waited for (their CRD may not be installed).
    pub cluster_policies: crate::cluster_policies::ClusterPolicyWatch,
}

/// Notifies `changed` when what the enforcers report changed in more than a `lastSync` that
/// keeps them fresh.
async fn forward_meaningful_reports(
    store: Store<NodeEnforcementObject>,
    reports: Arc<Notify>,
    changed: Arc<Notify>,
) {
    let mut last: Option<BTreeMap<String, serde_json::Value>> = None;
    loop {
        reports.notified().await;
        let now: BTreeMap<String, serde_json::Value> = store
            .state()
            .iter()
            .map(|ne| {
                let mut status = serde_json::to_value(&ne.status).unwrap_or_default();
                // A refresh only moves lastSync; what matters is whether it makes the enforcer
                // silent or no longer silent.
                let silent = Reported::from_status_at(&status, Timestamp::now())
                    .silent_for
                    .is_some();
                if let Some(s) = status.as_object_mut() {
                    s.remove("lastSync");
                    s.insert("silent".into(), silent.into());
                }
                (ne.name_any(), status)
            })
            .collect();
        if last.as_ref() != Some(&now) {
            changed.notify_one();
            last = Some(now);
        }
    }
}

impl Caches {
    /// Starts a reflector per kind; `changed` is notified on every event, except NodeEnforcement
    /// refreshes that only renew `lastSync` (every node's enforcer does that every 30 s, and
    /// the webhook re-judges silence on its own timer).
    pub fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        let reports = Arc::new(Notify::new());
        let node_enforcements: Store<NodeEnforcementObject> = watch(client, &reports);
        tokio::spawn(forward_meaningful_reports(
            node_enforcements.clone(),
            reports,
            changed.clone(),
        ));
        Self {
            client: client.clone(),
            pods: watch_compact(client, changed, palisade_policy::Pod::from_k8s),
            namespaces: watch(client, changed),
            policies: watch(client, changed),
            nodes: watch(client, changed),
            node_enforcements,
            daemonsets: watch(client, changed),
            deployments: watch(client, changed),
            statefulsets: watch(client, changed),
            replicasets: watch(client, changed),
            jobs: watch(client, changed),
            cronjobs: watch(client, changed),
            cluster_policies: crate::cluster_policies::ClusterPolicyWatch::start(client, changed),
        }
    }

    /// Waits for every reflector's first list.
    pub async fn wait_ready(&self) {
        let _ = futures::join!(
            self.pods.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.policies.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.daemonsets.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.statefulsets.wait_until_ready(),
            self.replicasets.wait_until_ready(),
            self.jobs.wait_until_ready(),
            self.cronjobs.wait_until_ready(),
        );
    }

    /// Object counts by kind, for the cache-size metric.
    pub fn sizes(&self) -> BTreeMap<&'static str, usize> {
        [
            ("pods", self.pods.len()),
            ("namespaces", self.namespaces.len()),
            ("networkpolicies", self.policies.len()),
            ("clusternetworkpolicies", self.cluster_policies.len()),
            ("nodes", self.nodes.len()),
            (
                "workloads",
                self.deployments.len()
                    + self.statefulsets.len()
                    + self.daemonsets.len()
                    + self.replicasets.len()
                    + self.jobs.len()
                    + self.cronjobs.len(),
            ),
        ]
        .into()
    }

    /// The cluster as the checks see it. `declared_cni` (a chart value) names the CNI where
    /// detection cannot; `live` replaces one namespace's cached objects with a fresh read.
    pub fn snapshot(
        &self,
        declared_cni: Option<&str>,
        live: Option<&LiveNamespace>,
    ) -> ClusterState {
        let ns = live.map(|l| l.namespace.as_str());
        let mut workloads: Vec<Workload> = Vec::new();
        workloads.extend(
            merged(
                &self.deployments.state(),
                live.map(|l| &l.deployments[..]),
                ns,
            )
            .map(Workload::from_deployment),
        );
        workloads.extend(
            merged(
                &self.statefulsets.state(),
                live.map(|l| &l.statefulsets[..]),
                ns,
            )
            .map(Workload::from_stateful_set),
        );
        workloads.extend(
            merged(
                &self.daemonsets.state(),
                live.map(|l| &l.daemonsets[..]),
                ns,
            )
            .map(Workload::from_daemon_set),
        );
        workloads.extend(
            merged(
                &self.replicasets.state(),
                live.map(|l| &l.replicasets[..]),
                ns,
            )
            .map(Workload::from_replica_set),
        );
        workloads.extend(
            merged(&self.jobs.state(), live.map(|l| &l.jobs[..]), ns).map(Workload::from_job),
        );
        workloads.extend(
            merged(&self.cronjobs.state(), live.map(|l| &l.cronjobs[..]), ns)
                .map(Workload::from_cron_job),
        );
        let replaced =
            |p: &palisade_policy::Pod| live.is_some() && Some(p.namespace.as_str()) == ns;
        let pods = self
            .pods
            .state()
            .iter()
            .filter(|p| !replaced(p))
            .map(|p| p.as_ref().clone())
            .chain(
                live.into_iter()
                    .flat_map(|l| &l.pods)
                    .map(palisade_policy::Pod::from_k8s),
            )
            .collect();
        let namespaces: Vec<palisade_policy::Namespace> = match live {
            Some(l) => l
                .namespaces
                .iter()
                .map(palisade_policy::Namespace::from_k8s)
                .collect(),
            None => self
                .namespaces
                .state()
                .iter()
                .map(|n| palisade_policy::Namespace::from_k8s(n))
                .collect(),
        };
        let cluster_policies = self.cluster_policies.state();
        let cluster = Snapshot::build(
            namespaces,
            pods,
            workloads,
            merged(&self.policies.state(), live.map(|l| &l.policies[..]), ns),
            cluster_policies.iter().map(AsRef::as_ref),
        )
        .with_tiers();
        ClusterState {
            cluster,
            enforcement: Some(self.enforcement(declared_cni, Timestamp::now())),
        }
    }

    /// Reads one namespace's objects (and all namespaces) straight from the apiserver: the
    /// cache may not have seen an object created an instant ago, by the same `kubectl apply`.
    pub async fn live(&self, namespace: &str) -> Result<LiveNamespace, kube::Error> {
        async fn list<K>(client: &Client, ns: &str) -> Result<Vec<K>, kube::Error>
        where
            K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
                + Clone
                + DeserializeOwned
                + Debug,
        {
            Ok(Api::<K>::namespaced(client.clone(), ns)
                .list(&Default::default())
                .await?
                .items)
        }
        let c = &self.client;
        let (
            pods,
            policies,
            deployments,
            statefulsets,
            daemonsets,
            replicasets,
            jobs,
            cronjobs,
            namespaces,
        ) = futures::try_join!(
            list::<Pod>(c, namespace),
            list::<NetworkPolicy>(c, namespace),
            list::<Deployment>(c, namespace),
            list::<StatefulSet>(c, namespace),
            list::<DaemonSet>(c, namespace),
            list::<ReplicaSet>(c, namespace),
            list::<Job>(c, namespace),
            list::<CronJob>(c, namespace),
            async {
                Ok(Api::<Namespace>::all(c.clone())
                    .list(&Default::default())
                    .await?
                    .items)
            },
        )?;
        Ok(LiveNamespace {
            namespace: namespace.to_string(),
            pods,
            policies,
            deployments,
            statefulsets,
            daemonsets,
            replicasets,
            jobs,
            cronjobs,
            namespaces,
        })
    }

    /// Who enforces on each node, as the policy crate reads it ([`node_enforcement`]): an
    /// enforcer's report counts only while it is fresh at `now`.
    fn enforcement(&self, declared_cni: Option<&str>, now: Timestamp) -> Enforcement {
        let daemonsets = self.daemonsets.state();
        let cluster_cni = declared_cni.map(String::from).or_else(|| {
            node_enforcement::cluster_cni(
                daemonsets
                    .iter()
                    .filter(|ds| ds.namespace().as_deref() == Some("kube-system"))
                    .map(|ds| ds.meta().name.as_deref().unwrap_or_default()),
            )
        });
        let nodes = self
            .nodes
            .state()
            .iter()
            .map(|node| {
                let reported = self
                    .node_enforcements
                    .get(&ObjectRef::new(&node.name_any()))
                    .and_then(|ne| ne.status.clone())
                    .and_then(|s| serde_json::to_value(s).ok())
                    .map(|s| Reported::from_status_at(&s, now));
                node_enforcement::node_enforcement(node, reported.as_ref(), cluster_cni.as_deref())
            })
            .collect();
        Enforcement { nodes }
    }
}
