//! `palisade reach` on a live cluster with ClusterNetworkPolicies: a cluster without their CRD
//! reads as one without them (nothing alarming said), and once the upstream CRD is installed
//! and a policy applied, `--explain` names the tier, policy and rule that decide.

use palisade_e2e::ControlPlane;
use palisade_policy::cli::run_args;

const CNP_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/palisade/files/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml"
);
const CRD_NAME: &str = "clusternetworkpolicies.policy.networking.k8s.io";

/// Deletes the cluster-scoped policy the test made, also when it fails.
struct Cleanup<'a>(&'a ControlPlane, &'static str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&[
            "delete",
            "clusternetworkpolicy",
            self.1,
            "--ignore-not-found",
        ]);
    }
}

fn pod(cp: &ControlPlane, ns: &str, name: &str, ip: &str) {
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec:\n  containers: [{{name: c, image: app, ports: [{{name: sql, containerPort: 5432}}]}}]\n"
    ))
    .unwrap();
    cp.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#),
    ])
    .unwrap();
}

#[test]
fn reach_reads_cluster_network_policies_and_a_cluster_without_their_crd() {
    let cp = ControlPlane::shared();
    let ns = cp.test_namespace("cnp-cli-live").unwrap();
    let ns = ns.name.as_str();
    pod(cp, ns, "web", "10.78.0.1");
    pod(cp, ns, "db", "10.78.0.2");
    let kubeconfig = cp.kubeconfig.display().to_string();
    let (web, db) = (format!("{ns}/web"), format!("{ns}/db"));
    let reach = || {
        run_args([
            "reach",
            "--kubeconfig",
            &kubeconfig,
            "--from",
            &web,
            "--to",
            &db,
            "--port",
            "5432",
            "--explain",
        ])
    };

    let installed = cp
        .kubectl(&["get", "crd", CRD_NAME])
        .is_ok_and(|o| o.status.success());
    if !installed {
        // No CRD: the apiserver answers 404, and that is a cluster without the policies.
        let (out, err, code) = reach();
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(
            out.contains(&format!(
                "✓ {web} -> {db} 5432/TCP: egress not isolated; ingress not isolated\n"
            )),
            "{out}"
        );
        cp.kubectl_ok(&["apply", "-f", CNP_CRD]).unwrap();
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{CRD_NAME}"),
        ])
        .unwrap();
    }
    let _cleanup = Cleanup(cp, "cnp-cli-live-deny-db");
    cp.apply(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: cnp-cli-live-deny-db}}
spec:
  tier: Admin
  priority: 7
  subject:
    pods:
      namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
      podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - name: no-sql
    action: Deny
    from:
    - namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
    protocols:
    - destinationNamedPort: sql
"
    ))
    .unwrap();
    let (out, err, code) = reach();
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.contains(&format!(
            "✗ {web} -> {db} 5432/TCP: ingress denied by ClusterNetworkPolicy cnp-cli-live-deny-db (Admin, priority 7) ingress rule 0 \"no-sql\"; egress not isolated"
        )),
        "{out}"
    );
}
