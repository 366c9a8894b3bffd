//! The text of the ruleset for small clusters, exactly: what a user sees in `iptables-save`
//! and `ipset save`.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use common::{labels, pod_on};
use palisade_enforcer::compile::compile_family;
use palisade_enforcer::compile::{DenyAction, MODE_ANNOTATION, MODE_LABEL};
use palisade_enforcer::render::{render_ipset, render_iptables};
use palisade_enforcer::{CompileOptions, Ruleset, compile};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use palisade_policy::{
    Cluster, ContainerPort, IpFamily, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule,
    Selector,
};

fn pod(ns: &str, name: &str, app: &str, ip: [u8; 4], node: &str) -> Pod {
    pod_on(
        ns,
        name,
        labels(&[("app", app)]),
        Ipv4Addr::from(ip).into(),
        node,
    )
}

fn policy(ns: &str, name: &str, app: &str) -> Policy {
    Policy {
        namespace: ns.into(),
        name: name.into(),
        labels: Labels::new(),
        annotations: Default::default(),
        pod_selector: Selector::from_labels(&labels(&[("app", app)])),
        ingress: None,
        egress: None,
        implicit_types: false,
    }
}

fn tcp(lo: u16, hi: u16) -> PortMatch {
    PortMatch {
        protocol: Protocol::Tcp,
        port: PortSpec::Range(lo, hi),
    }
}

fn pods_of(app: &str) -> Peer {
    Peer::Pods {
        namespaces: NamespaceScope::Own,
        pods: Selector::from_labels(&labels(&[("app", app)])),
    }
}

/// Everything a sync would write to a fresh node: ipset input, then iptables input.
fn text(pods: Vec<Pod>, policies: Vec<Policy>) -> String {
    let c = Cluster::new(
        vec![Namespace::new("x", Labels::new())],
        pods,
        vec![],
        policies,
    );
    let r = compile(&c, "n1", &CompileOptions::default());
    assert_eq!(r.validate(), Ok(()));
    full(&r)
}

fn full(r: &Ruleset) -> String {
    let sets = render_ipset(r, Some(&BTreeMap::new()));
    let chains = render_iptables(r, &BTreeMap::new()).expect("a fresh node needs chains");
    format!("{sets}{chains}")
}

/// The pod and rule chains and the peer sets, without the fixed entry chains.
fn specific(pods: Vec<Pod>, policies: Vec<Policy>) -> String {
    specific_with(pods, policies, &CompileOptions::default(), &[])
}

/// [`specific`] compiled with `options`, keeping the fixed chains named in `keep`.
fn specific_with(
    pods: Vec<Pod>,
    policies: Vec<Policy>,
    options: &CompileOptions,
    keep: &[&str],
) -> String {
    let c = Cluster::new(
        vec![Namespace::new("x", Labels::new())],
        pods,
        vec![],
        policies,
    );
    let mut r = compile(&c, "n1", options);
    assert_eq!(r.validate(), Ok(()));
    r.chains
        .retain(|name, _| !name.starts_with("PALISADE-") || keep.contains(&name.as_str()));
    r.sets.retain(|name, _| !name.starts_with("PALISADE-"));
    let sets = render_ipset(&r, Some(&BTreeMap::new()));
    let chains = render_iptables(&r, &BTreeMap::new()).unwrap_or_default();
    format!("{sets}{chains}")
}

fn web_with_port(ip: [u8; 4], node: &str, name: &str, port: u16) -> Pod {
    let mut p = pod("x", name, "web", ip, node);
    p.ports.push(ContainerPort {
        name: Some("http".into()),
        port,
        protocol: Protocol::Tcp,
    });
    p
}

fn db(name: &str, ip: [u8; 4], http: Option<u16>) -> Pod {
    let mut p = pod("x", name, "db", ip, "n2");
    if let Some(port) = http {
        p.ports.push(ContainerPort {
            name: Some("http".into()),
            port,
            protocol: Protocol::Tcp,
        });
    }
    p
}

fn named(protocol: Protocol, name: &str) -> PortMatch {
    PortMatch {
        protocol,
        port: PortSpec::Named(name.into()),
    }
}

fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlockPeer {
        cidr: cidr.parse().expect("cidr"),
        except: except.iter().map(|e| e.parse().expect("cidr")).collect(),
    })
}

fn scenario_deny_all() -> String {
    let a = pod("x", "a", "web", [10, 0, 0, 1], "n1");
    let b = pod("x", "b", "db", [10, 0, 1, 2], "n2");
    let mut deny = policy("x", "deny", "web");
    deny.ingress = Some(vec![]);
    text(vec![a, b], vec![deny])
}

fn scenario_selector_and_ports() -> String {
    let mut p = policy("x", "allow-db", "web");
    p.ingress = Some(vec![Rule {
        peers: vec![pods_of("db")],
        ports: vec![tcp(80, 80), tcp(8000, 8100)],
    }]);
    let pods = vec![
        web_with_port([10, 0, 0, 1], "n1", "a", 8080),
        db("b", [10, 0, 1, 2], None),
        db("c", [10, 0, 1, 3], None),
    ];
    specific(pods, vec![p])
}

fn scenario_ip_blocks() -> String {
    let mut p = policy("x", "blocks", "web");
    p.ingress = Some(vec![Rule {
        peers: vec![
            block("10.0.0.0/16", &["10.0.1.0/24"]),
            block("0.0.0.0/0", &["10.0.0.0/8"]),
        ],
        ports: vec![],
    }]);
    specific(vec![pod("x", "a", "web", [10, 0, 0, 1], "n1")], vec![p])
}

fn scenario_named_ports() -> String {
    let mut p = policy("x", "named", "web");
    p.ingress = Some(vec![Rule {
        peers: vec![],
        ports: vec![named(Protocol::Tcp, "http")],
    }]);
    p.egress = Some(vec![Rule {
        peers: vec![pods_of("db")],
        ports: vec![
            named(Protocol::Tcp, "http"),
            PortMatch {
                protocol: Protocol::Udp,
                port: PortSpec::Any,
            },
        ],
    }]);
    let pods = vec![
        web_with_port([10, 0, 0, 1], "n1", "a", 8080),
        // The same name, another number: a rule chain of its own.
        web_with_port([10, 0, 0, 5], "n1", "e", 8443),
        db("b", [10, 0, 1, 2], Some(9090)),
        db("c", [10, 0, 1, 3], None),
    ];
    specific(pods, vec![p])
}

fn scenario_audit() -> String {
    scenario_audit_with(&CompileOptions::default(), &[])
}

fn scenario_reject() -> String {
    let options = CompileOptions {
        deny_action: DenyAction::Reject,
        ..CompileOptions::default()
    };
    scenario_audit_with(&options, &["PALISADE-REJECT"])
}

fn scenario_audit_with(options: &CompileOptions, keep: &[&str]) -> String {
    let mut audit = policy("x", "audit", "web");
    audit.annotations = [(MODE_ANNOTATION.to_string(), "audit".to_string())].into();
    audit.ingress = Some(vec![Rule {
        peers: vec![pods_of("db")],
        ports: vec![],
    }]);
    audit.egress = Some(vec![]);
    // Ingress is also isolated by an enforcing policy: there a denial drops.
    let mut enforce = policy("x", "enforce", "web");
    enforce.ingress = Some(vec![]);
    let pods = vec![
        pod("x", "a", "web", [10, 0, 0, 1], "n1"),
        db("b", [10, 0, 1, 2], None),
    ];
    specific_with(pods, vec![audit, enforce], options, keep)
}

