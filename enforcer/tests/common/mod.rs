//! What the enforcer's tests share: small clusters written as YAML, read as the enforcer reads
//! them, and the objects they are made of built in Rust (labels, a pod on a node, a policy
//! that denies).

#![allow(dead_code)]

pub mod matrix;

use std::net::IpAddr;

use palisade_policy::input::Inputs;
use palisade_policy::{Cluster, Labels, Pod};

/// The cluster `yaml` describes; panics when it is not readable.
pub fn cluster(yaml: &str) -> Cluster {
    let mut inputs = Inputs::default();
    inputs.add_text("cluster.yaml", yaml).expect("readable");
    inputs.cluster()
}

/// A Namespace labelled with its name, as the apiserver labels it.
pub fn namespace(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\n\
         metadata: {{name: \"{name}\", labels: {{kubernetes.io/metadata.name: \"{name}\"}}}}\n"
    )
}

/// A Running Pod `namespace/name` labelled `app: NAME` on `node`, with addresses `ips` (the
/// first is its podIP) and a container declaring `ports`.
pub fn pod(namespace: &str, name: &str, node: &str, ips: &[&str], ports: &[u16]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|p| format!("{{containerPort: {p}}}"))
        .collect();
    let ips_yaml: Vec<String> = ips.iter().map(|ip| format!("{{ip: \"{ip}\"}}")).collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\n\
         metadata: {{name: \"{name}\", namespace: \"{namespace}\", labels: {{app: \"{name}\"}}}}\n\
         spec: {{nodeName: \"{node}\", containers: [{{name: c, image: c, ports: [{}]}}]}}\n\
         status: {{phase: Running, podIP: \"{}\", podIPs: [{}]}}\n",
        ports.join(", "),
        ips.first().copied().unwrap_or_default(),
        ips_yaml.join(", ")
    )
}

/// Labels from `(key, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Running pod `namespace/name` labelled `labels` at `ip` on `node`.
pub fn pod_on(namespace: &str, name: &str, labels: Labels, ip: IpAddr, node: &str) -> Pod {
    let mut pod = Pod::running(namespace, name, labels, ip);
    pod.node = Some(node.into());
    pod
}
