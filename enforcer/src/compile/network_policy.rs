//! NetworkPolicy in a pod's chain: for every rule of every policy isolating the pod, a jump to
//! the rule's `PAL-R-…` chain and a RETURN if it set the mark; at the end the verdict (the deny
//! action, or in audit a count and a log line). A rule is lowered here to the [`RuleChain`] the
//! one emitter writes.

use palisade_policy::policy::PortSpec;
use palisade_policy::{Direction, Endpoint, Peer, Pod, Policy, Rule};

use super::chains::{Ports, RuleChain, pod_chain_name, start_unmarked};
use super::sets::{NamedPort, NamedPorts, PeerSet, peer_key};
use super::{Builder, DenyAction, finished, is_audit, nflog_prefix};
use crate::ruleset::{
    AUDIT_PREFIX, CtState, DENY_PREFIX, Match, REJECT_CHAIN, RuleLine, Target, hashed_name,
};

impl<'a> Builder<'a> {
    /// The chain that decides `direction` for `pod`, which `isolating` (not empty) isolate.
    pub(super) fn pod_chain(
        &mut self,
        pod: &Pod,
        direction: Direction,
        isolating: &[&'a Policy],
    ) -> String {
        let name = pod_chain_name(pod, direction);
        let subject = format!("{} {direction}", pod.key());
        let mark = self.options.mark;
        let mut lines = self.policy_lines(pod, direction, isolating);
        if !lines.is_empty() {
            // Egress and ingress of one packet are separate checks: start each unmarked.
            lines.insert(0, start_unmarked(&subject, mark));
        }
        lines.extend(self.verdict_lines(&subject, isolating));
        self.out.chains.insert(name.clone(), lines);
        name
    }

    /// For every rule of every isolating policy: a jump to its rule chain and a RETURN if that
    /// set the mark (the rule allows).
    pub(super) fn policy_lines(
        &mut self,
        pod: &Pod,
        direction: Direction,
        isolating: &[&'a Policy],
    ) -> Vec<RuleLine> {
        let mark = self.options.mark;
        let mut lines = Vec::new();
        for policy in isolating {
            for (index, rule) in policy
                .rules(direction)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let what = rule_label(policy, direction, index);
                let lowered = self.lower(policy, direction, index, rule, pod);
                if let Some(chain) = self.rule_chain(lowered) {
                    lines.push(RuleLine::new(vec![], Target::Jump(chain), what.clone()));
                    lines.push(RuleLine::new(
                        vec![Match::Mark {
                            value: mark,
                            mask: mark,
                            negate: false,
                        }],
                        Target::Return,
                        format!("{what} allows"),
                    ));
                }
            }
        }
        lines
    }

    /// The end of a pod's NetworkPolicy part, reached when no rule allowed: the deny action, or
    /// with only audit policies isolating, a count and a log line (no verdict).
    pub(super) fn verdict_lines(&self, subject: &str, isolating: &[&'a Policy]) -> Vec<RuleLine> {
        let mut lines = Vec::new();
        if isolating.iter().any(|p| !is_audit(self.cluster, p)) {
            let deny = match self.options.deny_action {
                DenyAction::Drop => Target::Drop,
                DenyAction::Reject => Target::Jump(REJECT_CHAIN.into()),
            };
            if self.options.log_denials {
                lines.push(self.deny_log(subject));
            }
            lines.push(RuleLine::new(
                vec![],
                deny,
                format!("{subject}: no rule allows"),
            ));
        } else {
            // Only audit policies isolate: count and log what would be dropped, let it pass.
            let names: Vec<&str> = isolating.iter().map(|p| p.name.as_str()).collect();
            let names = names.join(",");
            lines.push(RuleLine::new(
                vec![],
                Target::None,
                format!("{subject}: audit, would drop (isolated by {names})"),
            ));
            lines.push(RuleLine::new(
                vec![Match::Limit {
                    per_minute: self.options.audit_logs_per_minute,
                    burst: self.options.audit_log_burst,
                }],
                Target::Nflog {
                    group: self.options.nflog_group,
                    prefix: nflog_prefix(&format!("{AUDIT_PREFIX} {subject} {names}")),
                },
                format!("{subject}: audit log"),
            ));
        }
        lines
    }

    /// The first packet of a connection attempt `subject` (`ns/pod direction`) denies, to the
    /// NFLOG group within the denial log rate (the packet goes on to its verdict).
    fn deny_log(&self, subject: &str) -> RuleLine {
        RuleLine::new(
            vec![
                Match::CtState(vec![CtState::New]),
                Match::Limit {
                    per_minute: self.options.deny_logs_per_minute,
                    burst: self.options.deny_log_burst,
                },
            ],
            Target::Nflog {
                group: self.options.nflog_group,
                prefix: nflog_prefix(&format!("{DENY_PREFIX} {subject}")),
            },
            format!("{subject}: denial log"),
        )
    }

    /// `rule` of `policy` as it applies to `pod` (ingress named ports resolve on it).
    fn lower(
        &self,
        policy: &'a Policy,
        direction: Direction,
        index: usize,
        rule: &'a Rule,
        pod: &Pod,
    ) -> RuleChain<'a> {
        let mut ports = if rule.ports.is_empty() {
            Ports::any()
        } else {
            Ports::default()
        };
        for m in &rule.ports {
            match &m.port {
                PortSpec::Any => ports.add(vec![Match::Protocol(m.protocol)]),
                PortSpec::Range(lo, hi) => {
                    ports.add(vec![Match::Protocol(m.protocol), Match::DstPorts(*lo, *hi)]);
                }
                PortSpec::Named(name) => {
                    let port = NamedPort {
                        name,
                        protocol: Some(m.protocol),
                    };
                    ports.add_named(port, direction, pod);
                }
            }
        }
        let idx = index.to_string();
        let name = hashed_name(
            'R',
            &[
                policy.namespace.as_str(),
                policy.name.as_str(),
                direction.as_str(),
                idx.as_str(),
                ports.resolution.as_str(),
            ],
        );
        let peers = (!rule.peers.is_empty()).then(|| {
            rule.peers
                .iter()
                .map(|peer| match peer {
                    Peer::Pods { .. } => PeerSet::Pods {
                        namespace: &policy.namespace,
                        peer: peer.clone(),
                    },
                    Peer::IpBlock(block) => PeerSet::Nets {
                        key: peer_key(&policy.namespace, peer),
                        blocks: vec![block.clone()],
                    },
                })
                .collect()
        });
        // Egress named ports resolve on every live pod (hostNetwork pods included: at packet
        // level a pod is its IP) that the rule's peers name as this family's packets see it
        // (an ipBlock peer holds its address of this family or does not match).
        let (cluster, family) = (self.cluster, self.family);
        let named = (!ports.named.is_empty()).then(|| NamedPorts {
            tag: "named",
            ports: ports.named,
            candidates: Box::new(move || cluster.pods().iter().filter(|p| !finished(p)).collect()),
            peers: Box::new(move |pod| {
                let seen = pod.in_family(family);
                cluster.rule_peers_match(&policy.namespace, rule, &Endpoint::Pod(&seen))
            }),
        });
        RuleChain {
            name,
            comment: rule_label(policy, direction, index),
            direction,
            peers,
            ports: ports.alternatives,
            named,
            target: self.allow(),
        }
    }
}

/// `ns/policy ingress[0]`: how rule lines name their rule.
fn rule_label(policy: &Policy, direction: Direction, index: usize) -> String {
    format!("{}/{} {direction}[{index}]", policy.namespace, policy.name)
}
