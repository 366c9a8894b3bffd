//! A logged packet as a record a person reads: who could not reach whom on which port, and
//! why, in the words of `palisade reach --explain` ([`Verdict::reason`], the policy crate's one
//! explanation, evaluated on the enforcer's current snapshot).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use palisade_policy::cluster_policy::Action;
use palisade_policy::{Cluster, Decision, Direction, Endpoint, IpFamily, Pod};
use serde::Serialize;

use super::packet::Packet;
use crate::compile::{local_pods_of, nflog_prefix};
use crate::ruleset::{AUDIT_PREFIX, DENY_PREFIX};

/// A denial, or an audit policy's would-be denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Denied,
    AuditWouldDeny,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Denied => "denied",
            Kind::AuditWouldDeny => "audit-would-deny",
        }
    }
}

/// What the rule that logged a packet says in its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub kind: Kind,
    /// The pod chain's subject (`ns/pod direction`, as the rule wrote it, possibly cut short
    /// to the kernel's 63 bytes); `None` for the node-wide ClusterNetworkPolicy Deny chain,
    /// which knows no pod.
    pub subject: Option<String>,
    /// The prefix as the kernel gave it.
    pub raw: String,
}

impl Prefix {
    /// `palisade-deny y/b ingress`, `palisade-deny cluster`, `palisade-audit y/b ingress p,q`;
    /// `None` for a prefix that is not Palisade's.
    pub fn parse(raw: &str) -> Option<Prefix> {
        let (kind, rest) = if let Some(rest) = raw.strip_prefix(DENY_PREFIX) {
            (Kind::Denied, rest)
        } else if let Some(rest) = raw.strip_prefix(AUDIT_PREFIX) {
            (Kind::AuditWouldDeny, rest)
        } else {
            return None;
        };
        let rest = rest.strip_prefix(' ')?;
        let subject = match (kind, rest) {
            (Kind::Denied, "cluster") => None,
            _ => Some(rest.to_string()),
        };
        Some(Prefix {
            kind,
            subject,
            raw: raw.to_string(),
        })
    }

    /// Whether this prefix is the one a rule for `pod` in `direction` writes.
    fn names(&self, pod: &Pod, direction: Direction) -> bool {
        let marker = match self.kind {
            Kind::Denied => DENY_PREFIX,
            Kind::AuditWouldDeny => AUDIT_PREFIX,
        };
        let written = format!("{marker} {} {direction}", pod.key());
        // The audit prefix goes on with the policies' names; either may be cut at 63 bytes.
        let cut = nflog_prefix(&written);
        self.raw == cut || self.raw.starts_with(&format!("{written} "))
    }

    /// The direction the prefix names, if it names one.
    fn direction(&self) -> Option<Direction> {
        let words: Vec<&str> = self.subject.as_deref()?.split(' ').collect();
        match words.get(1) {
            Some(&"ingress") => Some(Direction::Ingress),
            Some(&"egress") => Some(Direction::Egress),
            _ => None,
        }
    }
}

/// One denied (or would-be denied) connection attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// RFC 3339, when the kernel logged the packet.
    pub time: String,
    pub node: String,
    pub kind: Kind,
    /// The side that denied: the source pod's egress or the destination pod's ingress.
    pub direction: &'static str,
    /// The pod that side belongs to (`namespace/name`), where the enforcer knows it; `None`
    /// when the packet's address is no pod of the current snapshot (not attributed).
    pub pod: Option<String>,
    /// `namespace/name` for a pod, else the address.
    pub source: String,
    pub destination: String,
    pub source_ip: IpAddr,
    pub destination_ip: IpAddr,
    pub protocol: &'static str,
    pub port: u16,
    /// The policies that deny: NetworkPolicies as `namespace/name`, a ClusterNetworkPolicy as
    /// `ClusterNetworkPolicy NAME`; empty when the current policies no longer deny it.
    pub policies: Vec<String>,
    /// The explanation, as `palisade reach --explain` gives it.
    pub reason: String,
}

