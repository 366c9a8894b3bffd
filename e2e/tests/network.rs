//! Nodes and pods as network namespaces, probed with real TCP and UDP.

use std::process::Command;
use std::time::Duration;

use palisade_e2e::Network;
use palisade_e2e::network::sctp_supported;
use palisade_policy::Protocol::{self, Tcp, Udp};
use palisade_policy::input::Inputs;
use palisade_policy::reach::{self, Matrix, ProbePort};

const PORTS: [(u16, Protocol); 3] = [(80, Tcp), (81, Tcp), (53, Udp)];

/// Two nodes with two pods each, every pod serving PORTS.
fn world() -> Network {
    let mut net = Network::create(&["node-1", "node-2"]).expect("network");
    for (node, ns, name) in [
        ("node-1", "x", "a"),
        ("node-1", "x", "b"),
        ("node-2", "y", "a"),
        ("node-2", "y", "b"),
    ] {
        net.add_pod(node, ns, name).expect("pod");
        net.serve(&format!("{ns}/{name}"), &PORTS).expect("servers");
    }
    net
}

fn all_cells(net: &Network) -> Vec<(String, String, u16, Protocol)> {
    let keys: Vec<String> = net.pods().iter().map(|p| p.key.clone()).collect();
    let mut cells = Vec::new();
    for from in &keys {
        for to in &keys {
            for (port, proto) in PORTS {
                cells.push((from.clone(), to.clone(), port, proto));
            }
        }
    }
    cells
}

/// The same pods as manifests, for `palisade reach`'s prediction.
fn manifests(net: &Network) -> String {
    net.pods()
        .iter()
        .map(|p| {
            let (ns, name) = p.key.split_once('/').unwrap();
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: \"{name}\", namespace: \"{ns}\"}}\n\
                 spec: {{nodeName: {}, containers: [{{name: c, image: i}}]}}\nstatus: {{phase: Running, podIP: {}}}\n---\n",
                p.node, p.ip
            )
        })
        .collect()
}

#[test]
fn with_no_rules_every_pod_reaches_every_pod_on_every_served_port_as_palisade_predicts() {
    let net = world();
    let measured = net
        .probe_all(&all_cells(&net), Duration::from_secs(2))
        .unwrap();
    assert_eq!(measured.len(), 4 * 4 * 3);
    let blocked: Vec<_> = measured.iter().filter(|p| !p.allowed).collect();
    assert!(blocked.is_empty(), "blocked without any rule: {blocked:?}");

    let mut inputs = Inputs::default();
    inputs.add_text("pods.yaml", &manifests(&net)).unwrap();
    let cluster = inputs.cluster();
    let pods = reach::reachable_pods(&cluster);
    let ports = PORTS
        .iter()
        .map(|&(port, protocol)| ProbePort { port, protocol })
        .collect();
    let predicted = Matrix::compute(&cluster, pods.clone(), pods, ports).probes(false);
    let key = |p: &palisade_policy::reach::Probe| {
        (
            p.from.clone(),
            p.to.clone(),
            p.port,
            p.protocol.clone(),
            p.allowed,
        )
    };
    let mut a: Vec<_> = measured.iter().map(key).collect();
    let mut b: Vec<_> = predicted.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn cross_node_traffic_is_routed_through_the_root_namespace() {
    let net = world();
    let (xa, ya) = (net.pod("x/a").unwrap(), net.pod("y/a").unwrap());
    assert_ne!(xa.node, ya.node);
    assert!(net.probe("x/a", "y/a", 80, Tcp).unwrap());
    assert!(net.probe("y/a", "x/a", 53, Udp).unwrap());
}

#[test]
fn a_hand_written_drop_on_a_node_blocks_the_probe() {
    let net = world();
    let node = &net.nodes()[1]; // node-2 holds y/a
    let target = net.pod("y/a").unwrap().ip.to_string();
    let rule = [
        "FORWARD",
        "-d",
        target.as_str(),
        "-p",
        "tcp",
        "--dport",
        "80",
        "-j",
        "DROP",
    ];
    let iptables = |op: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &node.netns.name, "iptables", op])
            .args(rule)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "iptables {op}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(net.probe("x/a", "y/a", 80, Tcp).unwrap());
    iptables("-I");
    assert!(
        !net.probe("x/a", "y/a", 80, Tcp).unwrap(),
        "the DROP rule must block x/a -> y/a:80"
    );
    // Only what the rule names is blocked.
    assert!(net.probe("x/a", "y/a", 81, Tcp).unwrap());
    assert!(net.probe("x/a", "y/b", 80, Tcp).unwrap());
    iptables("-D");
    assert!(net.probe("x/a", "y/a", 80, Tcp).unwrap());
}

#[test]
fn dropping_the_network_removes_its_namespaces() {
    let names: Vec<String>;
    {
        let net = world();
        names = net
            .pods()
            .iter()
            .map(|p| p.netns.name.clone())
            .chain(net.nodes().iter().map(|n| n.netns.name.clone()))
            .collect();
        for n in &names {
            assert!(
                std::path::Path::new(&format!("/run/netns/{n}")).exists(),
                "{n}"
            );
        }
    }
    for n in &names {
        assert!(
            !std::path::Path::new(&format!("/run/netns/{n}")).exists(),
            "{n} left behind"
        );
    }
}

#[test]
fn sctp_probes_say_they_are_unavailable() {
    // This machine's kernel has no SCTP (socket(2) refuses IPPROTO_SCTP), so the harness has no
    // SCTP servers or probes; asking for one is an error that says so, never a silent pass.
    let net = world();
    let err = net
        .probe("x/a", "y/a", 80, Protocol::Sctp)
        .unwrap_err()
        .to_string();
    assert!(err.contains("SCTP"), "{err}");
    let mut one = Network::create(&["n"]).unwrap();
    one.add_pod("n", "s", "p").unwrap();
    assert!(
        one.serve("s/p", &[(80, Protocol::Sctp)])
            .unwrap_err()
            .to_string()
            .contains("SCTP")
    );
    if !sctp_supported() {
        eprintln!("note: this kernel has no SCTP");
    }
}

#[test]
fn a_node_reaches_the_apiserver_through_its_gateway() {
    let cp = palisade_e2e::ControlPlane::shared();
    let Some(cp) = cp.local_for("node namespaces reach only the local control plane") else {
        return;
    };
    let net = Network::create(&["node-1"]).expect("network");
    let node = &net.nodes()[0];
    let kubeconfig = cp
        .kubeconfig_at(std::net::IpAddr::V4(node.gateway), None)
        .unwrap();
    let out = node
        .netns
        .command(cp.kubectl_path().to_str().unwrap())
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--request-timeout=10s",
            "get",
            "--raw",
            "/readyz",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}
