//! [`Ruleset`] → input for `ipset restore` and `iptables-restore --noflush`, written so that only
//! what changed is touched, and the parsers that read back what a host has.
//!
//! Rule text is produced exactly as `iptables-save` (1.8, nf_tables and legacy) prints it, so a
//! chain can be compared with the host's copy line by line: `-s`/`-d`/`-p` first, then the
//! modules in the rule's order, the comment last, then `-j`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_policy::{IpFamily, Protocol};

use crate::compile::{MAX_COMMENT, truncate};
use crate::ruleset::{
    CtState, IpSet, Match, RejectWith, RuleLine, Ruleset, SetDir, SetEntry, SetKind, Target,
    is_palisade_name,
};

/// Every set is created with these options (after its family), so `create … -exist` never fails
/// on a set made by an earlier sync. `maxelem` is a limit, not an allocation.
const SET_OPTIONS: &str = "hashsize 1024 maxelem 1048576";

/// ipset's name of a family.
fn set_family(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "inet",
        IpFamily::V6 => "inet6",
    }
}
/// The suffix of the name a changed set is built under before it is swapped in.
const TEMP_SUFFIX: &str = "-T";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Chain name → its rules as `iptables-save` prints them (`-A CHAIN …`).
pub type ChainTexts = BTreeMap<String, Vec<String>>;

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// A string argument as `xtables_save_string` prints it: bare when it is only `[A-Za-z0-9_-]`,
/// otherwise double-quoted with `"`, `\` and `'` escaped.
fn save_string(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    out.push(' ');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Comments are for people: printable ASCII without quotes or backslashes (whose escaping
/// `iptables-restore` and `iptables-save` do not agree on), at most what the kernel keeps.
pub fn sanitize_comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    truncate(&clean, MAX_COMMENT)
}

fn ct_order(s: CtState) -> u8 {
    // The order conntrack's save function prints states in.
    match s {
        CtState::Invalid => 0,
        CtState::New => 1,
        CtState::Related => 2,
        CtState::Established => 3,
    }
}

/// A rate as the limit match prints it back: the kernel keeps a period (`60 s × 10000 / n`),
/// which iptables-save shows in the largest unit that divides it (`60/min` is `1/sec`). The
/// same arithmetic as iptables' `print_rate`.
fn limit_rate(per_minute: u32) -> String {
    const SCALE: u32 = 10_000;
    let rates = [
        ("day", SCALE * 24 * 60 * 60),
        ("hour", SCALE * 60 * 60),
        ("min", SCALE * 60),
        ("sec", SCALE),
    ];
    let period = (SCALE * 60) / per_minute.clamp(1, SCALE * 60);
    let mut i = 1;
    while i < rates.len() {
        let mult = rates[i].1;
        if period > mult || mult / period < mult % period {
            break;
        }
        i += 1;
    }
    let (name, mult) = rates[i - 1];
    format!("{}/{name}", mult / period)
}

/// One rule as `iptables-save` prints it.
pub fn render_rule(chain: &str, line: &RuleLine) -> String {
    let mut out = format!("-A {chain}");
    let mut protocol = None;
    for m in &line.matches {
        if let Match::Src(net) = m {
            let _ = write!(out, " -s {net}");
        }
    }
    for m in &line.matches {
        if let Match::Dst(net) = m {
            let _ = write!(out, " -d {net}");
        }
    }
    for m in &line.matches {
        match m {
            Match::Protocol(p) => {
                protocol = Some(*p);
                let _ = write!(out, " -p {}", proto_name(*p));
            }
            Match::Icmpv6Type(_) => out.push_str(" -p ipv6-icmp"),
            _ => {}
        }
    }
    for m in &line.matches {
        match m {
            Match::Src(_) | Match::Dst(_) | Match::Protocol(_) => {}
            Match::Icmpv6Type(t) => {
                let _ = write!(out, " -m icmp6 --icmpv6-type {t}");
            }
            Match::Set { name, dir, negate } => {
                let dir = match dir {
                    SetDir::Src => "src",
                    SetDir::Dst => "dst",
                    SetDir::DstIpPort => "dst,dst",
                };
                let not = if *negate { "! " } else { "" };
                let _ = write!(out, " -m set {not}--match-set {name} {dir}");
            }
            Match::DstPorts(lo, hi) => {
                let module = proto_name(protocol.unwrap_or(Protocol::Tcp));
                if lo == hi {
                    let _ = write!(out, " -m {module} --dport {lo}");
                } else {
                    let _ = write!(out, " -m {module} --dport {lo}:{hi}");
                }
            }
            Match::Mark {
                value,
                mask,
                negate,
            } => {
                let not = if *negate { "! " } else { "" };
                let _ = write!(out, " -m mark {not}--mark {value:#x}/{mask:#x}");
            }
            Match::CtState(states) => {
                let mut states = states.clone();
                states.sort_by_key(|s| ct_order(*s));
                states.dedup();
                let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
                let _ = write!(out, " -m conntrack --ctstate {}", names.join(","));
            }
            // iptables-save prints `! --syn` as the flags it stands for.
            Match::TcpNotSyn => out.push_str(" -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN"),
            Match::Limit { per_minute, burst } => {
                let _ = write!(out, " -m limit --limit {}", limit_rate(*per_minute));
                // 5 is the default, which iptables-save leaves out.
                if *burst != 5 {
                    let _ = write!(out, " --limit-burst {burst}");
                }
            }
        }
    }
    if let Some(comment) = &line.comment {
        out.push_str(" -m comment --comment");
        save_string(&mut out, &sanitize_comment(comment));
    }
    match &line.target {
        Target::Jump(chain) => {
            let _ = write!(out, " -j {chain}");
        }
        Target::Accept => out.push_str(" -j ACCEPT"),
        Target::Drop => out.push_str(" -j DROP"),
        Target::Return => out.push_str(" -j RETURN"),
        Target::SetMark { value, mask } => {
            let _ = write!(out, " -j MARK --set-xmark {value:#x}/{mask:#x}");
        }
        Target::Nflog { group, prefix } => {
            out.push_str(" -j NFLOG");
            if !prefix.is_empty() {
                out.push_str(" --nflog-prefix");
                save_string(&mut out, prefix);
            }
            if *group != 0 {
                let _ = write!(out, " --nflog-group {group}");
            }
        }
        Target::Reject(with) => {
            let with = match with {
                RejectWith::TcpReset => "tcp-reset",
                RejectWith::AdminProhibited => "icmp-admin-prohibited",
                RejectWith::Icmp6AdmProhibited => "icmp6-adm-prohibited",
            };
            let _ = write!(out, " -j REJECT --reject-with {with}");
        }
        Target::None => {}
    }
    out
}

/// Every chain of the ruleset as `iptables-save` would print it: compare with
/// [`parse_iptables_save`] of the host, or with the previous ruleset's.
pub fn render_chains(ruleset: &Ruleset) -> ChainTexts {
    ruleset
        .chains
        .iter()
        .map(|(name, lines)| {
            (
                name.clone(),
                lines.iter().map(|l| render_rule(name, l)).collect(),
            )
        })
        .collect()
}

/// Palisade's chains in `iptables-save -t filter` output: every chain whose name starts with
/// `PAL`, declared ones included even when empty, with its `-A` lines.
pub fn parse_iptables_save(text: &str) -> ChainTexts {
    let mut chains = ChainTexts::new();
    let mut in_filter = false;
    for line in text.lines().map(str::trim_end) {
        if let Some(table) = line.strip_prefix('*') {
            in_filter = table == "filter";
            continue;
        }
        if line == "COMMIT" {
            in_filter = false;
        }
        if !in_filter {
            continue;
        }
        let first_word = |rest: &str| {
            rest.split_whitespace()
                .next()
                .filter(|n| is_palisade_name(n))
                .map(str::to_string)
        };
        if let Some(name) = line.strip_prefix(':').and_then(first_word) {
            chains.entry(name).or_default();
        } else if let Some(name) = line.strip_prefix("-A ").and_then(first_word) {
            chains.entry(name).or_default().push(line.to_string());
        }
    }
    chains
}

/// Input for `iptables-restore --noflush --wait` that makes the host's Palisade chains (`old`,
/// from [`parse_iptables_save`] or [`render_chains`] of the last ruleset) equal to `new`'s:
/// changed and new chains are (re)declared, which flushes them, and refilled; chains Palisade no
/// longer needs are flushed and then deleted, after every rule that jumped to them is gone. One
/// transaction: the kernel switches from old to new at once. `None` when nothing changed.
///
/// The jumps from FORWARD, INPUT and OUTPUT are not in here: the apply layer owns them.
pub fn render_iptables(new: &Ruleset, old: &ChainTexts) -> Option<String> {
    let desired = render_chains(new);
    let changed: Vec<(&String, &Vec<String>)> = desired
        .iter()
        .filter(|(name, lines)| old.get(*name) != Some(*lines))
        .collect();
    let stale: Vec<&String> = old
        .keys()
        .filter(|name| is_palisade_name(name) && !desired.contains_key(*name))
        .collect();
    if changed.is_empty() && stale.is_empty() {
        return None;
    }
    let mut out = String::from("*filter\n");
    for name in changed.iter().map(|(n, _)| *n).chain(stale.iter().copied()) {
        let _ = writeln!(out, ":{name} - [0:0]");
    }
    for (_, lines) in &changed {
        for line in lines.iter() {
            out.push_str(line);
            out.push('\n');
        }
    }
    for name in &stale {
        let _ = writeln!(out, "-X {name}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

fn render_entry(entry: &SetEntry) -> String {
    match entry {
        SetEntry::Ip(ip) => ip.to_string(),
        SetEntry::Net { net, nomatch } => {
            if *nomatch {
                format!("{net} nomatch")
            } else {
                net.to_string()
            }
        }
        SetEntry::IpPort(ip, proto, port) => format!("{ip},{}:{port}", proto_name(*proto)),
    }
}

fn push_set(out: &mut String, name: &str, set: &IpSet) {
    for entry in &set.entries {
        let _ = writeln!(out, "add {name} {}", render_entry(entry));
    }
}

/// Input for `ipset restore` that brings the sets to `new`'s contents. `old` is what exists on
/// the host (the previous ruleset's sets, or [`parse_ipset_save`] of the host); `None` when that
/// is unknown, and then every set is rebuilt.
///
/// A set that did not exist is created and filled. A set that changed (or may exist) is built
/// under a temporary name and swapped in, so rules that use it see the old members or the new
/// ones, never a half-filled set; that also covers IPs that moved from a leaving pod to a new
/// one. Unchanged sets are not mentioned. Run before [`render_iptables`]' output, so new chains
/// find their sets, and [`render_ipset_cleanup`]'s after it.
pub fn render_ipset(new: &Ruleset, old: Option<&BTreeMap<String, IpSet>>) -> String {
    render_sets(&new.sets, old)
}

/// [`render_ipset`] of sets, e.g. those of every family's ruleset at once (ipset is one tool
/// for both families, and set names never clash between them).
pub fn render_sets(new: &BTreeMap<String, IpSet>, old: Option<&BTreeMap<String, IpSet>>) -> String {
    let mut out = String::new();
    for (name, set) in new {
        let kind = format!("{} family {}", set.kind.as_str(), set_family(set.family));
        match old.map(|o| o.get(name)) {
            Some(Some(previous)) if previous == set => {}
            Some(None) => {
                let _ = writeln!(out, "create {name} {kind} {SET_OPTIONS}");
                push_set(&mut out, name, set);
            }
            known => {
                let temp = format!("{name}{TEMP_SUFFIX}");
                if known.is_none() {
                    let _ = writeln!(out, "create {name} {kind} {SET_OPTIONS} -exist");
                }
                // -exist and flush: a temporary set may survive a crash.
                let _ = writeln!(out, "create {temp} {kind} {SET_OPTIONS} -exist");
                let _ = writeln!(out, "flush {temp}");
                push_set(&mut out, &temp, set);
                let _ = writeln!(out, "swap {temp} {name}");
                let _ = writeln!(out, "destroy {temp}");
            }
        }
    }
    out
}

/// Input for `ipset restore` that destroys Palisade's sets `new` does not use, among `existing`
/// (the previous ruleset's set names, or [`parse_ipset_names`] of the host). Run after the
/// iptables transaction: a set still referenced by a rule cannot be destroyed.
pub fn render_ipset_cleanup<'a>(
    new: &Ruleset,
    existing: impl IntoIterator<Item = &'a String>,
) -> String {
    render_sets_cleanup(&new.sets, existing)
}

/// [`render_ipset_cleanup`] of sets, e.g. those of every family's ruleset at once.
pub fn render_sets_cleanup<'a>(
    new: &BTreeMap<String, IpSet>,
    existing: impl IntoIterator<Item = &'a String>,
) -> String {
    let mut out = String::new();
    for name in existing {
        if is_palisade_name(name) && !new.contains_key(name) {
            let _ = writeln!(out, "destroy {name}");
        }
    }
    out
}

/// Palisade's set names in `ipset list -name` output.
pub fn parse_ipset_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|n| is_palisade_name(n))
        .map(str::to_string)
        .collect()
}

