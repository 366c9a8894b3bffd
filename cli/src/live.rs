//! Reading a live cluster for the CLI, as kubectl finds it (`--kubeconfig`, `--context`,
//! `KUBECONFIG`, `~/.kube/config`, in-cluster): its Namespaces, Pods, workloads and
//! NetworkPolicies and ClusterNetworkPolicies through the same reader as files, and who enforces
//! policy on each node.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

use palisade_policy::checks::{Enforcement, NodeEnforcement};
use palisade_policy::input::Inputs;
use palisade_policy::node_enforcement::{self, Reported};

/// Which cluster to read.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no cluster to read: {0}")]
    Config(String),
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the CLI needs from a cluster.
pub struct Live {
    /// The objects, read as files are (the "file" of each is [`Live::source`]).
    pub inputs: Inputs,
    /// Per node, as the `enforcement` check reads it.
    pub enforcement: Enforcement,
    /// Per node, what its Palisade enforcer reported, if anything.
    pub reported: BTreeMap<String, Reported>,
    /// `cluster <server>` (findings name it in place of a file).
    pub source: String,
}

impl Live {
    /// Whether, and by what, policy is enforced on `node`, in words.
    pub fn describe(&self, node: &str) -> String {
        match self.enforcement.nodes.iter().find(|n| n.node == node) {
            Some(ne) => node_enforcement::describe(ne, self.reported.get(node)),
            None => format!("node {node} is not in the cluster's node list"),
        }
    }

    /// [`Live::describe`] for `pod`'s traffic: also whether the node enforces every IP family
    /// the pod has an address of.
    pub fn describe_pod(&self, node: &str, pod: &palisade_policy::Pod) -> String {
        let families: Vec<palisade_policy::IpFamily> = pod.families().collect();
        match self.enforcement.nodes.iter().find(|n| n.node == node) {
            Some(ne) => node_enforcement::describe_for(ne, self.reported.get(node), &families),
            None => self.describe(node),
        }
    }
}

/// Reads the cluster (blocking: runs its own small runtime).
pub fn read(target: &Target, workloads: bool) -> Result<Live, LiveError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(read_async(target, workloads))
}

async fn client(target: &Target) -> Result<(Client, String), LiveError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let config = match &target.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| LiveError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| LiveError::Config(e.to_string()))?
        }
        None if target.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| LiveError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| LiveError::Config(format!("{e} (give -f FILES, or a kubeconfig)")))?,
    };
    let source = format!("cluster {}", config.cluster_url);
    let client = Client::try_from(config).map_err(|e| LiveError::Config(e.to_string()))?;
    Ok((client, source))
}

/// Every object of a kind, 500 at a time.
async fn list_all<K>(client: &Client, what: &'static str) -> Result<Vec<K>, LiveError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let list = api
            .list(&params)
            .await
            .map_err(|source| LiveError::List { what, source })?;
        out.extend(list.items);
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// Every ClusterNetworkPolicy, 500 at a time, read as plain objects so one the types cannot
/// hold is still reported by the reader; none on a cluster without the CRD. Read through
/// `v1beta1`, or through `v1alpha2` where the CRD (network-policy-api v0.2.x) serves only that.
async fn cluster_network_policies(client: &Client) -> Result<Vec<DynamicObject>, LiveError> {
    for api_version in palisade_api::CLUSTER_NETWORK_POLICY_API_VERSIONS {
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let resource = ApiResource {
            group: palisade_api::CLUSTER_NETWORK_POLICY_GROUP.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: "ClusterNetworkPolicy".into(),
            plural: "clusternetworkpolicies".into(),
        };
        if let Some(objects) = cluster_network_policies_of(client, &resource).await? {
            return Ok(objects);
        }
    }
    // The CRD is not installed: the cluster has no ClusterNetworkPolicy.
    Ok(Vec::new())
}

/// The ClusterNetworkPolicies read through one version; `None` where it is not served.
async fn cluster_network_policies_of(
    client: &Client,
    resource: &ApiResource,
) -> Result<Option<Vec<DynamicObject>>, LiveError> {
    let api = Api::<DynamicObject>::all_with(client.clone(), resource);
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let list = match api.list(&params).await {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(source) => {
                return Err(LiveError::List {
                    what: "clusternetworkpolicies",
                    source,
                });
            }
        };
        out.extend(list.items.into_iter().map(|mut o| {
            o.types = Some(kube::api::TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            o
        }));
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(Some(out)),
        }
    }
}

