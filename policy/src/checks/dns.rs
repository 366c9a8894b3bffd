//! `egress-dns`: the policy isolates egress and nothing lets the pods reach DNS.

use std::net::{IpAddr, Ipv4Addr};

use super::{Context, Issue, deciding, list_some, name};
use crate::cluster::{Cluster, Endpoint, Outcome, decide, rule_ports_match};
use crate::model::{Pod, Protocol};
use crate::policy::{Direction, Peer, Policy, Rule};
use crate::selector::Labels;

/// The address node-local-dns listens on by default.
const NODE_LOCAL_DNS: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 20, 10));
pub(super) const DNS_NAMESPACE: &str = "kube-system";

pub(crate) const FIX: &str = "\
Fix: allow DNS to the cluster resolver, in this policy or in one that selects the same pods:
  egress:
  - to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
    ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
or label the namespace palisade.dev/baseline=default so Palisade's baseline allows DNS.
If a policy that allows DNS is part of the same change, apply it first: then DNS never breaks.";

/// The resolver pods: the cluster's own kube-dns pods (`true`), or a stand-in with the usual
/// labels (`false`).
fn resolvers(cluster: &Cluster) -> (Vec<Pod>, bool) {
    let real: Vec<Pod> = cluster
        .pods_in(DNS_NAMESPACE)
        .filter(|p| p.labels.get("k8s-app").is_some_and(|v| v == "kube-dns") && p.is_peer())
        .cloned()
        .collect();
    if !real.is_empty() {
        return (real, true);
    }
    // The stand-in needs an address to be a peer; 0.0.0.1 is one no real ipBlock aims at.
    let labels: Labels = [("k8s-app".to_string(), "kube-dns".to_string())].into();
    (
        vec![Pod::running(
            DNS_NAMESPACE,
            "coredns",
            labels,
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1)),
        )],
        false,
    )
}

/// Whether `rule` of a policy in `ns` lets pods reach DNS on `protocol`.
fn rule_allows_dns(
    cluster: &Cluster,
    ns: &str,
    rule: &Rule,
    protocol: Protocol,
    resolvers: &[Pod],
) -> bool {
    let to_resolver = resolvers.iter().any(|r| {
        rule_ports_match(rule, 53, protocol, Some(r))
            && cluster.rule_peers_match(ns, rule, &Endpoint::Pod(r))
    });
    // An ipBlock with port 53 named: a node-local cache or an upstream resolver by address.
    let by_address = !rule.ports.is_empty()
        && rule_ports_match(rule, 53, protocol, None)
        && rule.peers.iter().any(|p| matches!(p, Peer::IpBlock(_)));
    let node_local = rule_ports_match(rule, 53, protocol, None)
        && cluster.rule_peers_match(ns, rule, &Endpoint::External(NODE_LOCAL_DNS));
    to_resolver || by_address || node_local
}

fn dns_outcome(
    cluster: &Cluster,
    policies: &[(usize, &Policy)],
    protocol: Protocol,
    resolvers: &[Pod],
) -> Outcome {
    decide(Direction::Egress, policies.iter().copied(), |_, p, rule| {
        rule_allows_dns(cluster, &p.namespace, rule, protocol, resolvers)
    })
}

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    if !policy.isolates(Direction::Egress) {
        return Ok(Vec::new());
    }
    let cluster = ctx.cluster;
    let (resolvers, real) = resolvers(cluster);
    let selected: Vec<&Pod> = cluster
        .pods_in(&policy.namespace)
        .filter(|p| Cluster::selects(policy, p))
        .collect();

    // Pods known: judge each by all the policies that select it. None known: a stand-in pod with
    // no labels would mislead, so judge the policy with the namespace's policies that select
    // at least the same pods (same selector, or all pods).
    let (lacking_udp, lacking_tcp): (Vec<String>, Vec<String>) = if selected.is_empty() {
        let mut group: Vec<(usize, &Policy)> = cluster
            .policies_in(&policy.namespace)
            .enumerate()
            .filter(|(_, p)| {
                p.id() != policy.id()
                    && p.isolates(Direction::Egress)
                    && (p.pod_selector.is_everything() || p.pod_selector == policy.pod_selector)
            })
            .collect();
        group.push((usize::MAX, policy));
        let who = format!("pods {}", policy.pod_selector);
        // TCP matters only once UDP works: one finding, the true one, with one fix.
        if !dns_outcome(cluster, &group, Protocol::Udp, &resolvers).allows() {
            (vec![who], Vec::new())
        } else if !dns_outcome(cluster, &group, Protocol::Tcp, &resolvers).allows() {
            (Vec::new(), vec![who])
        } else {
            (Vec::new(), Vec::new())
        }
    } else {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for pod in &selected {
            let policies = deciding(cluster, policy, pod, Direction::Egress);
            if !dns_outcome(cluster, &policies, Protocol::Udp, &resolvers).allows() {
                udp.push(pod.key());
            } else if !dns_outcome(cluster, &policies, Protocol::Tcp, &resolvers).allows() {
                tcp.push(pod.key());
            }
        }
        (udp, tcp)
    };

    let resolver_text = if real {
        format!(
            "the cluster DNS pods ({})",
            list_some(&resolvers.iter().map(Pod::key).collect::<Vec<_>>(), 3)
        )
    } else {
        "the cluster DNS (kube-system pods k8s-app=kube-dns)".to_string()
    };
    let mut issues = Vec::new();
    if !lacking_udp.is_empty() {
        let summary = format!(
            "no DNS: {} cannot resolve names; allow UDP+TCP 53 to kube-dns",
            list_some(&short(policy, &lacking_udp), 1)
        );
        let detail = format!(
            "NetworkPolicy {} isolates egress of {} and nothing allows DNS: every name lookup from \
             these pods will time out.\nEvidence: no egress rule of {}, nor of another policy selecting \
             these pods, allows UDP port 53 to {resolver_text} or to a node-local DNS cache.\n{FIX}",
            name(policy),
            list_some(&lacking_udp, 5),
            name(policy),
        );
        issues.push(Issue::new(summary, detail));
    }
    if !lacking_tcp.is_empty() {
        let summary = format!(
            "DNS over TCP blocked for {}: large answers will fail; allow TCP 53 too",
            list_some(&short(policy, &lacking_tcp), 1)
        );
        let detail = format!(
            "NetworkPolicy {}: {} may send DNS over UDP but not over TCP port 53 to {resolver_text}; \
             answers too large for UDP are retried over TCP and will fail.\n{FIX}",
            name(policy),
            list_some(&lacking_tcp, 5),
        );
        issues.push(Issue::warning(summary, detail));
    }
    Ok(issues)
}

/// Pod keys without the policy's own namespace, for a summary that must stay short.
fn short(policy: &Policy, keys: &[String]) -> Vec<String> {
    let own = format!("{}/", policy.namespace);
    keys.iter()
        .map(|k| k.strip_prefix(&own).unwrap_or(k).to_string())
        .collect()
}
