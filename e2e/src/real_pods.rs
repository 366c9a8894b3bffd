//! Pods on the real nodes as the tests write them: busybox pods pinned to a node running a
//! shell command, the namespaces they go in (ready once their `default` ServiceAccount exists),
//! and what a file on a node holds.

use std::time::{Duration, Instant};

use crate::real_nodes::{BUSYBOX_IMAGE, RealNode};
use crate::{ControlPlane, Error};

/// The manifest of a busybox pod `namespace/name` pinned to `node`, labelled `labels` and
/// declaring `ports` (both YAML flow values, e.g. `{app: web}` and `[{containerPort: 80}]`),
/// running `sh -c SHELL` (no double quotes in it). Ends with `---`, so manifests concatenate.
pub fn busybox_pod(
    namespace: &str,
    name: &str,
    node: &str,
    labels: &str,
    ports: &str,
    shell: &str,
) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: \"{name}\", namespace: \"{namespace}\", labels: {labels}}}\n\
         spec:\n  nodeName: \"{node}\"\n  terminationGracePeriodSeconds: 1\n  automountServiceAccountToken: false\n\
         \x20 containers:\n  - name: main\n    image: {BUSYBOX_IMAGE}\n    imagePullPolicy: Never\n\
         \x20   command: [sh, -c, \"{shell}\"]\n    ports: {ports}\n---\n"
    )
}

/// Waits (at most 30 s) for the `default` ServiceAccount of `namespace`, which the
/// controller-manager makes a moment after the namespace and without which no pod is admitted.
pub fn wait_for_service_account(cp: &ControlPlane, namespace: &str) -> Result<(), Error> {
    let start = Instant::now();
    while cp
        .kubectl_ok(&["get", "serviceaccount", "default", "-n", namespace])
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(Error::Command {
                what: format!("waiting for the default ServiceAccount of {namespace}"),
                stderr: "not created within 30 s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Creates `namespaces` and waits until pods can go in each; panics on failure.
pub fn create_namespaces(cp: &ControlPlane, namespaces: &[&str]) {
    for ns in namespaces {
        cp.kubectl_must(&["create", "namespace", ns]);
    }
    for ns in namespaces {
        wait_for_service_account(cp, ns).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// What file `path` on `node` holds (`None`: it does not exist).
pub fn node_file(node: &RealNode, path: &str) -> Option<String> {
    let out = node
        .command("cat")
        .arg(path)
        .output()
        .expect("cat on the node");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
