//! The chart as users run it: the release image (built by `e2e/image.sh`) on real nodes
//! (kubelet, containerd, runc, kube-proxy, a bridge CNI that enforces nothing), installed with
//! the unmodified chart and default values unless a test is about a value.
//!
//! Skipped, with one line naming what is missing, on a machine without what real nodes need;
//! the network-namespace tests still run there.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::objects;
use palisade_e2e::real_nodes::{self, Iptables, NODES, ProxyMode, RealCluster, RealNode};
use palisade_e2e::real_world::RealWorld;
use palisade_e2e::util::{text, wait_for};
use palisade_e2e::world::{TUTORIAL_NAMESPACES, TUTORIAL_PORTS, differences, tutorial_pods};
use palisade_e2e::{ControlPlane, chart};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policy/tests/fixtures/tutorial"
);

fn real_cluster() -> Option<RealCluster> {
    real_nodes::cluster_for_tests()
}

/// `helm upgrade --reuse-values --set SETTING --wait` of the release.
fn helm_upgrade(cp: &ControlPlane, setting: &str) {
    chart::helm_must(
        cp,
        &[
            "upgrade",
            "palisade",
            chart::CHART_DIR,
            "-n",
            NS,
            "--reuse-values",
            "--set",
            setting,
            "--wait",
            "--timeout",
            "3m",
        ],
    );
}

const NS: &str = chart::NAMESPACE;

/// One line per pod of a component of the release: its `fields` (a jsonpath template).
fn component_pods(
    cp: &ControlPlane,
    component: &str,
    fields: &str,
) -> Result<String, palisade_e2e::Error> {
    cp.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        NS,
        "-l",
        &format!("app.kubernetes.io/component={component}"),
        "-o",
        &format!("jsonpath={{range .items[*]}}{fields}{{\"\\n\"}}{{end}}"),
    ])
}

/// Ready pods of a component of the release.
fn ready_pods(cp: &ControlPlane, component: &str) -> usize {
    component_pods(
        cp,
        component,
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .lines()
    .filter(|l| l.trim() == "True")
    .count()
}

/// What `program` prints on a node (its stdout, whether or not it succeeded).
fn node_output(node: &RealNode, program: &str, args: &[&str]) -> String {
    let out = node
        .command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} on {}: {e}", node.name));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Palisade's chains in `save` (e.g. `ip6tables-nft-save`) on a node.
fn palisade_chains(node: &RealNode, save: &str) -> Vec<String> {
    node_output(node, save, &[])
        .lines()
        .filter(|l| l.starts_with(":PAL"))
        .map(|l| format!("{save}: {l}"))
        .collect()
}

/// Palisade's chains (in either backend, either family) and ipsets on a node.
fn palisade_rules(cluster: &RealCluster, node: &str) -> Vec<String> {
    let node = cluster.node(node).expect("node");
    let mut found = Vec::new();
    for save in [
        "iptables-legacy-save",
        "iptables-nft-save",
        "ip6tables-legacy-save",
        "ip6tables-nft-save",
    ] {
        found.extend(palisade_chains(node, save));
    }
    let sets = node
        .command("ipset")
        .args(["list", "-name"])
        .output()
        .expect("ipset");
    found.extend(
        String::from_utf8_lossy(&sets.stdout)
            .lines()
            .filter(|l| l.starts_with("PAL"))
            .map(String::from),
    );
    found
}

/// Waits (at most 2 min) until the webhook Deployment's rollout is complete.
fn webhook_rolled_out(cp: &ControlPlane) {
    cp.kubectl_must(&[
        "rollout",
        "status",
        "deployment/palisade-webhook",
        "-n",
        NS,
        "--timeout=120s",
    ]);
}

/// Waits (at most 60 s) until the release's `component` Deployment has two pods that are not
/// being deleted, and asserts they run on two different nodes.
fn replicas_on_two_nodes(cp: &ControlPlane, component: &str) {
    let nodes = wait_for(Duration::from_secs(60), || {
        let pods = component_pods(
            cp,
            component,
            "{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}",
        )
        .map_err(|e| e.to_string())?;
        let live: Vec<(&str, &str)> = pods
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 2).then(|| (f[0], f[1]))
            })
            .collect();
        if live.len() == 2 {
            Ok(live
                .iter()
                .map(|(pod, node)| format!("{pod} on {node}"))
                .collect::<Vec<_>>())
        } else {
            Err(format!("{component} pods: {pods}"))
        }
    });
    let on: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.split(" on ").nth(1))
        .collect();
    eprintln!("{component} replicas: {}", nodes.join(", "));
    assert_eq!(
        on.len(),
        2,
        "the {component} replicas share a node: {nodes:?}"
    );
}

