//! ClusterNetworkPolicy in the enforcer, without a kernel: the exact text of a small tiered
//! ruleset, a Deny that drops whatever the deny action, which policies are not enforced and why,
//! and where the enforcer stands aside.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use common::{labels, pod_on};
use palisade_api::{ClusterNetworkPolicy, MAX_NOT_ENFORCED, NotEnforcedPolicy};
use palisade_enforcer::cluster_policies::{
    cni_enforces_cluster_network_policy, decide, understand,
};
use palisade_enforcer::cni::{CniError, CniInfo};
use palisade_enforcer::compile::DenyAction;
use palisade_enforcer::interpret::{Outcome, Packet, Path, run};
use palisade_enforcer::mode::Mode;
use palisade_enforcer::render::{render_ipset, render_iptables};
use palisade_enforcer::{CompileOptions, compile};
use palisade_policy::cluster_policy::{
    Action, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, Subject, Tier,
};
use palisade_policy::policy::{NamespaceScope, PortMatch, PortSpec};
use palisade_policy::{
    Cluster, ContainerPort, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector,
};

fn app(name: &str) -> Selector {
    Selector::from_labels(&labels(&[("app", name)]))
}

fn pod(name: &str, ip: [u8; 4], node: &str) -> Pod {
    pod_on(
        "x",
        name,
        labels(&[("app", name)]),
        Ipv4Addr::from(ip).into(),
        node,
    )
}

fn rule(action: Action, peers: Vec<ClusterPeer>, ports: Option<Vec<ClusterPort>>) -> ClusterRule {
    ClusterRule {
        name: None,
        action,
        peers,
        ports,
    }
}

fn tcp(port: u16) -> ClusterPort {
    ClusterPort::Ports {
        protocol: Protocol::Tcp,
        first: port,
        last: port,
    }
}

fn pods_of(name: &str) -> ClusterPeer {
    ClusterPeer::Pods {
        namespaces: Selector::everything(),
        pods: app(name),
    }
}

/// Pod a (x, on n1) and b (x, on n2, serving "web" on 8443/TCP); an Admin policy about a's
/// ingress (Accept from b on 8080, Deny everyone on 22, Pass b), a NetworkPolicy that lets b
/// reach a on 80, and a Baseline policy about everyone's egress (Accept b's "web", Deny every
/// network).
fn small_cluster() -> Cluster {
    let a = pod("a", [10, 0, 0, 1], "n1");
    let mut b = pod("b", [10, 0, 0, 2], "n2");
    b.ports.push(ContainerPort {
        name: Some("web".into()),
        port: 8443,
        protocol: Protocol::Tcp,
    });
    let np = Policy {
        namespace: "x".into(),
        name: "allow-b-80".into(),
        labels: Labels::new(),
        annotations: Default::default(),
        pod_selector: app("a"),
        ingress: Some(vec![Rule {
            peers: vec![Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods: app("b"),
            }],
            ports: vec![PortMatch {
                protocol: Protocol::Tcp,
                port: PortSpec::Range(80, 80),
            }],
        }]),
        egress: None,
        implicit_types: false,
    };
    let guard = ClusterPolicy {
        name: "guard".into(),
        tier: Tier::Admin,
        priority: 10,
        subject: Subject::Pods {
            namespaces: Selector::everything(),
            pods: app("a"),
        },
        ingress: vec![
            rule(Action::Accept, vec![pods_of("b")], Some(vec![tcp(8080)])),
            ClusterRule {
                name: Some("no-ssh".into()),
                ..rule(
                    Action::Deny,
                    vec![ClusterPeer::Namespaces(Selector::everything())],
                    Some(vec![tcp(22)]),
                )
            },
            rule(Action::Pass, vec![pods_of("b")], None),
        ],
        egress: vec![],
    };
    let baseline = ClusterPolicy {
        name: "default".into(),
        tier: Tier::Baseline,
        priority: 0,
        subject: Subject::Namespaces(Selector::everything()),
        ingress: vec![],
        egress: vec![
            rule(
                Action::Accept,
                vec![pods_of("b")],
                Some(vec![ClusterPort::Named("web".into())]),
            ),
            rule(
                Action::Deny,
                vec![ClusterPeer::Networks(vec![
                    "0.0.0.0/0".parse().expect("cidr"),
                    "::/0".parse().expect("cidr"),
                ])],
                None,
            ),
        ],
    };
    Cluster::new(
        vec![Namespace::new("x", Labels::new())],
        vec![a, b],
        vec![],
        vec![np],
    )
    .with_cluster_policies(vec![baseline, guard])
}