/// One local pod isolated for ingress with no rules: the whole node's ruleset. TCP that
/// conntrack picked up mid-stream (NEW without a SYN) is denied in all three entry chains.
#[test]
fn deny_all() {
    assert_eq!(
        scenario_deny_all(),
        r#"create PALISADE-LOCAL hash:ip family inet hashsize 1024 maxelem 1048576
add PALISADE-LOCAL 10.0.0.1
*filter
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PALISADE-FORWARD - [0:0]
:PALISADE-INPUT - [0:0]
:PALISADE-OUTPUT - [0:0]
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j DROP
-A PALISADE-FORWARD -m set ! --match-set PALISADE-LOCAL src -m set ! --match-set PALISADE-LOCAL dst -m comment --comment "palisade: not from or to a local pod" -j RETURN
-A PALISADE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-FORWARD -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-FORWARD -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j DROP
-A PALISADE-FORWARD -d 10.0.0.1/32 -m comment --comment "x/a ingress" -j PAL-I-5D91D0EE6D0E4B6C
-A PALISADE-FORWARD -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-INPUT -m set ! --match-set PALISADE-LOCAL src -m comment --comment "palisade: not from a local pod" -j RETURN
-A PALISADE-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-INPUT -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j DROP
-A PALISADE-INPUT -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-OUTPUT -p tcp -m set --match-set PALISADE-LOCAL dst -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j DROP
-A PALISADE-OUTPUT -m set --match-set PALISADE-LOCAL dst -m comment --comment "palisade: from this node to its pods, always allowed" -j RETURN
COMMIT
"#
    );
}

/// Pods of a selector on a port and an endPort range: one set of peers, one line per port.
#[test]
fn selector_and_ports() {
    assert_eq!(
        scenario_selector_and_ports(),
        r#"create PAL-S-9E5797AD4F9E72E3 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-9E5797AD4F9E72E3 10.0.1.2
add PAL-S-9E5797AD4F9E72E3 10.0.1.3
*filter
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-E25ACAFFAE77481F - [0:0]
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/allow-db ingress[0]" -j PAL-R-E25ACAFFAE77481F
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/allow-db ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j DROP
-A PAL-R-E25ACAFFAE77481F -p tcp -m set --match-set PAL-S-9E5797AD4F9E72E3 src -m tcp --dport 80 -m comment --comment "x/allow-db ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-E25ACAFFAE77481F -p tcp -m set --match-set PAL-S-9E5797AD4F9E72E3 src -m tcp --dport 8000:8100 -m comment --comment "x/allow-db ingress[0]" -j MARK --set-xmark 0x10000/0x10000
COMMIT
"#
    );
}

/// One hash:net set per ipBlock, excepts as nomatch entries; a /0 as two halves.
#[test]
fn ip_blocks() {
    assert_eq!(
        scenario_ip_blocks(),
        r#"create PAL-N-939BAD10B35A9472 hash:net family inet hashsize 1024 maxelem 1048576
add PAL-N-939BAD10B35A9472 0.0.0.0/1
add PAL-N-939BAD10B35A9472 10.0.0.0/8 nomatch
add PAL-N-939BAD10B35A9472 128.0.0.0/1
create PAL-N-FCE95DD4EAAB42C7 hash:net family inet hashsize 1024 maxelem 1048576
add PAL-N-FCE95DD4EAAB42C7 10.0.0.0/16
add PAL-N-FCE95DD4EAAB42C7 10.0.1.0/24 nomatch
*filter
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-8D2F9816A6939837 - [0:0]
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/blocks ingress[0]" -j PAL-R-8D2F9816A6939837
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/blocks ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j DROP
-A PAL-R-8D2F9816A6939837 -m set --match-set PAL-N-FCE95DD4EAAB42C7 src -m comment --comment "x/blocks ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-8D2F9816A6939837 -m set --match-set PAL-N-939BAD10B35A9472 src -m comment --comment "x/blocks ingress[0]" -j MARK --set-xmark 0x10000/0x10000
COMMIT
"#
    );
}

