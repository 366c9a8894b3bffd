//! A pod reaching its own IP is allowed, whatever the policies, and `palisade reach --explain`
//! says why (the semantics' side: `policy/tests/to_itself.rs`, on the same clusters).

mod common;

use common::{reach_on, text};

/// Three alike pods `x/a-*` and a lone pod `x/b`, all isolated both ways by a deny-all
/// NetworkPolicy.
const DENIED: &str = include_str!("../../policy/tests/fixtures/to-itself/denied.yaml");
/// Everything denied by an Admin ClusterNetworkPolicy too.
const ADMIN_DENY: &str = include_str!("../../policy/tests/fixtures/to-itself/admin-deny.yaml");

fn reach(yaml: &str, args: &[&str]) -> String {
    let out = reach_on(yaml, &[&["--port", "80"], args].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn reach_explain_says_a_lone_pod_reaches_itself_and_why() {
    let out = reach(
        &format!("{DENIED}{ADMIN_DENY}"),
        &["--from", "x/b", "--to", "x/b", "--explain"],
    );
    assert_eq!(
        out,
        "✓ allowed, ✗ blocked; rows: from, columns: to (numbered, key below)\n\
         \n80/TCP\n      1\n\
         x/b   ✓\n\
         \ncolumns:\n   1  x/b\n\
         \nwhy:\n\
         ✓ x/b -> x/b 80/TCP: allowed: a pod's traffic to its own IP never leaves the pod, so no NetworkPolicy or ClusterNetworkPolicy applies to it\n"
    );
}

/// In a group of alike pods the group's cell with itself is its pods reaching each other, and
/// `--explain` adds the line for a pod reaching itself.
#[test]
fn reach_explain_tells_alike_pods_from_a_pod_reaching_itself() {
    let out = reach(DENIED, &["--from", "x/a-0", "--explain"]);
    let why = out.split("why:\n").nth(1).expect("why");
    assert_eq!(
        why,
        "✗ x/a-0 -> x/a-0 (+2 alike) 80/TCP: egress denied: x/a-0 is isolated by x/deny-all and no rule allows x/a-1 on 80/TCP; ingress denied: x/a-1 is isolated by x/deny-all and no rule allows x/a-0 on 80/TCP\n\
         ✓ x/a-0 -> x/a-0 80/TCP (and each alike pod to itself): allowed: a pod's traffic to its own IP never leaves the pod, so no NetworkPolicy or ClusterNetworkPolicy applies to it\n\
         ✗ x/a-0 -> x/b 80/TCP: egress denied: x/a-0 is isolated by x/deny-all and no rule allows x/b on 80/TCP; ingress denied: x/b is isolated by x/deny-all and no rule allows x/a-0 on 80/TCP\n"
    );
    // JSON: the group's cell names the pair it decides, and the pod to itself comes after it.
    let json = reach(DENIED, &["--from", "x/a-0", "-o", "json"]);
    assert!(
        json.contains(r#"{"from":"x/a-0","to":"x/a-1","port":80,"protocol":"TCP","allowed":false"#),
        "{json}"
    );
    assert!(
        json.contains(r#"{"from":"x/a-0","to":"x/a-0","port":80,"protocol":"TCP","allowed":true"#),
        "{json}"
    );
}
