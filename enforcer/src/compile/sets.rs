//! The ipsets rules match on. Peers are sets named after what they select, never after their
//! members, so a pod coming or going changes members only and NetworkPolicy and
//! ClusterNetworkPolicy rules that select the same pods share one set:
//!
//! - `PAL-S-…` `hash:ip`: the pods a pod-selecting peer names;
//! - `PAL-N-…` `hash:net`: address blocks (an ipBlock with its excepts as `nomatch` entries, or a
//!   ClusterNetworkPolicy's networks);
//! - `PAL-P-…` `hash:ip,port`: egress named ports, resolved on each destination pod.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use palisade_policy::policy::{IpBlockPeer, NamespaceScope};
use palisade_policy::{Endpoint, IpFamily, Peer, Pod, Protocol};

use super::Builder;
use crate::ruleset::{IpSet, SetEntry, SetKind, set_name};

/// A peer as the set that holds it.
pub(super) enum PeerSet<'a> {
    /// Pods a NetworkPolicy peer selects (a ClusterNetworkPolicy's `namespaces` and `pods`
    /// peers are lowered to the NetworkPolicy peer that selects the same pods), `namespace`
    /// being the policy's own.
    Pods { namespace: &'a str, peer: Peer },
    /// Address blocks, in one `hash:net` set named after `key`.
    Nets {
        key: Vec<String>,
        blocks: Vec<IpBlockPeer>,
    },
}

/// One named port of a rule: with its protocol (NetworkPolicy), or whichever protocol the pod's
/// container port of that name has (ClusterNetworkPolicy: a name is unique in its pod).
#[derive(Debug, Clone, Copy)]
pub(super) struct NamedPort<'a> {
    pub name: &'a str,
    pub protocol: Option<Protocol>,
}

impl NamedPort<'_> {
    /// The port as `pod` defines it.
    pub fn resolve(&self, pod: &Pod) -> Option<(Protocol, u16)> {
        match self.protocol {
            Some(p) => Some((p, pod.resolve_named_port(self.name, p)?)),
            None => resolve_named(pod, self.name),
        }
    }

    /// How a resolution shows in a chain's name, so a pod whose port numbers change gets
    /// another chain.
    pub fn resolution(&self, pod: &Pod) -> String {
        match self.protocol {
            Some(p) => format!(
                "{}/{p}={:?};",
                self.name,
                pod.resolve_named_port(self.name, p)
            ),
            None => format!("{}={:?};", self.name, resolve_named(pod, self.name)),
        }
    }
}

/// A named port as the destination pod defines it: (protocol, number). A container port's name
/// is unique in its pod and carries its protocol.
pub fn resolve_named(pod: &Pod, name: &str) -> Option<(Protocol, u16)> {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .find_map(|p| Some((p, pod.resolve_named_port(name, p)?)))
}

/// The egress named ports of one rule: they resolve on the destination, so their set holds
/// (pod, protocol, port) for every pod the rule's peers name that defines one of them.
pub(super) struct NamedPorts<'a> {
    /// The kind of rule, first in what the set is named after ([`named_key`]).
    pub tag: &'static str,
    pub ports: Vec<NamedPort<'a>>,
    /// The live pods with an address of this family that may be the rule's peers (narrowed
    /// cheaply, e.g. by namespace)...
    pub candidates: Box<dyn Fn() -> Vec<&'a Pod> + 'a>,
    /// ... and the exact test, asked only of those that define one of the ports.
    pub peers: Box<dyn Fn(&Pod) -> bool + 'a>,
}

