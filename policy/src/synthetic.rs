//! A synthetic cluster of any size, the same for every benchmark (the reach matrix, the checks,
//! the enforcer's compiler and its scale test), so their figures describe one workload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    cluster_with_ports(namespaces, per_ns, nodes, 1)
}

/// The port app `app` of namespace `n` serves as `http`: 8080 when `ports` is 1, otherwise one of
/// `ports` distinct numbers from 8080 on.
fn http_port(n: usize, app: usize, ports: usize) -> u16 {
    8080 + ((n * 10 + app) % ports.max(1)) as u16
}

/// [`cluster`] where the apps serve `http` on `ports` distinct port numbers (8080, 8081, ...)
/// instead of all on 8080.
pub fn cluster_with_ports(namespaces: usize, per_ns: usize, nodes: usize, ports: usize) -> Cluster {
    build(namespaces, per_ns, nodes, ports, false)
}

/// [`cluster`], dual-stack: every pod also has the IPv6 address `fd00:10:244::<i>` (after its
/// IPv4 one, as `status.podIPs` lists them), and the egress policy also allows `::/0` except
/// `fd00::/8` on 443.
pub fn dual_stack_cluster(namespaces: usize, per_ns: usize, nodes: usize) -> Cluster {
    build(namespaces, per_ns, nodes, 1, true)
}

fn build(namespaces: usize, per_ns: usize, nodes: usize, ports: usize, dual: bool) -> Cluster {
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
            if dual {
                let ip6 = Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, (i >> 16) as u16, i as u16);
                pod = pod.with_second_ip(IpAddr::V6(ip6));
            }
            pod.node = Some(format!("n{}", i % nodes.max(1)));
            pod.ports.push(ContainerPort {
                name: Some("http".into()),
                port: http_port(n, p % 10, ports),
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
        let mut egress = vec![
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
        ];
        if dual {
            egress.push(Rule {
                peers: vec![Peer::IpBlock(IpBlockPeer {
                    cidr: "::/0".parse().expect("cidr"),
                    except: vec!["fd00::/8".parse().expect("cidr")],
                })],
                ports: vec![tcp(443)],
            });
        }
        policies.push(base("egress", Selector::everything(), None, Some(egress)));
    }
    Cluster::new(nss, pods, vec![], policies)
}

/// The world of [`cluster_with_ports`] as the YAML `kubectl get namespaces,pods,networkpolicies
/// -A -o yaml` would give (one document per object), for measuring the CLI on files.
pub fn manifests(namespaces: usize, per_ns: usize, nodes: usize, ports: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        let _ = writeln!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: t{}}}}}\n---",
            n % 7
        );
        for p in 0..per_ns {
            let i = n * per_ns + p;
            let _ = writeln!(
                out,
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: pod-{p}, namespace: {ns}, labels: {{app: app-{}, tier: \"{}\"}}}}\n\
                 spec:\n  nodeName: n{}\n  containers:\n  - name: c\n    image: app\n    ports: [{{name: http, containerPort: {}}}]\n\
                 status: {{phase: Running, podIP: 10.{}.{}.{}}}\n---",
                p % 10,
                p % 3,
                i % nodes.max(1),
                http_port(n, p % 10, ports),
                (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8
            );
        }
        let policy = |name: &str, spec: &str| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
            )
        };
        out.push_str(&policy(
            "default-deny",
            "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
        ));
        out.push_str(&policy(
            "app-to-app",
            &format!(
                "  podSelector: {{matchLabels: {{app: app-{}}}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{tier: \"1\"}}}}}}]\n    ports: [{{port: http}}]\n",
                n % 10
            ),
        ));
        out.push_str(&policy(
            "monitoring",
            "  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: t0}}, podSelector: {matchLabels: {app: app-0}}}]\n    ports: [{port: 8080}]\n",
        ));
        out.push_str(&policy(
            "egress",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{protocol: UDP, port: 53}]\n  - to: [{namespaceSelector: {}, podSelector: {}}]\n    ports: [{port: http}]\n  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]\n    ports: [{port: 443}]\n",
        ));
    }
    out
}

