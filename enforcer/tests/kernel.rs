//! The rendered text against the real `ipset` and `iptables-restore`, in a scratch network
//! namespace (never the host's tables): the kernel accepts it, and `iptables-save` / `ipset
//! save` print back exactly what the renderer predicts, so the apply layer's desired-vs-actual
//! comparison finds no difference after a sync.
//!
//! Needs root and the tools `e2e/tools/install.sh` installs, like the rest of the e2e suite.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use common::{labels, pod_on};
use palisade_enforcer::apply;
use palisade_enforcer::backend::{self, Backend, BackendChoice, Chosen, Family, Tables};
use palisade_enforcer::compile::{MODE_ANNOTATION, compile_families};
use palisade_enforcer::render::{
    parse_ipset_names, parse_ipset_save, parse_iptables_save, render_chains, render_ipset,
    render_ipset_cleanup, render_iptables,
};
use palisade_enforcer::{CompileOptions, Ruleset, compile};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use palisade_policy::{
    Cluster, ContainerPort, Labels, Namespace, Peer, Policy, Protocol, Rule, Selector,
};

/// A network namespace deleted when dropped, even when the test fails.
struct Netns(String);

impl Netns {
    /// A fresh namespace; `what` tells the tests of one run apart.
    fn new(what: &str) -> Self {
        let name = format!("palisade-scratch-{}-{what}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot create network namespace {name}");
        Self(name)
    }

    fn run(&self, args: &[&str], input: &str) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{args:?} failed: {}\ninput:\n{input}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn cluster(extra_rule: bool) -> Cluster {
    let mut pods = Vec::new();
    for i in 0..6u8 {
        let mut p = pod_on(
            "x",
            &format!("p{i}"),
            labels(&[("app", if i % 2 == 0 { "web" } else { "db" })]),
            Ipv4Addr::new(10, 0, i % 2, 10 + i).into(),
            if i < 3 { "n1" } else { "n2" },
        );
        p.ports.push(ContainerPort {
            name: Some("http".into()),
            port: 8080,
            protocol: Protocol::Tcp,
        });
        pods.push(p);
    }
    let sel = |app| Selector::from_labels(&labels(&[("app", app)]));
    let mut rules = vec![
        Rule {
            peers: vec![Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods: sel("db"),
            }],
            ports: vec![
                PortMatch {
                    protocol: Protocol::Tcp,
                    port: PortSpec::Range(80, 90),
                },
                PortMatch {
                    protocol: Protocol::Sctp,
                    port: PortSpec::Range(9000, 9000),
                },
                PortMatch {
                    protocol: Protocol::Tcp,
                    port: PortSpec::Named("http".into()),
                },
            ],
        },
        Rule {
            peers: vec![Peer::IpBlock(IpBlockPeer {
                cidr: "0.0.0.0/0".parse().expect("cidr"),
                except: vec![
                    "10.0.0.0/8".parse().expect("cidr"),
                    "192.168.1.1/32".parse().expect("cidr"),
                ],
            })],
            ports: vec![PortMatch {
                protocol: Protocol::Udp,
                port: PortSpec::Any,
            }],
        },
    ];
    if extra_rule {
        rules.push(Rule::allow_all());
    }
    let policy = |name: &str, audit: bool, ingress, egress| Policy {
        namespace: "x".into(),
        name: name.into(),
        labels: Labels::new(),
        annotations: if audit {
            [(MODE_ANNOTATION.to_string(), "audit".to_string())].into()
        } else {
            Default::default()
        },
        pod_selector: sel("web"),
        ingress,
        egress,
        implicit_types: false,
    };
    let long = "a-policy-name-long-enough-to-push-the-nflog-prefix-over-its-limit";
    Cluster::new(
        vec![Namespace::new("x", Labels::new())],
        pods,
        vec![],
        vec![
            policy("web", false, Some(rules.clone()), None),
            policy(
                long,
                true,
                None,
                Some(vec![Rule {
                    peers: vec![],
                    ports: vec![PortMatch {
                        protocol: Protocol::Tcp,
                        port: PortSpec::Named("http".into()),
                    }],
                }]),
            ),
        ],
    )
}

