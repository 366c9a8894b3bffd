//! A small model of netfilter's filter table running a [`Ruleset`]: enough to prove in tests
//! that the compiled rules decide packets as the policy crate does, without a kernel.

use std::net::IpAddr;

use ipnet::IpNet;
use palisade_policy::{IpFamily, Protocol};

use crate::ruleset::{
    CtState, ENTRY_CHAINS, IpSet, Match, Ruleset, SetDir, SetEntry, SetKind, Target,
};

/// The netfilter hook a packet traverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Routed or bridged through the node: pod to pod, pod to outside, outside to pod.
    Forward,
    /// To the node's own addresses.
    Input,
    /// From the node's own processes.
    Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source and destination, of the ruleset's family.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub dport: u16,
    /// An ICMPv6 packet of this type instead (then `protocol` and `dport` do not apply).
    pub icmpv6_type: Option<u8>,
    pub path: Path,
    pub ct_state: CtState,
    /// For TCP: whether the packet opens a handshake (SYN alone among FIN, SYN, RST and ACK).
    /// A NEW packet that does not is one conntrack picked up mid-stream.
    pub tcp_syn: bool,
}

impl Packet {
    /// A packet of `protocol` to port `dport`, in conntrack state NEW: for TCP, a SYN.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: Protocol, dport: u16, path: Path) -> Self {
        Self {
            src,
            dst,
            protocol,
            dport,
            icmpv6_type: None,
            path,
            ct_state: CtState::New,
            tcp_syn: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Drop,
    /// Dropped, and the sender told so (TCP reset or ICMP unreachable).
    Reject,
    /// Let through, after an audit rule logged that it would have been dropped.
    AuditAccept,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpretError {
    #[error("jump to chain {0} that the ruleset does not define")]
    MissingChain(String),
    #[error("match on set {0} that the ruleset does not define")]
    MissingSet(String),
    #[error("chains nest deeper than netfilter allows (a loop?)")]
    TooDeep,
    #[error("a packet from {src} to {dst} does not go through an {family} ruleset")]
    WrongFamily {
        src: IpAddr,
        dst: IpAddr,
        family: IpFamily,
    },
}

enum Flow {
    Continue,
    Accept,
    Drop,
    Reject,
}

struct State<'a> {
    ruleset: &'a Ruleset,
    packet: Packet,
    mark: u32,
    logged: bool,
}

/// What happens to `packet` in the filter table, with Palisade's entry chain jumped to first
/// and the built-in chain's policy ACCEPT (a RETURN from Palisade lets the packet through here).
pub fn run(ruleset: &Ruleset, packet: Packet) -> Result<Outcome, InterpretError> {
    if [packet.src, packet.dst]
        .iter()
        .any(|ip| IpFamily::of(ip) != ruleset.family)
        || (packet.icmpv6_type.is_some() && ruleset.family != IpFamily::V6)
    {
        return Err(InterpretError::WrongFamily {
            src: packet.src,
            dst: packet.dst,
            family: ruleset.family,
        });
    }
    let builtin = match packet.path {
        Path::Forward => "FORWARD",
        Path::Input => "INPUT",
        Path::Output => "OUTPUT",
    };
    let entry = ENTRY_CHAINS
        .iter()
        .find(|(b, _)| *b == builtin)
        .map(|(_, e)| *e)
        .unwrap_or(builtin);
    let mut state = State {
        ruleset,
        packet,
        mark: 0,
        logged: false,
    };
    let flow = state.chain(entry, 0)?;
    Ok(match flow {
        Flow::Drop => Outcome::Drop,
        Flow::Reject => Outcome::Reject,
        Flow::Continue | Flow::Accept if state.logged => Outcome::AuditAccept,
        Flow::Continue | Flow::Accept => Outcome::Accept,
    })
}

impl State<'_> {
    fn chain(&mut self, name: &str, depth: usize) -> Result<Flow, InterpretError> {
        if depth > 32 {
            return Err(InterpretError::TooDeep);
        }
        let lines = self
            .ruleset
            .chains
            .get(name)
            .ok_or_else(|| InterpretError::MissingChain(name.into()))?;
        for line in lines {
            let mut all = true;
            for m in &line.matches {
                if !self.matches(m)? {
                    all = false;
                    break;
                }
            }
            if !all {
                continue;
            }
            match &line.target {
                Target::Accept => return Ok(Flow::Accept),
                Target::Drop => return Ok(Flow::Drop),
                Target::Reject(_) => return Ok(Flow::Reject),
                Target::Return => return Ok(Flow::Continue),
                Target::Jump(next) => match self.chain(next, depth + 1)? {
                    Flow::Continue => {}
                    terminal => return Ok(terminal),
                },
                Target::SetMark { value, mask } => self.mark = (self.mark & !mask) | value,
                Target::Nflog { .. } => self.logged = true,
                Target::None => {}
            }
        }
        Ok(Flow::Continue)
    }

    fn set(&self, name: &str) -> Result<&IpSet, InterpretError> {
        self.ruleset
            .sets
            .get(name)
            .ok_or_else(|| InterpretError::MissingSet(name.into()))
    }

    fn matches(&self, m: &Match) -> Result<bool, InterpretError> {
        let p = &self.packet;
        Ok(match m {
            Match::Src(net) => net.contains(&p.src),
            Match::Dst(net) => net.contains(&p.dst),
            Match::Protocol(proto) => p.icmpv6_type.is_none() && *proto == p.protocol,
            Match::Icmpv6Type(t) => p.icmpv6_type == Some(*t),
            Match::DstPorts(lo, hi) => p.icmpv6_type.is_none() && (*lo..=*hi).contains(&p.dport),
            Match::Set { name, dir, negate } => {
                let set = self.set(name)?;
                let hit = match dir {
                    SetDir::Src => set_contains(set, p.src, None),
                    SetDir::Dst => set_contains(set, p.dst, None),
                    SetDir::DstIpPort => {
                        p.icmpv6_type.is_none()
                            && set_contains(set, p.dst, Some((p.protocol, p.dport)))
                    }
                };
                hit != *negate
            }
            Match::Mark {
                value,
                mask,
                negate,
            } => ((self.mark & mask) == *value) != *negate,
            Match::CtState(states) => states.contains(&p.ct_state),
            Match::TcpNotSyn => {
                p.icmpv6_type.is_none() && p.protocol == Protocol::Tcp && !p.tcp_syn
            }
            // Rate limits are not modelled: the first packets always pass.
            Match::Limit { .. } => true,
        })
    }
}

/// ipset's membership test; for `hash:net`, the longest matching prefix decides, and a
/// `nomatch` entry means no match.
pub fn set_contains(set: &IpSet, ip: IpAddr, port: Option<(Protocol, u16)>) -> bool {
    if IpFamily::of(&ip) != set.family {
        return false;
    }
    match set.kind {
        SetKind::HashIp => set.entries.contains(&SetEntry::Ip(ip)),
        SetKind::HashIpPort => port
            .is_some_and(|(proto, port)| set.entries.contains(&SetEntry::IpPort(ip, proto, port))),
        SetKind::HashNet => {
            let best: Option<(&IpNet, bool)> = set
                .entries
                .iter()
                .filter_map(|e| match e {
                    SetEntry::Net { net, nomatch } if net.contains(&ip) => Some((net, *nomatch)),
                    _ => None,
                })
                .max_by_key(|(net, _)| net.prefix_len());
            best.is_some_and(|(_, nomatch)| !nomatch)
        }
    }
}
