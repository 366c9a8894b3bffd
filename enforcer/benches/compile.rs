//! `cargo bench -p palisade-enforcer --bench compile`: compile and render the ruleset of one node
//! of a synthetic cluster of 10,000 pods (100 on the node) and 1,000 policies; then the same
//! cluster dual-stack (every pod also with an IPv6 address): both families' rulesets. Run as
//! root with iptables-nft, ip6tables-nft and ipset installed, it also applies the dual-stack
//! rulesets for real, in a network namespace of its own: a fresh node (every set and chain
//! written) and an unchanged one (read back, nothing to write).
//!
//! With ClusterNetworkPolicies: the same cluster plus PALISADE_BENCH_CLUSTER_POLICIES (default
//! 100) ClusterNetworkPolicies of the shape [`cluster_policy`] gives (the same objects
//! `enforcer/bench/cluster.py cluster-policies` writes for the scale bench).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::BatchSize;
use criterion::{Criterion, criterion_group, criterion_main};
use palisade_enforcer::apply::{cleanup_families, sync_families};
use palisade_enforcer::backend::Backend;
use palisade_enforcer::compile::{compile_families, compile_family};
use palisade_enforcer::render::{render_ipset, render_iptables};
use palisade_enforcer::{CompileOptions, compile};
use palisade_policy::IpFamily;

/// ClusterNetworkPolicy `i` of the synthetic set, as the API object: 7 in 10 in the Admin
/// tier, priorities that repeat (then names order them), subjects by namespace (team) or by
/// namespace and app; ingress: Deny another team's namespaces one port, Pass an app; egress:
/// Accept an app's `http` named port, Deny two networks (IPv4 and IPv6), Accept a range to
/// 172.16.0.0/12.
pub fn cluster_policy(i: usize) -> serde_json::Value {
    let team = |k: usize| serde_json::json!({"matchLabels": {"team": format!("t{}", k % 7)}});
    let app = |k: usize| serde_json::json!({"matchLabels": {"app": format!("app-{}", k % 10)}});
    let subject = if i.is_multiple_of(2) {
        serde_json::json!({"namespaces": team(i)})
    } else {
        serde_json::json!({"pods": {"namespaceSelector": team(i), "podSelector": app(i)}})
    };
    serde_json::json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": format!("cnp-{i:03}")},
        "spec": {
            "tier": if i % 10 < 7 { "Admin" } else { "Baseline" },
            "priority": (i * 7) % 50,
            "subject": subject,
            "ingress": [
                {"name": "deny-admin-port", "action": "Deny",
                 "from": [{"namespaces": team(i + 1)}],
                 "protocols": [{"tcp": {"destinationPort": {"number": 2000 + i}}}]},
                {"action": "Pass",
                 "from": [{"pods": {"namespaceSelector": {}, "podSelector": app(i + 3)}}]}
            ],
            "egress": [
                {"action": "Accept",
                 "to": [{"pods": {"namespaceSelector": team(i + 2), "podSelector": app(i)}}],
                 "protocols": [{"destinationNamedPort": "http"}]},
                {"action": "Deny",
                 "to": [{"networks": [format!("192.168.{}.0/24", i % 256), format!("fd00:{i:x}::/64")]}]},
                {"action": "Accept", "to": [{"networks": ["172.16.0.0/12"]}],
                 "protocols": [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8999}}}}]}
            ]
        }
    })
}