/// Applies a tutorial fixture as a user would: kubectl's output and whether it was refused.
fn apply_fixture(cp: &ControlPlane, file: &str) -> (String, bool) {
    let o = cp
        .kubectl(&["apply", "-f", &format!("{FIXTURES}/{file}")])
        .expect("kubectl");
    (text(&o), !o.status.success())
}

/// A probe loop inside `production/frontend`: an allowed flow (to the backend on the other
/// node) and a denied one (to the database on this node), `rounds` times; one line per probe.
fn start_probe_loop(cp: &ControlPlane, world: &RealWorld, rounds: u32) -> std::process::Child {
    let ips = world.ips().expect("pod IPs");
    let (backend, database) = (&ips["production/backend"], &ips["production/database"]);
    let script = format!(
        "for i in $(seq 1 {rounds}); do \
           if nc -w 2 {backend} 8080 </dev/null >/dev/null 2>&1; then echo allowed open; else echo allowed closed; fi; \
           if nc -w 2 {database} 5432 </dev/null >/dev/null 2>&1; then echo denied open; else echo denied closed; fi; \
         done"
    );
    Command::new(cp.kubectl_path())
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args([
            "exec",
            "-n",
            "production",
            "frontend",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl exec")
}

/// The probe loop's results: (allowed probes, allowed that were cut, denied probes, denied
/// that got through).
fn probe_results(mut child: std::process::Child) -> (usize, usize, usize, usize) {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    let _ = child.wait();
    let count = |l: &str| out.lines().filter(|x| *x == l).count();
    let (ao, ac) = (count("allowed open"), count("allowed closed"));
    let (dc, dopen) = (count("denied closed"), count("denied open"));
    (ao + ac, ac, dc + dopen, dopen)
}

/// One cluster for both (starting one takes most of a minute); dropped, even on a failure,
/// when the test ends.
#[test]
fn the_chart_on_real_nodes() {
    let Some(cluster) = real_cluster() else {
        return;
    };
    install_protect_roll_and_uninstall(&cluster);
    a_deleted_node_takes_its_nodeenforcement_along(&cluster);
    an_image_that_cannot_be_pulled_fails_the_install_and_still_uninstalls(&cluster);
}

/// The NodeEnforcement an enforcer wrote (kept after uninstall, like every custom resource)
/// belongs to its Node: the garbage collector of the real controller-manager removes it with
/// the Node.
fn a_deleted_node_takes_its_nodeenforcement_along(cluster: &RealCluster) {
    let cp = &cluster.cp;
    let owner = cp.kubectl_must(&[
        "get",
        "nodeenforcement",
        "node-2",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "Node/node-2");
    cp.kubectl_must(&["delete", "node", "node-2", "--wait=true"]);
    wait_for(Duration::from_secs(60), || {
        let left = cp
            .kubectl(&["get", "nodeenforcement", "node-2", "-o", "name"])
            .expect("kubectl");
        if left.status.success() {
            Err(text(&left))
        } else {
            Ok(())
        }
    });
    assert!(
        cp.kubectl_ok(&["get", "nodeenforcement", "node-1", "-o", "name"])
            .is_ok(),
        "node-1's report went too"
    );
}

fn install_protect_roll_and_uninstall(cluster: &RealCluster) {
    let cp = &cluster.cp;

    // helm install --wait of the chart as releases before the enforcer's own namespace became
    // the default installed it (the enforcer in the release namespace), so the upgrade below is
    // the one every existing user makes: every pod Ready, then helm test.
    // Without the repository's history (a shallow clone), this chart laid out the same way.
    let (previous, layout) = match chart::chart_at(
        chart::RELEASE_NAMESPACE_LAYOUT_COMMIT,
        &cp.dir().join("previous-chart"),
    ) {
        Ok(dir) => (dir.to_string_lossy().into_owned(), None),
        Err(e) => {
            eprintln!(
                "the previous chart is not available ({e}): installing this one with enforcer.namespace.create=false"
            );
            (
                chart::CHART_DIR.to_string(),
                Some("enforcer.namespace.create=false"),
            )
        }
    };
    let started = Instant::now();
    let layout: Vec<&str> = layout.iter().flat_map(|l| ["--set", *l]).collect();
    chart::install_chart(cp, &previous, &layout);
    // A measure for BENCHMARKS.md, not an assertion.
    eprintln!(
        "helm install --wait, then the enforcer rollout: every pod Ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(ready_pods(cp, "webhook"), 2);
    assert_eq!(ready_pods(cp, "operator"), 2);
    assert_eq!(ready_pods(cp, "enforcer"), NODES.len());
    let tested = chart::helm_must(cp, &["test", "palisade", "-n", NS, "--timeout", "2m"]);
    assert!(
        tested.contains("palisade-webhook-test") && tested.contains("Phase:          Succeeded"),
        "{tested}"
    );
    // What the test pod printed (helm deletes it once it succeeded): the same check from an
    // enforcer pod (on the node's network: Palisade's own policies let the webhook and operator
    // pods reach only the apiserver and DNS), through the Service found by its environment,
    // with the CAs of the webhook's own Secret (ca.crt) on stdin.
    let ca = cp.kubectl_must(&[
        "get",
        "secret",
        "palisade-webhook-tls",
        "-n",
        NS,
        "-o",
        "go-template={{index .data \"ca.crt\" | base64decode}}",
    ]);
    let verdict = cp
        .kubectl_stdin(
            &[
                "exec", "-i", "-n", NS, "ds/palisade-enforcer", "--", "sh", "-c",
                "palisade-webhook selftest --address=$PALISADE_WEBHOOK_SERVICE_HOST:$PALISADE_WEBHOOK_SERVICE_PORT_HTTPS \
                 --server-name=palisade-webhook.palisade-system.svc --ca=/dev/stdin",
            ],
            &ca,
        )
        .map(|o| text(&o))
        .expect("kubectl exec");
    assert!(
        verdict.contains("the webhook answered over TLS")
            && verdict.contains("an egress lockdown without DNS was refused"),
        "{verdict}"
    );

    // Palisade's own pods are behind its NetworkPolicies (on by default; enforced here by its
    // own enforcer, the bridge CNI enforces nothing): the apiserver reached the webhook through
    // them above, and reaches it below when policies are applied.
    let own = cp.kubectl_must(&["get", "networkpolicies", "-n", NS, "-o", "name"]);
    assert_eq!(
        own.lines().collect::<Vec<_>>(),
        [
            "networkpolicy.networking.k8s.io/palisade-operator",
            "networkpolicy.networking.k8s.io/palisade-webhook"
        ],
        "{own}"
    );
    // The enforcer's admin port is bound to the node's own address, not to all of the node's.
    for node in NODES {
        let ip = cp.kubectl_must(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
        ]);
        let listening = cluster
            .node(node)
            .expect("node")
            .command("ss")
            .args(["-Hltn", "sport = :9102"])
            .output()
            .expect("ss");
        let listening = String::from_utf8_lossy(&listening.stdout);
        let local: Vec<&str> = listening
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        assert_eq!(local, [format!("{ip}:9102")], "{node}: {listening}");
    }

    // Each enforcer finds the bridge CNI, which enforces nothing, and enforces, in the iptables
    // backend the node's kube-proxy and kubelet use: legacy on node-1, nft on node-2.
    for node in cluster.nodes() {
        let want = format!("bridge false true {} drop", node.iptables.as_str());
        let status = wait_for(Duration::from_secs(60), || {
            let s = cp.kubectl_must(&[
                    "get",
                    "nodeenforcement",
                    &node.name,
                    "-o",
                    "jsonpath={.status.cni} {.status.cniEnforces} {.status.enforcing} {.status.iptablesBackend} {.status.denyAction}|{.status.iptablesBackendSource}|{.status.families}",
                ],
            );
            match s.split_once('|') {
                Some((head, _)) if head == want => Ok(s),
                _ => Err(s),
            }
        });
        eprintln!("{}: NodeEnforcement {status}", node.name);
        let (_, rest) = status.split_once('|').unwrap_or_default();
        assert!(rest.contains("IPv4"), "{}: {status}", node.name);
        // Palisade's chains are where the node's own rules are, and nowhere else.
        let (mine, other) = match node.iptables {
            Iptables::Legacy => ("iptables-legacy-save", "iptables-nft-save"),
            Iptables::Nft => ("iptables-nft-save", "iptables-legacy-save"),
        };
        let theirs = node_output(node, mine, &[]);
        assert!(
            theirs.contains(":KUBE-") && theirs.contains(":PALISADE-FORWARD"),
            "{}: {mine}:\n{theirs}",
            node.name
        );
        assert_eq!(
            palisade_chains(node, other),
            Vec::<String>::new(),
            "{}",
            node.name
        );
        // kube-proxy's Service rules: in legacy iptables on node-1, in its own nftables table
        // on node-2.
        if node.proxy_mode == ProxyMode::Nftables {
            let table = node_output(node, "nft", &["list", "table", "ip", "kube-proxy"]);
            assert!(table.contains("chain services"), "{}: {table}", node.name);
            assert!(
                !theirs.contains(":KUBE-SERVICES"),
                "{}: {theirs}",
                node.name
            );
        }
    }

    // The tutorial world as real pods on both nodes: open before any policy.
    let world = RealWorld::create(cp, &TUTORIAL_NAMESPACES, tutorial_pods()).expect("world");
    // (Measured until every cell is open: a server that just started, or a first SYN lost
    // while a neighbour entry resolves, is not a policy.)
    let open = wait_for(Duration::from_secs(30), || {
        let open = world.measure(&TUTORIAL_PORTS).map_err(|e| e.to_string())?;
        if !open.is_empty() && open.iter().all(|p| p.allowed) {
            Ok(open)
        } else {
            Err(format!("{open:?}"))
        }
    });
    assert_eq!(open.len(), world.cells(&TUTORIAL_PORTS).len());

    only_scrapers_reach_the_metrics(cp);

    // The apiserver calls the webhook through its Service: the classic mistakes are refused
    // with the explanation.
    let (shown, refused) = apply_fixture(cp, "egress-without-dns.yaml");
    assert!(
        refused && shown.contains("palisade") && shown.contains("DNS"),
        "{shown}"
    );
    let (shown, refused) = apply_fixture(cp, "typo-labels.yaml");
    assert!(
        refused && shown.contains("app=backend") && shown.contains("app=api"),
        "{shown}"
    );

    // A labelled namespace gets its baseline; the correct policies are admitted; the measured
    // matrix (same-node and cross-node pairs) equals palisade reach.
    cp.kubectl_must(&[
        "label",
        "namespace",
        "production",
        "palisade.dev/baseline=default",
    ]);
    wait_for(Duration::from_secs(30), || {
        let got = cp.kubectl_must(&[
            "get",
            "networkpolicies",
            "-n",
            "production",
            "-l",
            "app.kubernetes.io/managed-by=palisade",
            "-o",
            "name",
        ]);
        if got.contains("palisade-baseline-deny") && got.contains("palisade-baseline-dns") {
            Ok(())
        } else {
            Err(got)
        }
    });
    let (shown, refused) = apply_fixture(cp, "three-tier.yaml");
    assert!(!refused, "{shown}");
    let (measured, predicted) = wait_for(Duration::from_secs(30), || {
        let predicted = world.predict(&TUTORIAL_PORTS).map_err(|e| e.to_string())?;
        let measured = world.measure(&TUTORIAL_PORTS).map_err(|e| e.to_string())?;
        let diff = differences(&measured, &predicted);
        if diff.is_empty() && measured.len() == predicted.len() {
            Ok((measured, predicted))
        } else {
            Err(diff.join("\n"))
        }
    });
    assert_eq!(measured.len(), predicted.len());
    for (from, to, port, want) in [
        ("production/frontend", "production/backend", 8080, true), // cross-node
        ("production/backend", "production/database", 5432, true), // cross-node
        ("monitoring/prometheus", "production/backend", 9090, true), // same node
        ("production/frontend", "production/database", 5432, false), // same node
        (
            "ingress-nginx/controller",
            "production/database",
            5432,
            false,
        ), // same node
        ("monitoring/prometheus", "production/database", 5432, false), // cross-node
    ] {
        let cell = measured
            .iter()
            .find(|p| p.from == from && p.to == to && p.port == port);
        assert_eq!(cell.map(|p| p.allowed), Some(want), "{from} -> {to}:{port}");
    }

    services_are_judged_by_pod_ip_after_dnat(cluster, &world, &measured);
    cluster_network_policies_are_enforced_as_predicted(cp, &world);

    // helm upgrade to this chart with its defaults and a changed value, then a rollout restart
    // of the enforcers: probed all along, no allowed flow is cut and no denied flow opens. The
    // enforcer stays in the release namespace (moving it would delete its DaemonSet and with it
    // every node's rules), and no namespace of its own is made.
    let probes = start_probe_loop(cp, &world, 30);
    chart::helm_must(
        cp,
        &[
            "upgrade",
            "palisade",
            chart::CHART_DIR,
            "-n",
            NS,
            "--reset-values",
            "--set",
            "logLevel=debug",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    assert_eq!(chart::enforcer_namespace(cp), NS);
    assert!(
        !cp.kubectl_must(&["get", "namespaces", "-o", "name"])
            .contains(&format!("namespace/{}", chart::ENFORCER_NAMESPACE))
    );
    cp.kubectl_must(&[
        "rollout",
        "restart",
        "daemonset/palisade-enforcer",
        "-n",
        NS,
    ]);
    chart::wait_for_enforcer_rollout(cp);
    // The upgrade rolled the webhook and the operator (their arguments changed); a rollout
    // restart rolls the webhook again. Each time their two replicas end on two nodes: the
    // spread counts the new ReplicaSet's pods only (the soak saw both on one node when it
    // counted the old one's too).
    replicas_on_two_nodes(cp, "webhook");
    replicas_on_two_nodes(cp, "operator");
    cp.kubectl_must(&[
        "rollout",
        "restart",
        "deployment/palisade-webhook",
        "-n",
        NS,
    ]);
    webhook_rolled_out(cp);
    replicas_on_two_nodes(cp, "webhook");
    let (allowed, cut, denied, opened) = probe_results(probes);
    assert!(
        allowed >= 10 && denied >= 10,
        "too few probes: {allowed} allowed, {denied} denied"
    );
    assert_eq!(
        (cut, opened),
        (0, 0),
        "of {allowed} allowed probes {cut} were cut; of {denied} denied probes {opened} got through"
    );

    // failurePolicy=Fail and no webhook: NetworkPolicy writes are refused, naming Palisade.
    helm_upgrade(cp, "webhook.failurePolicy=Fail");
    cp.kubectl_must(&[
        "scale",
        "deployment/palisade-webhook",
        "-n",
        NS,
        "--replicas=0",
    ]);
    cp.kubectl_must(&[
        "wait",
        "--for=delete",
        "pod",
        "-n",
        NS,
        "-l",
        "app.kubernetes.io/component=webhook",
        "--timeout=60s",
    ]);
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-anywhere, namespace: production}\nspec:\n  podSelector: {matchLabels: {app: frontend}}\n  ingress: [{}]\n";
    let refused = cp
        .kubectl_stdin(&["apply", "-f", "-"], policy)
        .expect("kubectl");
    let shown = text(&refused);
    assert!(!refused.status.success(), "{shown}");
    assert!(
        shown.contains("networkpolicies.palisade.dev") && shown.contains("palisade-webhook"),
        "{shown}"
    );
    cp.kubectl_must(&[
        "scale",
        "deployment/palisade-webhook",
        "-n",
        NS,
        "--replicas=2",
    ]);
    webhook_rolled_out(cp);
    wait_for(Duration::from_secs(30), || {
        cp.apply(policy).map_err(|e| e.to_string())
    });

    // helm uninstall: every node's rules and sets go, and so does every object of the release.
    drop(world);
    chart::helm_must(
        cp,
        &[
            "uninstall",
            "palisade",
            "-n",
            NS,
            "--wait",
            "--timeout",
            "2m",
        ],
    );
    for node in NODES {
        wait_for(Duration::from_secs(30), || {
            let left = palisade_rules(cluster, node);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{node}: {left:?}"))
            }
        });
    }
    let left = cp.kubectl_must(&[
        "get",
        "validatingwebhookconfigurations,clusterroles,clusterrolebindings",
        "-o",
        "name",
    ]);
    assert!(!left.contains("palisade"), "{left}");
    wait_for(Duration::from_secs(60), || {
        let pods = cp.kubectl_must(&[
            "get",
            "pods,daemonsets,deployments,services,secrets,serviceaccounts",
            "-n",
            NS,
            "-o",
            "name",
        ]);
        let ours: Vec<&str> = pods.lines().filter(|l| l.contains("palisade")).collect();
        if ours.is_empty() {
            Ok(())
        } else {
            Err(ours.join(", "))
        }
    });
}

/// A Service's ClusterIP leads to the same verdict as the pod behind it: kube-proxy (legacy
/// iptables on node-1, nftables on node-2) translates the address before Palisade's FORWARD
/// rules judge the packet by pod IP. An allowed and a denied client on each node.
fn services_are_judged_by_pod_ip_after_dnat(
    cluster: &RealCluster,
    world: &RealWorld,
    measured: &[palisade_policy::reach::Probe],
) {
    let cp = &cluster.cp;
    cp.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: database, namespace: production}\n\
         spec: {selector: {app: database}, ports: [{port: 5432, protocol: TCP}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: production}\n\
         spec: {selector: {app: api}, ports: [{port: 8080, protocol: TCP}]}\n",
    )
    .expect("Services");
    let cluster_ip = |name: &str| {
        cp.kubectl_must(&[
            "get",
            "service",
            name,
            "-n",
            "production",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    };
    let (database, api) = (cluster_ip("database"), cluster_ip("api"));
    let ips = world.ips().expect("pod IPs");
    // Both kube-proxies have the Services (and their endpoints) before anything is probed, so
    // a refused connection below is the policy's doing.
    for node in cluster.nodes() {
        wait_for(Duration::from_secs(30), || {
            let rules = match node.proxy_mode {
                ProxyMode::Iptables => node_output(node, "iptables-save", &["-t", "nat"]),
                ProxyMode::Nftables => {
                    node_output(node, "nft", &["list", "table", "ip", "kube-proxy"])
                }
            };
            // The DNAT to the pod behind each Service: `--to-destination IP:PORT` in
            // iptables mode, `dnat to IP:PORT` in nftables mode.
            let dnat = |pod: &str, port: u16| {
                let target = format!("{}:{port}", ips[pod]);
                rules
                    .lines()
                    .any(|l| l.to_lowercase().contains("dnat") && l.contains(&target))
            };
            if dnat("production/database", 5432) && dnat("production/backend", 8080) {
                Ok(())
            } else {
                Err(format!("{}: {rules}", node.name))
            }
        });
    }
    let connects = |from: &str, ip: &str, port: u16| {
        let (ns, pod) = from.split_once('/').expect("namespace/pod");
        cp.kubectl(&[
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "sh",
            "-c",
            &format!("nc -w 2 {ip} {port} </dev/null"),
        ])
        .expect("kubectl exec")
        .status
        .success()
    };
    for (from, service, ip, to, port, want) in [
        (
            "production/frontend",
            "api",
            &api,
            "production/backend",
            8080,
            true,
        ), // node-1
        (
            "production/frontend",
            "database",
            &database,
            "production/database",
            5432,
            false,
        ), // node-1
        (
            "production/backend",
            "database",
            &database,
            "production/database",
            5432,
            true,
        ), // node-2
        (
            "monitoring/prometheus",
            "database",
            &database,
            "production/database",
            5432,
            false,
        ), // node-2
    ] {
        // The pod-IP matrix said the same for the pod behind the Service.
        let cell = measured
            .iter()
            .find(|p| p.from == from && p.to == to && p.port == port);
        assert_eq!(
            cell.map(|p| p.allowed),
            Some(want),
            "{from} -> {to}:{port} by pod IP"
        );
        if want {
            wait_for(Duration::from_secs(30), || {
                connects(from, ip, port).then_some(()).ok_or(format!(
                    "{from} cannot reach Service {service} at {ip}:{port} ({})",
                    ips[to]
                ))
            });
        } else {
            for _ in 0..3 {
                assert!(
                    !connects(from, ip, port),
                    "{from} reached Service {service} at {ip}:{port}, which leads to {to} ({}), although the policies deny it",
                    ips[to]
                );
            }
        }
    }
    let _ = cp.kubectl(&["delete", "service", "database", "api", "-n", "production"]);
}

/// The webhook's and the operator's /metrics, behind Palisade's own NetworkPolicies: a pod the
/// default `networkPolicy.metricsFrom` allows (labelled `app.kubernetes.io/name: prometheus`,
/// in any namespace) scrapes them; another pod does not get through.
fn only_scrapers_reach_the_metrics(cp: &ControlPlane) {
    let ips = cp.kubectl_must(&[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/component in (webhook,operator)",
            "-o",
            "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/component} {.status.podIP}{\"\\n\"}{end}",
        ],
    );
    let targets: Vec<(&str, &str)> = ips.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(targets.len(), 4, "{ips}");
    // An HTTP GET with busybox's nc (its wget crashes): the connect times out after 2 s when
    // a policy drops it.
    let scrape = |ns: &str, pod: &str, ip: &str| {
        cp.kubectl(&[
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "sh",
            "-c",
            &format!("printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080"),
        ])
        .expect("kubectl exec")
    };
    let label_prometheus = |label: &str| {
        cp.kubectl_must(&["label", "pod", "-n", "monitoring", "prometheus", label]);
    };
    label_prometheus("app.kubernetes.io/name=prometheus");
    for (component, ip) in &targets {
        let metrics = wait_for(Duration::from_secs(30), || {
            let o = scrape("monitoring", "prometheus", ip);
            let body = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() && body.contains(&format!("palisade_{component}")) {
                Ok(body)
            } else {
                Err(format!("{component} {ip}: {}", text(&o)))
            }
        });
        assert!(metrics.contains("# TYPE"), "{metrics}");
        let refused = scrape("ingress-nginx", "controller", ip);
        assert!(
            !refused.status.success(),
            "ingress-nginx/controller scraped the {component} at {ip}: {}",
            text(&refused)
        );
    }
    label_prometheus("app.kubernetes.io/name-");
}

fn an_image_that_cannot_be_pulled_fails_the_install_and_still_uninstalls(cluster: &RealCluster) {
    let cp = &cluster.cp;
    let ns = "palisade-broken";
    let install = chart::helm(
        cp,
        &[
            "install",
            "broken",
            chart::CHART_DIR,
            "-n",
            ns,
            "--create-namespace",
            "--set",
            "image.tag=0.0.0-missing",
            "--wait",
            "--timeout",
            "45s",
        ],
    )
    .expect("running helm");
    let shown = text(&install);
    // Helm 3's --wait says only that it timed out; the pods say why.
    assert!(
        !install.status.success()
            && shown.contains("INSTALLATION FAILED: context deadline exceeded"),
        "{shown}"
    );
    let why = cp.kubectl_must(&["get", "pods", "-n", ns]);
    assert!(
        why.contains("ErrImage") || why.contains("ImagePullBackOff"),
        "{why}"
    );
    // No hook waits on pods that never ran: helm's own bound is enough.
    let o = chart::helm(
        cp,
        &[
            "uninstall",
            "broken",
            "-n",
            ns,
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .expect("running helm");
    assert!(o.status.success(), "{}", text(&o));
    let _ = cp.kubectl(&["delete", "namespace", ns, "--wait=false"]);
}

/// The upstream ClusterNetworkPolicy CRD (the chart's copy, applied with kubectl) and a few
/// policies of both tiers on top of the three-tier NetworkPolicies: Admin Accepts let the
/// frontend reach the database (which NetworkPolicy denies; the database side by its named port),
/// an Admin Deny and a Pass on the ingress controller's namespace, a Baseline Deny for the
/// monitoring namespace (no NetworkPolicy there). Admitted by the webhook, measured with real
/// TCP, cell by cell equal to `palisade reach` over the cluster's objects; then removed.
fn cluster_network_policies_are_enforced_as_predicted(cp: &ControlPlane, world: &RealWorld) {
    objects::cluster_network_policy_crd(cp).unwrap();
    // The enforcers' watch finds the CRD within its backoff.
    wait_for(Duration::from_secs(60), || {
        let reasons = cp.kubectl_must(&[
                "get",
                "nodeenforcements",
                "-o",
                "jsonpath={range .items[*]}{.status.clusterNetworkPolicy.enforced} {.status.clusterNetworkPolicy.reason}{\"\\n\"}{end}",
            ],
        );
        if reasons.lines().count() == NODES.len()
            && reasons
                .lines()
                .all(|l| l == "true enforced with NetworkPolicy")
        {
            Ok(())
        } else {
            Err(reasons)
        }
    });
    let policies = r#"apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: database-from-frontend}
spec:
  tier: Admin
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: production}}
      podSelector: {matchLabels: {app: database}}
  ingress:
  - action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: production}}, podSelector: {matchLabels: {app: frontend}}}}]
    protocols: [{destinationNamedPort: postgres}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: frontend-to-database}
