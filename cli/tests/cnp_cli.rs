//! `palisade reach` and `palisade check` with ClusterNetworkPolicies, as a user runs them on the
//! files under tests/fixtures/cluster-network-policy: the exact text they read, and exit codes.

mod common;

use common::{palisade, text};

const DIR: &str = "tests/fixtures/cluster-network-policy";

fn file(name: &str) -> String {
    format!("{DIR}/{name}")
}

/// deny-external.yaml is written as `v1alpha2`, baseline.yaml as `v1beta1`: both are read.
#[test]
fn reach_explains_which_tier_policy_and_rule_decided() {
    let o = palisade(&[
        "reach",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("deny-external.yaml"),
        "-f",
        &file("baseline.yaml"),
        "--from",
        "shop/web",
        "--port",
        "53/UDP",
        "--port",
        "5432",
        "--explain",
    ]);
    assert_eq!(text(&o.stderr), "");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o.stdout),
        "✓ allowed, ✗ blocked; rows: from, columns: to (numbered, key below)

53/UDP
          1  2  3
shop/web  ✓  ✗  ✓

5432/TCP
          1  2  3
shop/web  ✗  ✓  ✓

columns:
   1  kube-system/coredns
   2  shop/db
   3  shop/web

why:
✓ shop/web -> kube-system/coredns 53/UDP: egress allowed by ClusterNetworkPolicy deny-external (Admin, priority 10) egress rule 0 \"dns\"; ingress not isolated
✗ shop/web -> kube-system/coredns 5432/TCP: egress denied by ClusterNetworkPolicy deny-external (Admin, priority 10) egress rule 2 \"block-all\"; ingress not isolated
✗ shop/web -> shop/db 53/UDP: ingress denied by ClusterNetworkPolicy protect-db (Baseline, priority 5) ingress rule 1 \"nobody-else\"; egress allowed by ClusterNetworkPolicy deny-external (Admin, priority 10) egress rule 1
✓ shop/web -> shop/db 5432/TCP: egress allowed by ClusterNetworkPolicy deny-external (Admin, priority 10) egress rule 1; ingress allowed by ClusterNetworkPolicy protect-db (Baseline, priority 5) ingress rule 0 \"from-web\"
✓ shop/web -> shop/web 53/UDP: allowed: a pod's traffic to its own IP never leaves the pod, so no NetworkPolicy or ClusterNetworkPolicy applies to it
✓ shop/web -> shop/web 5432/TCP: allowed: a pod's traffic to its own IP never leaves the pod, so no NetworkPolicy or ClusterNetworkPolicy applies to it
"
    );
}

