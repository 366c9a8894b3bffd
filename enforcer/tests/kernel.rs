//! The rendered text against the real `ipset` and `iptables-restore`, in a scratch network
//! namespace (never the host's tables): the kernel accepts it, and `iptables-save` / `ipset
//! save` print back exactly what the renderer predicts, so the apply layer's desired-vs-actual
//! comparison finds no difference after a sync.
//!
//! Needs root and the tools `e2e/tools/install.sh` installs, like the rest of the e2e suite.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use palisade_enforcer::compile::MODE_ANNOTATION;
use palisade_enforcer::render::{
    parse_ipset_names, parse_ipset_save, parse_iptables_save, render_chains, render_ipset,
    render_ipset_cleanup, render_iptables,
};
use palisade_enforcer::{CompileOptions, Ruleset, compile};
use palisade_policy::policy::{IpBlockPeer, NamespaceScope, PortMatch, PortSpec};
use palisade_policy::{
    Cluster, ContainerPort, Labels, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector,
};

/// A network namespace deleted when dropped, even when the test fails.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("palisade-scratch-{}", std::process::id());
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

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cluster(extra_rule: bool) -> Cluster {
    let mut pods = Vec::new();
    for i in 0..6u8 {
        let mut p = Pod::running(
            "x",
            &format!("p{i}"),
            labels(&[("app", if i % 2 == 0 { "web" } else { "db" })]),
            IpAddr::V4(Ipv4Addr::new(10, 0, i % 2, 10 + i)),
        );
        p.node = Some(if i < 3 { "n1" } else { "n2" }.into());
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
    let ns = Netns::new();
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
