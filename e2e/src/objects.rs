//! Made-up objects on the local control plane, where no kubelet and no enforcer run: Ready
//! Nodes, Pods bound to a node with an IP and a phase (the harness plays the kubelet), and
//! NodeEnforcement statuses (the harness plays a node's enforcer).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{ControlPlane, Error};

const PALISADE_CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/palisade/crds/palisade.dev.yaml"
);
/// The upstream ClusterNetworkPolicy CRD the chart can install.
pub const CLUSTER_NETWORK_POLICY_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/palisade/files/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml"
);
pub const CLUSTER_NETWORK_POLICY_CRD_NAME: &str = "clusternetworkpolicies.policy.networking.k8s.io";

/// Deletes a cluster-scoped object a test made when dropped, also when the test fails.
pub struct Deleted<'a> {
    pub cp: &'a ControlPlane,
    pub kind: &'static str,
    pub name: &'static str,
}

impl Drop for Deleted<'_> {
    fn drop(&mut self) {
        let _ = self
            .cp
            .kubectl(&["delete", self.kind, self.name, "--ignore-not-found"]);
    }
}

/// `[(key, value)]` as a JSON object (labels, annotations).
fn map(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect()
}

/// A Ready Node with these annotations (e.g. a CNI's, which tell which CNI it runs).
pub fn node(cp: &ControlPlane, name: &str, annotations: &[(&str, &str)]) -> Result<(), Error> {
    node_with_readiness(cp, name, annotations, true)
}

/// A Node with these annotations, Ready or not as its kubelet would report it.
pub fn node_with_readiness(
    cp: &ControlPlane,
    name: &str,
    annotations: &[(&str, &str)],
    ready: bool,
) -> Result<(), Error> {
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": map(annotations)},
    });
    cp.apply(&object.to_string())?;
    let status = if ready { "True" } else { "False" };
    let condition = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": status, "reason": "KubeletReady", "message": "set by the test",
        "lastHeartbeatTime": timestamp(SystemTime::now()),
        "lastTransitionTime": timestamp(SystemTime::now()),
    }]}});
    cp.kubectl_ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &condition.to_string(),
    ])?;
    Ok(())
}

/// A Pod with these labels bound to `node`, Running with `ip`.
pub fn pod(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    node: &str,
    ip: &str,
) -> Result<(), Error> {
    running_pod(cp, namespace, name, labels, Some(node), ip, &[])
}

/// A Pod with these labels, bound to `node` if one is named, Running with `ip`, its container
/// declaring `ports` (name, number; TCP) for named-port rules.
pub fn running_pod(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    node: Option<&str>,
    ip: &str,
    ports: &[(&str, u16)],
) -> Result<(), Error> {
    let ports: Vec<serde_json::Value> = ports
        .iter()
        .map(|(name, port)| serde_json::json!({"name": name, "containerPort": port}))
        .collect();
    let mut spec =
        serde_json::json!({"containers": [{"name": "c", "image": "app", "ports": ports}]});
    if let Some(node) = node {
        spec["nodeName"] = node.into();
    }
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": map(labels)},
        "spec": spec,
    });
    cp.apply(&object.to_string())?;
    set_running(cp, namespace, name, ip)
}

/// Reports the Pod `namespace/name` Running with `ip`, as its kubelet would.
pub fn set_running(cp: &ControlPlane, namespace: &str, name: &str, ip: &str) -> Result<(), Error> {
    let status =
        serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
    cp.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ])?;
    Ok(())
}

/// Waits (at most 30 s) until the CustomResourceDefinitions named `crds` serve.
pub fn wait_established(cp: &ControlPlane, crds: &[&str]) -> Result<(), Error> {
    let names: Vec<String> = crds.iter().map(|c| format!("crd/{c}")).collect();
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=30s"];
    args.extend(names.iter().map(String::as_str));
    cp.kubectl_ok(&args)?;
    Ok(())
}

/// Installs Palisade's CRDs (NetworkBaseline, NodeEnforcement) and waits until they serve.
pub fn palisade_crds(cp: &ControlPlane) -> Result<(), Error> {
    cp.kubectl_ok(&["apply", "-f", PALISADE_CRDS])?;
    wait_established(
        cp,
        &[
            "nodeenforcements.palisade.dev",
            "networkbaselines.palisade.dev",
        ],
    )
}

/// Installs the upstream ClusterNetworkPolicy CRD unless it is there, and waits until it serves.
pub fn cluster_network_policy_crd(cp: &ControlPlane) -> Result<(), Error> {
    let installed = cp
        .kubectl(&["get", "crd", CLUSTER_NETWORK_POLICY_CRD_NAME])
        .is_ok_and(|o| o.status.success());
    if !installed {
        cp.kubectl_ok(&["apply", "-f", CLUSTER_NETWORK_POLICY_CRD])?;
        wait_established(cp, &[CLUSTER_NETWORK_POLICY_CRD_NAME])?;
    }
    Ok(())
}

/// The NodeEnforcement of `node` with `status`, as that node's enforcer writes it.
pub fn node_enforcement(
    cp: &ControlPlane,
    node: &str,
    status: &serde_json::Value,
) -> Result<(), Error> {
    let object = serde_json::json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "NodeEnforcement",
        "metadata": {"name": node}, "spec": {"node": node},
    });
    cp.apply(&object.to_string())?;
    cp.kubectl_ok(&[
        "patch",
        "nodeenforcement",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &serde_json::json!({ "status": status }).to_string(),
    ])?;
    Ok(())
}

/// `ago` before now, as Kubernetes writes times (`2026-01-01T00:00:00Z`).
pub fn time_ago(ago: Duration) -> String {
    timestamp(SystemTime::now() - ago)
}

/// A time as Kubernetes writes it, to the second, in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_kubernetes_does() {
        let at = |s: u64| timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