#[test]
fn a_small_tiered_ruleset_reads_as_written() {
    let r = compile(&small_cluster(), "n1", &CompileOptions::default());
    assert_eq!(r.validate(), Ok(()));
    let text = format!(
        "{}{}",
        render_ipset(&r, Some(&BTreeMap::new())),
        render_iptables(&r, &BTreeMap::new()).expect("chains")
    );
    assert_eq!(text, GOLDEN, "\n{text}");
}

const GOLDEN: &str = r#"create PAL-N-C5E08DEE81888FDB hash:net family inet hashsize 1024 maxelem 1048576
add PAL-N-C5E08DEE81888FDB 0.0.0.0/1
add PAL-N-C5E08DEE81888FDB 128.0.0.0/1
create PAL-P-278351D9DD76F4DF hash:ip,port family inet hashsize 1024 maxelem 1048576
add PAL-P-278351D9DD76F4DF 10.0.0.2,tcp:8443
create PAL-S-47732429AD9D844D hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-47732429AD9D844D 10.0.0.2
create PAL-S-ED6F98781A0022C0 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-ED6F98781A0022C0 10.0.0.1
add PAL-S-ED6F98781A0022C0 10.0.0.2
create PAL-S-F6FC9E79756832B5 hash:ip family inet hashsize 1024 maxelem 1048576
add PAL-S-F6FC9E79756832B5 10.0.0.2
create PALISADE-LOCAL hash:ip family inet hashsize 1024 maxelem 1048576
add PALISADE-LOCAL 10.0.0.1
*filter
:PAL-C-7B440837A2163562 - [0:0]
:PAL-C-7F2D3137A2F5140D - [0:0]
:PAL-C-A5C620B76ED57C66 - [0:0]
:PAL-C-B07B49B7757AAD11 - [0:0]
:PAL-C-B46472B776598BBC - [0:0]
:PAL-E-0A74BD4AF1A08144 - [0:0]
:PAL-I-5D91D0EE6D0E4B6C - [0:0]
:PAL-R-723D214BF471FF88 - [0:0]
:PAL-T-5D91D0EE6D0E4B6C - [0:0]
:PALISADE-FORWARD - [0:0]
:PALISADE-INPUT - [0:0]
:PALISADE-OUTPUT - [0:0]
-A PAL-C-7B440837A2163562 -m set --match-set PAL-P-278351D9DD76F4DF dst,dst -m comment --comment "baseline cnp/default egress[0] named ports" -j MARK --set-xmark 0x10000/0x10000
-A PAL-C-7F2D3137A2F5140D -m set --match-set PAL-N-C5E08DEE81888FDB dst -m comment --comment "baseline cnp/default egress[1]" -j DROP
-A PAL-C-A5C620B76ED57C66 -p tcp -m set --match-set PAL-S-F6FC9E79756832B5 src -m tcp --dport 8080 -m comment --comment "admin cnp/guard ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-C-B07B49B7757AAD11 -p tcp -m set --match-set PAL-S-ED6F98781A0022C0 src -m tcp --dport 22 -m comment --comment "admin cnp/guard ingress[1] (no-ssh)" -j DROP
-A PAL-C-B46472B776598BBC -m set --match-set PAL-S-F6FC9E79756832B5 src -m comment --comment "admin cnp/guard ingress[2]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "x/a egress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "baseline cnp/default egress[0]" -j PAL-C-7B440837A2163562
-A PAL-E-0A74BD4AF1A08144 -m mark --mark 0x10000/0x10000 -m comment --comment "baseline cnp/default egress[0] accepts" -j RETURN
-A PAL-E-0A74BD4AF1A08144 -m comment --comment "baseline cnp/default egress[1] denies" -j PAL-C-7F2D3137A2F5140D
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "admin cnp/guard ingress[0]" -j PAL-C-A5C620B76ED57C66
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "admin cnp/guard ingress[0] accepts" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "admin cnp/guard ingress[1] (no-ssh) denies" -j PAL-C-B07B49B7757AAD11
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "admin cnp/guard ingress[2]" -j PAL-C-B46472B776598BBC
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "admin cnp/guard ingress[2] passes to the next tier" -j PAL-T-5D91D0EE6D0E4B6C
-A PAL-I-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/a ingress: allowed after admin cnp/guard ingress[2] passed" -j RETURN
-A PAL-I-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: the next tier" -j PAL-T-5D91D0EE6D0E4B6C
-A PAL-R-723D214BF471FF88 -p tcp -m set --match-set PAL-S-47732429AD9D844D src -m tcp --dport 80 -m comment --comment "x/allow-b-80 ingress[0]" -j MARK --set-xmark 0x10000/0x10000
-A PAL-T-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: start unmarked" -j MARK --set-xmark 0x0/0x10000
-A PAL-T-5D91D0EE6D0E4B6C -m comment --comment "x/allow-b-80 ingress[0]" -j PAL-R-723D214BF471FF88
-A PAL-T-5D91D0EE6D0E4B6C -m mark --mark 0x10000/0x10000 -m comment --comment "x/allow-b-80 ingress[0] allows" -j RETURN
-A PAL-T-5D91D0EE6D0E4B6C -m comment --comment "x/a ingress: no rule allows" -j DROP
-A PALISADE-FORWARD -m set ! --match-set PALISADE-LOCAL src -m set ! --match-set PALISADE-LOCAL dst -m comment --comment "palisade: not from or to a local pod" -j RETURN
-A PALISADE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-FORWARD -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-FORWARD -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j DROP
-A PALISADE-FORWARD -s 10.0.0.1/32 -m comment --comment "x/a egress" -j PAL-E-0A74BD4AF1A08144
-A PALISADE-FORWARD -d 10.0.0.1/32 -m comment --comment "x/a ingress" -j PAL-I-5D91D0EE6D0E4B6C
-A PALISADE-FORWARD -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-INPUT -m set ! --match-set PALISADE-LOCAL src -m comment --comment "palisade: not from a local pod" -j RETURN
-A PALISADE-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "palisade: established connections" -j ACCEPT
-A PALISADE-INPUT -m conntrack --ctstate INVALID -m comment --comment "palisade: invalid packets" -j DROP
-A PALISADE-INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j DROP
-A PALISADE-INPUT -s 10.0.0.1/32 -m comment --comment "x/a egress" -j PAL-E-0A74BD4AF1A08144
-A PALISADE-INPUT -m comment --comment "palisade: leave the mark as found" -j MARK --set-xmark 0x0/0x10000
-A PALISADE-OUTPUT -p tcp -m set --match-set PALISADE-LOCAL dst -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m comment --comment "palisade: TCP picked up mid-stream, no handshake" -j DROP
-A PALISADE-OUTPUT -m set --match-set PALISADE-LOCAL dst -m comment --comment "palisade: from this node to its pods, always allowed" -j RETURN
COMMIT
"#;

