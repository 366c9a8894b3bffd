//! `palisade reach` on policies in audit mode, by their annotation and by their namespace's
//! label: the verdict is allowed, the table marks what they would block, `--explain` says
//! "would be denied (audit: not enforced)", and the policies are listed with why and how to
//! enforce them.

mod common;

use common::{reach_on, succeeded};

const WORLD: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {palisade.dev/mode: audit}}
---
apiVersion: v1
kind: Namespace
metadata: {name: front}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: front, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.1.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-shop, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {}}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress-none, namespace: front, annotations: {palisade.dev/mode: audit}}
spec: {podSelector: {matchLabels: {app: client}}, policyTypes: [Egress]}
"#;

/// The output of a successful `palisade reach -f FILE ARGS` of `yaml`.
fn reach(yaml: &str, args: &[&str]) -> String {
    succeeded(&reach_on(yaml, args))
}

#[test]
fn reach_marks_and_explains_what_audit_mode_policies_would_deny() {
    let out = reach(
        WORLD,
        &["--from", "front/client", "--to", "shop/web", "--explain"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(
            "✓ allowed, ✗ blocked, ~ allowed: policies in audit mode would block it (not enforced)"
        ),
        "{out}"
    );
    let row: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| l.starts_with("front/client "))
        .collect();
    assert_eq!(row, ["front/client ~"], "{out}");
    for want in [
        "in audit mode (not enforced: what they deny is logged and counted, not dropped):",
        "  front/client-egress-none: annotated palisade.dev/mode: audit; to enforce it, remove the annotation palisade.dev/mode",
        "  shop/web-from-shop: namespace shop is labelled palisade.dev/mode=audit; to enforce it, remove the label palisade.dev/mode from namespace shop",
        "✓ front/client -> shop/web 80/TCP: egress would be denied (audit: not enforced): front/client is isolated by front/client-egress-none (audit mode) and no rule allows shop/web on 80/TCP; ingress would be denied (audit: not enforced): shop/web is isolated by shop/web-from-shop (audit mode) and no rule allows front/client on 80/TCP",
    ] {
        assert!(lines.contains(&want), "{want:?} not in:\n{out}");
    }
}

#[test]
fn promoted_the_same_cell_is_blocked_and_nothing_is_listed_in_audit_mode() {
    let promoted = WORLD
        .replace(", labels: {palisade.dev/mode: audit}", "")
        .replace(", annotations: {palisade.dev/mode: audit}", "");
    let out = reach(
        &promoted,
        &["--from", "front/client", "--to", "shop/web", "--explain"],
    );
    assert!(out.starts_with("✓ allowed, ✗ blocked; rows"), "{out}");
    assert!(!out.contains("audit"), "{out}");
    assert!(
        out.contains("✗ front/client -> shop/web 80/TCP: egress denied: front/client is isolated by front/client-egress-none"),
        "{out}"
    );
}
