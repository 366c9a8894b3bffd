//! `admin-shadowed`: a NetworkPolicy rule that never decides anything, because for every
//! connection it allows (every selected pod, every peer, every port it names) an Admin-tier
//! ClusterNetworkPolicy Accepts or Denies that connection first. Judged on the pods running now,
//! by evaluating each distinct connection the rule allows with the cluster's tiers.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{AT, Context, Issue, list_some, name};
use crate::cluster::{Cluster, Endpoint, Outcome, tiered};
use crate::cluster_policy::{Action, ClusterPeer, ClusterPort, Tier};
use crate::model::{Pod, Protocol};
use crate::policy::{Direction, Peer, Policy, PortSpec, Rule};

/// Distinct selected pods judged at most; beyond, the check says nothing (it must be certain).
const MAX_SUBJECTS: usize = 64;
/// Peer endpoints judged at most per rule.
const MAX_PEERS: usize = 256;
/// Connections evaluated at most per rule.
const MAX_CONNECTIONS: usize = 20_000;

/// An Admin rule that decided some of a NetworkPolicy rule's connections.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Decider {
    pub policy: String,
    pub priority: u16,
    pub direction: Direction,
    pub rule: usize,
    pub rule_name: Option<String>,
    pub action: Action,
}

impl Decider {
    pub(crate) fn describe(&self) -> String {
        let rule = match &self.rule_name {
            Some(n) => format!("{} rule {} {n:?}", self.direction, self.rule),
            None => format!("{} rule {}", self.direction, self.rule),
        };
        format!(
            "ClusterNetworkPolicy {} (Admin, priority {}) {rule}: {}",
            self.policy, self.priority, self.action
        )
    }
}

/// The Admin rules that decide every connection `rule` of `policy` allows, or `None` when some
/// connection reaches the NetworkPolicy tier (or cannot be judged with certainty).
pub(crate) fn shadow(
    cluster: &Cluster,
    policy: &Policy,
    direction: Direction,
    rule: &Rule,
) -> Option<BTreeSet<Decider>> {
    let admin: Vec<&crate::cluster_policy::ClusterRule> = cluster
        .cluster_policies()
        .iter()
        .filter(|p| p.tier == Tier::Admin)
        .flat_map(|p| p.rules(direction))
        .collect();
    if admin.is_empty() {
        return None;
    }
    // Pods alike in namespace, labels and ports meet the same rules, unless an Admin rule
    // names addresses: then every pod counts.
    let by_address = admin
        .iter()
        .flat_map(|r| &r.peers)
        .any(|p| matches!(p, ClusterPeer::Networks(_)));
    let mut seen = HashSet::new();
    let subjects: Vec<&Pod> = cluster
        .pods_in(&policy.namespace)
        .filter(|p| Cluster::selects(policy, p))
        .filter(|p| seen.insert((&p.namespace, &p.labels, format!("{:?}", p.ports))))
        .collect();
    if subjects.is_empty() || subjects.len() > MAX_SUBJECTS {
        return None;
    }
    let peers = peer_endpoints(cluster, policy, direction, rule, &admin, by_address)?;
    if peers.is_empty() {
        return None;
    }
    let mut deciders = BTreeSet::new();
    let mut connections = 0usize;
    for subject in &subjects {
        let selecting: Vec<usize> = cluster.cluster_selecting(subject, direction).collect();
        if selecting.is_empty() {
            return None;
        }
        for peer in &peers {
            let (src, dst) = match direction {
                Direction::Ingress => (*peer, Endpoint::Pod(subject)),
                Direction::Egress => (Endpoint::Pod(subject), *peer),
            };
            if let (Endpoint::Pod(a), Endpoint::Pod(b)) = (&src, &dst)
                && a.namespace == b.namespace
                && a.name == b.name
            {
                continue; // a pod to itself is never subject to policy
            }
            let dst_pod = match dst {
                Endpoint::Pod(p) => Some(p),
                _ => None,
            };
            for (protocol, port) in port_samples(rule, dst_pod, &admin) {
                connections += 1;
                if connections > MAX_CONNECTIONS {
                    return None;
                }
                let other = match direction {
                    Direction::Ingress => &src,
                    Direction::Egress => &dst,
                };
                let (policy, rule, action) = admin_decides(
                    cluster, &selecting, direction, other, dst_pod, port, protocol,
                )?;
                let p = &cluster.cluster_policies()[policy];
                deciders.insert(Decider {
                    policy: p.name.clone(),
                    priority: p.priority,
                    direction,
                    rule,
                    rule_name: p.rules(direction).get(rule).and_then(|r| r.name.clone()),
                    action,
                });
            }
        }
    }
    if deciders.is_empty() {
        return None;
    }
    // A rule without ports allows ICMP as well, which only an Admin rule without ports decides.
    if rule.ports.is_empty() {
        let all_protocols = deciders.iter().all(|d| {
            cluster
                .cluster_policies()
                .iter()
                .find(|p| p.name == d.policy)
                .and_then(|p| p.rules(direction).get(d.rule))
                .is_some_and(|r| r.ports.is_none())
        });
        if !all_protocols {
            return None;
        }
    }
    Some(deciders)
}