/// Ingress named ports resolve on each local pod (another number, another rule chain);
/// egress named ports on each peer, through a hash:ip,port set.
#[test]
fn named_ports() {
    assert_eq!(
        scenario_named_ports(),
        r#"create PAL-P-7039367A00678343 hash:ip,port family inet hashsize 1024 maxelem 1048576
add PAL-P-7039367A00678343 10.0.1.2,tcp:9090
create PAL-S-9E5797AD4F9E72E3 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-9E5797AD4F9E72E3 10.0.1.2
add PAL-S-9E5797AD4F9E72E3 10.0.1.3
*filter
:PAL-E-0A74BD4AF1A08144 - [0:0]
:PAL-E-FFECB56C29E1D3A8 - [0:0]
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-I-FD74D520DECEA678 - [0:0]
:PAL-R-60A1AFCF2CE693AB - [0:0]
:PAL-R-739682F41FF6BAE8 - [0:0]
:PAL-R-B9EC4EF76FF7161C - [0:0]
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "x/a egress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "x/named egress[0]" -j PAL-R-739682F41FF6BAE8
-A PAL-E-0A74BD4AF1A08144 -m mark --mark 0x10000/0x10000 -m comment --comment "x/named egress[0] allows" -j RETURN
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "x/a egress: no rule allows" -j DROP
-A PAL-E-FFECB56C29E1D3A8 -m comment --comment "x/e egress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-E-FFECB56C29E1D3A8 -m comment --comment "x/named egress[0]" -j PAL-R-739682F41FF6BAE8
-A PAL-E-FFECB56C29E1D3A8 -m mark --mark 0x10000/0x10000 -m comment --comment "x/named egress[0] allows" -j RETURN
-A PAL-E-FFECB56C29E1D3A8 -m comment --comment "x/e egress: no rule allows" -j DROP
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/named ingress[0]" -j PAL-R-60A1AFCF2CE693AB
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/named ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j DROP
-A PAL-I-FD74D520DECEA678 -m comment --comment "x/e ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-FD74D520DECEA678 -m comment --comment "x/named ingress[0]" -j PAL-R-B9EC4EF76FF7161C
-A PAL-I-FD74D520DECEA678 -m mark --mark 0x10000/0x10000 -m comment --comment "x/named ingress[0] allows" -j RETURN
-A PAL-I-FD74D520DECEA678 -m comment --comment "x/e ingress: no rule allows" -j DROP
-A PAL-R-60A1AFCF2CE693AB -p tcp -m tcp --dport 8080 -m comment --comment "x/named ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-739682F41FF6BAE8 -p udp -m set --match-set PAL-S-9E5797AD4F9E72E3 dst -m comment --comment "x/named egress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-739682F41FF6BAE8 -m set --match-set PAL-P-7039367A00678343 dst,dst -m comment --comment "x/named egress[0] named ports" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-B9EC4EF76FF7161C -p tcp -m tcp --dport 8443 -m comment --comment "x/named ingress[0]" -j MARK --set-xmark 0x10000/0x10000
COMMIT
"#
    );
}

/// Denied by audit policies only: counted and logged, let through; an enforcing policy
/// isolating the same direction drops.
#[test]
fn audit() {
    assert_eq!(
        scenario_audit(),
        r#"create PAL-S-9E5797AD4F9E72E3 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-9E5797AD4F9E72E3 10.0.1.2
*filter
:PAL-E-0A74BD4AF1A08144 - [0:0]
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-1796012EE45535FE - [0:0]
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "x/a egress: audit, would drop (isolated by audit)"
-A PAL-E-0A74BD4AF1A08144 -m limit --limit 10/min --limit-burst 20 -m comment --comment "x/a egress: audit log" -j NFLOG --nflog-prefix "palisade-audit x/a egress audit" --nflog-group 100
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/audit ingress[0]" -j PAL-R-1796012EE45535FE
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/audit ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j DROP
-A PAL-R-1796012EE45535FE -m set --match-set PAL-S-9E5797AD4F9E72E3 src -m comment --comment "x/audit ingress[0]" -j MARK --set-xmark 0x10000/0x10000
COMMIT
"#
    );
}

