//! The upstream ClusterNetworkPolicy conformance scenarios (network-policy-api v0.2.0,
//! `conformance/tests`, `conformance/base`), rebuilt from their published expectations: the
//! fixture's five namespaces and eight pods, each test's policies, its subtests in order (later
//! subtests see earlier swaps), and every probe's expected outcome. Each probe also asserts
//! which tier, policy and rule decided each side: `-` when nothing did (the default, allow).

use palisade_policy::cluster_policy::{ClusterPolicy, ClusterPort};
use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::{
    Action, Cluster, ContainerPort, Decision, Endpoint, Labels, Namespace, Pod, Policy, Protocol,
    Tier,
};

const HOUSES: [&str; 5] = [
    "gryffindor",
    "slytherin",
    "hufflepuff",
    "ravenclaw",
    "forbidden-forrest",
];

fn ns(house: &str) -> String {
    format!("network-policy-conformance-{house}")
}

/// The fixture: namespaces labelled `conformance-house: <house>`; two pods per house, labelled
/// the same, serving TCP 80 (`web`), TCP 8080, UDP 5353, UDP 53 (`dns`), SCTP 9003 and 9005;
/// the forbidden forest's centaurs on the host network.
fn fixture() -> (Vec<Namespace>, Vec<Pod>) {
    let namespaces = HOUSES
        .iter()
        .map(|h| {
            Namespace::new(
                ns(h),
                Labels::from([("conformance-house".to_string(), h.to_string())]),
            )
        })
        .collect();
    let mut pods = Vec::new();
    for (h, (house, person)) in [
        ("gryffindor", "harry-potter"),
        ("slytherin", "draco-malfoy"),
        ("hufflepuff", "cedric-diggory"),
        ("ravenclaw", "luna-lovegood"),
        ("forbidden-forrest", "centaur"),
    ]
    .into_iter()
    .enumerate()
    {
        for i in 0..2u8 {
            let ip = format!("10.{h}.0.{}", i + 10).parse().expect("ip");
            let mut pod = Pod::running(
                &ns(house),
                &format!("{person}-{i}"),
                Labels::from([("conformance-house".to_string(), house.to_string())]),
                ip,
            );
            let port = |name: Option<&str>, port, protocol| ContainerPort {
                name: name.map(str::to_string),
                port,
                protocol,
            };
            if house == "forbidden-forrest" {
                pod.host_network = true;
                pod.ports = vec![
                    port(Some("web-34345"), 34345, Protocol::Tcp),
                    port(Some("web-34346"), 34346, Protocol::Tcp),
                    port(Some("dns-34347"), 34347, Protocol::Udp),
                    port(Some("dns-34349"), 34349, Protocol::Udp),
                ];
            } else {
                pod.ports = vec![
                    port(Some("web"), 80, Protocol::Tcp),
                    port(None, 8080, Protocol::Tcp),
                    port(None, 5353, Protocol::Udp),
                    port(Some("dns"), 53, Protocol::Udp),
                    port(None, 9003, Protocol::Sctp),
                    port(None, 9005, Protocol::Sctp),
                ];
            }
            pods.push(pod);
        }
    }
    (namespaces, pods)
}

fn world(cnps: &[ClusterPolicy], nps: &[Policy]) -> Cluster {
    let (namespaces, pods) = fixture();
    let c = Cluster::new(namespaces, pods, Vec::new(), nps.to_vec())
        .with_cluster_policies(cnps.to_vec());
    // Whatever a test asserts of evaluate, the reach matrix (the compact, grouped path) agrees.
    let everyone = reachable_pods(&c);
    let ports: Vec<ProbePort> = [
        (80, Protocol::Tcp),
        (8080, Protocol::Tcp),
        (53, Protocol::Udp),
    ]
    .into_iter()
    .chain([(5353, Protocol::Udp), (9003, Protocol::Sctp)])
    .map(|(port, protocol)| ProbePort { port, protocol })
    .collect();
    let matrix = Matrix::compute(&c, everyone.clone(), everyone, ports);
    for probe in matrix.probes(true) {
        let src = c
            .pods()
            .iter()
            .find(|p| p.key() == probe.from)
            .expect("pod");
        let dst = c.pods().iter().find(|p| p.key() == probe.to).expect("pod");
        let protocol: Protocol = probe.protocol.parse().expect("protocol");
        let v = c.evaluate(
            &Endpoint::Pod(src),
            &Endpoint::Pod(dst),
            probe.port,
            protocol,
        );
        assert_eq!(
            (probe.allowed, probe.reason.as_str()),
            (
                v.allowed(),
                v.reason(&probe.from, &probe.to, probe.port, protocol)
                    .as_str()
            ),
            "reach and evaluate disagree on {} -> {} {}/{}",
            probe.from,
            probe.to,
            probe.port,
            protocol
        );
    }
    c
}

