//! The status of a policy from objects written as YAML and node statuses as enforcers write
//! them, read at a fixed time.

use super::*;
use k8s_openapi::api::core::v1::Node;
use palisade_policy::checks::Enforcement;
use palisade_policy::input::Inputs;
use palisade_policy::node_enforcement::node_enforcement;

const NOW: &str = "2026-01-01T00:10:00Z";

fn at(t: &str) -> Timestamp {
    t.parse().expect("a time")
}

fn cluster(yaml: &str) -> Inputs {
    let mut inputs = Inputs::default();
    inputs.add_text("test.yaml", yaml).expect("readable");
    assert!(inputs.problems.is_empty(), "{:?}", inputs.problems);
    inputs
}

fn pod(name: &str, app: &str, node: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: prod, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: x}}]}}\n\
         status: {{phase: Running, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n---\n"
    )
}

/// `(node, CNI annotation, status)`: the cluster's nodes as the CLI reads them.
fn nodes(specs: &[(&str, Option<serde_json::Value>)]) -> (Enforcement, BTreeMap<String, Reported>) {
    let mut reported = BTreeMap::new();
    let mut list = Vec::new();
    for (name, status) in specs {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": {"flannel.alpha.coreos.com/backend-type": "vxlan"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("a node");
        let r = status
            .as_ref()
            .map(|s| Reported::from_status_at(s, at(NOW)));
        list.push(node_enforcement(&node, r.as_ref(), None));
        if let Some(r) = r {
            reported.insert(name.to_string(), r);
        }
    }
    (Enforcement { nodes: list }, reported)
}

fn enforcing(last_sync: &str) -> serde_json::Value {
    serde_json::json!({
        "cni": "flannel", "mode": "auto", "enforcing": true, "families": ["IPv4"],
        "reason": "flannel does not enforce NetworkPolicy", "lastSync": last_sync,
        "clusterNetworkPolicy": {"enforced": true, "reason": "enforced with NetworkPolicy", "policies": 2,
            "notEnforcedCount": 1, "notEnforced": [{"name": "by-domain", "reason": "domainNames peers (experimental) are not enforced by Palisade"}]}
    })
}

fn status_of(
    inputs: &Inputs,
    name: &str,
    specs: &[(&str, Option<serde_json::Value>)],
) -> PolicyStatus {
    let (enforcement, reported) = nodes(specs);
    let nodes = Nodes::new(&enforcement, &reported, at(NOW));
    let cluster = inputs.cluster();
    if let Some(p) = cluster.policies().iter().find(|p| p.name == name) {
        return network_policy(&cluster, p, &nodes);
    }
    let p = cluster
        .cluster_policies()
        .iter()
        .find(|p| p.name == name)
        .expect("the policy");
    cluster_policy(&cluster, p, &nodes)
}

fn world() -> Inputs {
    let mut yaml = String::new();
    yaml += &pod("web-1", "web", "node-1", "10.0.1.1");
    yaml += &pod("web-2", "web", "node-2", "10.0.2.1");
    yaml += &pod("web-3", "web", "node-2", "10.0.2.2");
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: prod}\nspec: {podSelector: {}, ingress: []}\n---\n";
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: prod}\nspec: {podSelector: {matchLabels: {app: wbe}}, ingress: []}\n---\n";
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: trial, namespace: prod, annotations: {palisade.dev/mode: audit}}\nspec: {podSelector: {}, ingress: []}\n---\n";
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: palisade-baseline-deny, namespace: prod, labels: {palisade.dev/baseline: default}, annotations: {palisade.dev/mode: audit}}\nspec: {podSelector: {}, ingress: []}\n---\n";
    for name in ["by-domain", "web-admin"] {
        yaml += &format!(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  tier: Admin\n  priority: 10\n  subject: {{namespaces: {{}}}}\n  ingress:\n  - action: Deny\n    from: [{{namespaces: {{}}}}]\n---\n"
        );
    }
    cluster(&yaml)
}

