//! Benchmark, not a test (ignored; `e2e/bench-start-latency.sh` runs it): the start latency
//! Palisade adds to pods of a namespace without any policy, on an idle real-node cluster. Pods
//! are created one at a time (each once the previous one runs), alternating between the two
//! nodes, first with the chart's defaults (first-packet isolation on) and then, after `helm
//! uninstall`, without Palisade. Prints creation-to-Running p50/p99 of each, for BENCHMARKS.md.
//!
//! Skipped, with one line naming what is missing, where this machine cannot run real nodes.

use std::time::Duration;

use palisade_e2e::ControlPlane;
use palisade_e2e::chart::{self, NAMESPACE, RELEASE};
use palisade_e2e::pod_starts::{StartWatch, percentile};
use palisade_e2e::real_nodes::{self, BUSYBOX_IMAGE, NODES, RealCluster};

const NS: &str = "bench";
const CONFLIST: &str = "/etc/cni/net.d/10-bridge.conflist";

/// How many pods each run starts (`PALISADE_BENCH_PODS`, default 40).
fn pods() -> usize {
    std::env::var("PALISADE_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{app: bench}}}}\n\
         spec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  automountServiceAccountToken: false\n\
         \x20 containers:\n  - name: main\n    image: {BUSYBOX_IMAGE}\n    imagePullPolicy: Never\n\
         \x20   command: [sleep, \"3600\"]\n"
    )
}

/// A fresh `bench` namespace (the previous run's deleted first), with its ServiceAccount.
fn fresh_namespace(cp: &ControlPlane) {
    let _ = cp.kubectl(&["delete", "namespace", NS, "--wait=true", "--timeout=120s"]);
    cp.kubectl_must(&["create", "namespace", NS]);
    let start = std::time::Instant::now();
    while cp
        .kubectl_ok(&["get", "serviceaccount", "default", "-n", NS])
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no ServiceAccount in {NS}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `n` pods one after another and returns creation-to-Running of each, sorted (ms).
fn starts(cp: &ControlPlane, what: &str, n: usize) -> Vec<u128> {
    fresh_namespace(cp);
    let watch = StartWatch::start(cp, NS).expect("kubectl get pods -w");
    for i in 0..n {
        let name = format!("{what}-{i}");
        cp.apply(&pod_yaml(&name, NODES[i % NODES.len()]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if !watch.wait_running(&name, Duration::from_secs(60)) {
            let events = cp.kubectl_must(&[
                "get",
                "events",
                "-n",
                NS,
                "--field-selector",
                &format!("involvedObject.name={name}"),
                "-o",
                "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
            ]);
            panic!("{name} did not run within 60 s; its events:\n{events}");
        }
    }
    let took = watch.stop();
    eprintln!(
        "{what}: creation to Running p50 {} ms, p99 {} ms, min {} ms, max {} ms ({} pods, one at a time)",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.first().copied().unwrap_or(0),
        took.last().copied().unwrap_or(0),
        took.len()
    );
    let _ = cp.kubectl(&["delete", "namespace", NS, "--wait=true", "--timeout=120s"]);
    took
}

/// Waits until no node's CNI configuration names the plugin: the enforcers take it out as
/// they end, after `helm uninstall` returned, and until then new pods would still call it.
fn plugin_gone(cluster: &RealCluster) {
    let start = std::time::Instant::now();
    for node in cluster.nodes() {
        loop {
            let conflist = node
                .command("cat")
                .arg(CONFLIST)
                .output()
                .expect("cat on the node");
            let text = String::from_utf8_lossy(&conflist.stdout);
            if conflist.status.success() && !text.contains("palisade-cni") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{}: the plugin still configured 90 s after helm uninstall:\n{text}",
                node.name
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    eprintln!(
        "the plugin was out of both nodes' CNI configuration {} ms after helm uninstall returned",
        start.elapsed().as_millis()
    );
}

#[test]
#[ignore = "a benchmark: run it with e2e/bench-start-latency.sh"]
fn start_latency_of_pods_without_policy_on_idle_nodes() {
    let Some(cluster) = real_nodes::cluster_for_tests() else {
        return;
    };
    let cp = &cluster.cp;
    let n = pods();
    chart::helm_ok(
        cp,
        &[
            "install",
            RELEASE,
            chart::CHART_DIR,
            "-n",
            NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "3m",
        ],
    )
    .unwrap_or_else(|e| panic!("helm install: {e}"));
    chart::wait_for_enforcer_rollout(cp);
    let with = starts(cp, "with-palisade", n);
    chart::helm_ok(
        cp,
        &[
            "uninstall",
            RELEASE,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "2m",
        ],
    )
    .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
    plugin_gone(&cluster);
    let without = starts(cp, "without-palisade", n);
    eprintln!(
        "added by Palisade (first-packet isolation on, no policy in the namespace): p50 {} ms, p99 {} ms",
        percentile(&with, 0.5) as i128 - percentile(&without, 0.5) as i128,
        percentile(&with, 0.99) as i128 - percentile(&without, 0.99) as i128
    );
}
