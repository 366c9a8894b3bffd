//! The upstream Kubernetes NetworkPolicy e2e model (x, y, z × a, b, c), with the matrices the
//! documented semantics give. Rows are sources, columns destinations, in the order
//! x/a x/b x/c y/a y/b y/c z/a z/b z/c; `.` allowed, `X` blocked. The diagonal, a pod to its
//! own IP, is always allowed: that traffic never leaves the pod (kubernetes/kubernetes#95879).

mod common;

use common::{table, truth_table, upstream_model};
use palisade_policy::Protocol::{Sctp, Tcp, Udp};

const ALL_OPEN: &str = ".........  .........  .........  .........  .........  .........  .........  .........  .........";

#[test]
fn no_policies_everything_reaches_everything() {
    let c = upstream_model("");
    for proto in [Tcp, Udp, Sctp] {
        assert_eq!(truth_table(&c, 80, proto), table(ALL_OPEN));
    }
}

#[test]
fn deny_all_ingress_in_x() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}}\n",
    );
    let want =
        ".XX...... X.X...... XX....... XXX...... XXX...... XXX...... XXX...... XXX...... XXX......";
    assert_eq!(truth_table(&c, 80, Tcp), table(want));
    assert_eq!(truth_table(&c, 81, Udp), table(want));
}

#[test]
fn allow_to_x_a_from_pod_b_of_the_same_namespace() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n",
    );
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... ......... X........ X........ X........ X........ X........ X........ X........"
        )
    );
}

#[test]
fn namespace_selector_alone_admits_every_pod_of_matching_namespaces() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n",
    );
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... X........ X........ ......... ......... ......... X........ X........ X........"
        )
    );
}

#[test]
fn namespace_and_pod_selector_in_one_peer_is_and() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions: [{key: ns, operator: NotIn, values: [x]}]\n      podSelector: {matchLabels: {pod: c}}\n",
    );
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... X........ X........ X........ X........ ......... X........ X........ ........."
        )
    );
}

#[test]
fn namespace_and_pod_selector_as_two_peers_is_or() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n    - podSelector: {matchLabels: {pod: c}}\n",
    );
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... X........ ......... ......... ......... ......... X........ X........ X........"
        )
    );
}

#[test]
fn named_port_admits_only_the_port_it_resolves_to() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: serve-81-tcp}]\n",
    );
    assert_eq!(truth_table(&c, 81, Tcp), table(ALL_OPEN));
    let blocked_a =
        "......... X........ X........ X........ X........ X........ X........ X........ X........";
    assert_eq!(truth_table(&c, 80, Tcp), table(blocked_a));
    // The name is for TCP: UDP 81 to x/a stays blocked.
    assert_eq!(truth_table(&c, 81, Udp), table(blocked_a));
}

#[test]
fn end_port_range_is_inclusive() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 80, endPort: 81}]\n",
    );
    assert_eq!(truth_table(&c, 80, Tcp), table(ALL_OPEN));
    assert_eq!(truth_table(&c, 81, Tcp), table(ALL_OPEN));
    assert!(!common::tcp(&c, "y/a", "x/a", 82));
}

#[test]
fn protocol_defaults_to_tcp_and_udp_is_separate() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 80, protocol: UDP}]\n",
    );
    assert_eq!(truth_table(&c, 80, Udp), table(ALL_OPEN));
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... X........ X........ X........ X........ X........ X........ X........ X........"
        )
    );
    assert_eq!(
        truth_table(&c, 80, Sctp),
        table(
            "......... X........ X........ X........ X........ X........ X........ X........ X........"
        )
    );
}

#[test]
fn egress_deny_all_from_x_except_to_y_a_on_80() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n      podSelector: {matchLabels: {pod: a}}\n    ports: [{port: 80}]\n",
    );
    let want =
        ".XX.XXXXX X.X.XXXXX XX..XXXXX ......... ......... ......... ......... ......... .........";
    assert_eq!(truth_table(&c, 80, Tcp), table(want));
    let x_blocked =
        ".XXXXXXXX X.XXXXXXX XX.XXXXXX ......... ......... ......... ......... ......... .........";
    assert_eq!(truth_table(&c, 81, Tcp), table(x_blocked));
}

#[test]
fn ip_block_with_except_applies_to_pod_ips() {
    // y's pods are 10.1.2.0/24: allow 10.1.0.0/16 except that.
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.2.0/24]}\n",
    );
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... ......... ......... X........ X........ X........ ......... ......... ........."
        )
    );
}

#[test]
fn policies_are_additive() {
    let c = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-z-b, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: z}}\n      podSelector: {matchLabels: {pod: b}}\n",
    );
    assert_eq!(
        truth_table(&c, 80, Tcp),
        table(
            "......... X........ X........ ......... ......... ......... X........ ......... X........"
        )
    );
}

#[test]
fn empty_ingress_rule_allows_all_and_empty_list_denies_all() {
    let allow_all = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{}]\n",
    );
    assert_eq!(truth_table(&allow_all, 80, Tcp), table(ALL_OPEN));
    let deny_all = upstream_model(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: []\n",
    );
    assert_eq!(
        truth_table(&deny_all, 80, Tcp),
        table(
            ".XX...... X.X...... XX....... XXX...... XXX...... XXX...... XXX...... XXX...... XXX......"
        )
    );
}
