//! `cargo bench -p palisade-policy`: the full reach matrix (1,000 pods x 200 policies, one port)
//! and all checks on one policy against 10,000 pods.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_policy::checks::{self, CheckConfig, Context};
use palisade_policy::policy::{NamespaceScope, PortMatch, PortSpec};
use palisade_policy::reach::{Matrix, ProbePort};
use palisade_policy::{
    Cluster, ContainerPort, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector,
};

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `namespaces` namespaces of `per_ns` pods each (10 apps per namespace), and 4 policies per
/// namespace: default deny, app-to-app within the namespace, monitoring from another namespace,
/// DNS egress.
fn synthetic(namespaces: usize, per_ns: usize) -> Cluster {
    let mut nss = Vec::new();
    let mut pods = Vec::new();
    let mut policies = Vec::new();
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        nss.push(Namespace::new(
            &ns,
            labels(&[("team", format!("t{}", n % 7))]),
        ));
        for p in 0..per_ns {
            let i = n * per_ns + p;
            let ip = IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
            let mut pod = Pod::running(
                &ns,
                &format!("pod-{p}"),
                labels(&[
                    ("app", format!("app-{}", p % 10)),
                    ("tier", format!("{}", p % 3)),
                ]),
                ip,
            );
            pod.ports.push(ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            });
            pods.push(pod);
        }
        let sel = |k: &str, v: String| Selector::from_labels(&labels(&[(k, v)]));
        let tcp = |port| PortMatch {
            protocol: Protocol::Tcp,
            port: PortSpec::Range(port, port),
        };
        let base = |name: &str, pod_selector, ingress, egress| Policy {
            namespace: ns.clone(),
            name: name.into(),
            labels: Labels::new(),
            annotations: Default::default(),
            pod_selector,
            ingress,
            egress,
        };
        policies.push(base(
            "default-deny",
            Selector::everything(),
            Some(vec![]),
            Some(vec![]),
        ));
        policies.push(base(
            "app-to-app",
            sel("app", format!("app-{}", n % 10)),
            Some(vec![Rule {
                peers: vec![Peer::Pods {
                    namespaces: NamespaceScope::Own,
                    pods: sel("tier", "1".into()),
                }],
                ports: vec![PortMatch {
                    protocol: Protocol::Tcp,
                    port: PortSpec::Named("http".into()),
                }],
            }]),
            None,
        ));
        policies.push(base(
            "monitoring",
            Selector::everything(),
            Some(vec![Rule {
                peers: vec![Peer::Pods {
                    namespaces: NamespaceScope::Matching(sel("team", "t0".into())),
                    pods: sel("app", "app-0".into()),
                }],
                ports: vec![tcp(8080)],
            }]),
            None,
        ));
        policies.push(base(
            "dns",
            Selector::everything(),
            None,
            Some(vec![
                Rule {
                    peers: vec![],
                    ports: vec![PortMatch {
                        protocol: Protocol::Udp,
                        port: PortSpec::Range(53, 53),
                    }],
                },
                Rule {
                    peers: vec![Peer::Pods {
                        namespaces: NamespaceScope::Matching(Selector::everything()),
                        pods: Selector::everything(),
                    }],
                    ports: vec![tcp(8080)],
                },
            ]),
        ));
    }
    Cluster::new(nss, pods, vec![], policies)
}

fn reach_matrix(c: &mut Criterion) {
    let cluster = synthetic(50, 20); // 1,000 pods, 200 policies
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
    group.finish();
}

fn checks_one_policy(c: &mut Criterion) {
    let cluster = synthetic(100, 100); // 10,000 pods
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

criterion_group!(benches, reach_matrix, checks_one_policy);
criterion_main!(benches);