fn cluster_policies(n: usize) -> Vec<palisade_policy::cluster_policy::ClusterPolicy> {
    (0..n)
        .map(|i| {
            let object: palisade_api::ClusterNetworkPolicy =
                serde_json::from_value(cluster_policy(i)).expect("a ClusterNetworkPolicy");
            palisade_policy::cluster_policy::ClusterPolicy::from_api(&object)
                .expect("a valid ClusterNetworkPolicy")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    // 100 nodes: 100 of the pods on n0.
    let cluster = palisade_policy::synthetic::cluster(250, 40, 100);
    assert_eq!(
        (cluster.pods().len(), cluster.policies().len()),
        (10_000, 1_000)
    );
    let options = CompileOptions::default();
    let ruleset = compile(&cluster, "n0", &options);
    eprintln!("ruleset of n0: {:?}", ruleset.summary());

    let mut group = c.benchmark_group("enforcer");
    group.sample_size(10);
    group.bench_function("compile 10000 pods x 1000 policies, 100 local", |b| {
        b.iter(|| compile(black_box(&cluster), "n0", &options))
    });
    group.bench_function("render full (ipset + iptables)", |b| {
        b.iter(|| {
            let sets = render_ipset(black_box(&ruleset), Some(&BTreeMap::new()));
            let chains = render_iptables(black_box(&ruleset), &BTreeMap::new());
            (sets, chains)
        })
    });
    group.bench_function("render unchanged (diff only)", |b| {
        let old_chains = palisade_enforcer::render::render_chains(&ruleset);
        b.iter(|| {
            let sets = render_ipset(black_box(&ruleset), Some(&ruleset.sets));
            let chains = render_iptables(black_box(&ruleset), &old_chains);
            (sets, chains)
        })
    });
    group.finish();

    let n: usize = std::env::var("PALISADE_BENCH_CLUSTER_POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tiered = cluster.clone().with_cluster_policies(cluster_policies(n));
    let tiered_rules = compile(&tiered, "n0", &options);
    assert_eq!(tiered_rules.validate(), Ok(()));
    eprintln!(
        "ruleset of n0 with {n} ClusterNetworkPolicies: {:?}",
        tiered_rules.summary()
    );
    let mut group = c.benchmark_group("enforcer with ClusterNetworkPolicies");
    group.sample_size(10);
    group.bench_function(
        format!("compile 10000 pods x 1000 policies + {n} cluster policies, 100 local"),
        |b| b.iter(|| compile(black_box(&tiered), "n0", &options)),
    );
    group.bench_function("render full (ipset + iptables), tiered", |b| {
        b.iter(|| {
            let sets = render_ipset(black_box(&tiered_rules), Some(&BTreeMap::new()));
            let chains = render_iptables(black_box(&tiered_rules), &BTreeMap::new());
            (sets, chains)
        })
    });
    group.finish();
    drop(tiered);

    let dual = palisade_policy::synthetic::dual_stack_cluster(250, 40, 100);
    let v6 = compile_family(&dual, "n0", &options, IpFamily::V6);
    eprintln!("IPv6 ruleset of n0 (dual-stack): {:?}", v6.summary());
    let mut group = c.benchmark_group("enforcer dual-stack");
    group.sample_size(10);
    group.bench_function(
        "compile IPv4 + IPv6, 10000 dual-stack pods x 1000 policies",
        |b| b.iter(|| compile_families(black_box(&dual), "n0", &options, &IpFamily::ALL)),
    );
    group.bench_function("compile IPv6 only", |b| {
        b.iter(|| compile_family(black_box(&dual), "n0", &options, IpFamily::V6))
    });
    group.bench_function("render IPv6 full (ipset + ip6tables)", |b| {
        b.iter(|| {
            let sets = render_ipset(black_box(&v6), Some(&BTreeMap::new()));
            let chains = render_iptables(black_box(&v6), &BTreeMap::new());
            (sets, chains)
        })
    });
    group.finish();

    // The kernel side: only as root, in a network namespace of this process's own (ipsets and
    // both families' tables are per namespace), so the machine's rules are never touched.
    // SAFETY: unshare(2) moves this (single) thread into a new network namespace; the tools it
    // spawns inherit it.
    if unsafe { libc::geteuid() } != 0 || unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!("not root, or no network namespace: the apply benchmarks are skipped");
        return;
    }
    let both = compile_families(&dual, "n0", &options, &IpFamily::ALL);
    let mut group = c.benchmark_group("enforcer dual-stack apply (iptables-nft, netns)");
    group.sample_size(10);
    group.bench_function(
        "apply fresh: ipset + iptables-restore + ip6tables-restore",
        |b| {
            b.iter_batched(
                || cleanup_families(Backend::Nft, &IpFamily::ALL).expect("cleanup"),
                |_| sync_families(Backend::Nft, black_box(&both)).expect("sync"),
                BatchSize::PerIteration,
            )
        },
    );
    let tiered_v4 = [tiered_rules];
    group.bench_function(
        "apply fresh: IPv4 with the ClusterNetworkPolicies (ipset + iptables-restore)",
        |b| {
            b.iter_batched(
                || cleanup_families(Backend::Nft, &IpFamily::ALL).expect("cleanup"),
                |_| sync_families(Backend::Nft, black_box(&tiered_v4)).expect("sync"),
                BatchSize::PerIteration,
            )
        },
    );
    cleanup_families(Backend::Nft, &IpFamily::ALL).expect("cleanup");
    sync_families(Backend::Nft, &both).expect("sync");
    group.bench_function(
        "apply unchanged: read both families back, write nothing",
        |b| {
            b.iter(|| {
                let applied = sync_families(Backend::Nft, black_box(&both)).expect("sync");
                assert!(!applied.wrote(), "{applied:?}");
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