#[test]
fn enforced_on_every_node_is_one_line() {
    let s = status_of(
        &world(),
        "deny-all",
        &[
            ("node-1", Some(enforcing("2026-01-01T00:09:56Z"))),
            ("node-2", Some(enforcing("2026-01-01T00:09:50Z"))),
        ],
    );
    assert_eq!(s.outcome, Outcome::Enforced);
    assert_eq!(
        s.lines,
        [
            "prod/deny-all  selects 3 pods on node-1, node-2  enforced on both by the Palisade enforcer (IPv4); enforcer mode auto, last syncs 4s to 10s ago"
        ]
    );
}

#[test]
fn a_node_without_an_enforcer_is_named_with_its_pods() {
    let s = status_of(
        &world(),
        "deny-all",
        &[
            ("node-1", Some(enforcing("2026-01-01T00:09:56Z"))),
            ("node-2", None),
        ],
    );
    assert_eq!(s.outcome, Outcome::NotEnforced);
    assert_eq!(
        s.lines,
        [
            "prod/deny-all  selects 3 pods on node-1, node-2  NOT enforced on node-2 (1 of 2 nodes)",
            "  NOT enforced on node-2 (prod/web-2, prod/web-3): flannel ignores NetworkPolicy and no Palisade enforcer reports from it",
            "  enforced on node-1 by the Palisade enforcer (IPv4); enforcer mode auto, last sync 4s ago",
        ]
    );
}

#[test]
fn silent_off_and_failing_enforcers_do_not_count() {
    let off = serde_json::json!({"cni": "flannel", "mode": "off", "enforcing": false, "reason": "mode off: reporting only", "lastSync": "2026-01-01T00:09:59Z"});
    let failing = serde_json::json!({"cni": "flannel", "mode": "auto", "enforcing": true, "families": ["IPv4"], "lastSync": "2026-01-01T00:09:59Z", "lastError": "iptables-restore: exit 4"});
    let silent = enforcing("2026-01-01T00:00:00Z");
    let s = status_of(
        &world(),
        "deny-all",
        &[("node-1", Some(off)), ("node-2", Some(silent))],
    );
    assert_eq!(s.outcome, Outcome::NotEnforced);
    assert_eq!(
        s.lines,
        [
            "prod/deny-all  selects 3 pods on node-1, node-2  NOT enforced on node-1, node-2",
            "  NOT enforced on node-1 (prod/web-1): flannel ignores NetworkPolicy and the Palisade enforcer there does not enforce (mode off: reporting only); enforcer mode off, last sync 1s ago",
            "  NOT counted as enforced on node-2 (prod/web-2, prod/web-3): its Palisade enforcer has not reported for 10m (a running one reports every 30s); its last rules may still be in force; enforcer mode auto",
        ]
    );
    let s = status_of(
        &world(),
        "deny-all",
        &[("node-1", Some(failing)), ("node-2", None)],
    );
    assert_eq!(
        s.lines[1],
        "  the Palisade enforcer on node-1 (prod/web-1) enforces, but its last sync failed (iptables-restore: exit 4): the previous rules stay in force; enforcer mode auto, last sync 1s ago"
    );
}

#[test]
fn nodes_alike_are_one_line_and_lists_are_bounded() {
    let mut yaml = String::new();
    for i in 0..8 {
        yaml += &pod(
            &format!("a-{i}"),
            "a",
            &format!("node-{i}"),
            &format!("10.0.0.{i}"),
        );
        yaml += &pod(
            &format!("b-{i}"),
            "a",
            &format!("node-{i}"),
            &format!("10.0.1.{i}"),
        );
    }
    for i in 0..4 {
        yaml += &pod(&format!("c-{i}"), "a", "node-0", &format!("10.0.2.{i}"));
    }
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: prod}\nspec: {podSelector: {}, ingress: []}\n";
    let specs: Vec<(String, Option<serde_json::Value>)> =
        (0..8).map(|i| (format!("node-{i}"), None)).collect();
    let specs: Vec<(&str, Option<serde_json::Value>)> =
        specs.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    let s = status_of(&cluster(&yaml), "all", &specs);
    assert_eq!(
        s.lines,
        [
            "prod/all  selects 20 pods on node-0, node-1, node-2, node-3, node-4 and 3 more nodes  NOT enforced on node-0 (prod/a-0, prod/b-0, prod/c-0 and 3 more), node-1 (prod/a-1, prod/b-1), node-2 (prod/a-2, prod/b-2), node-3 (prod/a-3, prod/b-3), node-4 (prod/a-4, prod/b-4) and 3 more nodes: flannel ignores NetworkPolicy and no Palisade enforcer reports from it",
        ]
    );
}

