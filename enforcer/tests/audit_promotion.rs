//! Audit tells the truth, for real: the x/y/z model on two node network namespaces, with
//! NetworkPolicies in audit mode by their annotation and by their namespace's label beside
//! enforced ones. The whole matrix is probed and the audit would-deny records the kernel logs
//! are collected; then the audit policies are promoted (annotations and label removed), the
//! same matrix probed again, and the cells denied now that were not before are exactly the
//! cells audit reported (0 misses, 0 extra), and what `palisade reach` predicts, before and
//! after.
//!
//! Needs root, `ip`, `iptables-restore` and `ipset`, like the other kernel tests. The node and
//! pod namespaces are the e2e harness's [`Network`], removed when it drops (on failure too).

mod common;

use std::collections::BTreeSet;

use common::matrix::{
    self, CellKey, XYZ_POLICIES, XYZ_PORTS as PORTS, cells_of, explain, reach, show,
};
use palisade_e2e::Network;
use palisade_enforcer::CompileOptions;
use palisade_enforcer::backend::{self, BackendChoice};
use palisade_enforcer::denials::record::Kind;
use palisade_policy::{Cluster, IpFamily};

const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The cluster as the enforcer would read it: namespaces labelled `ns: NAME` (y also
/// `palisade.dev/mode=audit` when `audit`), the pods at their addresses, the x/y/z policies
/// (with their audit annotations when `audit`).
fn cluster(net: &Network, audit: bool) -> Cluster {
    let labels: &[(&str, &str)] = if audit {
        &[("y", "palisade.dev/mode: audit")]
    } else {
        &[]
    };
    let policies = if audit {
        XYZ_POLICIES.to_string()
    } else {
        matrix::enforced(XYZ_POLICIES)
    };
    common::cluster(&(matrix::namespaces_and_pods(net, labels) + &policies))
}

/// Compiles `cluster` for each node (denial and audit logs at rates no probe run reaches) and
/// syncs it into the backend the node's namespace detects.
fn install(net: &Network, cluster: &Cluster) {
    let backend = matrix::inside(&net.nodes()[0].netns.name, || {
        backend::detect(BackendChoice::Auto)
            .expect("a backend works")
            .backend
    });
    let options = matrix::logging_everything(CompileOptions::default());
    matrix::install(net, cluster, &options, &[IpFamily::V4], backend);
}

/// The denied cells of a probe of the whole matrix.
fn probe_denied(net: &Network) -> BTreeSet<CellKey> {
    matrix::probe_denied(net, &PORTS, PROBE_TIMEOUT, IpFamily::V4)
}

#[test]
fn promoted_audit_policies_deny_exactly_what_audit_reported() {
    let net = matrix::network(false, &PORTS);
    let total = matrix::all_cells(&net, &PORTS).len();

    // In audit mode: probe everything, collect what the kernel logged.
    let audit = cluster(&net, true);
    install(&net, &audit);
    let sockets = matrix::listen(&net);
    let denied_before = probe_denied(&net);
    let logged = matrix::records(&sockets, &audit);
    // An audit record for a cell denied anyway is one whose other side denies for real (z/a's
    // audit egress logs 80/UDP to z/c, whose enforced ingress then drops it): promotion
    // changes nothing there. The cells audit speaks for are the ones it lets through.
    let logged_cells = cells_of(&logged, Kind::AuditWouldDeny);
    let reported: BTreeSet<CellKey> = logged_cells.difference(&denied_before).cloned().collect();
    let denied_anyway = logged_cells.len() - reported.len();
    let (predicted_denied, predicted_audit) = reach(&audit, &PORTS);
    assert_eq!(
        denied_before,
        predicted_denied,
        "in audit mode, the denied cells are reach's: measured only:\n{}\npredicted only:\n{}",
        show(
            &denied_before
                .difference(&predicted_denied)
                .cloned()
                .collect()
        ),
        show(
            &predicted_denied
                .difference(&denied_before)
                .cloned()
                .collect()
        ),
    );
    assert_eq!(
        reported,
        predicted_audit,
        "audit records are the cells reach says audit would deny: reported only:\n{}\npredicted only:\n{}",
        show(&reported.difference(&predicted_audit).cloned().collect()),
        show(&predicted_audit.difference(&reported).cloned().collect()),
    );
    // Each audit record is explained as `reach --explain` explains its cell.
    for r in logged.iter().filter(|r| r.kind == Kind::AuditWouldDeny) {
        let explain = explain(&audit, &r.source, &r.destination, r.port, r.protocol);
        assert_eq!(r.reason, explain, "{r:#?}");
        assert!(
            r.reason.contains("would be denied (audit: not enforced)"),
            "{r:#?}"
        );
    }
    // Both ways into audit mode were exercised, and real denials beside them.
    let audit_policies: BTreeSet<&str> = logged
        .iter()
        .filter(|r| r.kind == Kind::AuditWouldDeny)
        .flat_map(|r| r.policies.iter().map(String::as_str))
        .collect();
    for p in [
        "x/from-x",
        "y/b-from-z-80",
        "y/c-egress-to-x",
        "z/a-egress-80",
    ] {
        assert!(audit_policies.contains(p), "{p}: {audit_policies:?}");
    }
    assert!(!denied_before.is_empty());

    // Promoted: annotations and the namespace label removed.
    let promoted = cluster(&net, false);
    install(&net, &promoted);
    let denied_after = probe_denied(&net);
    let after_logged = matrix::records(&sockets, &promoted);
    let newly_denied: BTreeSet<CellKey> =
        denied_after.difference(&denied_before).cloned().collect();
    let misses: BTreeSet<CellKey> = reported.difference(&newly_denied).cloned().collect();
    let extra: BTreeSet<CellKey> = newly_denied.difference(&reported).cloned().collect();
    println!(
        "{total} cells probed twice; in audit mode {} denied, {} audit records for {} cells let through (and {denied_anyway} denied on their other side); promoted {} denied ({} newly); misses {}, extra {}; {} denial records after promotion",
        denied_before.len(),
        logged
            .iter()
            .filter(|r| r.kind == Kind::AuditWouldDeny)
            .count(),
        reported.len(),
        denied_after.len(),
        newly_denied.len(),
        misses.len(),
        extra.len(),
        after_logged.len(),
    );
    assert!(
        misses.is_empty(),
        "audit said these would be denied, promoted they pass:\n{}",
        show(&misses)
    );
    assert!(
        extra.is_empty(),
        "promoted these are denied, audit never said so:\n{}",
        show(&extra)
    );
    assert!(
        denied_before.is_subset(&denied_after),
        "promotion let through what was denied"
    );
    let (predicted_after, no_audit) = reach(&promoted, &PORTS);
    assert_eq!(denied_after, predicted_after);
    assert!(no_audit.is_empty());
    // Promoted, every denied cell is logged as a real denial, and nothing is audit any more.
    assert_eq!(cells_of(&after_logged, Kind::Denied), denied_after);
    assert_eq!(
        after_logged.len(),
        denied_after.len(),
        "one record per denied probe"
    );
    assert!(cells_of(&after_logged, Kind::AuditWouldDeny).is_empty());
}
