//! `palisade status` against the real kube-apiserver: NodeEnforcement objects as enforcers write
//! them (enforcing, silent for 10 minutes, not enforcing with a reason; a node with none), pods
//! on those nodes, NetworkPolicies (one selecting pods on two nodes, one selecting none, one in
//! audit mode) and a ClusterNetworkPolicy; the exact output and the exit code.

use std::time::Duration;

use palisade_cli::run_args;
use palisade_e2e::ControlPlane;
use palisade_e2e::objects::{self, time_ago};

const NS: &str = "status-live";
const FLANNEL: (&str, &str) = ("flannel.alpha.coreos.com/backend-type", "vxlan");

/// The age of a fresh sync changes from run to run: `last sync 4s ago` reads `last sync Ns ago`.
fn steady(out: &str) -> String {
    const MARKER: &str = "last sync ";
    let mut done = String::new();
    let mut rest = out;
    while let Some(at) = rest.find(MARKER) {
        let (head, tail) = rest.split_at(at + MARKER.len());
        done.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with("s ago") {
            done.push('N');
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    done.push_str(rest);
    done
}

fn world(cp: &ControlPlane) {
    objects::palisade_crds(cp).unwrap();
    for node in ["st-node-1", "st-node-2", "st-node-3", "st-node-4"] {
        objects::node(cp, node, &[FLANNEL]).unwrap();
    }
    let cnp = serde_json::json!({
        "enforced": true, "reason": "flannel does not enforce NetworkPolicy: enforced with NetworkPolicy",
        "policies": 1, "notEnforcedCount": 0
    });
    // Enforcing, synced a few seconds ago.
    objects::node_enforcement(
        cp,
        "st-node-1",
        &serde_json::json!({
            "cni": "flannel", "cniEnforces": false, "mode": "auto", "enforcing": true,
            "families": ["IPv4"], "reason": "flannel does not enforce NetworkPolicy",
            "lastSync": time_ago(Duration::from_secs(2)), "clusterNetworkPolicy": cnp
        }),
    )
    .unwrap();
    // Enforcing, but silent for 10 minutes.
    objects::node_enforcement(
        cp,
        "st-node-3",
        &serde_json::json!({
            "cni": "flannel", "cniEnforces": false, "mode": "auto", "enforcing": true,
            "families": ["IPv4"], "reason": "flannel does not enforce NetworkPolicy",
            "lastSync": time_ago(Duration::from_secs(600)), "clusterNetworkPolicy": cnp
        }),
    )
    .unwrap();
    // Reporting, not enforcing, and saying why.
    objects::node_enforcement(
        cp,
        "st-node-4",
        &serde_json::json!({
            "cni": "flannel", "cniEnforces": false, "mode": "off", "enforcing": false,
            "reason": "mode off: reporting only", "lastSync": time_ago(Duration::from_secs(1))
        }),
    )
    .unwrap();
    for (name, app, node, ip) in [
        ("web-1", "web", "st-node-1", "10.79.0.1"),
        ("web-2", "web", "st-node-2", "10.79.0.2"),
        ("db-1", "db", "st-node-3", "10.79.0.3"),
        ("api-1", "api", "st-node-4", "10.79.0.4"),
        ("ok-1", "ok", "st-node-1", "10.79.0.5"),
    ] {
        objects::pod(cp, NS, name, &[("app", app)], node, ip).unwrap();
    }
    let policy = |name: &str, app: &str, annotations: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {NS}, annotations: {{{annotations}}}}}\nspec: {{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: []}}\n---\n"
        )
    };
    cp.apply(
        &[
            policy("web", "web", ""),
            policy("db", "db", ""),
            policy("api", "api", ""),
            policy("ok", "ok", ""),
            policy("trial", "ok", "palisade.dev/mode: audit"),
            policy("typo", "wbe", ""),
        ]
        .concat(),
    )
    .unwrap();
    objects::cluster_network_policy_crd(cp).unwrap();
    cp.apply(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: status-live-web}}
spec:
  tier: Admin
  priority: 20
  subject:
    pods:
      namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {NS}}}}}
      podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - action: Deny
    from:
    - namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {NS}}}}}
"
    ))
    .unwrap();
}