/// Palisade's sets in `ipset save` output, to compare with the desired ones.
pub fn parse_ipset_save(text: &str) -> Result<BTreeMap<String, IpSet>, ParseError> {
    let mut sets = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let mut words = line.split_whitespace();
        let (Some(command), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if !is_palisade_name(name) {
            continue;
        }
        match command {
            "create" => {
                let kind = match words.next() {
                    Some("hash:ip") => SetKind::HashIp,
                    Some("hash:net") => SetKind::HashNet,
                    Some("hash:ip,port") => SetKind::HashIpPort,
                    other => return Err(err(format!("set {name}: unexpected type {other:?}"))),
                };
                // `family inet6`; ipset prints it for every hash set (inet when absent).
                let options: Vec<&str> = words.collect();
                let family = match options.windows(2).find(|w| w[0] == "family").map(|w| w[1]) {
                    None | Some("inet") => IpFamily::V4,
                    Some("inet6") => IpFamily::V6,
                    Some(other) => {
                        return Err(err(format!("set {name}: unexpected family {other:?}")));
                    }
                };
                sets.insert(name.to_string(), IpSet::new(kind, family));
            }
            "add" => {
                let Some(set) = sets.get_mut(name) else {
                    return Err(err(format!("add to {name} before its create")));
                };
                let value = words.next().unwrap_or_default();
                let rest: Vec<&str> = words.collect();
                let entry = parse_entry(set.kind, value, rest.contains(&"nomatch"))
                    .ok_or_else(|| err(format!("set {name}: unreadable entry {value:?}")))?;
                set.entries.insert(entry);
            }
            _ => {}
        }
    }
    Ok(sets)
}

fn parse_entry(kind: SetKind, value: &str, nomatch: bool) -> Option<SetEntry> {
    match kind {
        SetKind::HashIp => value.parse().ok().map(SetEntry::Ip),
        SetKind::HashNet => {
            // ipset prints a host net (/32, /128) as the bare address.
            let net = match value.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => IpNet::from(value.parse::<IpAddr>().ok()?),
            };
            Some(SetEntry::Net { net, nomatch })
        }
        SetKind::HashIpPort => {
            let (ip, port) = value.split_once(',')?;
            let (proto, port) = port.split_once(':')?;
            let proto = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => return None,
            };
            Some(SetEntry::IpPort(
                ip.parse().ok()?,
                proto,
                port.parse().ok()?,
            ))
        }
    }
}