/// Deny action reject: the one verdict line of an enforcing pod chain jumps to PALISADE-REJECT
/// (a TCP reset, ICMP admin-prohibited for the rest, each within a node-wide rate, then drop);
/// the audit-only chain takes no verdict, as with drop.
#[test]
fn reject() {
    assert_eq!(
        scenario_reject(),
        r#"create PAL-S-9E5797AD4F9E72E3 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-9E5797AD4F9E72E3 10.0.1.2
*filter
:PAL-E-0A74BD4AF1A08144 - [0:0]
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-1796012EE45535FE - [0:0]
:PALISADE-REJECT - [0:0]
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "x/a egress: audit, would drop (isolated by audit)"
-A PAL-E-0A74BD4AF1A08144 -m limit --limit 10/min --limit-burst 20 -m comment --comment "x/a egress: audit log" -j NFLOG --nflog-prefix "palisade-audit x/a egress audit" --nflog-group 100
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/audit ingress[0]" -j PAL-R-1796012EE45535FE
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/audit ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j PALISADE-REJECT
-A PAL-R-1796012EE45535FE -m set --match-set PAL-S-9E5797AD4F9E72E3 src -m comment --comment "x/audit ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PALISADE-REJECT -p tcp -m limit --limit 100/sec --limit-burst 100 -m comment --comment "palisade: denied, refused with a TCP reset" -j REJECT --reject-with tcp-reset
-A PALISADE-REJECT -p tcp -m comment --comment "palisade: denied, over the reject rate" -j DROP
-A PALISADE-REJECT -m limit --limit 100/sec --limit-burst 100 -m comment --comment "palisade: denied, refused with ICMP admin-prohibited" -j REJECT --reject-with icmp-admin-prohibited
-A PALISADE-REJECT -m comment --comment "palisade: denied, over the reject rate" -j DROP
COMMIT
"#
    );
    // Only the verdict differs from drop: the same chains, the same lines, one target each.
    let (drop, reject) = (scenario_audit(), scenario_reject());
    let changed: Vec<&str> = reject
        .lines()
        .filter(|l| !l.contains("PALISADE-REJECT") || l.contains("no rule allows"))
        .filter(|l| !drop.lines().any(|d| d == *l))
        .collect();
    assert_eq!(
        changed,
        [
            r#"-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j PALISADE-REJECT"#
        ]
    );
}

/// A dual-stack cluster: web `a` (10.0.0.1 and fd00:10:244::1) on n1, db `b` IPv6-only on
/// n2, db `c` IPv4-only; web's ingress from db pods and from an ipBlock of each family, on
/// TCP/80; deny action reject.
fn scenario_dual_stack(family: IpFamily) -> String {
    let a = pod("x", "a", "web", [10, 0, 0, 1], "n1").with_second_ip(v6("fd00:10:244::1"));
    let mut b = pod("x", "b", "db", [0, 0, 0, 0], "n2");
    b.ip = Some(v6("fd00:10:244:1::2"));
    b.ips = vec![v6("fd00:10:244:1::2")];
    let c = db("c", [10, 0, 1, 3], None);
    let mut p = policy("x", "web", "web");
    p.ingress = Some(vec![Rule {
        peers: vec![
            pods_of("db"),
            block("192.168.0.0/16", &[]),
            block("2001:db8::/32", &["2001:db8:1::/48"]),
        ],
        ports: vec![tcp(80, 80)],
    }]);
    let c = Cluster::new(
        vec![Namespace::new("x", Labels::new())],
        vec![a, b, c],
        vec![],
        vec![p],
    );
    let options = CompileOptions {
        deny_action: DenyAction::Reject,
        ..CompileOptions::default()
    };
    let r = compile_family(&c, "n1", &options, family);
    assert_eq!(r.validate(), Ok(()));
    full(&r)
}

fn v6(s: &str) -> IpAddr {
    s.parse().expect("IPv6 address")
}

