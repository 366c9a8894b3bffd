//! What the enforcer installs on a node, as data: ipsets and Palisade's filter chains. Structured
//! rather than text so it can be interpreted in tests, diffed, and rendered for more than one
//! backend.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_policy::{IpFamily, Protocol};

/// The entry chains; the apply layer jumps to them from position 1 of the built-in chains.
pub const FORWARD_CHAIN: &str = "PALISADE-FORWARD";
pub const INPUT_CHAIN: &str = "PALISADE-INPUT";
pub const OUTPUT_CHAIN: &str = "PALISADE-OUTPUT";
/// With deny action `reject`: where denied packets go to be refused (rate-limited) or dropped.
pub const REJECT_CHAIN: &str = "PALISADE-REJECT";
/// With denial logs: where a ClusterNetworkPolicy Deny rule sends what it matches, to be
/// logged (rate-limited, node-wide) and dropped.
pub const DENIED_CHAIN: &str = "PALISADE-DENIED";
/// The NFLOG prefix of a denied packet starts with this; an audit would-drop's with
/// [`AUDIT_PREFIX`].
pub const DENY_PREFIX: &str = "palisade-deny";
pub const AUDIT_PREFIX: &str = "palisade-audit";
/// The `hash:ip` set of this node's pod IPv4 addresses.
pub const LOCAL_SET: &str = "PALISADE-LOCAL";
/// The `hash:ip` set of this node's pod IPv6 addresses (ipsets of both families share one
/// namespace, so every IPv6 set has a name of its own).
pub const LOCAL_SET6: &str = "PALISADE-LOCAL6";

/// The local pods' set of `family`.
pub fn local_set(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => LOCAL_SET,
        IpFamily::V6 => LOCAL_SET6,
    }
}

/// ICMPv6 neighbour discovery (RFC 4861): router solicitation and advertisement, neighbour
/// solicitation and advertisement, redirect. Conntrack tracks none of them (they are INVALID to
/// it), and without them a node cannot reach its pods: Palisade's IPv6 chains let them through
/// before anything else.
pub const NEIGHBOUR_DISCOVERY: [u8; 5] = [133, 134, 135, 136, 137];
/// Every chain and set Palisade owns starts with this; nothing else may.
pub const NAME_PREFIX: &str = "PAL";

/// The built-in chain each entry chain hangs off.
pub const ENTRY_CHAINS: [(&str, &str); 3] = [
    ("FORWARD", FORWARD_CHAIN),
    ("INPUT", INPUT_CHAIN),
    ("OUTPUT", OUTPUT_CHAIN),
];

/// Whether a chain or set name is Palisade's.
pub fn is_palisade_name(name: &str) -> bool {
    name.starts_with(NAME_PREFIX)
}

/// One IP family's chains (for `iptables` or `ip6tables`) and the sets they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub family: IpFamily,
    pub sets: BTreeMap<String, IpSet>,
    /// Chain name to its rules, in order.
    pub chains: BTreeMap<String, Vec<RuleLine>>,
}

impl Default for Ruleset {
    /// Empty, IPv4.
    fn default() -> Self {
        Self::empty(IpFamily::V4)
    }
}

impl Ruleset {
    pub fn empty(family: IpFamily) -> Self {
        Self {
            family,
            sets: BTreeMap::new(),
            chains: BTreeMap::new(),
        }
    }
}

/// Sizes for metrics and the node status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub chains: usize,
    pub rules: usize,
    pub sets: usize,
    pub set_entries: usize,
}

impl Ruleset {
    pub fn summary(&self) -> Summary {
        Summary {
            chains: self.chains.len(),
            rules: self.chains.values().map(Vec::len).sum(),
            sets: self.sets.len(),
            set_entries: self.sets.values().map(|s| s.entries.len()).sum(),
        }
    }
}

/// The longest chain name iptables accepts.
pub const MAX_CHAIN_NAME: usize = 28;
/// The longest set name ipset accepts, less room for the suffix of a temporary set.
pub const MAX_SET_NAME: usize = 29;

