//! `cargo bench -p palisade-enforcer --bench compile`: compile and render the ruleset of one node
//! of a synthetic cluster of 10,000 pods (100 on the node) and 1,000 policies; then the same
//! cluster dual-stack (every pod also with an IPv6 address): both families' rulesets. Run as
//! root with iptables-nft, ip6tables-nft and ipset installed, it also applies the dual-stack
//! rulesets for real, in a network namespace of its own: a fresh node (every set and chain
//! written) and an unchanged one (read back, nothing to write).

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
