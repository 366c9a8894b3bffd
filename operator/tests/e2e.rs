//! The operator as a process against the real apiserver: what a platform engineer does and sees.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::ControlPlane;

const CHART_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/palisade/crds/networkbaseline.yaml"
);

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The tests of this binary run one at a time: each starts its own operator, and the first
/// measures that nothing writes while the cluster is at rest.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> (
    &'static ControlPlane,
    std::sync::MutexGuard<'static, ()>,
    Operator,
) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    kubectl(cp, &["apply", "-f", CHART_CRD]);
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/networkbaselines.palisade.dev",
        ],
    );
    let operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_palisade-operator"))
            .args(["--namespace", "palisade-system", "--log-format", "text"])
            .env("KUBECONFIG", &cp.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (cp, serial, operator)
}

struct Operator(Child);
impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let o = cp.kubectl(args).unwrap();
    assert!(
        o.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn apply(cp: &ControlPlane, yaml: &str) {
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], yaml).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// Polls until `get` returns `want` (20 s at most).
fn eventually(what: &str, want: &str, get: impl Fn() -> String) {
    let start = Instant::now();
    loop {
        let got = get();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: want {want:?}, still {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn policies(cp: &ControlPlane, ns: &str) -> String {
    kubectl(
        cp,
        &[
            "get",
            "networkpolicies",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
}

#[test]
fn a_labelled_namespace_gets_and_keeps_its_baseline() {
    let (cp, _serial, mut operator) = setup();
    apply(
        cp,
        "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: default}\nspec: {}\n",
    );
    let _shop = cp.test_namespace("shop").unwrap();
    kubectl(
        cp,
        &[
            "label",
            "namespace",
            "shop",
            "palisade.dev/baseline=default",
        ],
    );
    eventually(
        "opt-in",
        "palisade-baseline-deny palisade-baseline-dns",
        || policies(cp, "shop"),
    );
    let labels = kubectl(
        cp,
        &[
            "get",
            "networkpolicy",
            "palisade-baseline-deny",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
    );
    assert_eq!(
        labels,
        r#"{"app.kubernetes.io/managed-by":"palisade","palisade.dev/baseline":"default"}"#
    );
    eventually("status", "1 shop True", || {
        kubectl(
            cp,
            &[
                "get",
                "networkbaseline",
                "default",
                "-o",
                "jsonpath={.status.namespaceCount} {.status.namespaces[*]} {.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
    });

    // At rest the operator writes nothing: the apiserver's own request counters for writes to
    // NetworkPolicies and NetworkBaselines do not move over a quiet period.
    let writes = || -> u64 {
        kubectl(cp, &["get", "--raw", "/metrics"])
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter(|l| {
                l.contains("resource=\"networkpolicies\"")
                    || l.contains("resource=\"networkbaselines\"")
            })
            .filter(|l| {
                ["APPLY", "PATCH", "POST", "PUT", "DELETE"]
                    .iter()
                    .any(|v| l.contains(&format!("verb=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = writes();
    assert!(
        before >= 3,
        "the counter must see the writes that created the policies and the status ({before})"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(writes(), before, "the operator wrote while nothing changed");

    // A baseline edit reaches the namespace.
    kubectl(
        cp,
        &[
            "patch",
            "networkbaseline",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"allow":{"sameNamespace":true}}}"#,
        ],
    );
    eventually(
        "edit",
        "palisade-baseline-deny palisade-baseline-dns palisade-baseline-same-namespace",
        || policies(cp, "shop"),
    );

    // Drift is repaired: a deleted policy comes back, an edited one is put back.
    kubectl(
        cp,
        &[
            "delete",
            "networkpolicy",
            "palisade-baseline-deny",
            "-n",
            "shop",
        ],
    );
    eventually(
        "delete repaired",
        "palisade-baseline-deny palisade-baseline-dns palisade-baseline-same-namespace",
        || policies(cp, "shop"),
    );
    kubectl(
        cp,
        &[
            "patch",
            "networkpolicy",
            "palisade-baseline-dns",
            "-n",
            "shop",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/egress/0/ports/0/port","value":5353}]"#,
        ],
    );
    eventually("edit repaired", "53", || {
        kubectl(
            cp,
            &[
                "get",
                "networkpolicy",
                "palisade-baseline-dns",
                "-n",
                "shop",
                "-o",
                "jsonpath={.spec.egress[0].ports[0].port}",
            ],
        )
    });
    // Policies it does not own are left alone.
    apply(
        cp,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: mine, namespace: shop}\nspec: {podSelector: {}}\n",
    );

    // A label naming a missing baseline: an Event on the namespace, nothing applied.
    let _orphan = cp.test_namespace("orphan").unwrap();
    kubectl(
        cp,
        &["label", "namespace", "orphan", "palisade.dev/baseline=nope"],
    );
    // Events about a cluster-scoped Namespace are stored in `default`; kubectl describe shows them.
    let events = |path: &str| {
        kubectl(
            cp,
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                "reason=BaselineNotFound,involvedObject.name=orphan",
                "-o",
                &format!("jsonpath={{.items[*].{path}}}"),
            ],
        )
    };
    eventually("event", "BaselineNotFound", || events("reason"));
    let note = events("message");
    assert_eq!(
        note,
        "palisade.dev/baseline=nope, but there is no NetworkBaseline nope: nothing applied (kubectl get networkbaselines)"
    );
    assert_eq!(policies(cp, "orphan"), "");

    // Opting out removes the managed policies, and only those.
    kubectl(
        cp,
        &["label", "namespace", "shop", "palisade.dev/baseline-"],
    );
    eventually("opt-out", "mine", || policies(cp, "shop"));
    eventually("status after opt-out", "0", || {
        kubectl(
            cp,
            &[
                "get",
                "networkbaseline",
                "default",
                "-o",
                "jsonpath={.status.namespaceCount}",
            ],
        )
    });

    // SIGTERM, as Kubernetes stops a pod: the operator exits cleanly.
    let pid = operator.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = operator.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the operator ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn namespaces_follow_their_own_baselines_and_a_deleted_baseline_takes_its_policies() {
    let (cp, _serial, _operator) = setup();
    apply(
        cp,
        "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: ingress-only}\nspec: {policyTypes: [Ingress]}\n",
    );
    apply(
        cp,
        "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: audit}\nspec: {mode: Audit, allow: {fromNamespaces: [monitoring]}}\n",
    );
    let _a = cp.test_namespace("team-a").unwrap();
    let _b = cp.test_namespace("team-b").unwrap();
    kubectl(
        cp,
        &[
            "label",
            "namespace",
            "team-a",
            "palisade.dev/baseline=ingress-only",
        ],
    );
    kubectl(
        cp,
        &[
            "label",
            "namespace",
            "team-b",
            "palisade.dev/baseline=audit",
        ],
    );
    eventually("team-a", "palisade-baseline-deny", || {
        policies(cp, "team-a")
    });
    eventually(
        "team-b",
        "palisade-baseline-deny palisade-baseline-dns palisade-baseline-from-namespaces",
        || policies(cp, "team-b"),
    );
    assert_eq!(
        kubectl(
            cp,
            &[
                "get",
                "networkpolicy",
                "palisade-baseline-deny",
                "-n",
                "team-a",
                "-o",
                "jsonpath={.spec.policyTypes}"
            ]
        ),
        r#"["Ingress"]"#
    );
    assert_eq!(
        kubectl(
            cp,
            &[
                "get",
                "networkpolicy",
                "palisade-baseline-deny",
                "-n",
                "team-b",
                "-o",
                "jsonpath={.metadata.annotations.palisade\\.dev/mode}"
            ]
        ),
        "audit"
    );

    kubectl(cp, &["delete", "networkbaseline", "audit"]);
    eventually("deleted baseline", "", || policies(cp, "team-b"));
    assert_eq!(
        policies(cp, "team-a"),
        "palisade-baseline-deny",
        "the other baseline's namespace is untouched"
    );

    // An excluded namespace is a conflict in the status, and gets nothing.
    apply(
        cp,
        "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: ingress-only}\nspec: {policyTypes: [Ingress], excludeNamespaces: [team-a]}\n",
    );
    eventually("excluded", "", || policies(cp, "team-a"));
    eventually(
        "conflict",
        "namespace team-a is listed in spec.excludeNamespaces",
        || {
            kubectl(
                cp,
                &[
                    "get",
                    "networkbaseline",
                    "ingress-only",
                    "-o",
                    "jsonpath={.status.conflicts[*]}",
                ],
            )
        },
    );
    assert_eq!(
        kubectl(
            cp,
            &[
                "get",
                "networkbaseline",
                "ingress-only",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Degraded\")].reason}"
            ]
        ),
        "Conflicts"
    );
}
