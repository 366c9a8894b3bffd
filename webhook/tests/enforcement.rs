//! The `enforcement` check against real Node objects: flannel nodes with no Palisade enforcer
//! make every NetworkPolicy a policy nobody enforces. (Its own test binary: Nodes are
//! cluster-wide and would refuse the other tests' policies.)

mod common;

use std::time::{Duration, Instant};

use common::{register, start_webhook, text};
use palisade_e2e::{ControlPlane, objects};

/// A Node of flannel's VXLAN backend (its annotation says so), Ready or not.
fn flannel_node(cp: &ControlPlane, name: &str, ready: bool) {
    objects::node_with_readiness(
        cp,
        name,
        &[("flannel.alpha.coreos.com/backend-type", "vxlan")],
        ready,
    )
    .unwrap();
}

#[test]
fn policies_on_flannel_nodes_without_an_enforcer_are_refused_naming_the_nodes() {
    let cp = ControlPlane::shared();
    let Some(cp) = cp.local_for("creates Node objects and runs the webhook on loopback") else {
        return;
    };
    flannel_node(cp, "node-1", true);
    flannel_node(cp, "node-2", true);
    flannel_node(cp, "node-3", false);
    let _ns = cp.test_namespace("shop").unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: c, image: i}]}\n";
    assert!(
        cp.kubectl_stdin(&["apply", "-f", "-"], pod)
            .unwrap()
            .status
            .success()
    );
    let webhook = start_webhook(cp);
    register(cp, webhook.port);

    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\n\
                  spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {}}]}]\n";
    let start = Instant::now();
    let denied = loop {
        let o = cp
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], policy)
            .unwrap();
        if !o.status.success() || start.elapsed() > Duration::from_secs(20) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let out = text(&denied);
    assert!(out.contains("denied the request: Palisade refuses NetworkPolicy shop/web:\n\n[enforcement] NetworkPolicy shop/web would be stored but not enforced: on 2 of 2 ready nodes the CNI ignores NetworkPolicy and no Palisade enforcer is active"), "{out}");
    assert!(out.contains("  node node-1: CNI flannel (does not enforce NetworkPolicy), Palisade enforcer: not active\n  node node-2: CNI flannel"), "{out}");
    assert!(
        !out.contains("node-3"),
        "a node that is not Ready is not counted: {out}"
    );

    // Skipping the check for this one policy lets it through.
    let skipped = policy.replace("metadata: {name: web, namespace: shop}", "metadata: {name: web, namespace: shop, annotations: {palisade.dev/skip-checks: enforcement}}");
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &skipped).unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // Palisade's enforcers report that they enforce, node-2's last an hour ago: it went silent,
    // so node-2 still counts as not enforced, and the refusal says why.
    let report_families =
        |node: &str, last_sync: k8s_openapi::jiff::Timestamp, families: Option<&str>| {
            let mut status = serde_json::json!({
                "cni": "flannel", "cniEnforces": false, "mode": "auto", "enforcing": true,
                "reason": "flannel does not enforce NetworkPolicy",
                "lastSync": last_sync.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            });
            // No `families`: written by an enforcer from before dual-stack support, IPv4 only.
            if let Some(families) = families {
                status["families"] = serde_json::from_str(families).expect("families as JSON");
            }
            objects::node_enforcement(cp, node, &status).unwrap();
        };
    let report = |node: &str, last_sync: k8s_openapi::jiff::Timestamp| {
        report_families(node, last_sync, None)
    };
    let now = k8s_openapi::jiff::Timestamp::now;
    report("node-1", now());
    report(
        "node-2",
        now() - k8s_openapi::jiff::SignedDuration::from_secs(3600),
    );
    let other = policy.replace(
        "{name: web, namespace: shop}",
        "{name: web-2, namespace: shop}",
    );
    let start = Instant::now();
    let out = loop {
        let o = cp
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &other)
            .unwrap();
        let out = text(&o);
        if out.contains("on 1 of 2 ready nodes") || start.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        out.contains("[enforcement] NetworkPolicy shop/web-2 would be stored but not enforced: on 1 of 2 ready nodes")
            && out.contains("  node node-2: CNI flannel (does not enforce NetworkPolicy), Palisade enforcer: silent: its last status is 60m old, older than 90s, so it is not counted as enforcing")
            && !out.contains("node node-1"),
        "{out}"
    );

    // Once node-2's enforcer reports again, the policy is enforced on both ready nodes after
    // all, and admitted.
    report("node-2", now());
    let start = Instant::now();
    loop {
        let o = cp
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &other)
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still refused with enforcers active: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A dual-stack pod on node-1, whose enforcer enforces IPv4 only (no working ip6tables, or
    // an older enforcer that writes no families): its IPv6 traffic is not filtered, so node-1
    // does not count as enforcing, and the refusal names the node, the family and the pod.
    let pod6 = "apiVersion: v1\nkind: Pod\nmetadata: {name: web6, namespace: shop, labels: {app: web}}\nspec: {nodeName: node-1, containers: [{name: c, image: i}]}\n";
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], pod6).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = cp
        .kubectl(&[
            "patch",
            "pod",
            "web6",
            "-n",
            "shop",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"10.244.1.6","podIPs":[{"ip":"10.244.1.6"},{"ip":"fd00:10:244:1::6"}]}}"#,
        ])
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    report_families("node-2", now(), Some(r#"["IPv4","IPv6"]"#));
    let dual = policy.replace(
        "{name: web, namespace: shop}",
        "{name: web-3, namespace: shop}",
    );
    let start = Instant::now();
    let out = loop {
        let o = cp
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &dual)
            .unwrap();
        let out = text(&o);
        if !o.status.success() || start.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        out.contains("[enforcement] NetworkPolicy shop/web-3 would be enforced only in part: on 1 of 2 ready nodes pods have IPv6 addresses and the Palisade enforcer there does not enforce IPv6")
            && out.contains("  node node-1: NOT enforced for IPv6: pods there have IPv6 addresses (shop/web6), and its Palisade enforcer enforces IPv4 only")
            && !out.contains("node node-2"),
        "{out}"
    );
    // node-1's enforcer enforces IPv6 too: admitted.
    report_families("node-1", now(), Some(r#"["IPv4","IPv6"]"#));
    let start = Instant::now();
    loop {
        let o = cp
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &dual)
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still refused with both families enforced: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for node in ["node-1", "node-2"] {
        let _ = cp.kubectl(&["delete", "nodeenforcement", node]);
    }
}
