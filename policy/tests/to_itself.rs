//! A pod reaching its own IP is allowed, whatever the policies: its packets never leave its
//! network namespace, so no node's rules see them (kubernetes/kubernetes#95879 for
//! NetworkPolicy, network-policy-api#390 for ClusterNetworkPolicy). `evaluate`, the matrix and
//! `reach --explain` say so, for both tiers and every action.

use std::process::Command;

use palisade_policy::reach::{Matrix, ProbePort, reachable_pods};
use palisade_policy::verdict::TO_ITSELF;
use palisade_policy::{Cluster, Decision, Endpoint, Protocol};

/// Three alike pods `x/a-*` and a lone pod `x/b`, all isolated both ways by a deny-all
/// NetworkPolicy, and denied everything by an Admin ClusterNetworkPolicy too.
const DENIED: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {kubernetes.io/metadata.name: x}}
---
apiVersion: v1
kind: Pod
metadata: {name: a-0, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, image: c, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a-1, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, image: c, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: a-2, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, image: c, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, image: c, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.0.0.4}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"#;

const ADMIN_DENY: &str = r#"
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: deny-everything}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
  egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]
"#;

const ADMIN_ACCEPT: &str = r#"
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: accept-everything}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {}}
  ingress: [{action: Accept, from: [{namespaces: {}}]}]
"#;

fn cluster(text: &str) -> Cluster {
    let mut inputs = palisade_policy::input::Inputs::default();
    inputs.add_text("cluster.yaml", text).expect("readable");
    inputs.cluster()
}

fn pod<'c>(c: &'c Cluster, key: &str) -> &'c palisade_policy::Pod {
    c.pods().iter().find(|p| p.key() == key).expect("pod")
}

#[test]
fn evaluate_allows_a_pod_to_itself_in_every_tier() {
    for (what, text) in [
        ("NetworkPolicy deny-all", DENIED.to_string()),
        ("Admin Deny", format!("{DENIED}{ADMIN_DENY}")),
        ("Baseline Accept", format!("{DENIED}{ADMIN_ACCEPT}")),
    ] {
        let c = cluster(&text);
        let (a, a1) = (pod(&c, "x/a-0"), pod(&c, "x/a-1"));
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            let v = c.evaluate(&Endpoint::Pod(a), &Endpoint::Pod(a), 80, protocol);
            assert!(v.allowed(), "{what}: a pod to itself");
            assert_eq!(v.egress, Decision::ToItself, "{what}");
            assert_eq!(v.ingress, Decision::ToItself, "{what}");
            assert_eq!(v.reason("x/a-0", "x/a-0", 80, protocol), TO_ITSELF);
        }
        // Another pod alike in every way is still denied (Baseline Accept comes after the
        // NetworkPolicy that isolates it).
        let other = c.evaluate(&Endpoint::Pod(a), &Endpoint::Pod(a1), 80, Protocol::Tcp);
        assert!(!other.allowed(), "{what}: a pod to another");
    }
}

#[test]
fn evaluate_to_the_pods_own_address_as_an_outside_address_is_not_itself() {
    // Only the pod as a pod is itself; the verdict for an address is the address's.
    let c = cluster(DENIED);
    let a = pod(&c, "x/a-0");
    let ip = a.ip.expect("ip");
    let v = c.evaluate(
        &Endpoint::Pod(a),
        &Endpoint::External(ip),
        80,
        Protocol::Tcp,
    );
    assert!(!v.allowed());
}

/// The matrix (grouped: the a-* pods are one group) says allowed for each pod to itself and
/// denied between alike pods, exactly as evaluate.
#[test]
fn matrix_is_exact_for_itself_and_for_alike_pods() {
    for text in [DENIED.to_string(), format!("{DENIED}{ADMIN_DENY}")] {
        let c = cluster(&text);
        let everyone = reachable_pods(&c);
        let port = vec![ProbePort {
            port: 80,
            protocol: Protocol::Tcp,
        }];
        let m = Matrix::compute(&c, everyone.clone(), everyone, port);
        let probes = m.probes(true);
        assert_eq!(probes.len(), 16);
        for p in probes {
            let v = c.evaluate(
                &Endpoint::Pod(pod(&c, &p.from)),
                &Endpoint::Pod(pod(&c, &p.to)),
                80,
                Protocol::Tcp,
            );
            assert_eq!(p.allowed, p.from == p.to, "{} -> {}", p.from, p.to);
            assert_eq!(p.allowed, v.allowed());
            assert_eq!(p.reason, v.reason(&p.from, &p.to, 80, Protocol::Tcp));
        }
    }
}

fn reach(text: &str, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("palisade-to-itself-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("cluster-{}.yaml", args.join("_").replace('/', "-")));
    std::fs::write(&file, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["reach", "-f", file.to_str().expect("utf-8"), "--port", "80"])
        .args(args)
        .output()
        .expect("palisade runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