/// `harry-0` -> `network-policy-conformance-gryffindor/harry-potter-0`.
fn pod_key(short: &str) -> String {
    let (who, i) = short.split_once('-').expect("name-index");
    let (house, person) = match who {
        "harry" => ("gryffindor", "harry-potter"),
        "draco" => ("slytherin", "draco-malfoy"),
        "cedric" => ("hufflepuff", "cedric-diggory"),
        "luna" => ("ravenclaw", "luna-lovegood"),
        "centaur" => ("forbidden-forrest", "centaur"),
        other => panic!("no such person {other}"),
    };
    format!("{}/{person}-{i}", ns(house))
}

fn side(d: &Decision) -> String {
    match d {
        Decision::NotIsolated => "-".into(),
        Decision::NotApplicable => "n/a".into(),
        Decision::FromOwnNode => "own node".into(),
        Decision::ToItself => "itself".into(),
        Decision::Allowed { by, rule } => format!("NP {}#{rule} Allow", by.name),
        Decision::Denied { .. } => "NP Deny".into(),
        Decision::AuditWouldDeny { .. } => "NP Deny (audit)".into(),
        Decision::Cluster {
            tier,
            policy,
            rule,
            action,
            ..
        } => format!("{tier} {policy}#{rule} {action}"),
    }
}

/// Probes `from` -> `to` (`harry-0` style) on `port` (`tcp/80`), expecting `ok` and the
/// deciding sides written `egress | ingress`.
fn probe(c: &Cluster, from: &str, to: &str, port: &str, ok: bool, sides: &str) {
    let (proto, num) = port.split_once('/').expect("proto/port");
    let protocol: Protocol = proto.to_ascii_uppercase().parse().expect("protocol");
    let num: u16 = num.parse().expect("port");
    let (src, dst) = (pod_key(from), pod_key(to));
    let find = |k: &str| c.pods().iter().find(|p| p.key() == k).expect("pod");
    let v = c.evaluate(
        &Endpoint::Pod(find(&src)),
        &Endpoint::Pod(find(&dst)),
        num,
        protocol,
    );
    assert_eq!(
        (
            v.allowed(),
            format!("{} | {}", side(&v.egress), side(&v.ingress))
        ),
        (ok, sides.to_string()),
        "{from} -> {to} {port}: {}",
        v.reason(&src, &dst, num, protocol)
    );
}

const OK: bool = true;
const X: bool = false;

fn cnp(yaml: &str) -> ClusterPolicy {
    let api: palisade_api::ClusterNetworkPolicy = serde_saphyr::from_str(yaml).expect("yaml");
    ClusterPolicy::from_api(&api).expect("valid")
}

fn ns_peer(house: &str) -> String {
    format!(
        "{{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {}}}}}}}",
        ns(house)
    )
}

fn proto_yaml(p: &str) -> String {
    let (proto, port) = p.split_once('/').expect("proto/port");
    format!("{{{proto}: {{destinationPort: {{number: {port}}}}}}}")
}

/// One row of the protocol tests (3a/3b): the subject house, A (all ports), B at P, C at Q.
struct Row {
    name: &'static str,
    priority: u16,
    subject: &'static str,
    ingress: bool,
    a: &'static str,
    b: &'static str,
    p: &'static str,
    c: &'static str,
    q: &'static str,
}

/// The common rule template: Admin `[0] Accept A [1] Deny A [2] Pass A [3] Deny B @P
/// [4] Pass B @P [5] Accept C @Q [6] Deny C`; Baseline without the Pass rules.
fn protocol_policy(row: &Row, tier: Tier) -> ClusterPolicy {
    let (list, field) = if row.ingress {
        ("ingress", "from")
    } else {
        ("egress", "to")
    };
    let rule = |action: &str, house: &str, port: Option<&str>| {
        let protocols = port
            .map(|p| format!(", protocols: [{}]", proto_yaml(p)))
            .unwrap_or_default();
        format!(
            "  - {{action: {action}, {field}: [{}]{protocols}}}\n",
            ns_peer(house)
        )
    };
    let mut rules = String::new();
    rules += &rule("Accept", row.a, None);
    rules += &rule("Deny", row.a, None);
    if tier == Tier::Admin {
        rules += &rule("Pass", row.a, None);
    }
    rules += &rule("Deny", row.b, Some(row.p));
    if tier == Tier::Admin {
        rules += &rule("Pass", row.b, Some(row.p));
    }
    rules += &rule("Accept", row.c, Some(row.q));
    rules += &rule("Deny", row.c, None);
    let (name, priority) = match tier {
        Tier::Admin => (row.name, row.priority),
        Tier::Baseline => ("default", 10),
    };
    cnp(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  \
         subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {}}}}}}}\n  {list}:\n{rules}",
        ns(row.subject)
    ))
}

