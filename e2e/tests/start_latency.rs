//! Benchmark, not a test (ignored; `e2e/bench-start-latency.sh` runs it): the start latency
//! Palisade adds to pods of a namespace without any policy, on an idle real-node cluster. Pods
//! are created one at a time (each once the previous one runs), alternating between the two
//! nodes, first with the chart's defaults (first-packet isolation on) and then, after `helm
//! uninstall`, without Palisade. Prints creation-to-Running p50/p99 of each, for BENCHMARKS.md.
//!
//! Skipped, with one line naming what is missing, where this machine cannot run real nodes.

use std::time::Duration;

use palisade_e2e::ControlPlane;
use palisade_e2e::chart;
use palisade_e2e::pod_starts::{StartWatch, percentile};
use palisade_e2e::real_nodes::{self, NODES, RealCluster};
use palisade_e2e::real_pods::{busybox_pod, create_namespaces, node_file};

const NS: &str = "bench";
const CONFLIST: &str = "/etc/cni/net.d/10-bridge.conflist";

/// How many pods each run starts (`PALISADE_BENCH_PODS`, default 40).
fn pods() -> usize {
    std::env::var("PALISADE_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// A fresh `bench` namespace (the previous run's deleted first), with its ServiceAccount.
fn fresh_namespace(cp: &ControlPlane) {
    let _ = cp.kubectl(&["delete", "namespace", NS, "--wait=true", "--timeout=120s"]);
    create_namespaces(cp, &[NS]);
}

/// Starts `n` pods one after another and returns creation-to-Running of each, sorted (ms).
fn starts(cp: &ControlPlane, what: &str, n: usize) -> Vec<u128> {
    fresh_namespace(cp);
    let watch = StartWatch::start(cp, NS).expect("kubectl get pods -w");
    for i in 0..n {
        let name = format!("{what}-{i}");
        cp.apply(&busybox_pod(
            NS,
            &name,
            NODES[i % NODES.len()],
            "{app: bench}",
            "[]",
            "exec sleep 3600",
        ))
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
            let conflist = node_file(node, CONFLIST);
            if conflist
                .as_ref()
                .is_some_and(|text| !text.contains("palisade-cni"))
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{}: the plugin still configured 90 s after helm uninstall:\n{conflist:?}",
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
    chart::install_release(cp, &[]);
    let with = starts(cp, "with-palisade", n);
    chart::uninstall_release(cp);
    plugin_gone(&cluster);
    let without = starts(cp, "without-palisade", n);
    eprintln!(
        "added by Palisade (first-packet isolation on, no policy in the namespace): p50 {} ms, p99 {} ms",
        percentile(&with, 0.5) as i128 - percentile(&without, 0.5) as i128,
        percentile(&with, 0.99) as i128 - percentile(&without, 0.99) as i128
    );
}
