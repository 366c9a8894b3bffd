//! `cargo bench -p palisade-enforcer --bench compile`: compile and render the ruleset of one node
//! of a synthetic cluster of 10,000 pods (100 on the node) and 1,000 policies.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_enforcer::render::{render_ipset, render_iptables};
use palisade_enforcer::{CompileOptions, compile};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