fn packet(src: [u8; 4], dst: [u8; 4], protocol: Protocol, port: u16) -> Packet {
    Packet::new(
        Ipv4Addr::from(src).into(),
        Ipv4Addr::from(dst).into(),
        protocol,
        port,
        Path::Forward,
    )
}

#[test]
fn cluster_network_policy_deny_drops_whatever_the_deny_action() {
    let c = small_cluster();
    let options = CompileOptions {
        deny_action: DenyAction::Reject,
        ..CompileOptions::default()
    };
    let r = compile(&c, "n1", &options);
    let b = [10, 0, 0, 2];
    let a = [10, 0, 0, 1];
    // Admin Deny (no-ssh): dropped silently, as upstream's conformance wants.
    assert_eq!(run(&r, packet(b, a, Protocol::Tcp, 22)), Ok(Outcome::Drop));
    // Admin Accept: through, though no NetworkPolicy allows 8080.
    assert_eq!(
        run(&r, packet(b, a, Protocol::Tcp, 8080)),
        Ok(Outcome::Accept)
    );
    // Pass to the NetworkPolicy: 80 allowed, 81 denied by NetworkPolicy: refused (reject).
    assert_eq!(
        run(&r, packet(b, a, Protocol::Tcp, 80)),
        Ok(Outcome::Accept)
    );
    assert_eq!(
        run(&r, packet(b, a, Protocol::Tcp, 81)),
        Ok(Outcome::Reject)
    );
    // a's egress: Baseline Accept on b's named port, Baseline Deny of every other address.
    assert_eq!(
        run(&r, packet(a, b, Protocol::Tcp, 8443)),
        Ok(Outcome::Accept)
    );
    assert_eq!(run(&r, packet(a, b, Protocol::Tcp, 80)), Ok(Outcome::Drop));
    assert_eq!(
        run(&r, packet(a, [8, 8, 8, 8], Protocol::Udp, 53)),
        Ok(Outcome::Drop)
    );
    // And each as the policy crate says.
    let a_pod = &c.pods()[0];
    let b_pod = &c.pods()[1];
    use palisade_policy::Endpoint;
    for (port, allowed) in [(22, false), (8080, true), (80, true), (81, false)] {
        let v = c.evaluate(
            &Endpoint::Pod(b_pod),
            &Endpoint::Pod(a_pod),
            port,
            Protocol::Tcp,
        );
        assert_eq!(v.ingress.allows(), allowed, "{port}");
    }
}

