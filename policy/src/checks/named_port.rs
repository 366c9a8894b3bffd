//! `named-port`: a rule names a port that no pod it applies to declares.

use super::{AT, Context, Issue, name};
use crate::cluster::{Cluster, Endpoint};
use crate::model::ContainerPort;
use crate::policy::{Direction, NamespaceScope, Peer, Policy, PortSpec, Rule};

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    if !ctx.knows_pods {
        return Err("no Pods or workloads are known, so port names cannot be looked up".into());
    }
    let cluster = ctx.cluster;
    let mut issues = Vec::new();
    for (direction, r, rule) in policy.all_rules() {
        let named: Vec<_> = rule
            .ports
            .iter()
            .filter_map(|m| match &m.port {
                PortSpec::Named(n) => Some((n, m.protocol)),
                _ => None,
            })
            .collect();
        if named.is_empty() {
            continue;
        }
        // Named ports resolve on the destination: the policy's pods for ingress, the peers for egress.
        let declared = destination_ports(cluster, policy, direction, rule);
        if declared.is_empty() {
            continue; // no destination pod known: unmatched-selector speaks about that
        }
        for (port, protocol) in named {
            if declared
                .iter()
                .any(|p| p.name.as_deref() == Some(port.as_str()) && p.protocol == protocol)
            {
                continue;
            }
            let mut names: Vec<String> = declared
                .iter()
                .filter_map(|p| {
                    p.name
                        .as_ref()
                        .map(|n| format!("{n} ({}/{})", p.port, p.protocol))
                })
                .collect();
            names.sort();
            names.dedup();
            let whose = match direction {
                Direction::Ingress => "the selected pods",
                Direction::Egress => "the destination pods",
            };
            let summary =
                format!("{AT}: port name {port}/{protocol} is declared by none of {whose}");
            let detail = format!(
                "NetworkPolicy {} {AT} allows port {port:?}/{protocol}, but none of {whose} \
                 declares a container port with that name and protocol, so the rule allows nothing on \
                 it.\nEvidence: the ports they declare are {}.\nFix: use the port number, or a name from \
                 the containers' `ports` list.",
                name(policy),
                if names.is_empty() {
                    "unnamed".to_string()
                } else {
                    names.join(", ")
                },
            );
            issues.push(Issue::warning(summary, detail).at(format!("{direction}[{r}]")));
        }
    }
    Ok(issues)
}

/// The container ports of the pods (and workload templates) a rule's traffic goes to.
fn destination_ports(
    cluster: &Cluster,
    policy: &Policy,
    direction: Direction,
    rule: &Rule,
) -> Vec<ContainerPort> {
    let mut out = Vec::new();
    match direction {
        Direction::Ingress => {
            for p in cluster
                .pods_in(&policy.namespace)
                .filter(|p| Cluster::selects(policy, p))
            {
                out.extend(p.ports.iter().cloned());
            }
            for w in cluster
                .workloads_in(&policy.namespace)
                .filter(|w| policy.pod_selector.matches(&w.template_labels))
            {
                out.extend(w.ports.iter().cloned());
            }
        }
        Direction::Egress => {
            for p in cluster
                .pods()
                .iter()
                .filter(|p| cluster.rule_peers_match(&policy.namespace, rule, &Endpoint::Pod(p)))
            {
                out.extend(p.ports.iter().cloned());
            }
            for w in cluster.workloads() {
                let named = rule.peers.is_empty()
                    || rule.peers.iter().any(|peer| match peer {
                        Peer::Pods { namespaces, pods } => {
                            pods.matches(&w.template_labels)
                                && match namespaces {
                                    NamespaceScope::Own => w.namespace == policy.namespace,
                                    NamespaceScope::Matching(s) => {
                                        s.matches(&cluster.namespace_labels(&w.namespace))
                                    }
                                }
                        }
                        Peer::IpBlock(_) => false,
                    });
                if named {
                    out.extend(w.ports.iter().cloned());
                }
            }
        }
    }
    out
}