fn host_state(ns: &Netns) -> (BTreeMap<String, Vec<String>>, Ruleset) {
    let chains = parse_iptables_save(&ns.run(&["iptables-save", "-t", "filter"], ""));
    let sets = parse_ipset_save(&ns.run(&["ipset", "save"], "")).expect("ipset save parses");
    (
        chains,
        Ruleset {
            sets,
            ..Ruleset::default()
        },
    )
}

/// Applies `new` over whatever the namespace has, the way the apply layer will, and checks the
/// host then reads back as `new`.
fn sync(ns: &Netns, new: &Ruleset) {
    assert_eq!(new.validate(), Ok(()));
    let (chains, sets) = host_state(ns);
    ns.run(&["ipset", "restore"], &render_ipset(new, Some(&sets.sets)));
    if let Some(text) = render_iptables(new, &chains) {
        ns.run(&["iptables-restore", "--noflush", "--wait"], &text);
    }
    let names = parse_ipset_names(&ns.run(&["ipset", "list", "-name"], ""));
    ns.run(&["ipset", "restore"], &render_ipset_cleanup(new, &names));

    let (chains, sets) = host_state(ns);
    assert_eq!(
        chains,
        render_chains(new),
        "iptables-save differs from the render"
    );
    assert_eq!(sets.sets, new.sets, "ipset save differs from the ruleset");
    assert_eq!(render_iptables(new, &chains), None);
    assert_eq!(render_ipset(new, Some(&sets.sets)), "");
}

#[test]
fn rendered_rules_round_trip_through_the_kernel() {
    let ns = Netns::new("render");
    let options = CompileOptions::default();
    let first = compile(&cluster(false), "n1", &options);
    sync(&ns, &first);
    // A rule added: changed chains only; then nothing on this node isolated any more.
    sync(&ns, &compile(&cluster(true), "n1", &options));
    sync(&ns, &compile(&cluster(false), "n2", &options));
    sync(&ns, &compile(&Cluster::default(), "n1", &options));
    // Unknown host state (e.g. after a restart) rebuilds every set in place.
    let (chains, _) = host_state(&ns);
    ns.run(&["ipset", "restore"], &render_ipset(&first, None));
    if let Some(text) = render_iptables(&first, &chains) {
        ns.run(&["iptables-restore", "--noflush", "--wait"], &text);
    }
    sync(&ns, &first);
}

/// What kube-proxy (iptables mode) and the CNI bridge plugin leave on a node, in short.
const KUBE_PROXY_RULES: &str = "*filter
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:CNI-0a1b2c3d4e5f60718293a4b5 - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -s 10.0.0.10/32 -j CNI-0a1b2c3d4e5f60718293a4b5
-A CNI-0a1b2c3d4e5f60718293a4b5 -d 10.0.0.0/24 -j ACCEPT
COMMIT
";

fn save(ns: &Netns, tables: Tables) -> String {
    ns.run(&[tables.save(), "-t", "filter"], "")
}

/// The first rule of FORWARD in `tables` of the namespace.
fn first_forward_rule(ns: &Netns, tables: Tables) -> String {
    save(ns, tables)
        .lines()
        .find(|l| l.starts_with("-A FORWARD "))
        .unwrap_or_default()
        .to_string()
}

/// Runs `f` on a thread inside the namespace, so the iptables commands the enforcer spawns
/// see that namespace's tables and not the host's.
fn inside<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    palisade_e2e::netns::run_in(&ns.0, f).expect("enter the namespace")
}

/// Detects the backend and syncs both families' rules into it, as the enforcer's loop does.
fn detect_and_sync(ns: &Netns) -> backend::Detection {
    let rulesets = compile_families(
        &cluster(false),
        "n1",
        &CompileOptions::default(),
        &[palisade_policy::IpFamily::V4, palisade_policy::IpFamily::V6],
    );
    inside(ns, move || {
        let d = backend::detect(BackendChoice::Auto).expect("a backend works");
        apply::sync_families(d.backend, &rulesets).expect("sync");
        d
    })
}