fn cnp(json: serde_json::Value) -> Arc<ClusterNetworkPolicy> {
    Arc::new(serde_json::from_value(json).expect("a ClusterNetworkPolicy"))
}

#[test]
fn policies_palisade_cannot_enforce_are_named_with_the_reason() {
    let good = cnp(serde_json::json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "deny-ssh"},
        "spec": {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                 "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                              "protocols": [{"tcp": {"destinationPort": {"number": 22}}}]}]}
    }));
    let domains = cnp(serde_json::json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "allow-names"},
        "spec": {"tier": "Admin", "priority": 5, "subject": {"namespaces": {}},
                 "egress": [{"name": "docs", "action": "Accept",
                             "to": [{"domainNames": ["*.kubernetes.io"]}]}]}
    }));
    let nodes = cnp(serde_json::json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "a-nodes"},
        "spec": {"tier": "Baseline", "priority": 5000, "subject": {"namespaces": {}},
                 "egress": [{"action": "Deny", "to": [{"nodes": {}}]}]}
    }));
    let (policies, refused) = understand(&[good, domains, nodes]);
    assert_eq!(
        policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["deny-ssh"]
    );
    let names: Vec<&str> = refused.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a-nodes", "allow-names"]);
    assert!(refused[0].reason.contains("nodes"), "{:?}", refused[0]);
    assert!(refused[0].reason.contains("priority"), "{:?}", refused[0]);
    assert!(
        refused[1].reason.contains("domainNames"),
        "{:?}",
        refused[1]
    );
}

#[test]
fn the_status_names_at_most_twenty_and_counts_them_all() {
    let refused: Vec<NotEnforcedPolicy> = (0..25)
        .map(|i| NotEnforcedPolicy {
            name: format!("p{i:02}"),
            reason: "why".into(),
        })
        .collect();
    let r =
        palisade_enforcer::cluster_policies::summarize(true, "enforced".into(), None, 30, &refused);
    assert_eq!(r.policies, 30);
    assert_eq!(r.not_enforced_count, 25);
    assert_eq!(r.not_enforced.len(), MAX_NOT_ENFORCED);
    assert_eq!(r.not_enforced[0].name, "p00");
}