impl Record {
    /// The denied pod's namespace, for labels and Events ("" when not attributed).
    pub fn namespace(&self) -> &str {
        self.pod
            .as_deref()
            .and_then(|p| p.split_once('/'))
            .map_or("", |(ns, _)| ns)
    }
}

/// The enforcer's snapshot as packets of each family see it, with its pods by address: built
/// once per snapshot, used for every record until the next.
pub struct View {
    /// IPv4, then IPv6: the cluster as that family's packets see it, its pods by address.
    families: [(Cluster, HashMap<IpAddr, usize>); 2],
    node: String,
    node_addresses: Vec<IpAddr>,
}

impl View {
    pub fn new(cluster: &Cluster, node: &str, node_addresses: Vec<IpAddr>) -> Self {
        let families = [IpFamily::V4, IpFamily::V6].map(|family| {
            let seen = cluster.in_family(family);
            // Pods that can be peers, by address (host-network pods share their node's).
            let by_ip = seen
                .pods()
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_peer())
                .filter_map(|(i, p)| Some((p.ip?, i)))
                .collect();
            (seen, by_ip)
        });
        View {
            families,
            node: node.to_string(),
            node_addresses,
        }
    }

    /// The record of a packet logged with `prefix` at `time`.
    pub fn record(&self, prefix: &Prefix, packet: &Packet, time: SystemTime) -> Record {
        let family = match packet.src {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        };
        let (seen, by_ip) = match family {
            IpFamily::V4 => &self.families[0],
            IpFamily::V6 => &self.families[1],
        };
        let pod_at = |ip: IpAddr| by_ip.get(&ip).map(|&i| &seen.pods()[i]);
        let endpoint = |ip: IpAddr| -> Endpoint {
            if let Some(pod) = pod_at(ip) {
                Endpoint::Pod(pod)
            } else if self.node_addresses.contains(&ip) {
                Endpoint::Node {
                    name: &self.node,
                    ip: Some(ip),
                }
            } else {
                Endpoint::External(ip)
            }
        };
        let (src, dst) = (endpoint(packet.src), endpoint(packet.dst));
        let verdict = seen.evaluate_forwarded(&src, &dst, packet.dst_port, packet.protocol);
        let name = |e: &Endpoint, ip: IpAddr| match e {
            Endpoint::Pod(p) => p.key(),
            _ => ip.to_string(),
        };
        let (from, to) = (name(&src, packet.src), name(&dst, packet.dst));
        let local: Vec<IpAddr> = local_pods_of(seen, &self.node, family)
            .filter_map(|p| p.ip)
            .collect();
        let direction = prefix.direction().unwrap_or_else(|| {
            // The node-wide chain: egress is judged first, so a local source whose egress
            // denies is the side that dropped it.
            if local.contains(&packet.src) && denies(prefix.kind, &verdict.egress) {
                Direction::Egress
            } else {
                Direction::Ingress
            }
        });
        let (side_ip, decision) = match direction {
            Direction::Egress => (packet.src, &verdict.egress),
            Direction::Ingress => (packet.dst, &verdict.ingress),
        };
        // Only a pod the rules named (or, for the node-wide chain, a local pod) at that
        // address: an address reused since, or no pod known yet, is said as such.
        let pod = pod_at(side_ip).filter(|p| match &prefix.subject {
            Some(_) => prefix.names(p, direction),
            None => local.contains(&side_ip),
        });
        let policies = match decision {
            Decision::Denied { isolated_by } | Decision::AuditWouldDeny { isolated_by } => {
                isolated_by.iter().map(|r| r.to_string()).collect()
            }
            Decision::Cluster {
                action: Action::Deny,
                policy,
                ..
            } => vec![format!("ClusterNetworkPolicy {policy}")],
            _ => Vec::new(),
        };
        let explained = verdict.reason(&from, &to, packet.dst_port, packet.protocol);
        let reason = match (&pod, denies(prefix.kind, decision)) {
            (None, _) => format!(
                "not attributed: {side_ip} is no pod this enforcer knows now (rule {:?}); the current policies say: {explained}",
                prefix.raw
            ),
            (Some(_), true) => explained,
            (Some(_), false) => {
                let what = match (prefix.kind, decision) {
                    (Kind::AuditWouldDeny, d) if !d.allows() => "they are enforced now",
                    (Kind::Denied, Decision::AuditWouldDeny { .. }) => "they are in audit mode now",
                    _ => "they no longer deny this",
                };
                format!("the policies changed since: {what}; now {explained}")
            }
        };
        Record {
            time: timestamp(time),
            node: self.node.clone(),
            kind: prefix.kind,
            direction: direction.as_str(),
            pod: pod.map(Pod::key),
            source: from,
            destination: to,
            source_ip: packet.src,
            destination_ip: packet.dst,
            protocol: packet.protocol.as_str(),
            port: packet.dst_port,
            policies,
            reason,
        }
    }
}