#[test]
fn no_pod_selected_is_nothing_to_enforce() {
    let s = status_of(&world(), "typo", &[("node-1", None)]);
    assert_eq!(s.outcome, Outcome::NothingSelected);
    assert_eq!(s.lines, ["prod/typo  selects no pod  nothing to enforce"]);
}

#[test]
fn audit_mode_is_said_and_a_cni_that_enforces_ignores_it() {
    let calico = serde_json::json!({"cni": "calico", "mode": "auto", "enforcing": false, "reason": "calico enforces NetworkPolicy itself; standing aside", "lastSync": "2026-01-01T00:09:58Z"});
    let s = status_of(
        &world(),
        "trial",
        &[
            ("node-1", Some(enforcing("2026-01-01T00:09:58Z"))),
            ("node-2", Some(calico)),
        ],
    );
    assert_eq!(s.outcome, Outcome::Enforced);
    assert_eq!(
        s.lines,
        [
            "prod/trial in audit mode (annotated palisade.dev/mode: audit)  selects 3 pods on node-1, node-2  enforced on both nodes",
            "  enforced on node-1 by the Palisade enforcer (IPv4); in audit mode there: what it denies is logged and counted, not dropped; enforcer mode auto, last sync 2s ago",
            "  enforced on node-2 by calico (calico enforces NetworkPolicy itself; standing aside); calico does not read palisade.dev/mode: it drops what the policy denies; enforcer mode auto, last sync 2s ago",
        ]
    );
    let s = status_of(
        &world(),
        "palisade-baseline-deny",
        &[
            ("node-1", Some(enforcing("2026-01-01T00:09:58Z"))),
            ("node-2", Some(enforcing("2026-01-01T00:09:58Z"))),
        ],
    );
    assert_eq!(
        s.lines,
        [
            "prod/palisade-baseline-deny in audit mode (NetworkBaseline default is in Audit mode)  selects 3 pods on node-1, node-2  enforced on both by the Palisade enforcer (IPv4); in audit mode there: what it denies is logged and counted, not dropped; enforcer mode auto, last sync 2s ago"
        ]
    );
}

#[test]
fn every_policy_of_a_namespace_labelled_audit_is_said_to_be_in_audit_mode() {
    let mut yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {palisade.dev/mode: audit}}\n---\n".to_string();
    yaml += &pod("web-1", "web", "node-1", "10.0.1.1");
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: prod}\nspec: {podSelector: {}, ingress: []}\n---\n";
    let s = status_of(
        &cluster(&yaml),
        "deny-all",
        &[("node-1", Some(enforcing("2026-01-01T00:09:58Z")))],
    );
    assert_eq!(
        s.lines,
        [
            "prod/deny-all in audit mode (namespace prod is labelled palisade.dev/mode=audit)  selects 1 pod on node-1  enforced on node-1 by the Palisade enforcer (IPv4); in audit mode there: what it denies is logged and counted, not dropped; enforcer mode auto, last sync 2s ago"
        ]
    );
}

#[test]
fn ipv6_pods_on_a_node_enforcing_ipv4_only_are_not_enforced() {
    let mut yaml = pod("web-1", "web", "node-1", "10.0.1.1");
    yaml = yaml.replace(
        "podIPs: [{ip: 10.0.1.1}]",
        "podIPs: [{ip: 10.0.1.1}, {ip: 'fd00::1'}]",
    );
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: prod}\nspec: {podSelector: {}, ingress: []}\n";
    let s = status_of(
        &cluster(&yaml),
        "deny-all",
        &[("node-1", Some(enforcing("2026-01-01T00:09:58Z")))],
    );
    assert_eq!(s.outcome, Outcome::NotEnforced);
    assert_eq!(s.lines.len(), 1);
    assert!(
        s.lines[0].starts_with("prod/deny-all  selects 1 pod on node-1  enforced on node-1 (prod/web-1) by the Palisade enforcer for IPv4 only, NOT for IPv6: "),
        "{}",
        s.lines[0]
    );
}