fn cni(name: &str, enforces: Option<bool>) -> Result<CniInfo, CniError> {
    Ok(CniInfo {
        file: PathBuf::from("/etc/cni/net.d/10-x.conflist"),
        network: None,
        plugins: vec![name.into()],
        cni: name.into(),
        enforces,
        skipped: vec![],
    })
}

#[test]
fn the_enforcer_stands_aside_or_says_why_it_does_not_enforce() {
    // flannel: enforced along with NetworkPolicy.
    assert!(decide(Mode::Auto, &cni("flannel", Some(false)), true).0);
    // Calico and Antrea enforce ClusterNetworkPolicy themselves: stand aside.
    for name in ["calico", "antrea"] {
        assert!(cni_enforces_cluster_network_policy(name));
        let (enforced, reason) = decide(Mode::Auto, &cni(name, Some(true)), false);
        assert!(!enforced);
        assert_eq!(
            reason,
            format!("{name} enforces ClusterNetworkPolicy itself; standing aside")
        );
    }
    // Cilium enforces NetworkPolicy but not ClusterNetworkPolicy: not enforced, and said so.
    let (enforced, reason) = decide(Mode::Auto, &cni("cilium", Some(true)), false);
    assert!(!enforced);
    assert!(
        reason.starts_with("cilium enforces NetworkPolicy but not ClusterNetworkPolicy"),
        "{reason}"
    );
    // Mode enforce: everything, whatever the CNI; mode off: nothing.
    assert!(decide(Mode::Enforce, &cni("cilium", Some(true)), true).0);
    assert!(!decide(Mode::Off, &cni("flannel", Some(false)), false).0);
    // No backend works: not enforced.
    assert!(!decide(Mode::Auto, &cni("flannel", Some(false)), false).0);
}

#[test]
fn a_peer_of_an_unknown_kind_fails_closed_as_upstream_asks() {
    // `services` stands for a peer kind of a newer CRD: no field Palisade knows.
    let newer = cnp(serde_json::json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "newer"},
        "spec": {"tier": "Admin", "priority": 1, "subject": {"pods": {"podSelector": {"matchLabels": {"app": "a"}}}},
                 "egress": [
                     {"action": "Accept", "to": [{"services": {"name": "x"}}, {"pods": {"podSelector": {"matchLabels": {"app": "b"}}}}],
                      "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
                     {"action": "Pass", "to": [{"services": {"name": "y"}}],
                      "protocols": [{"udp": {"destinationPort": {"number": 53}}}]}
                 ]}
    }));
    let (policies, refused) = understand(&[newer]);
    assert_eq!(policies.len(), 1, "{refused:?}");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].name, "newer");
    assert!(
        refused[0].reason.ends_with(
            "enforced failing closed (egress rule 0: those peers match nothing, egress rule 1: it denies all traffic)"
        ),
        "{}",
        refused[0].reason
    );
    let c = Cluster::new(
        vec![Namespace::new("x", Labels::new())],
        vec![pod("a", [10, 0, 0, 1], "n1"), pod("b", [10, 0, 0, 2], "n2")],
        vec![],
        vec![],
    )
    .with_cluster_policies(policies);
    let r = compile(&c, "n1", &CompileOptions::default());
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    // The known peer of the Accept still accepts; everything else hits the Deny-all.
    assert_eq!(
        run(&r, packet(a, b, Protocol::Tcp, 80)),
        Ok(Outcome::Accept)
    );
    assert_eq!(run(&r, packet(a, b, Protocol::Tcp, 81)), Ok(Outcome::Drop));
    assert_eq!(
        run(&r, packet(a, [1, 1, 1, 1], Protocol::Sctp, 9)),
        Ok(Outcome::Drop)
    );
}