fn rules_of(p: &mut ClusterPolicy, ingress: bool) -> &mut Vec<palisade_policy::ClusterRule> {
    if ingress {
        &mut p.ingress
    } else {
        &mut p.egress
    }
}

/// `person-index` of a house.
fn who(house: &str, i: u8) -> String {
    let person = match house {
        "gryffindor" => "harry",
        "slytherin" => "draco",
        "hufflepuff" => "cedric",
        "ravenclaw" => "luna",
        other => panic!("{other}"),
    };
    format!("{person}-{i}")
}

/// Ports of a row: x, y (two ports of A), the other port of P and of Q (same protocol).
fn other(port: &str) -> &'static str {
    match port {
        "tcp/80" => "tcp/8080",
        "tcp/8080" => "tcp/80",
        "udp/53" => "udp/5353",
        "udp/5353" => "udp/53",
        "sctp/9003" => "sctp/9005",
        other => panic!("{other}"),
    }
}

fn first_port(port: &str) -> &'static str {
    match port.split_once('/').map(|(p, _)| p) {
        Some("tcp") => "tcp/80",
        Some("udp") => "udp/53",
        _ => "sctp/9003",
    }
}

/// Runs subtests 1-6 (Admin) or 1-4 (Baseline) of a protocol row, as upstream does: the subject
/// pods are the servers of ingress tests and the clients of egress tests.
fn run_protocol_row(row: &Row, tier: Tier) {
    let mut policy = protocol_policy(row, tier);
    let probe_row = |c: &Cluster, peer: String, subject: String, port: &str, ok, by: &str| {
        let by = by.replace("NAME", policy_name(row, tier));
        let by = by.replace("TIER", tier.as_str());
        if row.ingress {
            probe(c, &peer, &subject, port, ok, &format!("- | {by}"));
        } else {
            probe(c, &subject, &peer, port, ok, &format!("{by} | -"));
        }
    };
    let (x, y) = (first_port(row.p), other(first_port(row.p)));
    let (s, a, b, cc) = (row.subject, row.a, row.b, row.c);
    // Rule numbers of Deny B, Accept C, Deny C.
    let (deny_b, accept_c, deny_c) = if tier == Tier::Admin {
        (3, 5, 6)
    } else {
        (2, 3, 4)
    };

    // 1. Accept A [0] beats Deny A [1].
    let c = world(std::slice::from_ref(&policy), &[]);
    probe_row(&c, who(a, 0), who(s, 0), x, OK, "TIER NAME#0 Accept");
    probe_row(&c, who(a, 1), who(s, 0), y, OK, "TIER NAME#0 Accept");
    // 2. C at Q accepted [5], other ports of C denied [6].
    probe_row(
        &c,
        who(cc, 0),
        who(s, 1),
        row.q,
        OK,
        &format!("TIER NAME#{accept_c} Accept"),
    );
    probe_row(
        &c,
        who(cc, 1),
        who(s, 1),
        other(row.q),
        X,
        &format!("TIER NAME#{deny_c} Deny"),
    );
    // 3. Swap [0] and [1]: Deny A first.
    rules_of(&mut policy, row.ingress).swap(0, 1);
    let c = world(std::slice::from_ref(&policy), &[]);
    probe_row(&c, who(a, 0), who(s, 1), x, X, "TIER NAME#0 Deny");
    probe_row(&c, who(a, 1), who(s, 1), y, X, "TIER NAME#0 Deny");
    // 4. B at P denied [3]; B on another port: no rule matches, the default allows.
    probe_row(
        &c,
        who(b, 0),
        who(s, 0),
        row.p,
        X,
        &format!("TIER NAME#{deny_b} Deny"),
    );
    probe_row(&c, who(b, 1), who(s, 0), other(row.p), OK, "-");
    if tier == Tier::Baseline {
        return;
    }
    // 5. Swap [0] and [2]: Pass A first -> no NetworkPolicy, no Baseline -> allowed.
    rules_of(&mut policy, row.ingress).swap(0, 2);
    let c = world(std::slice::from_ref(&policy), &[]);
    probe_row(&c, who(a, 0), who(s, 1), y, OK, "TIER NAME#0 Pass");
    probe_row(&c, who(a, 1), who(s, 1), x, OK, "TIER NAME#0 Pass");
    // 6. Swap [3] and [4]: Pass B at P first.
    rules_of(&mut policy, row.ingress).swap(3, 4);
    let c = world(std::slice::from_ref(&policy), &[]);
    probe_row(&c, who(b, 0), who(s, 0), row.p, OK, "TIER NAME#3 Pass");
    probe_row(&c, who(b, 1), who(s, 0), other(row.p), OK, "-");
}