/// The IPv6 ruleset of a dual-stack node: `family inet6` sets of their own names (the IPv6
/// addresses of the db pods, the IPv6 block), ICMPv6 neighbour discovery let through before
/// conntrack, denials refused with ICMPv6 admin-prohibited. The IPv4 block is no peer here.
#[test]
fn dual_stack_ipv6() {
    assert_eq!(
        scenario_dual_stack(IpFamily::V6),
        r#"create PAL-N-0A3AC4EEA6237F89 hash:net family inet6 hashsize 1024 maxelem 1048576
add PAL-N-0A3AC4EEA6237F89 2001:db8::/32
add PAL-N-0A3AC4EEA6237F89 2001:db8:1::/48 nomatch
create PAL-S-EDFC3328942B003B hash:ip family inet6 hashsize 1024 maxelem 1048576
add PAL-S-EDFC3328942B003B fd00:10:244:1::2
create PALISADE-LOCAL6 hash:ip family inet6 hashsize 1024 maxelem 1048576
add PALISADE-LOCAL6 fd00:10:244::1
*filter
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-754DD80620096727 - [0:0]
:PALISADE-FORWARD - [0:0]
:PALISADE-INPUT - [0:0]
:PALISADE-OUTPUT - [0:0]
:PALISADE-REJECT - [0:0]
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/web ingress[0]" -j PAL-R-754DD80620096727
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/web ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j PALISADE-REJECT
-A PAL-R-754DD80620096727 -p tcp -m set --match-set PAL-S-EDFC3328942B003B src -m tcp --dport 80 -m comment --comment "x/web ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-754DD80620096727 -p tcp -m set --match-set PAL-N-0A3AC4EEA6237F89 src -m tcp --dport 80 -m comment --comment "x/web ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PALISADE-FORWARD -m set ! --match-set PALISADE-LOCAL6 src -m set ! --match-set PALISADE-LOCAL6 dst -m comment --comment "palisade: not from or to a local pod" -j RETURN
-A PALISADE-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 133 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 136 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 137 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-FORWARD -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-FORWARD -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j PALISADE-REJECT
-A PALISADE-FORWARD -d fd00:10:244::1/128 -m comment --comment "x/a ingress" -j PAL-I-5D91D0EE6D0E4B6C
-A PALISADE-FORWARD -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-INPUT -m set ! --match-set PALISADE-LOCAL6 src -m comment --comment "palisade: not from a local pod" -j RETURN
-A PALISADE-INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 133 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 136 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 137 -m comment --comment "palisade: IPv6 neighbour discovery" -j RETURN
-A PALISADE-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-INPUT -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j PALISADE-REJECT
-A PALISADE-INPUT -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-OUTPUT -p tcp -m set --match-set PALISADE-LOCAL6 dst -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j PALISADE-REJECT
-A PALISADE-OUTPUT -m set --match-set PALISADE-LOCAL6 dst -m comment --comment "palisade: from this node to its pods, always allowed" -j RETURN
-A PALISADE-REJECT -p tcp -m limit --limit 100/sec --limit-burst 100 -m comment --comment "palisade: denied, refused with a TCP reset" -j REJECT --reject-with tcp-reset
-A PALISADE-REJECT -p tcp -m comment --comment "palisade: denied, over the reject rate" -j DROP
-A PALISADE-REJECT -m limit --limit 100/sec --limit-burst 100 -m comment --comment "palisade: denied, refused with ICMPv6 admin-prohibited" -j REJECT --reject-with icmp6-adm-prohibited
-A PALISADE-REJECT -m comment --comment "palisade: denied, over the reject rate" -j DROP
COMMIT
"#
    );
}

