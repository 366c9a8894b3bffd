//! Cutting connections a tightened policy now denies.
//!
//! Palisade's chains accept `ESTABLISHED,RELATED` before any policy, so without this a
//! connection opened while it was allowed would keep passing packets after a change denies it.
//! After rules that changed are in the kernel, the node's conntrack table is read, each
//! connection that involves a local pod is judged again with the one semantics (the side this
//! node enforces: the local source's egress, the local destination's ingress), and exactly the
//! entries of the connections now denied are deleted. Their next packet finds no entry, is NEW
//! to conntrack (TCP with `nf_conntrack_tcp_loose`, the default, picks up mid-stream), and the
//! new rules judge it: a denied one is dropped (or rejected) by the pod's chain.
//!
//! Entries exist only for connections whose first packet was accepted, so a connection denied
//! now was allowed when it started: the deleted entries are the connections whose verdict
//! changed. Connections still allowed are not touched; audit-mode policies cut nothing (they
//! deny nothing).
//!
//! [`parse`] and [`to_cut`] are pure; [`cut`] works in the node's network namespace: one
//! `conntrack -L` (conntrack-tools) per IP family, then each deletion by its exact tuple over
//! ctnetlink ([`crate::ctnetlink`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use palisade_policy::{Cluster, Endpoint, IpFamily, Pod, Protocol};

use crate::compile::local_pods_of;

/// One conntrack entry, as far as policy cares: the original tuple, and where the reply comes
/// from (after DNAT: a Service's backend pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub protocol: Protocol,
    /// The original direction: who opened the connection, to which address and port.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The reply direction's source and source port: the destination the packets really reach
    /// (the pod behind a Service IP), which is what the FORWARD rules see after DNAT.
    pub reply_src: IpAddr,
    pub reply_sport: u16,
}