/// `count` ClusterNetworkPolicies over the namespaces of [`cluster`] (their `team=t0`..`t6`
/// labels and `app-N` pods), alternating Admin and Baseline, priorities in steps of 10 that
/// repeat every ten policies (so equal priorities occur, ordered by name). Each has two ingress
/// rules (Accept monitoring from `team=t0` `app-0` pods on TCP 9090; Pass from another team) and
/// four egress rules (Accept DNS to kube-system on UDP 53; Deny the metadata address; Pass to its
/// own team's pods on the named port `http`; Deny `10.<i>.0.0/16` on TCP 1-1024).
pub fn cluster_policies(count: usize) -> Vec<crate::ClusterPolicy> {
    let mut inputs = crate::input::Inputs::default();
    // One definition of the world: the policies are what their manifests read as.
    if inputs
        .add_text("synthetic.yaml", &cluster_policy_manifests(count))
        .is_err()
        || !inputs.problems.is_empty()
    {
        return Vec::new();
    }
    inputs
        .cluster_policies
        .into_iter()
        .map(|s| s.policy)
        .collect()
}

/// The policies of [`cluster_policies`] as manifests, one document each.
pub fn cluster_policy_manifests(count: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for i in 0..count {
        let tier = if i % 2 == 0 { "Admin" } else { "Baseline" };
        let subject = if i % 3 == 0 {
            format!("{{namespaces: {{matchLabels: {{team: t{}}}}}}}", i % 7)
        } else {
            format!(
                "{{pods: {{namespaceSelector: {{matchLabels: {{team: t{}}}}}, podSelector: {{matchLabels: {{app: app-{}}}}}}}}}",
                i % 7,
                i % 10
            )
        };
        let _ = write!(
            out,
            "apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: cnp-{i:03}}}
spec:
  tier: {tier}
  priority: {priority}
  subject: {subject}
  ingress:
  - name: monitoring
    action: Accept
    from: [{{pods: {{namespaceSelector: {{matchLabels: {{team: t0}}}}, podSelector: {{matchLabels: {{app: app-0}}}}}}}}]
    protocols: [{{tcp: {{destinationPort: {{number: 9090}}}}}}]
  - action: Pass
    from: [{{namespaces: {{matchLabels: {{team: t{other}}}}}}}]
  egress:
  - name: dns
    action: Accept
    to: [{{pods: {{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}}}]
    protocols: [{{udp: {{destinationPort: {{number: 53}}}}}}]
  - name: no-metadata
    action: Deny
    to: [{{networks: [169.254.169.254/32]}}]
  - action: Pass
    to: [{{namespaces: {{matchLabels: {{team: t{team}}}}}}}]
    protocols: [{{destinationNamedPort: http}}]
  - action: Deny
    to: [{{networks: [10.{net}.0.0/16]}}]
    protocols: [{{tcp: {{destinationPort: {{range: {{start: 1, end: 1024}}}}}}}}]
---
",
            priority = (i % 10) * 10,
            other = (i + 1) % 7,
            team = i % 7,
            net = i % 256,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_policies_read_without_problems() {
        let policies = cluster_policies(100);
        assert_eq!(policies.len(), 100);
        let c = cluster(10, 10, 1).with_cluster_policies(policies);
        // Equal priorities are ordered by name, Admin first.
        let first: Vec<&str> = c.cluster_policies()[..3]
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(first, ["cnp-000", "cnp-010", "cnp-020"]);
        assert!(
            c.pods()
                .iter()
                .any(|p| c.cluster_selecting(p, crate::Direction::Egress).count() > 0)
        );
    }

    #[test]
    fn the_manifests_are_the_same_world() {
        let mut inputs = crate::input::Inputs::default();
        inputs
            .add_text("synthetic.yaml", &manifests(3, 12, 2, 5))
            .unwrap();
        assert_eq!(inputs.problems, vec![]);
        let read = inputs.cluster();
        let built = cluster_with_ports(3, 12, 2, 5);
        assert_eq!(read.pods(), built.pods());
        assert_eq!(read.policies(), built.policies());
        assert_eq!(
            read.namespaces().collect::<Vec<_>>(),
            built.namespaces().collect::<Vec<_>>()
        );
    }

    /// The dual-stack world is the IPv4 one with an IPv6 address per pod and an IPv6 egress
    /// block: as IPv4 sees it, the pods are the same.
    #[test]
    fn the_dual_stack_world_adds_ipv6() {
        let dual = dual_stack_cluster(3, 12, 2);
        let v4 = cluster(3, 12, 2);
        assert!(dual.pods().iter().all(|p| p.families().count() == 2));
        assert_eq!(
            dual.in_family(crate::IpFamily::V4).pods(),
            v4.in_family(crate::IpFamily::V4).pods()
        );
        let egress = |c: &Cluster| {
            c.policies()
                .iter()
                .find(|p| p.name == "egress")
                .and_then(|p| p.egress.clone())
                .map(|r| r.len())
        };
        assert_eq!((egress(&v4), egress(&dual)), (Some(3), Some(4)));
    }
}