impl Builder<'_> {
    /// The set holding `peer`, made if new; `None` when it can hold nothing of this family (an
    /// address block of the other family matches no packet of this one).
    pub(super) fn peer_set(&mut self, peer: &PeerSet) -> Option<String> {
        match peer {
            PeerSet::Pods { namespace, peer } => {
                let name = set_name('S', &peer_key(namespace, peer), self.family);
                self.pod_set(&name, namespace, peer);
                Some(name)
            }
            PeerSet::Nets { key, blocks } => {
                let name = set_name('N', key, self.family);
                if !self.out.sets.contains_key(&name) {
                    let mut entries: Option<BTreeSet<SetEntry>> = None;
                    for block in blocks {
                        if let Some(more) = ip_block_entries(block, self.family) {
                            entries.get_or_insert_default().extend(more);
                        }
                    }
                    let entries = entries?;
                    let set = IpSet {
                        kind: SetKind::HashNet,
                        family: self.family,
                        entries,
                    };
                    self.out.sets.insert(name.clone(), set);
                }
                Some(name)
            }
        }
    }

    /// A `hash:ip` set of the pods a pod-selecting peer names.
    fn pod_set(&mut self, name: &str, policy_ns: &str, peer: &Peer) {
        if self.out.sets.contains_key(name) {
            return;
        }
        let cluster = self.cluster;
        // Narrow by namespace first (cheap), then ask the policy crate (exact).
        let candidates: Box<dyn Iterator<Item = &Pod>> = match peer {
            Peer::Pods {
                namespaces: NamespaceScope::Matching(sel),
                ..
            } => Box::new(
                cluster
                    .namespaces()
                    .filter(move |n| sel.matches(&n.labels))
                    .flat_map(move |n| cluster.pods_in(&n.name)),
            ),
            _ => Box::new(cluster.pods_in(policy_ns)),
        };
        let family = self.family;
        let entries = candidates
            .filter(|p| cluster.peer_matches(policy_ns, peer, &Endpoint::Pod(p)))
            .filter_map(|p| p.ip_of(family))
            .map(SetEntry::Ip)
            .collect();
        self.out.sets.insert(
            name.to_string(),
            IpSet {
                kind: SetKind::HashIp,
                family,
                entries,
            },
        );
    }

    /// The `hash:ip,port` set of `named` for a rule with `peers` (`None`: any peer), made if
    /// new.
    pub(super) fn named_port_set(
        &mut self,
        named: &NamedPorts,
        peers: Option<&[PeerSet]>,
    ) -> String {
        let name = set_name('P', &named_key(named, peers), self.family);
        if self.out.sets.contains_key(&name) {
            return name;
        }
        let mut set = IpSet::new(SetKind::HashIpPort, self.family);
        for pod in (named.candidates)() {
            let Some(ip) = pod.ip_of(self.family) else {
                continue;
            };
            let ports: Vec<(Protocol, u16)> =
                named.ports.iter().filter_map(|n| n.resolve(pod)).collect();
            if ports.is_empty() || !(named.peers)(pod) {
                continue;
            }
            for (protocol, port) in ports {
                set.entries.insert(SetEntry::IpPort(ip, protocol, port));
            }
        }
        self.out.sets.insert(name.clone(), set);
        name
    }
}

impl PeerSet<'_> {
    /// What the set is named after ([`peer_key`] for pods).
    pub fn key(&self) -> Vec<String> {
        match self {
            PeerSet::Pods { namespace, peer } => peer_key(namespace, peer),
            PeerSet::Nets { key, .. } => key.clone(),
        }
    }
}

/// What an egress named-port set is named after: the rule's kind, the port names and its
/// peers (as their sets are), so rules that say the same in different policies share one set.
fn named_key(named: &NamedPorts, peers: Option<&[PeerSet]>) -> Vec<String> {
    let mut key = vec![named.tag.to_string()];
    key.extend(named.ports.iter().map(|port| match port.protocol {
        Some(protocol) => format!("{protocol}/{}", port.name),
        None => port.name.to_string(),
    }));
    match peers {
        None => key.push("any peer".into()),
        Some(peers) => {
            for peer in peers {
                key.push("peer".into());
                key.extend(peer.key());
            }
        }
    }
    key
}