spec:
  tier: Admin
  priority: 11
  subject:
    pods:
      namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: production}}
      podSelector: {matchLabels: {app: frontend}}
  egress:
  - action: Accept
    to: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: production}}, podSelector: {matchLabels: {app: database}}}}]
    protocols: [{tcp: {destinationPort: {number: 5432}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: ingress-controller-guard}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}
  ingress:
  - name: not-from-monitoring
    action: Deny
    from: [{namespaces: {matchLabels: {purpose: monitoring}}}]
  - action: Pass
    from: [{namespaces: {}}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: monitoring-default}
spec:
  tier: Baseline
  priority: 0
  subject: {namespaces: {matchLabels: {purpose: monitoring}}}
  ingress:
  - action: Deny
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]
"#;
    let applied = cp.apply(policies);
    assert!(applied.is_ok(), "{applied:?}");
    let measured = wait_for(Duration::from_secs(30), || {
        let predicted = world.predict(&TUTORIAL_PORTS).map_err(|e| e.to_string())?;
        let measured = world.measure(&TUTORIAL_PORTS).map_err(|e| e.to_string())?;
        let diff = differences(&measured, &predicted);
        if diff.is_empty() && measured.len() == predicted.len() {
            Ok(measured)
        } else {
            Err(diff.join("\n"))
        }
    });
    for (from, to, port, want) in [
        ("production/frontend", "production/database", 5432, true), // Admin Accept, both sides
        (
            "monitoring/prometheus",
            "ingress-nginx/controller",
            80,
            false,
        ), // Admin Deny
        ("production/frontend", "ingress-nginx/controller", 80, false), // NetworkPolicy egress
        (
            "ingress-nginx/controller",
            "monitoring/prometheus",
            9090,
            false,
        ), // Baseline Deny
        ("ingress-nginx/controller", "production/frontend", 80, true), // NetworkPolicy
    ] {
        let cell = measured
            .iter()
            .find(|p| p.from == from && p.to == to && p.port == port);
        assert_eq!(cell.map(|p| p.allowed), Some(want), "{from} -> {to}:{port}");
    }
    cp.kubectl_must(&["delete", "clusternetworkpolicies", "--all"]);
    cp.kubectl_must(&["delete", "crd", objects::CLUSTER_NETWORK_POLICY_CRD_NAME]);
}
