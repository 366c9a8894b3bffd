//! `one-sided`: a rule allows traffic that the other side's policies still block (egress to
//! pods whose ingress does not let it in, or ingress from pods whose egress does not let it out).

use super::{AT, Context, Issue, deciding, distinct_pods, name};
use crate::cluster::{Cluster, Endpoint, decide, rule_ports_match, same_pod};
use crate::model::{Pod, Protocol};
use crate::policy::{Direction, Peer, Policy, PortSpec, Rule};

/// Bounds on the work per rule: representative pods on each side.
const MAX_SELECTED: usize = 16;
const MAX_PEERS: usize = 64;
const MAX_EXAMPLES: usize = 3;

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    if !ctx.knows_pods {
        return Err("no Pods are known, so the other side's policies cannot be looked up".into());
    }
    let cluster = ctx.cluster;
    let selected = distinct_pods(
        cluster
            .pods_in(&policy.namespace)
            .filter(|p| Cluster::selects(policy, p)),
        MAX_SELECTED,
    );
    let mut issues = Vec::new();
    for (direction, r, rule) in policy.all_rules() {
        // A rule open to everyone is not a statement about particular peers.
        if rule.peers.is_empty() || rule.peers.iter().all(|p| matches!(p, Peer::IpBlock(_))) {
            continue;
        }
        let peers = distinct_pods(
            cluster.pods().iter().filter(|p| {
                p.is_target()
                    && cluster.rule_peers_match(&policy.namespace, rule, &Endpoint::Pod(p))
            }),
            MAX_PEERS,
        );
        let mut examples = Vec::new();
        let mut first = None;
        'pairs: for own in &selected {
            for peer in &peers {
                let (src, dst) = match direction {
                    Direction::Egress => (*own, *peer),
                    Direction::Ingress => (*peer, *own),
                };
                if same_pod(src, dst) {
                    continue; // a pod's traffic to its own IP never leaves it: always allowed
                }
                for (port, protocol) in probe_ports(rule, dst) {
                    // The other side: the destination's ingress, or the source's egress.
                    let (other, other_dir) = match direction {
                        Direction::Egress => (dst, Direction::Ingress),
                        Direction::Ingress => (src, Direction::Egress),
                    };
                    let deciding = deciding(cluster, policy, other, other_dir);
                    let names: Vec<String> = deciding.iter().map(|(_, p)| name(p)).collect();
                    let outcome = decide(other_dir, deciding.into_iter(), |_, p, rl| {
                        let far = if other_dir == Direction::Ingress {
                            src
                        } else {
                            dst
                        };
                        rule_ports_match(rl, port, protocol, Some(dst))
                            && cluster.rule_peers_match(&p.namespace, rl, &Endpoint::Pod(far))
                    });
                    if !outcome.allows() {
                        first.get_or_insert_with(|| {
                            let short = |p: &Pod| {
                                if p.namespace == policy.namespace {
                                    p.name.clone()
                                } else {
                                    p.key()
                                }
                            };
                            format!(
                                "{} {other_dir} blocks {} -> {}:{port}/{protocol}",
                                short(other),
                                short(src),
                                short(dst)
                            )
                        });
                        examples.push(format!(
                            "{} -> {} on {port}/{protocol}: {} {other_dir} is isolated by {} and none of its rules allows it",
                            src.key(),
                            dst.key(),
                            other.key(),
                            names.join(", ")
                        ));
                        if examples.len() >= MAX_EXAMPLES {
                            break 'pairs;
                        }
                        break;
                    }
                }
            }
        }
        if examples.is_empty() {
            continue;
        }
        let other_side = match direction {
            Direction::Egress => "the destinations' ingress policies",
            Direction::Ingress => "the sources' egress policies",
        };
        let summary = format!("{AT} is one-sided: {}", first.unwrap_or_default());
        let detail = format!(
            "NetworkPolicy {} {AT} allows connections that {other_side} block, so they \
             will still fail. A connection needs the source's egress AND the destination's ingress.\n\
             Evidence:\n  {}\nFix: add the matching {} rule on the other side, or drop this one if the \
             traffic is not wanted.",
            name(policy),
            examples.join("\n  "),
            if direction == Direction::Egress {
                "ingress"
            } else {
                "egress"
            },
        );
        issues.push(Issue::warning(summary, detail).at(format!("{direction}[{r}]")));
    }
    Ok(issues)
}

/// The ports worth probing for a rule towards `dst`: each port's first number, named ports
/// resolved on `dst`, and for open ports the ones `dst` declares.
fn probe_ports(rule: &Rule, dst: &Pod) -> Vec<(u16, Protocol)> {
    let declared = |protocol: Option<Protocol>| -> Vec<(u16, Protocol)> {
        dst.ports
            .iter()
            .filter(|p| protocol.is_none_or(|x| x == p.protocol))
            .map(|p| (p.port, p.protocol))
            .collect()
    };
    if rule.ports.is_empty() {
        return declared(None);
    }
    rule.ports
        .iter()
        .flat_map(|m| match &m.port {
            PortSpec::Range(lo, _) => vec![(*lo, m.protocol)],
            PortSpec::Named(n) => dst
                .resolve_named_port(n, m.protocol)
                .map(|p| (p, m.protocol))
                .into_iter()
                .collect(),
            PortSpec::Any => declared(Some(m.protocol)),
        })
        .collect()
}