/// The Admin tier's decision of one connection of a pod the `selecting` policies select, with
/// `peer` at the other end: the policy (an index into [`Cluster::cluster_policies`]), the rule
/// and the action, when an Admin rule Accepts or Denies it before NetworkPolicy is consulted.
/// The one tiered evaluation, stopped before NetworkPolicy.
fn admin_decides(
    cluster: &Cluster,
    selecting: &[usize],
    direction: Direction,
    peer: &Endpoint,
    dst_pod: Option<&Pod>,
    port: u16,
    protocol: Protocol,
) -> Option<(usize, usize, Action)> {
    let outcome = tiered(
        cluster.cluster_policies(),
        direction,
        selecting,
        |_, _, rule| {
            rule.ports_match(port, protocol, dst_pod)
                && rule
                    .peers
                    .iter()
                    .any(|p| cluster.cluster_peer_matches(p, peer))
        },
        // Stands for NetworkPolicy deciding: the Baseline tier is never asked.
        || Outcome::Denied,
    );
    match outcome {
        Outcome::Cluster {
            policy,
            rule,
            action: action @ (Action::Accept | Action::Deny),
        } => Some((policy as usize, rule as usize, action)),
        _ => None,
    }
}

/// The endpoints a rule's peers name: pods (one of each kind), and for address blocks one
/// address per stretch the Admin rules' networks treat alike. `None` when they cannot all be
/// judged (ingress from addresses, which no ClusterNetworkPolicy ingress rule can match).
fn peer_endpoints<'a>(
    cluster: &'a Cluster,
    policy: &Policy,
    direction: Direction,
    rule: &Rule,
    admin: &[&crate::cluster_policy::ClusterRule],
    by_address: bool,
) -> Option<Vec<Endpoint<'a>>> {
    let everyone = rule.peers.is_empty();
    let mut blocks: Vec<(IpNet, Vec<IpNet>)> = Vec::new();
    for peer in &rule.peers {
        if let Peer::IpBlock(b) = peer {
            blocks.push((b.cidr, b.except.clone()));
        }
    }
    if everyone {
        blocks.push(("0.0.0.0/0".parse().ok()?, Vec::new()));
        blocks.push(("::/0".parse().ok()?, Vec::new()));
    }
    if direction == Direction::Ingress && !blocks.is_empty() {
        return None;
    }
    let mut seen = HashSet::new();
    let pods: Vec<&Pod> = cluster
        .pods()
        .iter()
        .filter(|p| p.is_peer())
        .filter(|p| {
            everyone || cluster.rule_peers_match(&policy.namespace, rule, &Endpoint::Pod(p))
        })
        .filter(|p| by_address || seen.insert((&p.namespace, &p.labels, format!("{:?}", p.ports))))
        .collect();
    let mut out: Vec<Endpoint> = pods.iter().map(|p| Endpoint::Pod(p)).collect();
    let nets: Vec<IpNet> = admin
        .iter()
        .flat_map(|r| &r.peers)
        .filter_map(|p| match p {
            ClusterPeer::Networks(n) => Some(n.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    for (cidr, except) in &blocks {
        for ip in stretch_starts(cidr, except, &nets) {
            out.push(Endpoint::External(ip));
        }
    }
    (out.len() <= MAX_PEERS).then_some(out)
}

/// One address of every stretch of `cidr` (minus `except`) that the `nets` boundaries cut it
/// into: within a stretch, every address is inside the same networks.
fn stretch_starts(cidr: &IpNet, except: &[IpNet], nets: &[IpNet]) -> Vec<IpAddr> {
    let to_u128 = |ip: IpAddr| match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let from_u128 = |n: u128| match cidr {
        IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
        IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(n)),
    };
    let same_family = |n: &&IpNet| {
        matches!(
            (cidr, n),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        )
    };
    let (lo, hi) = (to_u128(cidr.network()), to_u128(cidr.broadcast()));
    let mut points: BTreeSet<u128> = BTreeSet::from([lo]);
    for n in nets.iter().chain(except).filter(same_family) {
        let (a, b) = (to_u128(n.network()), to_u128(n.broadcast()));
        if b < lo || a > hi {
            continue;
        }
        points.insert(a.max(lo));
        if let Some(next) = b.checked_add(1)
            && next <= hi
        {
            points.insert(next.max(lo));
        }
    }
    points
        .into_iter()
        .map(from_u128)
        .filter(|ip| cidr.contains(ip) && !except.iter().any(|e| e.contains(ip)))
        .collect()
}

/// The (protocol, port) connections that stand for every port the rule allows towards
/// `dst`: each stretch of its ranges the Admin rules' ports cut apart, once.
fn port_samples(
    rule: &Rule,
    dst: Option<&Pod>,
    admin: &[&crate::cluster_policy::ClusterRule],
) -> Vec<(Protocol, u16)> {
    let ranges: Vec<(Protocol, u16, u16)> = if rule.ports.is_empty() {
        Protocol::ALL.iter().map(|p| (*p, 1, 65535)).collect()
    } else {
        rule.ports
            .iter()
            .filter_map(|m| match &m.port {
                PortSpec::Any => Some((m.protocol, 1, 65535)),
                PortSpec::Range(a, b) => Some((m.protocol, *a, *b)),
                PortSpec::Named(n) => dst
                    .and_then(|d| d.resolve_named_port(n, m.protocol))
                    .map(|p| (m.protocol, p, p)),
            })
            .collect()
    };
    let cuts: Vec<(Protocol, u16, u16)> = admin
        .iter()
        .flat_map(|r| r.ports.iter().flatten())
        .filter_map(|p| match p {
            ClusterPort::Ports {
                protocol,
                first,
                last,
            } => Some((*protocol, *first, *last)),
            ClusterPort::Named(n) => Protocol::ALL.iter().find_map(|proto| {
                dst.and_then(|d| d.resolve_named_port(n, *proto))
                    .map(|p| (*proto, p, p))
            }),
        })
        .collect();
    let mut out = BTreeSet::new();
    for (protocol, lo, hi) in ranges {
        out.insert((protocol, lo));
        for (p, a, b) in &cuts {
            if *p != protocol {
                continue;
            }
            if (lo..=hi).contains(a) {
                out.insert((protocol, *a));
            }
            if let Some(next) = b.checked_add(1)
                && (lo..=hi).contains(&next)
            {
                out.insert((protocol, next));
            }
        }
    }
    out.into_iter().collect()
}

pub(crate) fn check(policy: &Policy, ctx: &Context) -> Result<Vec<Issue>, String> {
    if !ctx.knows_pods {
        return Err("no Pods are known, so the connections a rule allows cannot be listed".into());
    }
    let mut issues = Vec::new();
    for (direction, r, rule) in policy.all_rules() {
        let Some(deciders) = shadow(ctx.cluster, policy, direction, rule) else {
            continue;
        };
        issues.push(issue(policy, &deciders).at(format!("{direction}[{r}]")));
    }
    Ok(issues)
}

fn issue(policy: &Policy, deciders: &BTreeSet<Decider>) -> Issue {
    let names: Vec<String> = {
        let mut n: Vec<String> = deciders.iter().map(|d| d.policy.clone()).collect();
        n.dedup();
        n
    };
    let evidence: Vec<String> = deciders.iter().map(Decider::describe).collect();
    let evidence = list_some(&evidence, 5);
    let all_deny = deciders.iter().all(|d| d.action == Action::Deny);
    let all_accept = deciders.iter().all(|d| d.action == Action::Accept);
    let who = format!("ClusterNetworkPolicy {}", list_some(&names, 2));
    let fix_deny = "Fix: if this traffic must flow, the cluster's administrators can hand it to \
         NetworkPolicy with an Admin rule `action: Pass` for it (above the Deny) in that \
         ClusterNetworkPolicy; otherwise remove this rule, which allows nothing.";
    if all_deny {
        Issue::new(
            format!("{AT} never applies: {who} (Admin tier) denies its traffic first"),
            format!(
                "NetworkPolicy {} {AT} allows traffic that the Admin tier denies before any \
                 NetworkPolicy is consulted: for every pod this policy selects and every peer and \
                 port the rule names, an Admin-tier ClusterNetworkPolicy Deny decides first, so \
                 the rule allows nothing.\nEvidence: decided by {evidence}.\n{fix_deny}",
                name(policy)
            ),
        )
    } else if all_accept {
        Issue::warning(
            format!("{AT} never decides: {who} (Admin tier) accepts its traffic first"),
            format!(
                "NetworkPolicy {} {AT} allows only traffic that the Admin tier already accepts \
                 before any NetworkPolicy is consulted, so the rule never decides anything (it \
                 would again if that ClusterNetworkPolicy changed).\nEvidence: decided by \
                 {evidence}.\nFix: nothing is blocked; keep the rule if it should outlive the \
                 ClusterNetworkPolicy, or remove it.",
                name(policy)
            ),
        )
    } else {
        Issue::warning(
            format!("{AT} never applies: {who} (Admin tier) decides its traffic first"),
            format!(
                "NetworkPolicy {} {AT} never decides anything: the Admin tier accepts part of \
                 the traffic it allows and denies the rest before any NetworkPolicy is \
                 consulted.\nEvidence: decided by {evidence}.\n{fix_deny}",
                name(policy)
            ),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checks::{CheckConfig, CheckId, Severity, run};
    use crate::cluster_policy::{ClusterPolicy, ClusterRule, Subject};
    use crate::policy::{IpBlockPeer, NamespaceScope, PortMatch};
    use crate::{Labels, Namespace, Selector};

    pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn sel(pairs: &[(&str, &str)]) -> Selector {
        Selector::from_labels(&labels(pairs))
    }

    pub(crate) fn ns_sel(name: &str) -> Selector {
        sel(&[("kubernetes.io/metadata.name", name)])
    }

    pub(crate) fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Pod {
        Pod::running(ns, name, labels(&[("app", app)]), ip.parse().expect("ip"))
    }

    /// shop/api, monitoring/prometheus, kube-system/coredns, shop/web.
    pub(crate) fn cluster(cnps: Vec<ClusterPolicy>, nps: Vec<Policy>) -> Cluster {
        let mut dns = pod("kube-system", "coredns-1", "coredns", "10.0.9.9");
        dns.labels = labels(&[("k8s-app", "kube-dns")]);
        Cluster::new(
            ["shop", "monitoring", "kube-system"]
                .map(|n| Namespace::new(n, labels(&[("team", n)]))),
            vec![
                pod("shop", "api-1", "api", "10.0.0.1"),
                pod("shop", "web-1", "web", "10.0.0.2"),
                pod("monitoring", "prometheus-0", "prometheus", "10.0.1.1"),
                dns,
            ],
            vec![],
            nps,
        )
        .with_cluster_policies(cnps)
    }

    pub(crate) fn cnp(
        name: &str,
        priority: u16,
        ingress: Vec<ClusterRule>,
        egress: Vec<ClusterRule>,
    ) -> ClusterPolicy {
        ClusterPolicy {
            name: name.into(),
            tier: Tier::Admin,
            priority,
            subject: Subject::Namespaces(Selector::everything()),
            ingress,
            egress,
        }
    }

    pub(crate) fn rule(
        action: Action,
        peers: Vec<ClusterPeer>,
        ports: Option<Vec<ClusterPort>>,
    ) -> ClusterRule {
        ClusterRule {
            name: Some(format!("{action}-rule").to_lowercase()),
            action,
            peers,
            ports,
        }
    }

    pub(crate) fn tcp(first: u16, last: u16) -> ClusterPort {
        ClusterPort::Ports {
            protocol: Protocol::Tcp,
            first,
            last,
        }
    }

    /// shop/metrics: api pods accept TCP 9090 from the monitoring namespace.
    pub(crate) fn metrics_policy() -> Policy {
        Policy {
            namespace: "shop".into(),
            name: "metrics".into(),
            labels: Labels::new(),
            annotations: Default::default(),
            pod_selector: sel(&[("app", "api")]),
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods {
                    namespaces: NamespaceScope::Matching(ns_sel("monitoring")),
                    pods: Selector::everything(),
                }],
                ports: vec![PortMatch {
                    protocol: Protocol::Tcp,
                    port: PortSpec::Range(9090, 9090),
                }],
            }]),
            egress: None,
            implicit_types: false,
        }
    }

    fn findings(cluster: &Cluster, policy: &Policy) -> Vec<crate::checks::Finding> {
        let ctx = Context {
            cluster,
            enforcement: None,
            knows_pods: true,
            knows_namespaces: true,
        };
        run(policy, &ctx, &CheckConfig::default())
            .findings
            .into_iter()
            .filter(|f| f.check == CheckId::AdminShadowed)
            .collect()
    }

    pub(crate) fn from_ns(name: &str) -> Vec<ClusterPeer> {
        vec![ClusterPeer::Namespaces(ns_sel(name))]
    }

    fn from_monitoring() -> Vec<ClusterPeer> {
        from_ns("monitoring")
    }

    /// An Admin Deny of all traffic from monitoring decides every connection the rule allows:
    /// refused, naming the ClusterNetworkPolicy and its rule.
    #[test]
    fn a_rule_every_connection_of_which_an_admin_deny_decides_is_refused() {
        let deny = cnp(
            "no-monitoring",
            10,
            vec![rule(Action::Deny, from_monitoring(), None)],
            vec![],
        );
        let found = findings(&cluster(vec![deny], vec![]), &metrics_policy());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Deny);
        assert_eq!(
            found[0].summary,
            "ingress[0] never applies: ClusterNetworkPolicy no-monitoring (Admin tier) denies its traffic first"
        );
        assert!(
            found[0].message.contains(
                "Evidence: decided by ClusterNetworkPolicy no-monitoring (Admin, priority 10) ingress rule 0 \"deny-rule\": Deny."
            ),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .message
                .contains("annotate it palisade.dev/skip-checks: \"admin-shadowed\"")
        );
    }

    /// Not every connection decided by the Admin tier: nothing to say.
    #[test]
    fn a_pass_first_or_a_deny_of_only_some_ports_leaves_the_rule_alone() {
        let pass_first = cnp(
            "pass-then-deny",
            10,
            vec![
                rule(Action::Pass, from_monitoring(), Some(vec![tcp(9090, 9090)])),
                rule(Action::Deny, from_monitoring(), None),
            ],
            vec![],
        );
        assert_eq!(
            findings(&cluster(vec![pass_first], vec![]), &metrics_policy()),
            vec![]
        );
        let mut wide = metrics_policy();
        wide.ingress.as_mut().unwrap()[0].ports[0].port = PortSpec::Range(9000, 9100);
        let some_ports = cnp(
            "deny-9090",
            10,
            vec![rule(
                Action::Deny,
                from_monitoring(),
                Some(vec![tcp(9090, 9090)]),
            )],
            vec![],
        );
        assert_eq!(
            findings(&cluster(vec![some_ports.clone()], vec![]), &wide),
            vec![]
        );
        // ...but the whole range covered, even by two rules, is.
        let rest = cnp(
            "deny-rest",
            20,
            vec![rule(
                Action::Deny,
                from_monitoring(),
                Some(vec![tcp(9000, 9089), tcp(9091, 9100)]),
            )],
            vec![],
        );
        let found = findings(&cluster(vec![some_ports, rest], vec![]), &wide);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .summary
                .contains("ClusterNetworkPolicy deny-9090, deny-rest"),
            "{}",
            found[0].summary
        );
        // A Baseline Deny comes after NetworkPolicy: never shadows.
        let mut baseline = cnp(
            "baseline-deny",
            10,
            vec![rule(Action::Deny, from_monitoring(), None)],
            vec![],
        );
        baseline.tier = Tier::Baseline;
        assert_eq!(
            findings(&cluster(vec![baseline], vec![]), &metrics_policy()),
            vec![]
        );
    }

    /// An Admin Accept first makes the rule redundant, not wrong: a warning.
    #[test]
    fn an_admin_accept_first_is_a_warning() {
        let accept = cnp(
            "allow-monitoring",
            5,
            vec![rule(Action::Accept, from_monitoring(), None)],
            vec![],
        );
        let found = findings(&cluster(vec![accept], vec![]), &metrics_policy());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Warn);
        assert!(
            found[0].summary.contains("accepts its traffic first"),
            "{}",
            found[0].summary
        );
    }

    /// Address blocks: shadowed only when the Admin networks cover the whole block; ingress
    /// from addresses is never decided by a ClusterNetworkPolicy.
    #[test]
    fn address_blocks_are_shadowed_only_when_covered_whole() {
        let egress = |cidr: &str| Policy {
            name: "to-internal".into(),
            ingress: None,
            egress: Some(vec![Rule {
                peers: vec![Peer::IpBlock(IpBlockPeer {
                    cidr: cidr.parse().unwrap(),
                    except: vec![],
                })],
                ports: vec![],
            }]),
            ..metrics_policy()
        };
        let deny_net = |net: &str| {
            cnp(
                "deny-net",
                1,
                vec![],
                vec![rule(
                    Action::Deny,
                    vec![ClusterPeer::Networks(vec![net.parse().unwrap()])],
                    None,
                )],
            )
        };
        let found = findings(
            &cluster(vec![deny_net("10.0.0.0/8")], vec![]),
            &egress("10.0.0.0/16"),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].summary.starts_with("egress[0] never applies"));
        assert_eq!(
            findings(
                &cluster(vec![deny_net("10.0.0.0/17")], vec![]),
                &egress("10.0.0.0/16")
            ),
            vec![]
        );
        let from_block = Policy {
            ingress: Some(vec![Rule {
                peers: vec![Peer::IpBlock(IpBlockPeer {
                    cidr: "10.0.0.0/8".parse().unwrap(),
                    except: vec![],
                })],
                ports: vec![],
            }]),
            ..metrics_policy()
        };
        let deny_all_in = cnp(
            "deny-in",
            1,
            vec![rule(
                Action::Deny,
                vec![ClusterPeer::Namespaces(Selector::everything())],
                None,
            )],
            vec![],
        );
        assert_eq!(
            findings(&cluster(vec![deny_all_in], vec![]), &from_block),
            vec![]
        );
    }

    #[test]
    fn stretches_cut_at_every_boundary_inside_the_block() {
        let starts = stretch_starts(
            &"10.0.0.0/16".parse().unwrap(),
            &["10.0.5.0/24".parse().unwrap()],
            &[
                "10.0.0.0/17".parse().unwrap(),
                "192.168.0.0/16".parse().unwrap(),
            ],
        );
        let want: Vec<IpAddr> = ["10.0.0.0", "10.0.6.0", "10.0.128.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(starts, want);
    }
}