fn policy_name(row: &Row, tier: Tier) -> &'static str {
    match tier {
        Tier::Admin => row.name,
        Tier::Baseline => "default",
    }
}

const ROWS: [Row; 6] = [
    Row {
        name: "ingress-tcp",
        priority: 3,
        subject: "gryffindor",
        ingress: true,
        a: "ravenclaw",
        b: "slytherin",
        p: "tcp/80",
        c: "hufflepuff",
        q: "tcp/80",
    },
    Row {
        name: "ingress-udp",
        priority: 4,
        subject: "hufflepuff",
        ingress: true,
        a: "ravenclaw",
        b: "slytherin",
        p: "udp/5353",
        c: "gryffindor",
        q: "udp/53",
    },
    Row {
        name: "ingress-sctp",
        priority: 5,
        subject: "ravenclaw",
        ingress: true,
        a: "gryffindor",
        b: "slytherin",
        p: "sctp/9003",
        c: "hufflepuff",
        q: "sctp/9003",
    },
    Row {
        name: "egress-tcp",
        priority: 6,
        subject: "gryffindor",
        ingress: false,
        a: "ravenclaw",
        b: "slytherin",
        p: "tcp/80",
        c: "hufflepuff",
        q: "tcp/8080",
    },
    Row {
        name: "egress-udp",
        priority: 7,
        subject: "hufflepuff",
        ingress: false,
        a: "ravenclaw",
        b: "slytherin",
        p: "udp/5353",
        c: "gryffindor",
        q: "udp/53",
    },
    Row {
        name: "egress-sctp",
        priority: 8,
        subject: "ravenclaw",
        ingress: false,
        a: "gryffindor",
        b: "slytherin",
        p: "sctp/9003",
        c: "hufflepuff",
        q: "sctp/9003",
    },
];

#[test]
fn admin_tier_protocol_tests_3a() {
    for row in &ROWS {
        run_protocol_row(row, Tier::Admin);
    }
}

#[test]
fn baseline_tier_protocol_tests_3b() {
    for row in &ROWS {
        run_protocol_row(row, Tier::Baseline);
    }
}

/// The exact probes of 3a's ingress-tcp, written out as upstream lists them.
#[test]
fn admin_ingress_tcp_3a_as_listed() {
    let mut p = protocol_policy(&ROWS[0], Tier::Admin);
    let c = world(std::slice::from_ref(&p), &[]);
    probe(
        &c,
        "luna-0",
        "harry-0",
        "tcp/80",
        OK,
        "- | Admin ingress-tcp#0 Accept",
    );
    probe(
        &c,
        "luna-1",
        "harry-0",
        "tcp/8080",
        OK,
        "- | Admin ingress-tcp#0 Accept",
    );
    probe(
        &c,
        "cedric-0",
        "harry-1",
        "tcp/80",
        OK,
        "- | Admin ingress-tcp#5 Accept",
    );
    probe(
        &c,
        "cedric-1",
        "harry-1",
        "tcp/8080",
        X,
        "- | Admin ingress-tcp#6 Deny",
    );
    p.ingress.swap(0, 1);
    let c = world(std::slice::from_ref(&p), &[]);
    probe(
        &c,
        "luna-0",
        "harry-1",
        "tcp/80",
        X,
        "- | Admin ingress-tcp#0 Deny",
    );
    probe(
        &c,
        "luna-1",
        "harry-1",
        "tcp/8080",
        X,
        "- | Admin ingress-tcp#0 Deny",
    );
    probe(
        &c,
        "draco-0",
        "harry-0",
        "tcp/80",
        X,
        "- | Admin ingress-tcp#3 Deny",
    );
    probe(&c, "draco-1", "harry-0", "tcp/8080", OK, "- | -");
    p.ingress.swap(0, 2);
    let c = world(std::slice::from_ref(&p), &[]);
    probe(
        &c,
        "luna-0",
        "harry-0",
        "tcp/80",
        OK,
        "- | Admin ingress-tcp#0 Pass",
    );
    probe(
        &c,
        "luna-1",
        "harry-0",
        "tcp/8080",
        OK,
        "- | Admin ingress-tcp#0 Pass",
    );
    p.ingress.swap(3, 4);
    let c = world(std::slice::from_ref(&p), &[]);
    probe(
        &c,
        "draco-0",
        "harry-0",
        "tcp/80",
        OK,
        "- | Admin ingress-tcp#3 Pass",
    );
    probe(&c, "draco-1", "harry-0", "tcp/8080", OK, "- | -");
    // What `--explain` says for the denied probe.
    p.ingress.swap(3, 4);
    let c = world(std::slice::from_ref(&p), &[]);
    let find = |k: &str| {
        c.pods()
            .iter()
            .find(|p| p.key() == pod_key(k))
            .expect("pod")
    };
    let v = c.evaluate(
        &Endpoint::Pod(find("draco-0")),
        &Endpoint::Pod(find("harry-0")),
        80,
        Protocol::Tcp,
    );
    assert_eq!(
        v.reason("draco-0", "harry-0", 80, Protocol::Tcp),
        "ingress denied by ClusterNetworkPolicy ingress-tcp (Admin, priority 3) ingress rule 3; egress not isolated"
    );
}