#[test]
fn palisades_rules_land_in_the_backend_holding_the_nodes_rules() {
    for (theirs, other) in [
        (Backend::Legacy, Backend::Nft),
        (Backend::Nft, Backend::Legacy),
    ] {
        let ns = Netns::new(&format!("node-{theirs}"));
        ns.run(
            &[Tables::new(theirs, Family::V4).restore(), "--noflush"],
            KUBE_PROXY_RULES,
        );
        let d = detect_and_sync(&ns);
        assert_eq!(
            (d.backend, d.chosen),
            (theirs, Chosen::Detected),
            "{}",
            d.reason
        );
        assert_eq!(d.families, vec![Family::V4, Family::V6]);
        for family in Family::ALL {
            let mine = Tables::new(theirs, family);
            let text = save(&ns, mine);
            assert!(
                text.contains(":PALISADE-FORWARD")
                    && (family == Family::V6 || text.contains("-j PAL-")),
                "Palisade's chains are not in {}:\n{text}",
                mine.save()
            );
            // Before kube-proxy's accept of marked packets.
            assert!(
                first_forward_rule(&ns, mine).ends_with("-j PALISADE-FORWARD"),
                "{}",
                text
            );
            let not_mine = Tables::new(other, family);
            let text = ns.run(&[not_mine.save()], "");
            assert!(
                !text.contains("PAL"),
                "Palisade's chains are in {} too:\n{text}",
                not_mine.save()
            );
        }
    }
}

#[test]
fn nothing_to_go_by_is_nft_and_a_later_move_leaves_nothing_behind() {
    let ns = Netns::new("move");
    // A fresh node: no rules of others anywhere.
    let first = detect_and_sync(&ns);
    assert_eq!(
        (first.backend, first.chosen),
        (Backend::Nft, Chosen::Default),
        "{}",
        first.reason
    );
    assert!(save(&ns, Tables::new(Backend::Nft, Family::V4)).contains(":PALISADE-FORWARD"));
    // kube-proxy starts later, with legacy iptables: the next detection moves the rules.
    ns.run(
        &[
            Tables::new(Backend::Legacy, Family::V4).restore(),
            "--noflush",
        ],
        KUBE_PROXY_RULES,
    );
    let second = detect_and_sync(&ns);
    let adopted = backend::adopt(Some(&Ok(first)), Ok(second.clone()));
    assert_eq!((adopted.leave, adopted.moved), (Some(Backend::Nft), true));
    assert!(inside(&ns, || backend::leave(Backend::Nft)));
    for family in Family::ALL {
        let nft = ns.run(&[Tables::new(Backend::Nft, family).save()], "");
        assert!(!nft.contains("PAL"), "left behind in nft:\n{nft}");
        assert!(save(&ns, Tables::new(Backend::Legacy, family)).contains(":PALISADE-FORWARD"));
    }
    // The sets stay: the legacy rules use them.
    let sets = ns.run(&["ipset", "list", "-name"], "");
    assert!(sets.lines().any(|l| l == "PALISADE-LOCAL"), "{sets}");
    // Nothing more to leave.
    assert!(!inside(&ns, || backend::leave(Backend::Nft)));
}

#[test]
fn an_override_takes_the_rules_out_of_the_detected_backend() {
    let ns = Netns::new("override");
    ns.run(
        &[Tables::new(Backend::Nft, Family::V4).restore(), "--noflush"],
        KUBE_PROXY_RULES,
    );
    let detected = detect_and_sync(&ns);
    assert_eq!(detected.backend, Backend::Nft, "{}", detected.reason);
    // The operator sets enforcer.iptablesBackend=legacy; the enforcer restarts with it.
    let forced = inside(&ns, || backend::detect(BackendChoice::Legacy)).expect("legacy works");
    assert_eq!(
        (forced.backend, forced.chosen),
        (Backend::Legacy, Chosen::Override)
    );
    let adopted = backend::adopt(None, Ok(forced));
    assert_eq!(adopted.leave, Some(Backend::Nft));
    let rulesets = compile_families(
        &cluster(false),
        "n1",
        &CompileOptions::default(),
        &[palisade_policy::IpFamily::V4],
    );
    inside(&ns, move || {
        apply::sync_families(Backend::Legacy, &rulesets).expect("sync");
        assert!(backend::leave(Backend::Nft));
    });
    let nft = ns.run(&[Tables::new(Backend::Nft, Family::V4).save()], "");
    assert!(
        !nft.contains("PAL") && nft.contains("KUBE-FORWARD"),
        "{nft}"
    );
    assert!(save(&ns, Tables::new(Backend::Legacy, Family::V4)).contains(":PALISADE-FORWARD"));
}
