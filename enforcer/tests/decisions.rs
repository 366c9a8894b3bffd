//! The enforcer's pure decisions outside the compiler: whether to enforce on a node, the
//! iptables transaction over what the host has, and reading audit counters.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::pod_on;
use palisade_enforcer::apply::{HostState, iptables_transaction, parse_audit_counters};
use palisade_enforcer::cni::{CniError, CniInfo};
use palisade_enforcer::mode::{Mode, decide};
use palisade_enforcer::render::render_chains;
use palisade_enforcer::{CompileOptions, compile};
use palisade_policy::{Cluster, Labels, Namespace, Policy};

fn cni(name: &str, enforces: Option<bool>) -> Result<CniInfo, CniError> {
    Ok(CniInfo {
        file: PathBuf::from("/etc/cni/net.d/10-x.conflist"),
        network: None,
        plugins: vec![name.into(), "portmap".into()],
        cni: name.into(),
        enforces,
        skipped: Vec::new(),
    })
}

#[test]
fn auto_enforces_only_where_the_cni_does_not() {
    assert_eq!(
        decide(Mode::Auto, &cni("flannel", Some(false))),
        (true, "flannel does not enforce NetworkPolicy".into())
    );
    assert_eq!(
        decide(Mode::Auto, &cni("calico", Some(true))),
        (
            false,
            "calico enforces NetworkPolicy itself; standing aside".into()
        )
    );
    assert_eq!(
        decide(Mode::Auto, &cni("mystery", None)),
        (
            true,
            "CNI mystery is not known to enforce NetworkPolicy; enforcing".into()
        )
    );
    let missing = Err(CniError::NoConfig {
        dir: PathBuf::from("/etc/cni/net.d"),
        skipped: Vec::new(),
    });
    let (enforcing, reason) = decide(Mode::Auto, &missing);
    assert!(enforcing, "no configuration: enforce, to be safe");
    assert!(
        reason.starts_with("no valid CNI configuration in /etc/cni/net.d"),
        "{reason}"
    );
    assert!(decide(Mode::Enforce, &cni("calico", Some(true))).0);
    assert!(!decide(Mode::Off, &cni("flannel", Some(false))).0);
}

fn one_isolated_pod() -> palisade_enforcer::Ruleset {
    let pod = pod_on(
        "shop",
        "web",
        Labels::new(),
        "10.1.0.5".parse().unwrap(),
        "n1",
    );
    let deny = Policy::deny_all_ingress("shop", "deny");
    let cluster = Cluster::new(
        [Namespace::new("shop", Labels::new())],
        vec![pod],
        vec![],
        vec![deny],
    );
    compile(&cluster, "n1", &CompileOptions::default())
}

#[test]
fn a_host_that_has_the_rules_gets_no_transaction_and_a_missing_jump_is_put_back_first() {
    let ruleset = one_isolated_pod();
    let all_jumps: BTreeMap<&'static str, (bool, usize)> = [
        ("FORWARD", (true, 1)),
        ("INPUT", (true, 1)),
        ("OUTPUT", (true, 1)),
    ]
    .into();
    let host = HostState {
        chains: render_chains(&ruleset),
        sets: ruleset.sets.clone(),
        jumps: all_jumps.clone(),
    };
    assert_eq!(iptables_transaction(&ruleset, &host), None);

    // kube-proxy inserted its rule above ours in FORWARD: ours moves back to position 1, and
    // nothing else is rewritten.
    let mut jumps = all_jumps;
    jumps.insert("FORWARD", (false, 1));
    let host = HostState { jumps, ..host };
    assert_eq!(
        iptables_transaction(&ruleset, &host).unwrap(),
        "*filter\n\
         -D FORWARD -m comment --comment \"palisade: NetworkPolicy enforcement\" -j PALISADE-FORWARD\n\
         -I FORWARD 1 -m comment --comment \"palisade: NetworkPolicy enforcement\" -j PALISADE-FORWARD\n\
         COMMIT\n"
    );

    // A fresh node: every chain declared and filled, then the three jumps inserted.
    let fresh = iptables_transaction(&ruleset, &HostState::default()).unwrap();
    let declare = fresh.find(":PALISADE-FORWARD - [0:0]").unwrap();
    let jump = fresh.find("-I FORWARD 1 ").unwrap();
    assert!(declare < jump, "{fresh}");
    assert_eq!(fresh.matches("-I ").count(), 3, "{fresh}");
    assert!(fresh.ends_with("COMMIT\n"));
}

#[test]
fn audit_counters_are_read_from_the_counting_rules_only() {
    let save = "*filter\n\
        :PAL-E-1 - [0:0]\n\
        [12:720] -A PAL-I-aaaa -m comment --comment \"z/c ingress: audit, would drop (isolated by deny)\"\n\
        [3:180] -A PAL-I-aaaa -m limit --limit 10/min -m comment --comment \"z/c ingress: audit log\" -j NFLOG --nflog-prefix \"palisade-audit z/c\" --nflog-group 100\n\
        [7:420] -A PAL-I-bbbb -m comment --comment \"x/a egress: audit, would drop (isolated by deny)\"\n\
        [9:9] -A FORWARD -m comment --comment \"someone else's\"\n\
        COMMIT\n";
    let counters = parse_audit_counters(save);
    assert_eq!(
        counters,
        [
            (
                "x/a egress: audit, would drop (isolated by deny)".to_string(),
                7
            ),
            (
                "z/c ingress: audit, would drop (isolated by deny)".to_string(),
                12
            ),
        ]
        .into()
    );
}
