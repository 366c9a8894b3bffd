//! What the semantics need to know about Namespaces, Pods and workloads, taken from the
//! k8s-openapi objects. Everything else about those objects is irrelevant to NetworkPolicy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod, PodSpec};

use crate::selector::Labels;

/// The label the apiserver puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The API's protocol field: unset means TCP.
    pub fn from_api(value: Option<&str>) -> Result<Self, String> {
        value.map_or(Ok(Protocol::Tcp), str::parse)
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(format!("unknown protocol {other:?} (use TCP, UDP or SCTP)")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

impl Namespace {
    /// A namespace with the labels the apiserver always sets.
    pub fn new(name: impl Into<String>, mut labels: Labels) -> Self {
        let name = name.into();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
        Self { name, labels }
    }

    pub fn from_k8s(ns: &K8sNamespace) -> Self {
        Self::new(
            ns.metadata.name.clone().unwrap_or_default(),
            ns.metadata.labels.clone().unwrap_or_default(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    fn from_api(phase: Option<&str>) -> Self {
        match phase {
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            Some("Pending") | None => Phase::Pending,
            Some(_) => Phase::Unknown,
        }
    }
}

/// An IP family: pods of a dual-stack cluster have an address of each, and a packet is of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// As Kubernetes' `ipFamilies` and the NodeEnforcement status say it.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `status.podIP`: the primary address (the first of [`Pod::ips`]).
    pub ip: Option<IpAddr>,
    /// `status.podIPs`: at most one address per family (dual-stack pods have two).
    pub ips: Vec<IpAddr>,
    pub node: Option<String>,
    pub host_network: bool,
    pub phase: Phase,
    pub ports: Vec<ContainerPort>,
}

impl Pod {
    /// A running pod with an IP: the common case in tests and examples.
    pub fn running(namespace: &str, name: &str, labels: Labels, ip: IpAddr) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            labels,
            ip: Some(ip),
            ips: vec![ip],
            node: None,
            host_network: false,
            phase: Phase::Running,
            ports: Vec::new(),
        }
    }

    pub fn from_k8s(pod: &K8sPod) -> Self {
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let ip: Option<IpAddr> = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        // podIP is podIPs[0]; an apiserver older than dual-stack sets only podIP.
        if let Some(ip) = ip
            && !ips.contains(&ip)
        {
            ips.insert(0, ip);
        }
        Self {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ip,
            ips,
            node: spec.and_then(|s| s.node_name.clone()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            phase: Phase::from_api(status.and_then(|s| s.phase.as_deref())),
            ports: spec.map(container_ports).unwrap_or_default(),
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// A dual-stack pod: `ip` (of one family) and `other` (of the other).
    pub fn with_second_ip(mut self, other: IpAddr) -> Self {
        if !self.ips.contains(&other) {
            self.ips.push(other);
        }
        self
    }

    /// The pod's address of `family`, if it has one.
    pub fn ip_of(&self, family: IpFamily) -> Option<IpAddr> {
        self.ips
            .iter()
            .chain(&self.ip)
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }

    /// The families the pod has addresses of.
    pub fn families(&self) -> impl Iterator<Item = IpFamily> + '_ {
        IpFamily::ALL
            .into_iter()
            .filter(|f| self.ip_of(*f).is_some())
    }

    /// The pod as packets of `family` see it: its address of that family as its only one (none
    /// when it has none: then it takes part in no traffic of that family).
    pub fn in_family(&self, family: IpFamily) -> Pod {
        let ip = self.ip_of(family);
        Pod {
            ip,
            ips: ip.into_iter().collect(),
            ..self.clone()
        }
    }

    /// Pods a policy can name as peers: with an IP, not on the host network, not finished.
    pub fn is_peer(&self) -> bool {
        self.ip.is_some()
            && !self.host_network
            && !matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }

    /// Pods a policy can isolate: hostNetwork pods share the node's stack and are never targets.
    pub fn is_target(&self) -> bool {
        !self.host_network
    }

    /// The number a named port stands for on this pod, for the given protocol.
    pub fn resolve_named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

/// The ports declared by a pod's (init and regular) containers. Unreadable ports are skipped:
/// the apiserver would have refused them.
pub fn container_ports(spec: &PodSpec) -> Vec<ContainerPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(ContainerPort {
                name: p.name.clone(),
                port: u16::try_from(p.container_port).ok()?,
                protocol: Protocol::from_api(p.protocol.as_deref()).ok()?,
            })
        })
        .collect()
}

/// A controller that will create pods: its pod template's labels and ports stand for pods that
/// do not exist yet (a policy applied before its Deployment is not a mistake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub template_labels: Labels,
    pub ports: Vec<ContainerPort>,
}

impl Workload {
    fn from_template(
        kind: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            template_labels: template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            ports: template
                .and_then(|t| t.spec.as_ref())
                .map(container_ports)
                .unwrap_or_default(),
        }
    }

    pub fn from_deployment(o: &Deployment) -> Self {
        Self::from_template(
            "Deployment",
            &o.metadata,
            o.spec.as_ref().map(|s| &s.template),
        )
    }
    pub fn from_stateful_set(o: &StatefulSet) -> Self {
        Self::from_template(
            "StatefulSet",
            &o.metadata,
            o.spec.as_ref().map(|s| &s.template),
        )
    }
    pub fn from_daemon_set(o: &DaemonSet) -> Self {
        Self::from_template(
            "DaemonSet",
            &o.metadata,
            o.spec.as_ref().map(|s| &s.template),
        )
    }
    pub fn from_replica_set(o: &ReplicaSet) -> Self {
        Self::from_template(
            "ReplicaSet",
            &o.metadata,
            o.spec.as_ref().and_then(|s| s.template.as_ref()),
        )
    }
    pub fn from_job(o: &Job) -> Self {
        Self::from_template("Job", &o.metadata, o.spec.as_ref().map(|s| &s.template))
    }
    pub fn from_cron_job(o: &CronJob) -> Self {
        Self::from_template(
            "CronJob",
            &o.metadata,
            o.spec
                .as_ref()
                .and_then(|s| s.job_template.spec.as_ref())
                .map(|s| &s.template),
        )
    }
}