/// The IPv4 ruleset of the same node: the IPv4 addresses only, names as before IPv6.
#[test]
fn dual_stack_ipv4() {
    assert_eq!(
        scenario_dual_stack(IpFamily::V4),
        r#"create PAL-N-B510D1FB46068B09 hash:net family inet hashsize 1024 maxelem 1048576
add PAL-N-B510D1FB46068B09 192.168.0.0/16
create PAL-S-9E5797AD4F9E72E3 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-9E5797AD4F9E72E3 10.0.1.3
create PALISADE-LOCAL hash:ip family inet hashsize 1024 maxelem 1048576
add PALISADE-LOCAL 10.0.0.1
*filter
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-754DD80620096727 - [0:0]
:PALISADE-FORWARD - [0:0]
:PALISADE-INPUT - [0:0]
:PALISADE-OUTPUT - [0:0]
:PALISADE-REJECT - [0:0]
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/web ingress[0]" -j PAL-R-754DD80620096727
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/web ingress[0] allows" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j PALISADE-REJECT
-A PAL-R-754DD80620096727 -p tcp -m set --match-set PAL-S-9E5797AD4F9E72E3 src -m tcp --dport 80 -m comment --comment "x/web ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-R-754DD80620096727 -p tcp -m set --match-set PAL-N-B510D1FB46068B09 src -m tcp --dport 80 -m comment --comment "x/web ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PALISADE-FORWARD -m set ! --match-set PALISADE-LOCAL src -m set ! --match-set PALISADE-LOCAL dst -m comment --comment "palisade: not from or to a local pod" -j RETURN
-A PALISADE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-FORWARD -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-FORWARD -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j PALISADE-REJECT
-A PALISADE-FORWARD -d 10.0.0.1/32 -m comment --comment "x/a ingress" -j PAL-I-5D91D0EE6D0E4B6C
-A PALISADE-FORWARD -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-INPUT -m set ! --match-set PALISADE-LOCAL src -m comment --comment "palisade: not from a local pod" -j RETURN
-A PALISADE-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-INPUT -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j PALISADE-REJECT
-A PALISADE-INPUT -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-OUTPUT -p tcp -m set --match-set PALISADE-LOCAL dst -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j PALISADE-REJECT
-A PALISADE-OUTPUT -m set --match-set PALISADE-LOCAL dst -m comment --comment "palisade: from this node to its pods, always allowed" -j RETURN
-A PALISADE-REJECT -p tcp -m limit --limit 100/sec --limit-burst 100 -m comment --comment "palisade: denied, refused with a TCP reset" -j REJECT --reject-with tcp-reset
-A PALISADE-REJECT -p tcp -m comment --comment "palisade: denied, over the reject rate" -j DROP
-A PALISADE-REJECT -m limit --limit 100/sec --limit-burst 100 -m comment --comment "palisade: denied, refused with ICMP admin-prohibited" -j REJECT --reject-with icmp-admin-prohibited
-A PALISADE-REJECT -m comment --comment "palisade: denied, over the reject rate" -j DROP
COMMIT
"#
    );
}

#[test]
fn same_input_same_text() {
    for scenario in [
        scenario_deny_all,
        scenario_selector_and_ports,
        scenario_ip_blocks,
        scenario_named_ports,
        scenario_audit,
        scenario_reject,
    ] {
        assert_eq!(scenario(), scenario());
    }
    for family in IpFamily::ALL {
        assert_eq!(scenario_dual_stack(family), scenario_dual_stack(family));
    }
}

/// A namespace labelled `palisade.dev/mode=audit` puts its policies in audit mode: the ruleset
/// is exactly the one of the same policies annotated audit, and removing the label compiles
/// them enforced again, line for line.
#[test]
fn audit_by_namespace_label() {
    let pods = || {
        vec![
            pod("x", "a", "web", [10, 0, 0, 1], "n1"),
            db("b", [10, 0, 1, 2], None),
        ]
    };
    let deny = |annotated: bool| {
        let mut p = policy("x", "deny", "web");
        p.ingress = Some(vec![Rule {
            peers: vec![pods_of("db")],
            ports: vec![tcp(5432, 5432)],
        }]);
        if annotated {
            p.annotations = [(MODE_ANNOTATION.to_string(), "audit".to_string())].into();
        }
        p
    };
    let compiled = |namespace_labels: Labels, annotated: bool| {
        let c = Cluster::new(
            vec![Namespace::new("x", namespace_labels)],
            pods(),
            vec![],
            vec![deny(annotated)],
        );
        let r = compile(&c, "n1", &CompileOptions::default());
        assert_eq!(r.validate(), Ok(()));
        render_iptables(&r, &BTreeMap::new()).unwrap_or_default()
    };
    let labelled = compiled(labels(&[(MODE_LABEL, "audit")]), false);
    assert_eq!(labelled, compiled(Labels::new(), true));
    assert!(
        labelled.contains(r#"--comment "x/a ingress: audit, would drop (isolated by deny)""#),
        "{labelled}"
    );
    assert!(!labelled.contains("no rule allows\" -j DROP"), "{labelled}");
    // Another value of the label enforces, as no label does.
    let enforced = compiled(labels(&[(MODE_LABEL, "enforce")]), false);
    assert_eq!(enforced, compiled(Labels::new(), false));
    assert!(
        enforced.contains(r#"-m comment --comment "x/a ingress: no rule allows" -j DROP"#),
        "{enforced}"
    );
}