const NETWORK_POLICIES: &str = "\
status-live/api  selects 1 pod on st-node-4  NOT enforced on st-node-4 (status-live/api-1): flannel ignores NetworkPolicy and the Palisade enforcer there does not enforce (mode off: reporting only); enforcer mode off, last sync Ns ago
status-live/db  selects 1 pod on st-node-3  NOT counted as enforced on st-node-3 (status-live/db-1): its Palisade enforcer has not reported for 10m (a running one reports every 30s); its last rules may still be in force; enforcer mode auto
status-live/ok  selects 1 pod on st-node-1  enforced on st-node-1 by the Palisade enforcer (IPv4); enforcer mode auto, last sync Ns ago
status-live/trial in audit mode (annotated palisade.dev/mode: audit)  selects 1 pod on st-node-1  enforced on st-node-1 by the Palisade enforcer (IPv4); in audit mode there: what it denies is logged and counted, not dropped; enforcer mode auto, last sync Ns ago
status-live/typo  selects no pod  nothing to enforce
status-live/web  selects 2 pods on st-node-1, st-node-2  NOT enforced on st-node-2 (1 of 2 nodes)
  NOT enforced on st-node-2 (status-live/web-2): flannel ignores NetworkPolicy and no Palisade enforcer reports from it
  enforced on st-node-1 by the Palisade enforcer (IPv4); enforcer mode auto, last sync Ns ago
";

const CLUSTER_NETWORK_POLICY: &str = "\
ClusterNetworkPolicy status-live-web (Admin, priority 20)  selects 2 pods on st-node-1, st-node-2  NOT enforced on st-node-2 (1 of 2 nodes)
  NOT enforced on st-node-2 (status-live/web-2): CNI flannel does not enforce ClusterNetworkPolicy, and no Palisade enforcer there reports enforcing it
  enforced on st-node-1 by the Palisade enforcer; enforcer mode auto, last sync Ns ago
";

#[test]
fn status_says_per_policy_where_it_is_enforced() {
    let cp = ControlPlane::shared();
    let Some(cp) =
        cp.local_for("creates Nodes, which only the local control plane may have made up")
    else {
        return;
    };
    let ns = cp.test_namespace(NS).unwrap();
    let _cnp = objects::Deleted {
        cp,
        kind: "clusternetworkpolicy",
        name: "status-live-web",
    };
    world(cp);
    let kubeconfig = cp.kubeconfig.display().to_string();
    let status = |args: &[&str]| {
        let (out, err, code) = run_args(
            ["status", "--kubeconfig", kubeconfig.as_str()]
                .iter()
                .chain(args)
                .copied(),
        );
        (steady(&out), err, code)
    };

    // A namespace: every NetworkPolicy in it, one line each (more where nodes differ).
    let (out, err, code) = status(&["-n", &ns.name]);
    assert_eq!((code, err.as_str()), (1, ""), "{out}");
    assert_eq!(
        out,
        format!(
            "{NETWORK_POLICIES}6 policies: 3 NOT enforced on some node, 2 enforced wherever their pods run, 1 select no pod on a node\n"
        )
    );

    // Everything: the NetworkPolicies of every namespace and the ClusterNetworkPolicies.
    let (out, err, code) = status(&[]);
    assert_eq!((code, err.as_str()), (1, ""), "{out}");
    assert_eq!(
        out,
        format!(
            "{NETWORK_POLICIES}{CLUSTER_NETWORK_POLICY}7 policies: 4 NOT enforced on some node, 2 enforced wherever their pods run, 1 select no pod on a node\n"
        )
    );

    // One ClusterNetworkPolicy by name.
    let (out, err, code) = status(&["status-live-web"]);
    assert_eq!((code, err.as_str()), (1, ""));
    assert_eq!(
        out,
        format!("{CLUSTER_NETWORK_POLICY}1 policy: 1 NOT enforced on some node\n")
    );

    // One policy enforced on every node where its pods run: exit code 0.
    let (out, err, code) = status(&["-n", NS, "ok"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out,
        "status-live/ok  selects 1 pod on st-node-1  enforced on st-node-1 by the Palisade enforcer (IPv4); enforcer mode auto, last sync Ns ago\n\
         1 policy: 1 enforced wherever their pods run\n"
    );
    // Selecting no pod is nothing to enforce, not a failure.
    let (out, _, code) = status(&["status-live/typo"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "status-live/typo  selects no pod  nothing to enforce\n1 policy: 1 select no pod on a node\n"
    );

    // A name that is no policy.
    let (out, err, code) = status(&["status-live/nope"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.starts_with("palisade: no NetworkPolicy status-live/nope in cluster https://"),
        "{err}"
    );

    // The exit codes are in --help.
    // (clap's help, which `run_args` hands back as the error text, as clap prints it).
    let (_, help, code) = run_args(["status", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("Exit code: 0 when every policy shown is enforced"),
        "{help}"
    );
}

#[test]
fn fresh_sync_ages_read_steadily() {
    assert_eq!(
        steady("a; last sync 4s ago\nb, last syncs 3s to 12s ago; last sync 10m ago"),
        "a; last sync Ns ago\nb, last syncs 3s to 12s ago; last sync 10m ago"
    );
}