/// 3c: ingress and egress rules in one policy (Admin `gress-rules`, and its Baseline twin).
fn gress_policy(tier: Tier) -> ClusterPolicy {
    let p_ports = "[{tcp: {destinationPort: {number: 80}}}, {udp: {destinationPort: {number: 53}}}, {sctp: {destinationPort: {number: 9003}}}]";
    let eq_ports = "[{tcp: {destinationPort: {number: 8080}}}, {udp: {destinationPort: {number: 5353}}}, {sctp: {destinationPort: {number: 9003}}}]";
    let iq_ports = "[{tcp: {destinationPort: {number: 80}}}, {udp: {destinationPort: {number: 5353}}}, {sctp: {destinationPort: {number: 9003}}}]";
    let rules = |field: &str, q: &str| {
        let mut r = String::new();
        let (ra, sl, hu) = (
            ns_peer("ravenclaw"),
            ns_peer("slytherin"),
            ns_peer("hufflepuff"),
        );
        r += &format!("  - {{action: Accept, {field}: [{ra}]}}\n");
        r += &format!("  - {{action: Deny, {field}: [{ra}]}}\n");
        if tier == Tier::Admin {
            r += &format!("  - {{action: Pass, {field}: [{ra}]}}\n");
        }
        r += &format!("  - {{action: Deny, {field}: [{sl}], protocols: {p_ports}}}\n");
        if tier == Tier::Admin {
            r += &format!("  - {{action: Pass, {field}: [{sl}], protocols: {p_ports}}}\n");
        }
        r += &format!("  - {{action: Accept, {field}: [{hu}], protocols: {q}}}\n");
        r += &format!("  - {{action: Deny, {field}: [{hu}]}}\n");
        r
    };
    let (name, priority) = match tier {
        Tier::Admin => ("gress-rules", 15),
        Tier::Baseline => ("default", 10),
    };
    cnp(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  \
         subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {}}}}}}}\n  \
         egress:\n{}  ingress:\n{}",
        ns("gryffindor"),
        rules("to", eq_ports),
        rules("from", iq_ports)
    ))
}

