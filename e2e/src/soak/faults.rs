//! The soak's faults: what each one is and how it is injected (and what injecting it checks:
//! containers kept running through a kubelet or containerd restart, a write refused while the
//! webhook is down admitted when retried).

use super::*;

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kubectl delete pod` of a node's enforcer (the DaemonSet makes a new one).
    EnforcerPodDeleted,
    /// SIGKILL of a node's enforcer process (the kubelet restarts the container).
    EnforcerKilled,
    /// One webhook pod deleted.
    WebhookPodDeleted,
    /// The operator pod holding the leader Lease deleted.
    OperatorLeaderDeleted,
    /// kube-apiserver killed and started again.
    ApiserverRestarted,
    /// The node's filter table flushed by hand (`iptables -F`: Palisade's, kube-proxy's, all).
    IptablesFlushed,
    /// Every Palisade ipset of the node emptied by hand (`ipset flush`; a set rules use cannot
    /// be destroyed).
    IpsetsFlushed,
    /// etcd frozen (SIGSTOP) for 5 s, then let go on.
    EtcdPaused,
    /// The node's kubelet stopped and started again.
    KubeletRestarted,
    /// The node's containerd stopped and started again (containers keep running).
    ContainerdRestarted,
    /// `helm upgrade` with a changed value (`enforcer.resyncSeconds` 9 ↔ 10), and in the
    /// middle of it `kubectl rollout restart` of every Palisade workload.
    HelmUpgraded,
    /// Every webhook replica gone (scaled to 0) for a moment: a NetworkPolicy written then is
    /// refused (`failurePolicy: Fail`) and must be admitted when written again once it is back.
    WebhookDown,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::EnforcerPodDeleted,
        Fault::EnforcerKilled,
        Fault::WebhookPodDeleted,
        Fault::OperatorLeaderDeleted,
        Fault::ApiserverRestarted,
        Fault::IptablesFlushed,
        Fault::IpsetsFlushed,
        Fault::EtcdPaused,
        Fault::KubeletRestarted,
        Fault::ContainerdRestarted,
        Fault::HelmUpgraded,
        Fault::WebhookDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::EnforcerPodDeleted => "enforcer pod deleted",
            Fault::EnforcerKilled => "enforcer SIGKILLed",
            Fault::WebhookPodDeleted => "webhook pod deleted",
            Fault::OperatorLeaderDeleted => "operator leader deleted",
            Fault::ApiserverRestarted => "kube-apiserver restarted",
            Fault::IptablesFlushed => "node iptables flushed",
            Fault::IpsetsFlushed => "node ipsets flushed",
            Fault::EtcdPaused => "etcd paused 5 s",
            Fault::KubeletRestarted => "kubelet restarted",
            Fault::ContainerdRestarted => "containerd restarted",
            Fault::HelmUpgraded => "helm upgrade + rollouts",
            Fault::WebhookDown => "webhook down (0 replicas)",
        }
    }

    /// A short name for `PALISADE_SOAK_FAULTS`: the first word of [`Fault::name`] and the
    /// second, e.g. `enforcer-pod`, `etcd-paused`, `webhook-down`, `node-iptables`.
    pub fn id(self) -> String {
        self.name()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The faults named in `list` (ids separated by commas), or why not.
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| {
                Fault::ALL
                    .into_iter()
                    .find(|f| f.id() == id)
                    .ok_or_else(|| {
                        let ids: Vec<String> = Fault::ALL.iter().map(|f| f.id()).collect();
                        format!("{id}: no such fault; faults: {}", ids.join(", "))
                    })
            })
            .collect()
    }

    /// Whether the fault hits one node (the others hit the cluster).
    pub fn on_a_node(self) -> bool {
        matches!(
            self,
            Fault::EnforcerPodDeleted
                | Fault::EnforcerKilled
                | Fault::IptablesFlushed
                | Fault::IpsetsFlushed
                | Fault::KubeletRestarted
                | Fault::ContainerdRestarted
        )
    }

    /// Whether the fault removes rules from the kernel, so denied traffic may pass until the
    /// enforcer's periodic check puts them back (every other fault leaves the rules in force).
    pub fn removes_rules(self) -> bool {
        matches!(self, Fault::IptablesFlushed | Fault::IpsetsFlushed)
    }
}

/// What injecting a fault saw.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    pub note: String,
    /// A promise found broken while injecting.
    pub broken: Option<String>,
}

impl Injected {
    fn note(note: String) -> Self {
        Self { note, broken: None }
    }
}

/// Injects `fault` (on `node` where it is a node's), with the tutorial `world` to check that
/// containers keep running through a kubelet or containerd restart.
pub fn inject(
    cluster: &RealCluster,
    world: &RealWorld,
    fault: Fault,
    node: &str,
) -> Result<Injected, Error> {
    let cp = &cluster.cp;
    match fault {
        Fault::EnforcerPodDeleted => {
            let pod = enforcer_on(cp, node)?;
            delete_pod(cp, &chart::enforcer_namespace(cp), &pod)?;
        }
        Fault::EnforcerKilled => {
            let ns = chart::enforcer_namespace(cp);
            let pod = enforcer_on(cp, node)?;
            let (container, _) = container_of(cp, &ns, &pod)?;
            let n = cluster.node(node).ok_or_else(|| Error::Command {
                what: format!("node {node}"),
                stderr: "no such node".into(),
            })?;
            let pid = n.task_pid(&container)?;
            let o = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output()
                .map_err(|source| Error::Io {
                    what: "running kill".into(),
                    source,
                })?;
            crate::util::succeeded(format!("kill -KILL {pid}"), o)?;
        }
        Fault::WebhookPodDeleted => {
            let pod = cp.kubectl_ok(&[
                "get",
                "pods",
                "-n",
                chart::NAMESPACE,
                "-l",
                "app.kubernetes.io/component=webhook",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ])?;
            delete_pod(cp, chart::NAMESPACE, &pod)?;
        }
        Fault::OperatorLeaderDeleted => {
            let holder = cp.kubectl_ok(&[
                "get",
                "lease",
                "palisade-operator",
                "-n",
                chart::NAMESPACE,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])?;
            // The holder identity is the pod's name (possibly with a suffix after `_`).
            let pod = holder.split('_').next().unwrap_or_default().to_string();
            delete_pod(cp, chart::NAMESPACE, &pod)?;
        }
        Fault::ApiserverRestarted => cp.restart_apiserver()?,
        Fault::IptablesFlushed => {
            run_on_node(cluster, node, "iptables", &["-t", "filter", "-F"])?;
        }
        Fault::IpsetsFlushed => {
            let names = run_on_node(cluster, node, "ipset", &["list", "-name"])?;
            for set in names.lines().filter(|s| s.starts_with("PALISADE")) {
                run_on_node(cluster, node, "ipset", &["flush", set])?;
            }
        }
        Fault::EtcdPaused => {
            cluster.pause(
                &Target::ControlPlane(Component::Etcd),
                Duration::from_secs(5),
            )?;
        }
        Fault::KubeletRestarted | Fault::ContainerdRestarted => {
            let component = if fault == Fault::KubeletRestarted {
                "kubelet"
            } else {
                "containerd"
            };
            let before = container_pids(cluster, world, node)?;
            let started = Instant::now();
            cluster.restart(&Target::Node {
                node: node.to_string(),
                component: component.to_string(),
            })?;
            let answering = started.elapsed();
            let after = container_pids(cluster, world, node)?;
            let restarted: Vec<&String> = before
                .iter()
                .filter(|(pod, pid)| after.get(*pod) != Some(pid))
                .map(|(pod, _)| pod)
                .collect();
            return Ok(Injected {
                note: format!(
                    "answering again after {:.1} s; {} tutorial containers kept running",
                    answering.as_secs_f64(),
                    before.len() - restarted.len()
                ),
                broken: (!restarted.is_empty()).then(|| {
                    format!("containers of {restarted:?} did not keep running (another process, or none)")
                }),
            });
        }
        Fault::HelmUpgraded => return helm_upgrade_with_rollouts(cp).map(Injected::note),
        Fault::WebhookDown => return webhook_down(cp),
    }
    Ok(Injected::default())
}

/// `kubectl delete pod` without waiting for it to go.
fn delete_pod(cp: &ControlPlane, namespace: &str, pod: &str) -> Result<(), Error> {
    cp.kubectl_ok(&["delete", "pod", pod, "-n", namespace, "--wait=false"])
        .map(|_| ())
}

/// The host PID of the container of each tutorial pod on `node`, by `namespace/name`.
fn container_pids(
    cluster: &RealCluster,
    world: &RealWorld,
    node: &str,
) -> Result<std::collections::BTreeMap<String, u32>, Error> {
    let n = cluster.node_or_err(node)?;
    let mut pids = std::collections::BTreeMap::new();
    for pod in world.pods.iter().filter(|p| p.node == node) {
        let (container, _) = container_of(&cluster.cp, &pod.namespace, &pod.name)?;
        pids.insert(
            format!("{}/{}", pod.namespace, pod.name),
            n.task_pid(&container)?,
        );
    }
    Ok(pids)
}

/// `helm upgrade --reuse-values` with `enforcer.resyncSeconds` changed (9 ↔ 10, so the
/// DaemonSet rolls), and 3 s into it `kubectl rollout restart` of the webhook and operator
/// Deployments and the enforcer DaemonSet; returns once helm and every rollout are done.
fn helm_upgrade_with_rollouts(cp: &ControlPlane) -> Result<String, Error> {
    let values = chart::helm_ok(
        cp,
        &[
            "get",
            "values",
            chart::RELEASE,
            "-n",
            chart::NAMESPACE,
            "-o",
            "json",
        ],
    )?;
    let current = serde_json::from_str::<serde_json::Value>(&values)
        .ok()
        .and_then(|v| v["enforcer"]["resyncSeconds"].as_u64());
    let resync = if current == Some(9) { 10 } else { 9 };
    let set = format!("enforcer.resyncSeconds={resync}");
    let enforcer_ns = chart::enforcer_namespace(cp);
    let started = Instant::now();
    let upgraded = std::thread::scope(|s| {
        let helm = s.spawn(|| {
            chart::helm_ok(
                cp,
                &[
                    "upgrade",
                    chart::RELEASE,
                    chart::CHART_DIR,
                    "-n",
                    chart::NAMESPACE,
                    "--reuse-values",
                    "--set",
                    &set,
                    "--wait",
                    "--timeout",
                    "3m",
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        let restarted = cp
            .kubectl_ok(&[
                "rollout",
                "restart",
                "deployment",
                "-n",
                chart::NAMESPACE,
                "-l",
                &format!("app.kubernetes.io/instance={}", chart::RELEASE),
            ])
            .and_then(|_| {
                cp.kubectl_ok(&[
                    "rollout",
                    "restart",
                    "daemonset/palisade-enforcer",
                    "-n",
                    &enforcer_ns,
                ])
            });
        let helm = helm.join().unwrap_or_else(|_| {
            Err(Error::Command {
                what: "helm upgrade".into(),
                stderr: "its thread panicked".into(),
            })
        });
        restarted.and(helm)
    });
    upgraded.map_err(|e| chart::not_ready(cp, "helm upgrade with rollout restarts", e))?;
    for (kind, ns) in [
        ("deployment/palisade-webhook", chart::NAMESPACE),
        ("deployment/palisade-operator", chart::NAMESPACE),
        ("daemonset/palisade-enforcer", enforcer_ns.as_str()),
    ] {
        cp.kubectl_ok(&["rollout", "status", kind, "-n", ns, "--timeout=180s"])?;
    }
    Ok(format!(
        "resyncSeconds {resync}; helm and the rollouts done in {:.0} s",
        started.elapsed().as_secs_f64()
    ))
}

/// The NetworkPolicy written while the webhook is down, then again once it is back.
fn retried_policy(name: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {CHURN_NAMESPACE}}}\nspec:\n  podSelector: {{matchLabels: {{app: churn}}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: churn}}}}}}]\n    ports: [{{port: 80}}]\n"
    )
}

/// Scales the webhook to 0, writes a NetworkPolicy (refused: `failurePolicy: Fail`), scales
/// it back, and writes the same policy again until it is admitted (at most 60 s): the user's
/// retry must not be lost. The policy is deleted again afterwards.
fn webhook_down(cp: &ControlPlane) -> Result<Injected, Error> {
    let ns = chart::NAMESPACE;
    let replicas = cp.kubectl_ok(&[
        "get",
        "deployment/palisade-webhook",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ])?;
    cp.kubectl_ok(&[
        "scale",
        "deployment/palisade-webhook",
        "-n",
        ns,
        "--replicas=0",
    ])?;
    let gone = within(Duration::from_secs(60), || {
        match cp.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/component=webhook",
            "-o",
            "name",
        ]) {
            Ok(pods) if pods.trim().is_empty() => Ok(()),
            Ok(pods) => Err(format!("still there: {pods}")),
            Err(e) => Err(e.to_string()),
        }
    });
    let name = format!(
        "soak-retried-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000)
    );
    let manifest = retried_policy(&name);
    let while_down = cp.kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
    let scaled_back = cp.kubectl_ok(&[
        "scale",
        "deployment/palisade-webhook",
        "-n",
        ns,
        &format!("--replicas={}", replicas.trim()),
    ]);
    if let Err(e) = gone {
        return Err(Error::Command {
            what: "the webhook's pods going".into(),
            stderr: e,
        });
    }
    scaled_back?;
    let mut broken = None;
    if while_down.status.success() {
        broken = Some(format!(
            "a NetworkPolicy was admitted while no webhook ran (failurePolicy: Fail): {}",
            crate::util::text(&while_down)
        ));
    }
    let refusal = crate::util::text(&while_down);
    cp.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/palisade-webhook",
        "-n",
        ns,
        "--timeout=120s",
    ])?;
    let back = Instant::now();
    let mut tries = 0;
    let admitted = within(Duration::from_secs(60), || {
        tries += 1;
        cp.apply(&manifest).map_err(|e| e.to_string())
    });
    let note = match &admitted {
        Ok(_) => {
            // What was written is what is stored.
            let stored = cp
                .kubectl_ok(&[
                    "get",
                    "networkpolicy",
                    &name,
                    "-n",
                    CHURN_NAMESPACE,
                    "-o",
                    "jsonpath={.spec.ingress[0].ports[0].port}",
                ])
                .unwrap_or_default();
            if stored.trim() != "80" && broken.is_none() {
                broken = Some(format!(
                    "the retried write was admitted but {name} is not stored as written (port {stored:?})"
                ));
            }
            format!(
                "refused while down ({}), admitted on try {tries}, {:.1} s after the webhook was back",
                refusal
                    .lines()
                    .find(|l| l.contains("failed calling webhook"))
                    .map_or("not as unreachable", |_| "failed calling webhook"),
                back.elapsed().as_secs_f64()
            )
        }
        Err(e) => {
            broken.get_or_insert_with(|| {
                format!("a write retried after the webhook was back was never admitted (60 s, {tries} tries): {e}")
            });
            String::new()
        }
    };
    let _ = cp.kubectl(&[
        "delete",
        "networkpolicy",
        &name,
        "-n",
        CHURN_NAMESPACE,
        "--ignore-not-found",
    ]);
    Ok(Injected { note, broken })
}
