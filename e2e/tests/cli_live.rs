//! `palisade check` and `palisade reach` on a live cluster (the real apiserver), as kubectl
//! finds it: --kubeconfig and --context; `reach --explain` says whether each node enforces,
//! and with ClusterNetworkPolicies which tier, policy and rule decide (a cluster without their
//! CRD reads as one without them, nothing alarming said).

use std::time::Duration;

use palisade_cli::run_args;
use palisade_e2e::ControlPlane;
use palisade_e2e::objects::{
    self, CLUSTER_NETWORK_POLICY_CRD_NAME, Deleted, node, node_enforcement, palisade_crds,
    running_pod,
};

/// node-a: flannel (annotation), no enforcer; node-b: an enforcer that enforces and has synced.
fn nodes(cp: &ControlPlane) {
    palisade_crds(cp).unwrap();
    node(
        cp,
        "cli-node-a",
        &[("flannel.alpha.coreos.com/backend-type", "vxlan")],
    )
    .unwrap();
    node(cp, "cli-node-b", &[]).unwrap();
    node_enforcement(
        cp,
        "cli-node-b",
        &serde_json::json!({
            "cni": "flannel", "cniEnforces": false, "mode": "auto", "enforcing": true,
            "reason": "flannel does not enforce NetworkPolicy",
            "lastSync": objects::time_ago(Duration::ZERO),
        }),
    )
    .unwrap();
}

fn pod(cp: &ControlPlane, ns: &str, name: &str, app: &str, node: &str, ip: &str) {
    running_pod(cp, ns, name, &[("app", app)], Some(node), ip, &[]).unwrap();
}

#[test]
fn check_and_reach_read_the_cluster_and_explain_says_who_enforces() {
    let cp = ControlPlane::shared();
    let Some(cp) =
        cp.local_for("creates Nodes, which only the local control plane may have made up")
    else {
        return;
    };
    nodes(cp);
    let ns = cp.test_namespace("cli-live").unwrap();
    let ns = ns.name.as_str();
    pod(cp, ns, "web", "web", "cli-node-a", "10.77.0.1");
    pod(cp, ns, "db", "db", "cli-node-b", "10.77.0.2");
    cp.apply(&format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db, namespace: {ns}}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]
    ports: [{{port: 5432}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web, namespace: {ns}}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress: []
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: typo, namespace: {ns}}}
spec:
  podSelector: {{matchLabels: {{app: wbe}}}}
  ingress: []
"
    ))
    .unwrap();
    let kubeconfig = cp.kubeconfig.display().to_string();
    let context = cp
        .kubectl_ok(&["config", "current-context"])
        .unwrap()
        .trim()
        .to_string();
    let web = format!("{ns}/web");
    let db = format!("{ns}/db");

    // Allowed into db: its ingress is decided on node-b, where the enforcer enforces.
    let (out, err, code) = run_args([
        "reach",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        &context,
        "--from",
        &web,
        "--to",
        &db,
        "--port",
        "5432",
        "--explain",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "✓ {web} -> {db} 5432/TCP: egress not isolated; ingress allowed by {ns}/db ingress rule 0. Enforcement: ingress: enforced on cli-node-b by the Palisade enforcer (IPv4)\n"
        )),
        "{out}"
    );

    // Blocked into web by policy, but node-a runs flannel and no enforcer: open in truth.
    let (out, err, code) = run_args([
        "reach",
        "--kubeconfig",
        &kubeconfig,
        "--from",
        &db,
        "--to",
        &web,
        "--port",
        "5432",
        "--explain",
    ]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("✗ {db} -> {web} 5432/TCP: ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.ends_with(". Enforcement: ingress: NOT enforced on cli-node-a: flannel ignores NetworkPolicy and no Palisade enforcer reports from it"),
        "{line}"
    );

    // check: every policy of the cluster against the cluster, the nodes included.
    let (out, err, code) = run_args(["check", "--kubeconfig", &kubeconfig, "-o", "json"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ours: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["object"]
                .as_str()
                .is_some_and(|o| o.starts_with(&format!("{ns}/")))
        })
        .map(|f| {
            (
                f["object"].as_str().unwrap().to_string(),
                f["check"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        ours.contains(&(format!("{ns}/typo"), "unmatched-selector".into())),
        "{ours:?}"
    );
    assert!(
        ours.contains(&(format!("{ns}/web"), "enforcement".into())),
        "{ours:?}"
    );
    let file = v["findings"][0]["file"].as_str().unwrap();
    assert!(file.starts_with("cluster https://"), "{file}");

    // A context that does not exist is named.
    let (_, err, code) = run_args(["reach", "--kubeconfig", &kubeconfig, "--context", "nope"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("palisade: no cluster to read: "), "{err}");
    assert!(err.contains("nope"), "{err}");

    // Files and a cluster are one or the other.
    let (_, err, code) = run_args(["check", "-f", "x.yaml", "--kubeconfig", &kubeconfig]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn reach_reads_cluster_network_policies_and_a_cluster_without_their_crd() {
    let cp = ControlPlane::shared();
    let ns = cp.test_namespace("cnp-cli-live").unwrap();
    let ns = ns.name.as_str();
    for (name, ip) in [("web", "10.78.0.1"), ("db", "10.78.0.2")] {
        running_pod(cp, ns, name, &[("app", name)], None, ip, &[("sql", 5432)]).unwrap();
    }
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
        .kubectl(&["get", "crd", CLUSTER_NETWORK_POLICY_CRD_NAME])
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
        objects::cluster_network_policy_crd(cp).unwrap();
    }
    let _cleanup = Deleted {
        cp,
        kind: "clusternetworkpolicy",
        name: "cnp-cli-live-deny-db",
    };
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