fn run_gress(tier: Tier) {
    let mut p = gress_policy(tier);
    let n = p.name.clone();
    let t = tier.as_str();
    let e = |rule: usize, action: &str| format!("{t} {n}#{rule} {action} | -");
    let i = |rule: usize, action: &str| format!("- | {t} {n}#{rule} {action}");
    let (deny_sl, accept_hu, deny_hu) = if tier == Tier::Admin {
        (3, 5, 6)
    } else {
        (2, 3, 4)
    };
    // 1.
    let c = world(std::slice::from_ref(&p), &[]);
    probe(&c, "harry-0", "luna-0", "tcp/80", OK, &e(0, "Accept"));
    probe(&c, "harry-1", "luna-0", "udp/53", OK, &e(0, "Accept"));
    probe(&c, "harry-0", "luna-0", "sctp/9003", OK, &e(0, "Accept"));
    probe(&c, "luna-0", "harry-0", "tcp/80", OK, &i(0, "Accept"));
    probe(&c, "luna-1", "harry-0", "udp/53", OK, &i(0, "Accept"));
    probe(&c, "luna-1", "harry-0", "sctp/9003", OK, &i(0, "Accept"));
    // 2.
    for port in ["tcp/8080", "udp/5353", "sctp/9003"] {
        probe(&c, "harry-0", "cedric-1", port, OK, &e(accept_hu, "Accept"));
    }
    for port in ["tcp/80", "udp/53", "sctp/9005"] {
        probe(&c, "harry-1", "cedric-1", port, X, &e(deny_hu, "Deny"));
    }
    for port in ["tcp/80", "udp/5353", "sctp/9003"] {
        probe(&c, "cedric-0", "harry-1", port, OK, &i(accept_hu, "Accept"));
    }
    for port in ["tcp/8080", "udp/53", "sctp/9005"] {
        probe(&c, "cedric-1", "harry-1", port, X, &i(deny_hu, "Deny"));
    }
    // 3. Swap [0] and [1] in both directions.
    p.ingress.swap(0, 1);
    p.egress.swap(0, 1);
    let c = world(std::slice::from_ref(&p), &[]);
    for port in ["tcp/80", "udp/53", "sctp/9003"] {
        for h in ["harry-0", "harry-1"] {
            probe(&c, h, "luna-1", port, X, &e(0, "Deny"));
        }
        for l in ["luna-0", "luna-1"] {
            probe(&c, l, "harry-1", port, X, &i(0, "Deny"));
        }
    }
    // 4.
    for port in ["tcp/80", "udp/53", "sctp/9003"] {
        probe(&c, "harry-0", "draco-0", port, X, &e(deny_sl, "Deny"));
        probe(&c, "draco-0", "harry-0", port, X, &i(deny_sl, "Deny"));
    }
    for port in ["tcp/8080", "udp/5353", "sctp/9005"] {
        probe(&c, "harry-1", "draco-0", port, OK, "- | -");
        probe(&c, "draco-1", "harry-0", port, OK, "- | -");
    }
    if tier == Tier::Baseline {
        return;
    }
    // 5. Swap [0] and [2] in both directions: Pass first.
    p.ingress.swap(0, 2);
    p.egress.swap(0, 2);
    let c = world(std::slice::from_ref(&p), &[]);
    for port in ["tcp/80", "udp/5353", "sctp/9003"] {
        probe(&c, "harry-0", "luna-0", port, OK, &e(0, "Pass"));
    }
    probe(&c, "luna-0", "harry-0", "tcp/80", OK, &i(0, "Pass"));
    probe(&c, "luna-1", "harry-0", "udp/53", OK, &i(0, "Pass"));
    probe(&c, "luna-1", "harry-0", "sctp/9003", OK, &i(0, "Pass"));
    // 6. Swap [3] and [4] in both directions: Pass SL first.
    p.ingress.swap(3, 4);
    p.egress.swap(3, 4);
    let c = world(std::slice::from_ref(&p), &[]);
    for (port, by) in [
        ("tcp/80", "3 Pass"),
        ("udp/53", "3 Pass"),
        ("sctp/9003", "3 Pass"),
        ("tcp/8080", ""),
        ("udp/5353", ""),
        ("sctp/9005", ""),
    ] {
        let (es, is) = if by.is_empty() {
            ("- | -".to_string(), "- | -".to_string())
        } else {
            (e(3, "Pass"), i(3, "Pass"))
        };
        for h in ["harry-0", "harry-1"] {
            probe(&c, h, "draco-0", port, OK, &es);
        }
        for d in ["draco-0", "draco-1"] {
            probe(&c, d, "harry-0", port, OK, &is);
        }
    }
}

#[test]
fn admin_tier_ingress_and_egress_in_one_policy_3c() {
    run_gress(Tier::Admin);
}

#[test]
fn baseline_tier_ingress_and_egress_in_one_policy_3c() {
    run_gress(Tier::Baseline);
}

/// 3d: the lower priority value wins; patching 60 to 40 lets its Pass reach the Baseline Accept.
#[test]
fn priority_3d() {
    let subject = "{pods: {namespaceSelector: {matchLabels: {conformance-house: gryffindor}}, podSelector: {matchLabels: {conformance-house: gryffindor}}}}";
    let peer = "{pods: {namespaceSelector: {matchLabels: {conformance-house: slytherin}}, podSelector: {matchLabels: {conformance-house: slytherin}}}}";
    let policy = |name: &str, tier: &str, priority: u16, action: &str| {
        cnp(&format!(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
             metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject: {subject}\n  \
             ingress: [{{action: {action}, from: [{peer}]}}]\n  egress: [{{action: {action}, to: [{peer}]}}]\n"
        ))
    };
    let mut policies = vec![
        policy("priority-50-example", "Admin", 50, "Deny"),
        policy(
            "old-priority-60-new-priority-40-example",
            "Admin",
            60,
            "Pass",
        ),
        policy("default", "Baseline", 10, "Accept"),
    ];
    let c = world(&policies, &[]);
    probe(
        &c,
        "draco-0",
        "harry-0",
        "tcp/80",
        X,
        "- | Admin priority-50-example#0 Deny",
    );
    probe(
        &c,
        "draco-1",
        "harry-0",
        "tcp/8080",
        X,
        "- | Admin priority-50-example#0 Deny",
    );
    probe(
        &c,
        "harry-0",
        "draco-0",
        "tcp/80",
        X,
        "Admin priority-50-example#0 Deny | -",
    );
    probe(
        &c,
        "harry-1",
        "draco-0",
        "tcp/8080",
        X,
        "Admin priority-50-example#0 Deny | -",
    );
    policies[1].priority = 40;
    let c = world(&policies, &[]);
    probe(
        &c,
        "draco-0",
        "harry-0",
        "tcp/80",
        OK,
        "- | Baseline default#0 Accept",
    );
    probe(
        &c,
        "draco-1",
        "harry-0",
        "tcp/8080",
        OK,
        "- | Baseline default#0 Accept",
    );
    probe(
        &c,
        "harry-0",
        "draco-0",
        "tcp/80",
        OK,
        "Baseline default#0 Accept | -",
    );
    probe(
        &c,
        "harry-1",
        "draco-0",
        "tcp/8080",
        OK,
        "Baseline default#0 Accept | -",
    );
}

