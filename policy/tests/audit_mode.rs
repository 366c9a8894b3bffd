//! Audit mode, by annotation and by namespace label: what it denies is allowed and reported as
//! a would-be denial, in `evaluate`, in the matrix `reach` computes, and in `--explain`'s words.

mod common;

use common::{pod, upstream_model, world};
use palisade_policy::policy::AuditMode;
use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::{Cluster, Endpoint, Protocol, Verdict};

fn verdict(c: &Cluster, from: &str, to: &str, port: u16) -> Verdict {
    c.evaluate(
        &Endpoint::Pod(pod(c, from)),
        &Endpoint::Pod(pod(c, to)),
        port,
        Protocol::Tcp,
    )
}

const DENY_Y: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: \"y\"ANNOTATIONS}
spec: {podSelector: {}, ingress: []}
";

fn with_namespace_label(c: &Cluster, ns: &str, value: &str) -> Cluster {
    let namespaces = c.namespaces().cloned().map(|mut n| {
        if n.name == ns {
            n.labels.insert("palisade.dev/mode".into(), value.into());
        }
        n
    });
    Cluster::new(
        namespaces,
        c.pods().to_vec(),
        c.workloads().to_vec(),
        c.policies().to_vec(),
    )
}

#[test]
fn an_annotated_policy_would_deny_and_allows() {
    let c =
        upstream_model(&DENY_Y.replace("ANNOTATIONS", ", annotations: {palisade.dev/mode: audit}"));
    let policy = &c.policies()[0];
    assert_eq!(c.audit_mode(policy), Some(AuditMode::Annotation));
    let v = verdict(&c, "x/a", "y/b", 80);
    assert!(v.allowed() && v.audit_would_deny(), "{v:?}");
    assert_eq!(
        v.reason("x/a", "y/b", 80, Protocol::Tcp),
        "ingress would be denied (audit: not enforced): y/b is isolated by y/deny-all (audit mode) and no rule allows x/a on 80/TCP; egress not isolated"
    );
}

#[test]
fn the_namespace_label_puts_every_policy_of_the_namespace_in_audit_mode() {
    let enforced = upstream_model(&DENY_Y.replace("ANNOTATIONS", ""));
    let v = verdict(&enforced, "x/a", "y/b", 80);
    assert!(!v.allowed() && !v.audit_would_deny());

    let audit = with_namespace_label(&enforced, "y", "audit");
    assert_eq!(
        audit.audit_mode(&audit.policies()[0]),
        Some(AuditMode::NamespaceLabel)
    );
    let v = verdict(&audit, "x/a", "y/b", 80);
    assert!(v.allowed() && v.audit_would_deny(), "{v:?}");
    // The label of another namespace, or another value, changes nothing.
    for (ns, value) in [("x", "audit"), ("y", "enforce")] {
        let other = with_namespace_label(&enforced, ns, value);
        assert!(!verdict(&other, "x/a", "y/b", 80).allowed(), "{ns}={value}");
    }
}

#[test]
fn an_enforced_policy_beside_an_audit_one_still_denies() {
    let yaml = format!(
        "{}---\n{}",
        DENY_Y.replace("ANNOTATIONS", ", annotations: {palisade.dev/mode: audit}"),
        DENY_Y
            .replace("deny-all", "deny-b")
            .replace("podSelector: {}", "podSelector: {matchLabels: {pod: b}}")
            .replace("ANNOTATIONS", "")
    );
    let c = upstream_model(&yaml);
    let v = verdict(&c, "x/a", "y/b", 80);
    assert!(!v.allowed() && !v.audit_would_deny());
    assert!(
        v.reason("x/a", "y/b", 80, Protocol::Tcp)
            .starts_with("ingress denied: y/b is isolated by y/deny-all, y/deny-b"),
    );
    // y/a: only the audit policy isolates it.
    assert!(verdict(&c, "x/a", "y/a", 80).audit_would_deny());
}

#[test]
fn the_matrix_marks_the_cells_audit_would_deny_as_evaluate_does() {
    let audit = with_namespace_label(
        &upstream_model(&DENY_Y.replace("ANNOTATIONS", "")),
        "y",
        "audit",
    );
    let pods = reachable_pods(&audit);
    let ports = vec![ProbePort {
        port: 80,
        protocol: Protocol::Tcp,
    }];
    let m = Matrix::compute(&audit, pods.clone(), pods.clone(), ports);
    let mut would_deny = 0;
    for (si, &s) in pods.iter().enumerate() {
        for (di, &d) in pods.iter().enumerate() {
            let (src, dst) = (&audit.pods()[s], &audit.pods()[d]);
            let v = verdict(&audit, &src.key(), &dst.key(), 80);
            let cell = m.cell(si, di, 0);
            assert_eq!(
                cell.allowed(),
                v.allowed(),
                "{} -> {}",
                src.key(),
                dst.key()
            );
            assert_eq!(cell.audit_would_deny(), v.audit_would_deny());
            would_deny += usize::from(cell.audit_would_deny());
        }
    }
    // Every pod but y's own three reaching each of y's three (a pod to itself is allowed).
    assert_eq!(would_deny, 9 * 3 - 3);
    assert_eq!(m.allowed_count(), 81);
    let probes = m.probes(true);
    let explained = probes
        .iter()
        .find(|p| p.from == "x/a" && p.to == "y/b")
        .unwrap();
    assert!(explained.allowed);
    assert!(
        explained
            .reason
            .starts_with("ingress would be denied (audit: not enforced): y/b is isolated by y/deny-all (audit mode)"),
        "{}",
        explained.reason
    );
}

#[test]
fn a_plain_world_has_no_audit_mode() {
    let c = world(&DENY_Y.replace("ANNOTATIONS", ""));
    assert_eq!(c.audit_mode(&c.policies()[0]), None);
}