impl Ruleset {
    /// Checks what the kernel would refuse or misread, so a bad ruleset fails here and not
    /// halfway through a restore: name lengths, references to missing chains or sets, entries of
    /// the wrong kind, `/0` in a `hash:net`, one net both matching and `nomatch`, port matches
    /// without a protocol, addresses, sets and answers of the other IP family.
    pub fn validate(&self) -> Result<(), String> {
        let family = self.family;
        for (name, set) in &self.sets {
            if name.len() > MAX_SET_NAME || !is_palisade_name(name) {
                return Err(format!("set name {name:?} too long or not Palisade's"));
            }
            if set.family != family {
                return Err(format!(
                    "set {name} is {}, in an {family} ruleset",
                    set.family
                ));
            }
            for entry in &set.entries {
                if entry.family() != family {
                    return Err(format!("set {name}: {entry:?} is not {family}"));
                }
                let ok = match (set.kind, entry) {
                    (SetKind::HashIp, SetEntry::Ip(_))
                    | (SetKind::HashIpPort, SetEntry::IpPort(..)) => true,
                    (SetKind::HashNet, SetEntry::Net { net, nomatch }) => {
                        net.prefix_len() > 0
                            && *net == net.trunc()
                            && !set.entries.contains(&SetEntry::Net {
                                net: *net,
                                nomatch: !nomatch,
                            })
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!("set {name}: bad entry {entry:?}"));
                }
            }
        }
        for (name, lines) in &self.chains {
            if name.len() > MAX_CHAIN_NAME || !is_palisade_name(name) {
                return Err(format!("chain name {name:?} too long or not Palisade's"));
            }
            for line in lines {
                if let Target::Jump(to) = &line.target
                    && !self.chains.contains_key(to)
                {
                    return Err(format!("chain {name} jumps to missing chain {to}"));
                }
                let has_protocol = line.matches.iter().any(|m| matches!(m, Match::Protocol(_)));
                if let Target::Reject(with) = &line.target
                    && with.family().is_some_and(|f| f != family)
                {
                    return Err(format!("chain {name}: {with:?} in an {family} ruleset"));
                }
                if line.target == Target::Reject(RejectWith::TcpReset)
                    && !line.matches.contains(&Match::Protocol(Protocol::Tcp))
                {
                    return Err(format!(
                        "chain {name}: a TCP reset for packets not only TCP"
                    ));
                }
                for m in &line.matches {
                    match m {
                        Match::Set { name: set, dir, .. } => {
                            let Some(s) = self.sets.get(set) else {
                                return Err(format!("chain {name} uses missing set {set}"));
                            };
                            if (*dir == SetDir::DstIpPort) != (s.kind == SetKind::HashIpPort) {
                                return Err(format!("chain {name} matches set {set} wrongly"));
                            }
                        }
                        Match::DstPorts(lo, hi) if !has_protocol || lo > hi => {
                            return Err(format!("chain {name}: bad port match {lo}:{hi}"));
                        }
                        Match::Src(net) | Match::Dst(net)
                            if IpFamily::of(&net.addr()) != family =>
                        {
                            return Err(format!("chain {name}: {net} in an {family} ruleset"));
                        }
                        Match::Icmpv6Type(_) if family != IpFamily::V6 || has_protocol => {
                            return Err(format!("chain {name}: an ICMPv6 match in {family}"));
                        }
                        Match::TcpNotSyn
                            if !line.matches.contains(&Match::Protocol(Protocol::Tcp)) =>
                        {
                            return Err(format!("chain {name}: a TCP flags match without -p tcp"));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    HashIp,
    HashNet,
    HashIpPort,
}

impl SetKind {
    /// The ipset type name.
    pub fn as_str(self) -> &'static str {
        match self {
            SetKind::HashIp => "hash:ip",
            SetKind::HashNet => "hash:net",
            SetKind::HashIpPort => "hash:ip,port",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    pub kind: SetKind,
    /// `family inet` or `family inet6`: a set holds addresses of one family.
    pub family: IpFamily,
    pub entries: BTreeSet<SetEntry>,
}

impl IpSet {
    pub fn new(kind: SetKind, family: IpFamily) -> Self {
        Self {
            kind,
            family,
            entries: BTreeSet::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetEntry {
    /// A `hash:ip` member.
    Ip(IpAddr),
    /// A `hash:net` member; `nomatch` entries carve holes (the longest matching prefix wins).
    Net { net: IpNet, nomatch: bool },
    /// A `hash:ip,port` member.
    IpPort(IpAddr, Protocol, u16),
}

impl SetEntry {
    pub fn family(&self) -> IpFamily {
        match self {
            SetEntry::Ip(ip) | SetEntry::IpPort(ip, ..) => IpFamily::of(ip),
            SetEntry::Net { net, .. } => IpFamily::of(&net.addr()),
        }
    }
}

/// Which packet fields a set match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetDir {
    /// `src`
    Src,
    /// `dst`
    Dst,
    /// `dst,dst`: destination address and (protocol, destination port), for `hash:ip,port`.
    DstIpPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    Invalid,
    New,
    Established,
    Related,
}

impl CtState {
    pub fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "INVALID",
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    Src(IpNet),
    Dst(IpNet),
    Protocol(Protocol),
    /// An ICMPv6 packet of this type (`-p ipv6-icmp -m icmp6 --icmpv6-type N`); only in IPv6
    /// rulesets, and instead of a [`Match::Protocol`].
    Icmpv6Type(u8),
    Set {
        name: String,
        dir: SetDir,
        negate: bool,
    },
    /// Inclusive destination port range; needs a [`Match::Protocol`] in the same rule.
    DstPorts(u16, u16),
    /// `(packet mark & mask) == value`, or its negation.
    Mark {
        value: u32,
        mask: u32,
        negate: bool,
    },
    /// The connection is in one of these states (rendered in iptables-save's order).
    CtState(Vec<CtState>),
    /// A TCP packet that is not the opening of a handshake (`-m tcp ! --syn`: not SYN alone
    /// among FIN, SYN, RST and ACK); needs `Match::Protocol(Protocol::Tcp)` in the same rule.
    TcpNotSyn,
    /// At most `per_minute` matches a minute after a burst of `burst`.
    Limit {
        per_minute: u32,
        burst: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Jump(String),
    Accept,
    Drop,
    Return,
    /// `mark = (mark & !mask) | value`; does not end the chain.
    SetMark {
        value: u32,
        mask: u32,
    },
    /// Log to netlink group `group` with `prefix`; does not end the chain.
    Nflog {
        group: u16,
        prefix: String,
    },
    /// Refuse: drop and answer the sender. Ends the chain.
    Reject(RejectWith),
    /// No target: the rule only counts the packets that reach it.
    None,
}

/// How a refused packet is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// A TCP reset (the client sees "connection refused"); only for TCP packets.
    TcpReset,
    /// ICMP destination unreachable, "communication administratively prohibited" (IPv4).
    AdminProhibited,
    /// ICMPv6 destination unreachable, "communication with destination administratively
    /// prohibited" (IPv6).
    Icmp6AdmProhibited,
}

impl RejectWith {
    /// The family whose packets this answer is for; `None` for both.
    pub fn family(self) -> Option<IpFamily> {
        match self {
            RejectWith::TcpReset => None,
            RejectWith::AdminProhibited => Some(IpFamily::V4),
            RejectWith::Icmp6AdmProhibited => Some(IpFamily::V6),
        }
    }

    /// The ICMP answer for other protocols in `family`.
    pub fn prohibited(family: IpFamily) -> Self {
        match family {
            IpFamily::V4 => RejectWith::AdminProhibited,
            IpFamily::V6 => RejectWith::Icmp6AdmProhibited,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleLine {
    pub matches: Vec<Match>,
    pub target: Target,
    /// Says which pod, policy and rule the line is for, in `iptables-save`.
    pub comment: Option<String>,
}

impl RuleLine {
    pub fn new(matches: Vec<Match>, target: Target, comment: impl Into<String>) -> Self {
        Self {
            matches,
            target,
            comment: Some(comment.into()),
        }
    }
}

/// FNV-1a 64 over the parts, each followed by a 0xff byte (which no UTF-8 string contains, so
/// `("ab", "c")` and `("a", "bc")` differ). Stable across releases and platforms, unlike
/// `std`'s hasher: names derived from it must not change when the enforcer is upgraded.
pub fn stable_hash<S: AsRef<str>>(parts: &[S]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_ref().as_bytes().iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `PAL-<tag>-<16 hex digits>`: 22 characters, within iptables' 28 for chains and ipset's 31
/// for sets (with room for the `-T` of a temporary set).
pub fn hashed_name<S: AsRef<str>>(tag: char, parts: &[S]) -> String {
    format!("PAL-{tag}-{:016X}", stable_hash(parts))
}

/// A set's name: [`hashed_name`] of its parts, for IPv6 with the family as one more part. The
/// ipsets of both families share one namespace, so the same peers need two names; IPv4 keeps
/// the names of releases before IPv6, so an upgrade renames nothing.
pub fn set_name<S: AsRef<str>>(tag: char, parts: &[S], family: IpFamily) -> String {
    match family {
        IpFamily::V4 => hashed_name(tag, parts),
        IpFamily::V6 => {
            let mut all: Vec<&str> = parts.iter().map(AsRef::as_ref).collect();
            all.push(IpFamily::V6.as_str());
            hashed_name(tag, &all)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_separates_parts() {
        // Pinned: chain and set names on running nodes depend on it.
        assert_eq!(stable_hash::<&str>(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
        let name = hashed_name('I', &["ns", "pod", "ingress"]);
        assert_eq!(name.len(), 22);
        assert_eq!(name, hashed_name('I', &["ns", "pod", "ingress"]));
    }
}