/// Whether a decision still says what the rule that logged the packet said: a denial for a
/// denial, audit-mode policies' would-be denial for an audit log (a policy promoted or put in
/// audit mode since, by its annotation or its namespace's label, says the policies changed).
fn denies(kind: Kind, d: &Decision) -> bool {
    match kind {
        Kind::Denied => !d.allows(),
        Kind::AuditWouldDeny => matches!(d, Decision::AuditWouldDeny { .. }),
    }
}

fn timestamp(time: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(time)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::denials::packet;
    use palisade_policy::{Labels, Namespace, Policy};

    pub(crate) fn pod(ns: &str, name: &str, ip: &str, node: &str) -> Pod {
        let mut p = Pod::running(ns, name, Labels::new(), ip.parse().unwrap());
        p.node = Some(node.into());
        p
    }

    /// x/a on n2, y/b on n1 (this node), under `policies`.
    fn cluster_with(policies: Vec<Policy>) -> Cluster {
        Cluster::new(
            [
                Namespace::new("x", Labels::new()),
                Namespace::new("y", Labels::new()),
            ],
            vec![
                pod("x", "a", "10.0.1.2", "n2"),
                pod("y", "b", "10.0.2.3", "n1"),
            ],
            vec![],
            policies,
        )
    }

    /// [`cluster_with`] y isolated for ingress by y/deny-all.
    pub(crate) fn cluster() -> Cluster {
        cluster_with(vec![Policy::deny_all_ingress("y", "deny-all")])
    }

    fn syn(src: [u8; 4], dst: [u8; 4], port: u16) -> Packet {
        packet::parse(&packet::tests::syn_v4(src, 40000, dst, port)).unwrap()
    }

    #[test]
    fn a_denied_syn_is_attributed_in_the_words_of_reach() {
        let view = View::new(&cluster(), "n1", vec![]);
        let prefix = Prefix::parse("palisade-deny y/b ingress").unwrap();
        let r = view.record(
            &prefix,
            &syn([10, 0, 1, 2], [10, 0, 2, 3], 80),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(r.kind, Kind::Denied);
        assert_eq!(r.direction, "ingress");
        assert_eq!(r.pod.as_deref(), Some("y/b"));
        assert_eq!((r.source.as_str(), r.destination.as_str()), ("x/a", "y/b"));
        assert_eq!((r.protocol, r.port), ("TCP", 80));
        assert_eq!(r.policies, ["y/deny-all"]);
        assert_eq!(
            r.reason,
            "ingress denied: y/b is isolated by y/deny-all and no rule allows x/a on 80/TCP; egress not isolated"
        );
        assert_eq!(r.time, "1970-01-01T00:00:00Z");
        assert_eq!(r.namespace(), "y");
        // The JSON log line's fields.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kind"], "denied");
        assert_eq!(json["source_ip"], "10.0.1.2");
    }

    #[test]
    fn an_outside_address_is_named_by_its_address() {
        let view = View::new(&cluster(), "n1", vec![]);
        let prefix = Prefix::parse("palisade-deny y/b ingress").unwrap();
        let r = view.record(
            &prefix,
            &syn([192, 0, 2, 9], [10, 0, 2, 3], 443),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(r.source, "192.0.2.9");
        assert_eq!(r.pod.as_deref(), Some("y/b"));
        assert!(r.reason.starts_with("ingress denied: y/b is isolated by y/deny-all and no rule allows 192.0.2.9 on 443/TCP"), "{}", r.reason);
    }

    #[test]
    fn an_address_that_is_not_the_pod_the_rule_named_is_not_attributed() {
        let view = View::new(&cluster(), "n1", vec![]);
        // The rule was written for y/old, whose address y/b has now.
        let prefix = Prefix::parse("palisade-deny y/old ingress").unwrap();
        let r = view.record(
            &prefix,
            &syn([10, 0, 1, 2], [10, 0, 2, 3], 80),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(r.pod, None);
        assert_eq!(r.namespace(), "");
        assert!(
            r.reason
                .starts_with("not attributed: 10.0.2.3 is no pod this enforcer knows now"),
            "{}",
            r.reason
        );
        // An address no pod has.
        let prefix = Prefix::parse("palisade-deny y/b ingress").unwrap();
        let r = view.record(
            &prefix,
            &syn([10, 0, 1, 2], [10, 0, 2, 99], 80),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(r.pod, None);
    }

    #[test]
    fn policies_that_allow_now_are_said_to_have_changed() {
        let open = cluster_with(vec![]);
        let view = View::new(&open, "n1", vec![]);
        let prefix = Prefix::parse("palisade-deny y/b ingress").unwrap();
        let r = view.record(
            &prefix,
            &syn([10, 0, 1, 2], [10, 0, 2, 3], 80),
            SystemTime::UNIX_EPOCH,
        );
        assert!(r.policies.is_empty());
        assert!(
            r.reason.starts_with("the policies changed since"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn an_audit_log_of_a_namespace_in_audit_mode_is_explained_as_a_would_be_denial() {
        let labelled = Cluster::new(
            [
                Namespace::new("x", Labels::new()),
                Namespace::new(
                    "y",
                    [("palisade.dev/mode".to_string(), "audit".to_string())].into(),
                ),
            ],
            cluster().pods().to_vec(),
            vec![],
            vec![Policy::deny_all_ingress("y", "deny-all")],
        );
        let packet = syn([10, 0, 1, 2], [10, 0, 2, 3], 80);
        let audit = Prefix::parse("palisade-audit y/b ingress deny-all").unwrap();
        let r = View::new(&labelled, "n1", vec![]).record(&audit, &packet, SystemTime::UNIX_EPOCH);
        assert_eq!(
            (r.kind, r.pod.as_deref()),
            (Kind::AuditWouldDeny, Some("y/b"))
        );
        assert_eq!(r.policies, ["y/deny-all"]);
        assert_eq!(
            r.reason,
            "ingress would be denied (audit: not enforced): y/b is isolated by y/deny-all (audit mode) and no rule allows x/a on 80/TCP; egress not isolated"
        );
        // Promoted since (the label removed): the audit log's policies now deny for real.
        let r = View::new(&cluster(), "n1", vec![]).record(&audit, &packet, SystemTime::UNIX_EPOCH);
        assert!(
            r.reason.starts_with(
                "the policies changed since: they are enforced now; now ingress denied"
            ),
            "{}",
            r.reason
        );
    }

    #[test]
    fn prefixes_say_kind_and_subject() {
        let audit = Prefix::parse("palisade-audit y/b ingress deny-all").unwrap();
        assert_eq!(audit.kind, Kind::AuditWouldDeny);
        assert_eq!(audit.direction(), Some(Direction::Ingress));
        let cluster = Prefix::parse("palisade-deny cluster").unwrap();
        assert_eq!((cluster.kind, cluster.subject), (Kind::Denied, None));
        assert_eq!(Prefix::parse("ulogd something"), None);
        assert_eq!(Prefix::parse("palisade-denyx"), None);
        // A prefix cut at the kernel's 63 bytes still names its pod.
        let long = "n".repeat(60);
        let p = pod("y", &long, "10.0.2.3", "n1");
        let cut = nflog_prefix(&format!("{DENY_PREFIX} y/{long} egress"));
        assert!(Prefix::parse(&cut).unwrap().names(&p, Direction::Egress));
        assert!(
            !Prefix::parse(&cut)
                .unwrap()
                .names(&pod("y", "other", "10.0.2.3", "n1"), Direction::Egress)
        );
    }
}