/// 3e: Admin Deny, then Pass to a NetworkPolicy, then (the NetworkPolicy deleted) the Baseline.
#[test]
fn tiers_around_network_policy_3e() {
    let gr = "{namespaces: {matchLabels: {conformance-house: gryffindor}}}";
    let sl = "{namespaces: {matchLabels: {conformance-house: slytherin}}}";
    let policy = |name: &str, tier: &str| {
        cnp(&format!(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
             metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: 10\n  subject: {gr}\n  \
             ingress: [{{action: Deny, from: [{sl}]}}]\n  egress: [{{action: Deny, to: [{sl}]}}]\n"
        ))
    };
    let np: k8s_openapi::api::networking::v1::NetworkPolicy = serde_saphyr::from_str(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: allow-gress-from-to-slytherin-to-gryffindor, namespace: {}}}\n\
         spec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n  \
         ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{conformance-house: slytherin}}}}}}]}}]\n  \
         egress: [{{to: [{{namespaceSelector: {{matchLabels: {{conformance-house: slytherin}}}}}}]}}]\n",
        ns("gryffindor")
    ))
    .expect("yaml");
    let nps = vec![Policy::compile(&np).expect("valid")];
    let mut cnps = vec![
        policy("pass-example", "Admin"),
        policy("default", "Baseline"),
    ];
    let np_name = "allow-gress-from-to-slytherin-to-gryffindor";
    // 1, 2: the Admin Deny decides.
    let c = world(&cnps, &nps);
    for (d, port) in [("draco-0", "tcp/80"), ("draco-1", "tcp/8080")] {
        probe(&c, d, "harry-0", port, X, "- | Admin pass-example#0 Deny");
    }
    for (h, port) in [("harry-0", "tcp/80"), ("harry-1", "tcp/8080")] {
        probe(&c, h, "draco-0", port, X, "Admin pass-example#0 Deny | -");
    }
    // 3. ingress[0] -> Pass: the NetworkPolicy allows.
    cnps[0].ingress[0].action = Action::Pass;
    let c = world(&cnps, &nps);
    for d in ["draco-0", "draco-1"] {
        for port in ["tcp/80", "tcp/8080"] {
            probe(
                &c,
                d,
                "harry-0",
                port,
                OK,
                &format!("- | NP {np_name}#0 Allow"),
            );
        }
    }
    // 4. egress[0] -> Pass.
    cnps[0].egress[0].action = Action::Pass;
    let c = world(&cnps, &nps);
    for h in ["harry-0", "harry-1"] {
        for port in ["tcp/80", "tcp/8080"] {
            probe(
                &c,
                h,
                "draco-0",
                port,
                OK,
                &format!("NP {np_name}#0 Allow | -"),
            );
        }
    }
    // 5, 6. The NetworkPolicy deleted: the pods are no longer isolated, the Baseline denies.
    let c = world(&cnps, &[]);
    for d in ["draco-0", "draco-1"] {
        for port in ["tcp/80", "tcp/8080"] {
            probe(&c, d, "harry-0", port, X, "- | Baseline default#0 Deny");
        }
    }
    for h in ["harry-0", "harry-1"] {
        for port in ["tcp/80", "tcp/8080"] {
            probe(&c, h, "draco-0", port, X, "Baseline default#0 Deny | -");
        }
    }
}

