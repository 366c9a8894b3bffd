//! `cargo bench -p palisade-enforcer --bench compile`: compile and render the ruleset of one node
//! of a synthetic cluster of 10,000 pods (100 on the node) and 1,000 policies.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_enforcer::render::{render_ipset, render_iptables};
use palisade_enforcer::{CompileOptions, compile};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use palisade_policy::{
    Cluster, ContainerPort, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector,
};

const NODES: usize = 100;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `namespaces` namespaces of `per_ns` pods, spread over [`NODES`] nodes, and 4 policies per
/// namespace: default deny both ways, app-to-app on a named port, monitoring from another
/// namespace, DNS and in-cluster egress plus an external range with an exception.
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
            pod.node = Some(format!("n{}", i % NODES));
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
            "egress",
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
                    ports: vec![PortMatch {
                        protocol: Protocol::Tcp,
                        port: PortSpec::Named("http".into()),
                    }],
                },
                Rule {
                    peers: vec![Peer::IpBlock(IpBlockPeer {
                        cidr: "0.0.0.0/0".parse().expect("cidr"),
                        except: vec!["10.0.0.0/8".parse().expect("cidr")],
                    })],
                    ports: vec![tcp(443)],
                },
            ]),
        ));
    }
    Cluster::new(nss, pods, vec![], policies)
}

fn bench(c: &mut Criterion) {
    let cluster = synthetic(250, 40);
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