async fn read_async(target: &Target, workloads: bool) -> Result<Live, LiveError> {
    let (client, source) = client(target).await?;
    let mut inputs = Inputs::default();
    inputs.add_objects(
        &source,
        &list_all::<Namespace>(&client, "namespaces").await?,
    );
    inputs.add_objects(&source, &list_all::<Pod>(&client, "pods").await?);
    inputs.add_objects(
        &source,
        &list_all::<NetworkPolicy>(&client, "networkpolicies").await?,
    );
    inputs.add_objects(&source, &cluster_network_policies(&client).await?);
    let daemonsets = list_all::<DaemonSet>(&client, "daemonsets").await?;
    if workloads {
        inputs.add_objects(
            &source,
            &list_all::<Deployment>(&client, "deployments").await?,
        );
        inputs.add_objects(
            &source,
            &list_all::<StatefulSet>(&client, "statefulsets").await?,
        );
        inputs.add_objects(&source, &daemonsets);
        inputs.add_objects(
            &source,
            &list_all::<ReplicaSet>(&client, "replicasets").await?,
        );
        inputs.add_objects(&source, &list_all::<Job>(&client, "jobs").await?);
        inputs.add_objects(&source, &list_all::<CronJob>(&client, "cronjobs").await?);
    }
    // The objects come from the apiserver, not from lines of a file.
    for p in &mut inputs.policies {
        p.line = 0;
    }
    for p in &mut inputs.cluster_policies {
        p.line = 0;
    }
    for p in &mut inputs.problems {
        p.line = 0;
    }
    inputs
        .problems
        .retain(|p| p.check != palisade_policy::input::InputCheck::EmptyFile);

    let nodes = list_all::<Node>(&client, "nodes").await?;
    let resource = ApiResource {
        group: "palisade.dev".into(),
        version: "v1alpha1".into(),
        api_version: "palisade.dev/v1alpha1".into(),
        kind: "NodeEnforcement".into(),
        plural: "nodeenforcements".into(),
    };
    let reports: Vec<DynamicObject> =
        match Api::<DynamicObject>::all_with(client.clone(), &resource)
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            // Palisade's CRDs are not installed: no enforcer reports.
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(source) => {
                return Err(LiveError::List {
                    what: "nodeenforcements",
                    source,
                });
            }
        };
    let reported: BTreeMap<String, Reported> = reports
        .iter()
        .filter_map(|r| {
            let status = r.data.get("status")?;
            Some((r.metadata.name.clone()?, Reported::from_status(status)))
        })
        .collect();
    let cni = node_enforcement::cluster_cni(
        daemonsets
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == Some("kube-system"))
            .filter_map(|d| d.metadata.name.as_deref()),
    );
    let nodes: Vec<NodeEnforcement> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            node_enforcement::node_enforcement(n, reported.get(&name), cni.as_deref())
        })
        .collect();
    Ok(Live {
        inputs,
        enforcement: Enforcement { nodes },
        reported,
        source,
    })
}

/// One Event an enforcer wrote on a pod for the connection attempts of one peer, port and
/// reason within a minute (`count` of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub namespace: String,
    pub pod: String,
    /// An audit-mode policy would deny it (it was let through).
    pub audit: bool,
    pub count: i32,
    pub last_seen: Option<k8s_openapi::jiff::Timestamp>,
    /// The node whose enforcer saw it.
    pub node: String,
    /// `SOURCE to DESTINATION:PORT/PROTOCOL denied: why`, as `reach --explain` says why.
    pub message: String,
}

/// The denial Events of `namespace` (every namespace: `None`), of one pod if `pod` is given,
/// most recent first.
pub fn denials(
    target: &Target,
    namespace: Option<&str>,
    pod: Option<&str>,
) -> Result<Vec<Denial>, LiveError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(denials_async(target, namespace, pod))
}

async fn denials_async(
    target: &Target,
    namespace: Option<&str>,
    pod: Option<&str>,
) -> Result<Vec<Denial>, LiveError> {
    use k8s_openapi::api::core::v1::Event;
    let (client, _) = client(target).await?;
    let api: Api<Event> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut out = Vec::new();
    for reason in [palisade_api::DENIED_REASON, palisade_api::AUDIT_REASON] {
        let mut fields = format!("reason={reason},involvedObject.kind=Pod");
        if let Some(pod) = pod {
            fields.push_str(&format!(",involvedObject.name={pod}"));
        }
        let mut params = ListParams::default().fields(&fields).limit(500);
        loop {
            let list = api.list(&params).await.map_err(|source| LiveError::List {
                what: "events",
                source,
            })?;
            out.extend(
                list.items
                    .into_iter()
                    .filter(|e| {
                        e.source.as_ref().and_then(|s| s.component.as_deref())
                            == Some(palisade_api::DENIAL_EVENT_COMPONENT)
                    })
                    .map(|e| Denial {
                        namespace: e.involved_object.namespace.unwrap_or_default(),
                        pod: e.involved_object.name.unwrap_or_default(),
                        audit: reason == palisade_api::AUDIT_REASON,
                        count: e.count.unwrap_or(1),
                        last_seen: e
                            .last_timestamp
                            .or(e.first_timestamp)
                            .map(|t| t.0)
                            .or_else(|| e.event_time.map(|t| t.0)),
                        node: e.source.and_then(|s| s.host).unwrap_or_default(),
                        message: e.message.unwrap_or_default(),
                    }),
            );
            match list.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
    Ok(out)
}