impl Entry {
    fn family(&self) -> IpFamily {
        match self.src {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

/// The entries of `conntrack -L` output that policy judges (TCP, UDP and SCTP, with ports);
/// other lines (ICMP, summaries, anything unreadable) are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

/// `tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED] …`
/// (with `-o extended`, `ipv4 2 ` comes first).
fn parse_line(line: &str) -> Option<Entry> {
    let mut words = line.split_whitespace().peekable();
    if matches!(words.peek(), Some(&"ipv4" | &"ipv6")) {
        words.next();
        words.next();
    }
    let protocol = match words.next()? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    // key=value pairs; the first of each key is the original direction, the second the reply.
    let mut first: HashMap<&str, &str> = HashMap::new();
    let mut second: HashMap<&str, &str> = HashMap::new();
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            if first.contains_key(k) {
                second.entry(k).or_insert(v);
            } else {
                first.insert(k, v);
            }
        }
    }
    Some(Entry {
        protocol,
        src: first.get("src")?.parse().ok()?,
        dst: first.get("dst")?.parse().ok()?,
        sport: first.get("sport")?.parse().ok()?,
        dport: first.get("dport")?.parse().ok()?,
        reply_src: second.get("src")?.parse().ok()?,
        reply_sport: second.get("sport")?.parse().ok()?,
    })
}

/// The entries to delete: connections involving a pod of `node` that the cluster's policies
/// deny now, on a side this node enforces, by a policy that is not in audit mode.
/// `node_addresses` are the node's own addresses: connections the node opens are allowed on
/// the OUTPUT path (never cut), and a pod's connection to one of them is judged as to the node.
pub fn to_cut(
    entries: &[Entry],
    cluster: &Cluster,
    node: &str,
    node_addresses: &[IpAddr],
) -> Vec<Entry> {
    let mut out = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let of_family: Vec<&Entry> = entries.iter().filter(|e| e.family() == family).collect();
        if of_family.is_empty() {
            continue;
        }
        let seen = cluster.in_family(family);
        let local: Vec<IpAddr> = local_pods_of(cluster, node, family)
            .filter_map(|p| p.ip_of(family))
            .collect();
        if local.is_empty() {
            continue;
        }
        // Pods that can be peers, by address (host-network pods share their node's address).
        let by_ip: HashMap<IpAddr, &Pod> = seen
            .pods()
            .iter()
            .filter(|p| p.is_peer())
            .filter_map(|p| Some((p.ip?, p)))
            .collect();
        let endpoint = |ip: IpAddr| -> Endpoint {
            if let Some(pod) = by_ip.get(&ip) {
                Endpoint::Pod(pod)
            } else if node_addresses.contains(&ip) {
                Endpoint::Node {
                    name: node,
                    ip: Some(ip),
                }
            } else {
                Endpoint::External(ip)
            }
        };
        for e in of_family {
            // What the FORWARD rules saw: the original source, the destination after DNAT.
            let (src, dst, port) = (e.src, e.reply_src, e.reply_sport);
            if node_addresses.contains(&src) {
                continue; // opened by the node itself: always allowed (OUTPUT)
            }
            let (src_local, dst_local) = (local.contains(&src), local.contains(&dst));
            if !src_local && !dst_local {
                continue;
            }
            let verdict = seen.evaluate_forwarded(&endpoint(src), &endpoint(dst), port, e.protocol);
            // What audit-mode policies alone would deny is allowed: never cut.
            if (src_local && !verdict.egress.allows()) || (dst_local && !verdict.ingress.allows()) {
                out.push(e.clone());
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot run conntrack: {0} (is conntrack-tools installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("conntrack {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("deleting conntrack entries over ctnetlink: {0}")]
    Delete(#[source] std::io::Error),
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    /// Entries read, of every family.
    pub entries: usize,
    /// The entries deleted.
    pub cut: Vec<Entry>,
}

/// Reads the node's conntrack table for `families`, and deletes the entries of connections
/// the cluster's policies deny now ([`to_cut`]). Blocking: run it off the async runtime.
pub fn cut(cluster: &Cluster, node: &str, families: &[IpFamily]) -> Result<Cut, ConntrackError> {
    let mut entries = Vec::new();
    for family in families {
        let f = match family {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        };
        entries.extend(parse(&run(&["-L", "-f", f])?));
    }
    let addresses = node_addresses();
    let cut = to_cut(&entries, cluster, node, &addresses);
    if !cut.is_empty() {
        // By exact tuple over ctnetlink: `conntrack -D` would dump the whole table per entry.
        // An entry that ended meanwhile is not an error.
        crate::ctnetlink::delete(&cut).map_err(ConntrackError::Delete)?;
    }
    Ok(Cut {
        entries: entries.len(),
        cut,
    })
}

/// Counts what a pass ([`cut`]) did and logs a line when something was cut or the pass failed
/// (the rules are in force either way; only connections opened before the change may go on).
pub fn report(
    result: &Result<Cut, ConntrackError>,
    took_ms: u64,
    metrics: &crate::metrics::Metrics,
) {
    match result {
        Ok(done) if !done.cut.is_empty() => {
            for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                let n = done.cut.iter().filter(|e| e.protocol == protocol).count();
                if n > 0 {
                    metrics.connections_cut(protocol, n as u64);
                }
            }
            let examples: Vec<String> = done
                .cut
                .iter()
                .take(5)
                .map(|e| {
                    format!(
                        "{} {} -> {}:{}",
                        e.protocol, e.src, e.reply_src, e.reply_sport
                    )
                })
                .collect();
            tracing::info!(
                cut = done.cut.len(),
                entries = done.entries,
                took_ms,
                examples = examples.join(", "),
                "connections that policy now denies cut"
            );
        }
        Ok(done) => {
            tracing::debug!(entries = done.entries, took_ms, "no connection to cut");
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot cut the connections policy now denies; the new rules hold for new connections"
        ),
    }
}

fn run(args: &[&str]) -> Result<String, ConntrackError> {
    let out = Command::new("conntrack")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(ConntrackError::Spawn)?;
    if !out.status.success() {
        return Err(ConntrackError::Failed {
            what: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The addresses of this network namespace's interfaces (the node's own, when the enforcer
/// runs with the host's network).
pub fn node_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    #[cfg(target_os = "linux")]
    // SAFETY: getifaddrs fills a list we only read and then free with freeifaddrs; each
    // ifa_addr is checked for null and read as the socket address type its family says.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let a = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_families_and_skips_the_rest() {
        let text = "\
tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.96.0.10 sport=40000 dport=80 src=10.0.1.5 dst=10.0.0.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1
ipv6     10 udp      17 29 src=fd00::1 dst=fd00::2 sport=5000 dport=53 [UNREPLIED] src=fd00::2 dst=fd00::1 sport=53 dport=5000 mark=0 use=1
icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=1 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
";
        let entries = parse(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].reply_src, "10.0.1.5".parse::<IpAddr>().unwrap());
        assert_eq!(entries[0].reply_sport, 8080);
        assert_eq!(entries[0].dport, 80);
        assert_eq!(entries[0].sport, 40000);
        assert_eq!(entries[1].protocol, Protocol::Udp);
        assert_eq!(entries[1].src, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(entries[1].dport, 53);
    }
}
