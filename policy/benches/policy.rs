//! `cargo bench -p palisade-policy`: the full reach matrix (1,000 pods x 200 policies, one port;
//! and with 100 ClusterNetworkPolicies too), one tiered evaluation in a cluster of 10,000 pods,
//! 1,000 NetworkPolicies and 100 ClusterNetworkPolicies, and all checks on one policy against
//! 10,000 pods.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_policy::checks::{self, CheckConfig, Context};
use palisade_policy::reach::{Matrix, ProbePort};
use palisade_policy::{Endpoint, Protocol, synthetic};

fn reach_matrix(c: &mut Criterion) {
    let cluster = synthetic::cluster(50, 20, 1); // 1,000 pods, 200 policies
    assert_eq!(
        (cluster.pods().len(), cluster.policies().len()),
        (1000, 200)
    );
    let all: Vec<usize> = (0..cluster.pods().len()).collect();
    let port = vec![ProbePort {
        port: 8080,
        protocol: Protocol::Tcp,
    }];
    let mut group = c.benchmark_group("reach");
    group.sample_size(10);
    group.bench_function("matrix 1000 pods x 200 policies, 1 port", |b| {
        b.iter(|| {
            let m = Matrix::compute(&cluster, all.clone(), all.clone(), port.clone());
            black_box(m.allowed_count())
        })
    });
    let tiered = cluster
        .clone()
        .with_cluster_policies(synthetic::cluster_policies(100));
    group.bench_function(
        "matrix 1000 pods x 200 policies + 100 cluster policies, 1 port",
        |b| {
            b.iter(|| {
                let m = Matrix::compute(&tiered, all.clone(), all.clone(), port.clone());
                black_box(m.allowed_count())
            })
        },
    );
    group.finish();
}

fn evaluate_tiered(c: &mut Criterion) {
    // 10,000 pods, 1,000 NetworkPolicies, 100 ClusterNetworkPolicies.
    let cluster =
        synthetic::cluster(250, 40, 1).with_cluster_policies(synthetic::cluster_policies(100));
    assert_eq!(
        (cluster.pods().len(), cluster.policies().len()),
        (10_000, 1000)
    );
    let plain = synthetic::cluster(250, 40, 1);
    let pods = plain.pods();
    c.bench_function("evaluate one connection, 10000 pods, 1000 policies", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7919) % pods.len();
            let (src, dst) = (&pods[i], &pods[(i * 31 + 1) % pods.len()]);
            black_box(plain.evaluate(
                &Endpoint::Pod(src),
                &Endpoint::Pod(dst),
                8080,
                Protocol::Tcp,
            ))
        })
    });
    let pods = cluster.pods();
    c.bench_function(
        "evaluate one connection, 10000 pods, 1000 policies + 100 cluster policies",
        |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7919) % pods.len();
                let (src, dst) = (&pods[i], &pods[(i * 31 + 1) % pods.len()]);
                black_box(cluster.evaluate(
                    &Endpoint::Pod(src),
                    &Endpoint::Pod(dst),
                    8080,
                    Protocol::Tcp,
                ))
            })
        },
    );
}

fn checks_one_policy(c: &mut Criterion) {
    let cluster = synthetic::cluster(100, 100, 1); // 10,000 pods
    let policy = cluster
        .policies_in("ns-42")
        .find(|p| p.name == "app-to-app")
        .unwrap()
        .clone();
    let ctx = Context {
        cluster: &cluster,
        enforcement: None,
        knows_pods: true,
        knows_namespaces: true,
    };
    let config = CheckConfig::default();
    c.bench_function("all checks, one policy, 10000 pods", |b| {
        b.iter(|| black_box(checks::run(black_box(&policy), &ctx, &config)))
    });
}

criterion_group!(benches, reach_matrix, evaluate_tiered, checks_one_policy);
criterion_main!(benches);