/// 3f: networks peers catch pod addresses too; a /32 Accept put first lets exactly that pod in.
fn run_cidr(tier: Tier) {
    let (name, priority, subject) = match tier {
        Tier::Admin => (
            "inline-cidr-as-peers-example",
            85,
            "{pods: {namespaceSelector: {matchLabels: {conformance-house: gryffindor}}, podSelector: {matchLabels: {conformance-house: gryffindor}}}}".to_string(),
        ),
        Tier::Baseline => (
            "default",
            10,
            format!(
                "{{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {}}}}}}}",
                ns("gryffindor")
            ),
        ),
    };
    let mut p = cnp(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject: {subject}\n  \
         egress:\n  - {{action: Accept, to: [{{pods: {{namespaceSelector: {{matchLabels: {{conformance-house: slytherin}}}}, podSelector: {{matchLabels: {{conformance-house: slytherin}}}}}}}}]}}\n  \
         - {{action: Deny, to: [{{networks: [0.0.0.0/0, \"::/0\"]}}]}}\n"
    ));
    let t = tier.as_str();
    let c = world(std::slice::from_ref(&p), &[]);
    let ports = ["tcp/80", "udp/53", "sctp/9003"];
    for port in ports {
        for to in ["luna-0", "cedric-0"] {
            probe(
                &c,
                "harry-1",
                to,
                port,
                X,
                &format!("{t} {name}#1 Deny | -"),
            );
        }
        probe(
            &c,
            "harry-1",
            "draco-0",
            port,
            OK,
            &format!("{t} {name}#0 Accept | -"),
        );
    }
    // [main]: selectors are live; relabelling slytherin takes draco out of the Accept.
    let (mut namespaces, pods) = fixture();
    for n in &mut namespaces {
        if n.name == ns("slytherin") {
            n.labels
                .insert("conformance-house".into(), "denied-namespace-label".into());
        }
    }
    let relabelled = Cluster::new(namespaces, pods, Vec::new(), Vec::new())
        .with_cluster_policies(vec![p.clone()]);
    for port in ports {
        probe(
            &relabelled,
            "harry-1",
            "draco-0",
            port,
            X,
            &format!("{t} {name}#1 Deny | -"),
        );
    }
    // 2. Prepend an Accept of luna-0's and cedric-0's addresses.
    let ip = |k: &str| {
        c.pods()
            .iter()
            .find(|p| p.key() == pod_key(k))
            .and_then(|p| p.ip)
            .expect("ip")
    };
    let accept = cnp(&format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: x}}\nspec:\n  tier: Admin\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  \
         egress: [{{action: Accept, to: [{{networks: [{}/32, {}/32]}}]}}]\n",
        ip("luna-0"),
        ip("cedric-0")
    ));
    p.egress.insert(0, accept.egress[0].clone());
    let c = world(std::slice::from_ref(&p), &[]);
    for port in ports {
        for to in ["luna-0", "cedric-0"] {
            probe(
                &c,
                "harry-1",
                to,
                port,
                OK,
                &format!("{t} {name}#0 Accept | -"),
            );
        }
        for to in ["luna-1", "cedric-1"] {
            probe(
                &c,
                "harry-1",
                to,
                port,
                X,
                &format!("{t} {name}#2 Deny | -"),
            );
        }
    }
}

#[test]
fn admin_tier_egress_cidr_3f() {
    run_cidr(Tier::Admin);
}

#[test]
fn baseline_tier_egress_cidr_3f() {
    run_cidr(Tier::Baseline);
}

/// 3g: named ports resolve on the destination pod (`web` = TCP 80, `dns` = UDP 53).
#[test]
fn named_ports_3g() {
    let named = |row: &Row, tier: Tier, rule: usize, name: &str| {
        let mut p = protocol_policy(row, tier);
        rules_of(&mut p, row.ingress)[rule].ports = Some(vec![ClusterPort::Named(name.into())]);
        world(&[p], &[])
    };
    // Admin ingress-udp, rule [5] -> dns.
    let c = named(&ROWS[1], Tier::Admin, 5, "dns");
    probe(
        &c,
        "harry-0",
        "cedric-1",
        "udp/53",
        OK,
        "- | Admin ingress-udp#5 Accept",
    );
    probe(
        &c,
        "harry-1",
        "cedric-1",
        "udp/5353",
        X,
        "- | Admin ingress-udp#6 Deny",
    );
    // Admin egress-tcp, rule [5] -> web.
    let c = named(&ROWS[3], Tier::Admin, 5, "web");
    probe(
        &c,
        "harry-0",
        "cedric-1",
        "tcp/80",
        OK,
        "Admin egress-tcp#5 Accept | -",
    );
    probe(
        &c,
        "harry-1",
        "cedric-1",
        "tcp/8080",
        X,
        "Admin egress-tcp#6 Deny | -",
    );
    // Baseline ingress-tcp, rule [3] -> web.
    let c = named(&ROWS[0], Tier::Baseline, 3, "web");
    probe(
        &c,
        "cedric-0",
        "harry-1",
        "tcp/80",
        OK,
        "- | Baseline default#3 Accept",
    );
    probe(
        &c,
        "cedric-1",
        "harry-1",
        "tcp/8080",
        X,
        "- | Baseline default#4 Deny",
    );
    // Baseline egress-udp, rule [3] -> dns.
    let c = named(&ROWS[4], Tier::Baseline, 3, "dns");
    probe(
        &c,
        "cedric-0",
        "harry-1",
        "udp/53",
        OK,
        "Baseline default#3 Accept | -",
    );
    probe(
        &c,
        "cedric-1",
        "harry-1",
        "udp/5353",
        X,
        "Baseline default#4 Deny | -",
    );
}
