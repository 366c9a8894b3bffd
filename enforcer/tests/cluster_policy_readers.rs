//! The three readers of ClusterNetworkPolicy agree, by construction, about policies Palisade
//! cannot read as written: the CLI (`palisade reach` on files or a live cluster, through
//! `palisade_policy::input`), the webhook's checks (through `palisade_policy::snapshot`) and the
//! enforcer (through `cluster_policies::understand`, compiled to rules and run through the
//! interpreter). One cluster holds a policy read as written, one with a peer kind of a newer CRD
//! (enforced failing closed) and one with the experimental `nodes` peer (left out), as found
//! where the webhook did not run.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_api::ClusterNetworkPolicy;
use palisade_enforcer::cluster_policies::understand;
use palisade_enforcer::interpret::{Outcome, Packet, Path, run};
use palisade_enforcer::{CompileOptions, compile};
use palisade_policy::input::Inputs;
use palisade_policy::snapshot::Snapshot;
use palisade_policy::{Cluster, Endpoint, Namespace, Pod, Protocol};
use serde_json::{Value, json};

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}})
}

fn pod(ns: &str, name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

fn cluster_policies() -> Vec<Value> {
    vec![
        json!({"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
               "metadata": {"name": "deny-ssh"},
               "spec": {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                        "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                                     "protocols": [{"tcp": {"destinationPort": {"number": 22}}}]}]}}),
        // `services` stands for a peer kind of a newer CRD.
        json!({"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
               "metadata": {"name": "newer"},
               "spec": {"tier": "Admin", "priority": 1,
                        "subject": {"pods": {"podSelector": {"matchLabels": {"app": "a"}}}},
                        "egress": [
                            {"action": "Accept",
                             "to": [{"services": {"name": "x"}}, {"pods": {"podSelector": {"matchLabels": {"app": "b"}}}}],
                             "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
                            {"action": "Pass", "to": [{"services": {"name": "y"}}],
                             "protocols": [{"udp": {"destinationPort": {"number": 53}}}]}]}}),
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
               "metadata": {"name": "to-nodes"},
               "spec": {"tier": "Admin", "priority": 2, "subject": {"namespaces": {}},
                        "egress": [{"action": "Deny", "to": [{"nodes": {}}]}]}}),
    ]
}

fn objects() -> Vec<Value> {
    let mut all = vec![
        namespace("x"),
        namespace("y"),
        pod("x", "a", "10.0.0.1"),
        pod("y", "b", "10.0.0.2"),
    ];
    all.extend(cluster_policies());
    all
}

/// What `palisade reach` reads.
fn cli() -> (Cluster, Inputs) {
    let mut inputs = Inputs::default();
    inputs.add_objects("cluster", &objects());
    (inputs.cluster(), inputs)
}

/// The webhook's snapshot of the objects.
fn snapshot() -> Snapshot {
    let of = |kind: &'static str| objects().into_iter().filter(move |o| o["kind"] == kind);
    let namespaces: Vec<K8sNamespace> = of("Namespace")
        .map(|o| serde_json::from_value(o).expect("namespace"))
        .collect();
    let pods: Vec<K8sPod> = of("Pod")
        .map(|o| serde_json::from_value(o).expect("pod"))
        .collect();
    let cnps: Vec<ClusterNetworkPolicy> = of("ClusterNetworkPolicy")
        .map(|o| serde_json::from_value(o).expect("cnp"))
        .collect();
    let none: Vec<NetworkPolicy> = Vec::new();
    Snapshot::build(
        namespaces.iter().map(Namespace::from_k8s),
        pods.iter().map(Pod::from_k8s).collect(),
        Vec::new(),
        &none,
        &cnps,
    )
}

/// What the webhook's checks read.
fn webhook() -> Cluster {
    snapshot().with_tiers()
}

/// What the enforcer enforces: the webhook's cluster without tiers, plus what it understands.
fn enforcer() -> (Cluster, Vec<palisade_api::NotEnforcedPolicy>) {
    let cnps: Vec<Arc<ClusterNetworkPolicy>> = cluster_policies()
        .into_iter()
        .map(|o| Arc::new(serde_json::from_value(o).expect("cnp")))
        .collect();
    let (policies, refused) = understand(&cnps);
    (snapshot().cluster.with_cluster_policies(policies), refused)
}

fn ip(pod: &Pod) -> Ipv4Addr {
    match pod.ips.first() {
        Some(IpAddr::V4(v4)) => *v4,
        other => panic!("pod {} has no IPv4 address: {other:?}", pod.name),
    }
}

#[test]
fn the_cli_the_webhook_and_the_enforcer_read_a_policy_they_cannot_read_as_written_alike() {
    let (from_files, inputs) = cli();
    let from_webhook = webhook();
    let (from_enforcer, refused) = enforcer();

    // One reading: the same policies, failing closed included, the `nodes` one left out.
    let names = |c: &Cluster| {
        c.cluster_policies()
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&from_files), ["newer", "deny-ssh"]);
    assert_eq!(
        from_files.cluster_policies(),
        from_webhook.cluster_policies()
    );
    assert_eq!(
        from_files.cluster_policies(),
        from_enforcer.cluster_policies()
    );

    // Each says which is enforced failing closed and which is not enforced, and why.
    let said: Vec<(String, String)> = refused
        .iter()
        .map(|r| (r.name.clone(), r.reason.clone()))
        .collect();
    assert_eq!(said.len(), 2, "{said:?}");
    assert_eq!(said[0].0, "newer");
    assert!(
        said[0].1.ends_with(
            ": enforced failing closed (egress rule 0: those peers match nothing, egress rule 1: it denies all traffic)"
        ),
        "{said:?}"
    );
    assert_eq!(
        said[1],
        (
            "to-nodes".to_string(),
            "spec.egress[0].to[0].nodes: nodes peers (experimental) are not enforced by Palisade"
                .to_string()
        )
    );
    let cli_said: Vec<&str> = inputs.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        cli_said.iter().any(|m| m.ends_with(
            "Palisade enforces it failing closed (egress rule 0: those peers match nothing, egress rule 1: it denies all traffic)"
        )),
        "{cli_said:#?}"
    );
    assert!(
        cli_said.contains(
            &"spec.egress[0].to[0].nodes: nodes peers (experimental) are not enforced by Palisade"
        ),
        "{cli_said:#?}"
    );

    // The same verdicts, and the enforcer's rules decide packets as the verdicts say.
    let rules = compile(&from_enforcer, "n1", &CompileOptions::default());
    let pods = from_files.pods();
    let (a, b) = (&pods[0], &pods[1]);
    let probes = [
        (a, b, Protocol::Tcp, 80, true), // the Accept's known peer still accepts
        (a, b, Protocol::Tcp, 81, false), // the Pass with an unknown peer denies all
        (a, b, Protocol::Udp, 53, false), // so too here
        (b, a, Protocol::Tcp, 22, false), // deny-ssh, read as written
        (b, a, Protocol::Tcp, 80, true), // nothing else decides
    ];
    for (src, dst, protocol, port, allowed) in probes {
        let verdict = |c: &Cluster| {
            c.evaluate(&Endpoint::Pod(src), &Endpoint::Pod(dst), port, protocol)
                .allowed()
        };
        let probe = format!("{} -> {} {port}/{protocol:?}", src.name, dst.name);
        assert_eq!(verdict(&from_files), allowed, "reach: {probe}");
        assert_eq!(verdict(&from_webhook), allowed, "webhook: {probe}");
        let packet = Packet::new(
            ip(src).into(),
            ip(dst).into(),
            protocol,
            port,
            Path::Forward,
        );
        let expected = if allowed {
            Outcome::Accept
        } else {
            Outcome::Drop
        };
        assert_eq!(run(&rules, packet), Ok(expected), "enforcer: {probe}");
    }
}