/// What a peer's set is named after: what it selects, not which policy it is in, so policies
/// that name the same peers share one set (a namespaceSelector peer does not even depend on
/// the policy's namespace). Never the members: a pod coming or going must not rename a set.
pub(super) fn peer_key(policy_ns: &str, peer: &Peer) -> Vec<String> {
    match peer {
        Peer::Pods { namespaces, pods } => {
            let scope = match namespaces {
                NamespaceScope::Own => format!("own {policy_ns}"),
                NamespaceScope::Matching(sel) => format!("namespaces {:?}", sel.requirements()),
            };
            vec!["pods".into(), scope, format!("{:?}", pods.requirements())]
        }
        Peer::IpBlock(block) => {
            let mut key = vec!["block".to_string(), block.cidr.to_string()];
            key.extend(block.except.iter().map(ToString::to_string));
            key
        }
    }
}

/// The `hash:net` entries that match exactly the addresses of `family` an ipBlock contains, or
/// `None` for a block of the other family (it matches no packet of this one). One set per block:
/// excepts of overlapping blocks in one set would punch holes into each other under
/// longest-prefix matching.
pub fn ip_block_entries(
    block: &IpBlockPeer,
    family: IpFamily,
) -> Option<std::collections::BTreeSet<SetEntry>> {
    let cidr = block.cidr.trunc();
    if IpFamily::of(&cidr.addr()) != family {
        return None;
    }
    // hash:net cannot hold a /0: two halves instead.
    let mut matching: BTreeMap<IpNet, bool> = if cidr.prefix_len() == 0 {
        cidr.subnets(1)
            .map(|s| s.map(|n| (n, true)).collect())
            .unwrap_or_default()
    } else {
        [(cidr, true)].into()
    };
    for except in &block.except {
        // An except of the other family is outside the block (the API refuses it anyway).
        if IpFamily::of(&except.addr()) != family {
            continue;
        }
        let except = except.trunc();
        if except.prefix_len() == 0 {
            return Some(Default::default());
        }
        // An except equal to a matching entry cancels it (one element cannot be both).
        match matching.get(&except) {
            Some(true) => {
                matching.remove(&except);
            }
            _ => {
                matching.insert(except, false);
            }
        }
    }
    Some(
        matching
            .into_iter()
            .map(|(net, matches)| SetEntry::Net {
                net,
                nomatch: !matches,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_blocks_become_exact_hash_net_entries() {
        let block = |cidr: &str, except: &[&str]| IpBlockPeer {
            cidr: cidr.parse().expect("cidr"),
            except: except.iter().map(|e| e.parse().expect("cidr")).collect(),
        };
        let entries = |b: &IpBlockPeer| -> Vec<String> {
            ip_block_entries(b, IpFamily::of(&b.cidr.addr()))
                .into_iter()
                .flatten()
                .map(|e| match e {
                    SetEntry::Net { net, nomatch } => {
                        format!("{net}{}", if nomatch { " nomatch" } else { "" })
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            entries(&block("10.0.0.0/8", &["10.0.0.0/8"])),
            Vec::<String>::new()
        );
        assert_eq!(
            entries(&block("0.0.0.0/0", &["0.0.0.0/1", "10.0.0.0/8"])),
            ["10.0.0.0/8 nomatch", "128.0.0.0/1"]
        );
        assert_eq!(
            entries(&block("0.0.0.0/0", &["0.0.0.0/0"])),
            Vec::<String>::new()
        );
        assert_eq!(
            ip_block_entries(&block("fd00::/64", &[]), IpFamily::V4),
            None
        );
        assert_eq!(
            ip_block_entries(&block("10.0.0.0/8", &[]), IpFamily::V6),
            None
        );
        assert_eq!(
            entries(&block("::/0", &["fd00::/48", "fd00:0:0:1::/64"])),
            [
                "::/1",
                "8000::/1",
                "fd00::/48 nomatch",
                "fd00:0:0:1::/64 nomatch"
            ]
        );
        assert_eq!(
            entries(&block("fd00::/64", &["fd00::/64"])),
            Vec::<String>::new()
        );
    }
}
