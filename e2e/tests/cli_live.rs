//! `palisade check` and `palisade reach` on a live cluster (the real apiserver), as kubectl
//! finds it: --kubeconfig and --context; `reach --explain` says whether each node enforces.

use palisade_e2e::ControlPlane;
use palisade_policy::cli::run_args;

const CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/palisade/crds/palisade.dev.yaml"
);

/// node-a: flannel (annotation), no enforcer; node-b: an enforcer that enforces and has synced.
fn nodes(cp: &ControlPlane) {
    cp.kubectl_ok(&["apply", "-f", CRDS]).unwrap();
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/nodeenforcements.palisade.dev",
    ])
    .unwrap();
    for (node, annotation) in [
        (
            "cli-node-a",
            "{flannel.alpha.coreos.com/backend-type: vxlan}",
        ),
        ("cli-node-b", "{}"),
    ] {
        cp.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}, annotations: {annotation}}}\n"
        ))
        .unwrap();
        cp.kubectl_ok(&[
            "patch",
            "node",
            node,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ok","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
        ])
        .unwrap();
    }
    cp.apply("apiVersion: palisade.dev/v1alpha1\nkind: NodeEnforcement\nmetadata: {name: cli-node-b}\nspec: {node: cli-node-b}\n")
        .unwrap();
    cp.kubectl_ok(&[
        "patch",
        "nodeenforcement",
        "cli-node-b",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"cni":"flannel","cniEnforces":false,"mode":"auto","enforcing":true,"reason":"flannel does not enforce NetworkPolicy","lastSync":"{}"}}}}"#,
            now()
        ),
    ])
    .unwrap();
}

/// The time now, as a status timestamp (an enforcer that reports writes a fresh `lastSync`).
fn now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pod(cp: &ControlPlane, ns: &str, name: &str, app: &str, node: &str, ip: &str) {
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: app, ports: [{{containerPort: 5432}}]}}]\n"
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
fn check_and_reach_read_the_cluster_and_explain_says_who_enforces() {
    let cp = ControlPlane::shared();
    if !cp.is_local() {
        eprintln!("skipped: creates Nodes, which only the local control plane may have made up");
        return;
    }
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
