//! No false denials, in every setup: the x/y/z model with several enforced policies on two
//! dual-stack node network namespaces, probed whole over IPv4 and over IPv6, with the rules in
//! iptables-legacy and in iptables-nft, denying by drop and by reject. In each of the eight
//! combinations every denied probe gives exactly one denial record, explained as
//! `palisade reach --explain` explains that cell (as that family sees the cluster), and no
//! allowed probe gives any.
//!
//! Needs root, `ip`, `iptables-legacy-restore`, `iptables-nft-restore` (and the ip6tables
//! ones) and `ipset`, like the other kernel tests. The namespaces are the e2e harness's
//! [`palisade_e2e::Network`], removed when it drops (on failure too).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::matrix::{self, CellKey, XYZ_PORTS as PORTS};
use palisade_enforcer::CompileOptions;
use palisade_enforcer::backend::Backend;
use palisade_enforcer::compile::DenyAction;
use palisade_enforcer::denials::record::Kind;
use palisade_policy::IpFamily;

/// Long enough for an allowed UDP echo between namespaces, short enough that a dropped SYN is
/// sent once (the first retransmission is after a second).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Beside the x/y/z policies (enforced), x/c admits any IPv4 address on 80/TCP: the IPv6
/// matrix differs from the IPv4 one.
const IPV4_ONLY: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-from-any-ipv4, namespace: "x"}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 80, protocol: TCP}]}]
"#;

#[test]
fn every_denied_probe_is_one_record_explained_as_reach_does_in_both_families_actions_and_backends()
{
    let net = matrix::network(true, &PORTS);
    let cluster = common::cluster(
        &(matrix::namespaces_and_pods(&net, &[])
            + &matrix::enforced(matrix::XYZ_POLICIES)
            + IPV4_ONLY),
    );
    let [v4, v6] = IpFamily::ALL.map(|f| matrix::reach(&cluster.in_family(f), &PORTS).0);
    assert_ne!(v4, v6, "the IPv6 matrix should differ from the IPv4 one");
    let sockets = matrix::listen(&net);
    let cells = matrix::all_cells(&net, &PORTS).len();
    let mut failures = Vec::new();
    for backend in [Backend::Legacy, Backend::Nft] {
        for action in [DenyAction::Drop, DenyAction::Reject] {
            let options = matrix::logging_everything(CompileOptions {
                deny_action: action,
                ..CompileOptions::default()
            });
            matrix::install(&net, &cluster, &options, &IpFamily::ALL, backend);
            let other = match backend {
                Backend::Legacy => Backend::Nft,
                Backend::Nft => Backend::Legacy,
            };
            assert!(
                matrix::holds_rules(&net, backend) && !matrix::holds_rules(&net, other),
                "{backend:?} alone should hold the rules"
            );
            for family in IpFamily::ALL {
                let setup = format!("{backend:?} {action:?} {family:?}");
                let seen = cluster.in_family(family);
                let predicted = matrix::reach(&seen, &PORTS).0;
                let started = Instant::now();
                let denied = matrix::probe_denied(&net, &PORTS, PROBE_TIMEOUT, family);
                let probed_in = started.elapsed();
                let logged = matrix::records(&sockets, &cluster);
                // Records per cell; every one must be a denial of this family explained as
                // reach explains its cell.
                let mut per_cell: BTreeMap<CellKey, usize> = BTreeMap::new();
                for r in &logged {
                    let key: CellKey = (
                        r.source.clone(),
                        r.destination.clone(),
                        r.port,
                        r.protocol.to_string(),
                    );
                    *per_cell.entry(key).or_default() += 1;
                    let ok_family = match family {
                        IpFamily::V4 => r.source_ip.is_ipv4(),
                        IpFamily::V6 => r.source_ip.is_ipv6(),
                    };
                    if r.kind != Kind::Denied || !ok_family {
                        failures.push(format!(
                            "{setup}: a record not a denial of {family:?}: {r:#?}"
                        ));
                        continue;
                    }
                    let want =
                        matrix::explain(&seen, &r.source, &r.destination, r.port, r.protocol);
                    if r.reason != want {
                        failures.push(format!(
                            "{setup}: {} -> {} {}/{} explained\n  {}\nreach --explain says\n  {want}",
                            r.source, r.destination, r.port, r.protocol, r.reason
                        ));
                    }
                }
                let misses: Vec<&CellKey> = denied
                    .iter()
                    .filter(|c| !per_cell.contains_key(*c))
                    .collect();
                let extras: Vec<String> = per_cell
                    .iter()
                    .filter(|(c, n)| !denied.contains(*c) || **n > 1)
                    .map(|((f, t, p, proto), n)| format!("{f} -> {t} {p}/{proto} ({n} records)"))
                    .collect();
                println!(
                    "{setup}: {cells} cells, {} denied (reach: {}), {} records, misses {}, extras {} (probed in {:.1} s)",
                    denied.len(),
                    predicted.len(),
                    logged.len(),
                    misses.len(),
                    extras.len(),
                    probed_in.as_secs_f64(),
                );
                if denied != predicted {
                    failures.push(format!(
                        "{setup}: the kernel denied other cells than reach predicts: measured only:\n{}\npredicted only:\n{}",
                        matrix::show(&denied.difference(&predicted).cloned().collect()),
                        matrix::show(&predicted.difference(&denied).cloned().collect()),
                    ));
                }
                if denied.is_empty() || denied.len() == cells {
                    failures.push(format!("{setup}: no mix of allowed and denied cells"));
                }
                if !misses.is_empty() {
                    failures.push(format!("{setup}: denied without a record: {misses:?}"));
                }
                if !extras.is_empty() {
                    failures.push(format!(
                        "{setup}: records beyond one per denied probe: {extras:?}"
                    ));
                }
            }
            matrix::leave(&net, backend);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
