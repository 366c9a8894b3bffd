//! A synthetic cluster of any size, the same for every benchmark (the reach matrix, the checks,
//! the enforcer's compiler and its scale test), so their figures describe one workload.

use std::net::{IpAddr, Ipv4Addr};

use crate::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use crate::{
    Cluster, ContainerPort, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector,
};

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `namespaces` namespaces of `per_ns` pods (10 apps, 3 tiers, a container port named `http`),
/// spread over `nodes` nodes named `n0`, `n1`, ..., and 4 policies per namespace: default deny
/// both ways, app-to-app on the named port, monitoring from `team=t0` namespaces' `app-0` pods
/// on 8080, and egress to DNS, to in-cluster `http`, and to `0.0.0.0/0` except `10.0.0.0/8`
/// on 443.
pub fn cluster(namespaces: usize, per_ns: usize, nodes: usize) -> Cluster {
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
            pod.node = Some(format!("n{}", i % nodes.max(1)));
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
            implicit_types: false,
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