#[test]
fn reach_json_carries_the_reason() {
    let o = palisade(&[
        "reach",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("deny-external.yaml"),
        "--from",
        "shop/db",
        "--to",
        "kube-system/coredns",
        "--port",
        "443",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains(r#"{"from":"shop/db","to":"kube-system/coredns","port":443,"protocol":"TCP","allowed":false,"reason":"egress denied by ClusterNetworkPolicy deny-external (Admin, priority 10) egress rule 2 \"block-all\"; ingress not isolated"}"#),
        "{out}"
    );
}

#[test]
fn reach_leaves_out_a_policy_it_cannot_read_and_says_why() {
    let o = palisade(&[
        "reach",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("invalid.yaml"),
        "--from",
        "shop/web",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "palisade: {}:7: broken: spec.priority: priority 5000 is outside 0-1000 (lower values come first) (left out of the matrix)\n",
            file("invalid.yaml")
        )),
        "{err}"
    );
    assert!(
        text(&o.stdout).contains("shop/web  ✓\n"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn check_refuses_what_palisade_cannot_evaluate_naming_path_and_line() {
    let o = palisade(&[
        "check",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("invalid.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let f = file("invalid.yaml");
    assert_eq!(
        text(&o.stdout),
        format!(
            "{f}:7: broken deny [schema]
    spec.priority: priority 5000 is outside 0-1000 (lower values come first)

{f}:13: broken deny [schema]
    spec.egress[0].action: unknown action \"Allow\": use Accept, Deny or Pass (v1alpha1 AdminNetworkPolicy's Allow is Accept in v1alpha2)

{f}:15: broken deny [schema]
    spec.egress[0].to[0].domainNames: domainNames peers (experimental) are not enforced by Palisade

{f}:18: broken deny [schema]
    spec.egress[1].to[0].nodes: nodes peers (experimental) are not enforced by Palisade

{f}:20: broken deny [schema]
    spec.egress[1].protocols[0].tcp: tcp needs a destinationPort (for every TCP port write destinationPort: {{range: {{start: 1, end: 65535}}}})

{f}:21: broken deny [schema]
    spec.egress[1].port: unknown field `port` in `spec.egress[1]`; known fields: name, action, to, protocols

{f}:28: wrong-tier deny [schema]
    spec.tier: unknown tier \"Cluster\" (use Admin or Baseline)

{f}:33: wrong-tier deny [schema]
    spec.subject.pods.namespaceSelectr: unknown field `namespaceSelectr` in `spec.subject.pods`; known fields: namespaceSelector, podSelector

{f}:35: old-version deny [schema]
    apiVersion \"policy.networking.k8s.io/v1alpha1\": Palisade reads ClusterNetworkPolicy of policy.networking.k8s.io/v1beta1 or policy.networking.k8s.io/v1alpha2 (network-policy-api v0.3; v0.2)

note: the inputs hold no NetworkPolicy: nothing to check
0 policies checked: 9 denied, 0 warnings
"
        )
    );
}

#[test]
fn check_warns_about_a_subject_that_selects_no_pod() {
    let o = palisade(&[
        "check",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("unmatched.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o.stdout),
        format!(
            "{}:1: protect-payments warn [unmatched-selector]
    ClusterNetworkPolicy protect-payments (namespaces team=payments) selects no pod: no namespace matches team=payments, so none of its rules applies to anything.
    Evidence: no namespace has team=payments, nor a value spelled like it; 1 namespace has team=apps.
    Fix: nothing in scope is spelled like team=payments, so there is no label to suggest: select the labels the intended namespaces carry (kubectl get namespaces --show-labels), or create the workload first.

note: enforcement not run: nothing is known about the nodes' CNI
1 policies checked: 0 denied, 1 warnings
",
            file("unmatched.yaml")
        )
    );
}

#[test]
fn check_passes_valid_policies() {
    let o = palisade(&[
        "check",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("baseline.yaml"),
    ]);
    assert_eq!(
        (text(&o.stdout).as_str(), o.status.code()),
        (
            "note: enforcement not run: nothing is known about the nodes' CNI\n1 policies checked: 0 denied, 0 warnings\n",
            Some(0)
        )
    );
}

/// A policy with peers of a kind from a newer CRD is in the matrix failing closed, as the
/// enforcer enforces it (its Accept matches nothing through them, its Deny denies all egress),
/// and each of its mistakes says so.
#[test]
fn reach_evaluates_a_policy_it_cannot_read_as_written_failing_closed_and_says_why() {
    let o = palisade(&[
        "reach",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("failing-closed.yaml"),
        "--from",
        "shop/web",
        "--port",
        "5432",
        "--port",
        "53/UDP",
        "--explain",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let f = file("failing-closed.yaml");
    let consequence = "Palisade enforces it failing closed (egress rule 0: those peers match nothing, egress rule 1: it denies all traffic) (in the matrix as enforced)";
    assert_eq!(
        text(&o.stderr),
        format!(
            "palisade: {f}:19: newer: spec.egress[0].to[0].services: unknown field `services` in `spec.egress[0].to[0]`; known fields: namespaces, pods, networks, nodes, domainNames; {consequence}
palisade: {f}:25: newer: spec.egress[1].to[0].services: unknown field `services` in `spec.egress[1].to[0]`; known fields: namespaces, pods, networks, nodes, domainNames; {consequence}
palisade: {f}:19: newer: spec.egress[0].to[0]: the peer names nothing Palisade knows: give one of namespaces, pods or networks (networks in egress only); {consequence}
palisade: {f}:25: newer: spec.egress[1].to[0]: the peer names nothing Palisade knows: give one of namespaces, pods or networks (networks in egress only); {consequence}
"
        )
    );
    let out = text(&o.stdout);
    for line in [
        "✓ shop/web -> shop/db 5432/TCP: egress allowed by ClusterNetworkPolicy newer (Admin, priority 3) egress rule 0 \"to-db\"; ingress not isolated\n",
        "✗ shop/web -> shop/db 53/UDP: egress denied by ClusterNetworkPolicy newer (Admin, priority 3) egress rule 1 \"no-dns\"; ingress not isolated\n",
        "✗ shop/web -> kube-system/coredns 5432/TCP: egress denied by ClusterNetworkPolicy newer (Admin, priority 3) egress rule 1 \"no-dns\"; ingress not isolated\n",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
}

#[test]
fn check_names_a_policy_enforced_failing_closed() {
    let o = palisade(&[
        "check",
        "-f",
        &file("world.yaml"),
        "-f",
        &file("failing-closed.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!(
            "{}:19: newer deny [failing-closed]\n    spec.egress[0].to[0]: the peer names nothing Palisade knows: give one of namespaces, pods or networks (networks in egress only); Palisade enforces it failing closed (egress rule 0: those peers match nothing, egress rule 1: it denies all traffic)\n",
            file("failing-closed.yaml")
        )),
        "{out}"
    );
}