#[test]
fn cluster_network_policies_by_the_enforcers_word() {
    let cilium = serde_json::json!({"cni": "cilium", "mode": "auto", "enforcing": false, "reason": "cilium enforces NetworkPolicy itself; standing aside", "lastSync": "2026-01-01T00:09:58Z",
        "clusterNetworkPolicy": {"enforced": false, "reason": "cilium enforces NetworkPolicy but not ClusterNetworkPolicy: Palisade cannot put the Admin tier ahead of it"}});
    let s = status_of(
        &world(),
        "web-admin",
        &[
            ("node-1", Some(enforcing("2026-01-01T00:09:58Z"))),
            ("node-2", Some(cilium.clone())),
        ],
    );
    assert_eq!(s.outcome, Outcome::NotEnforced);
    assert_eq!(
        s.lines,
        [
            "ClusterNetworkPolicy web-admin (Admin, priority 10)  selects 3 pods on node-1, node-2  NOT enforced on node-2 (1 of 2 nodes)",
            "  NOT enforced on node-2 (prod/web-2, prod/web-3): its Palisade enforcer: cilium enforces NetworkPolicy but not ClusterNetworkPolicy: Palisade cannot put the Admin tier ahead of it; enforcer mode auto, last sync 2s ago",
            "  enforced on node-1 by the Palisade enforcer; enforcer mode auto, last sync 2s ago",
        ]
    );
    // The one the enforcer names as not enforced as written.
    let s = status_of(
        &world(),
        "by-domain",
        &[("node-1", Some(enforcing("2026-01-01T00:09:58Z")))],
    );
    assert_eq!(
        s.lines,
        [
            "ClusterNetworkPolicy by-domain (Admin, priority 10)  selects 3 pods on node-1, node-2  NOT enforced on node-1 (1 of 2 nodes)",
            "  NOT enforced as written on node-1 (prod/web-1): domainNames peers (experimental) are not enforced by Palisade; enforcer mode auto, last sync 2s ago",
            "  unknown whether anything enforces it on node-2 (prod/web-2, prod/web-3): not in the cluster's node list",
        ]
    );
    // Calico enforces ClusterNetworkPolicy itself; nothing reports from node-2.
    let calico = serde_json::json!({"cni": "calico", "mode": "auto", "enforcing": false, "lastSync": "2026-01-01T00:09:58Z",
        "clusterNetworkPolicy": {"enforced": false, "reason": "calico enforces ClusterNetworkPolicy itself; standing aside"}});
    let s = status_of(
        &world(),
        "web-admin",
        &[("node-1", Some(calico)), ("node-2", None)],
    );
    assert_eq!(
        s.lines,
        [
            "ClusterNetworkPolicy web-admin (Admin, priority 10)  selects 3 pods on node-1, node-2  NOT enforced on node-2 (1 of 2 nodes)",
            "  NOT enforced on node-2 (prod/web-2, prod/web-3): CNI flannel does not enforce ClusterNetworkPolicy, and no Palisade enforcer there reports enforcing it",
            "  enforced on node-1 by calico; enforcer mode auto, last sync 2s ago",
        ]
    );
}

/// An enforcer names at most 20 of the ClusterNetworkPolicies it does not enforce as written:
/// a policy not among those named, where there are more, is not said to be enforced.
#[test]
fn a_cluster_network_policy_beyond_the_named_ones_is_not_known() {
    let mut many = enforcing("2026-01-01T00:09:58Z");
    many["clusterNetworkPolicy"]["notEnforcedCount"] = 25.into();
    let s = status_of(
        &world(),
        "web-admin",
        &[("node-1", Some(many.clone())), ("node-2", Some(many))],
    );
    assert_eq!(s.outcome, Outcome::Unknown);
    assert_eq!(
        s.lines,
        [
            "ClusterNetworkPolicy web-admin (Admin, priority 10)  selects 3 pods on node-1, node-2  unknown whether it is enforced as written on node-1 (prod/web-1), node-2 (prod/web-2, prod/web-3): its Palisade enforcer does not enforce 25 ClusterNetworkPolicies as written and names only 1; enforcer mode auto, last sync 2s ago"
        ]
    );
}
