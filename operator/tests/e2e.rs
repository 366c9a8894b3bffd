//! The operator as a process against the real apiserver: what a platform engineer does and sees.

use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_e2e::control_plane::TestNamespace;
use palisade_e2e::util::{Process, free_port, http_get, sample, text};
use palisade_e2e::{ControlPlane, chart};

/// The tests of this binary run one at a time: each starts its own operator, and the first
/// measures that nothing writes while the cluster is at rest.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An operator replica: the process and its admin port.
struct Operator {
    process: Process,
    admin: u16,
}

impl Operator {
    /// Starts a replica named `identity` (its Lease holder name) and waits for its admin port.
    fn start(cp: &ControlPlane, identity: &str) -> Self {
        Self::start_with(cp, identity, &[])
    }

    /// Likewise, with more arguments.
    fn start_with(cp: &ControlPlane, identity: &str, extra: &[&str]) -> Self {
        // The chart's ServiceAccount: its RBAC is what this test exercises.
        Self::start_as(
            &chart::kubeconfig_for(cp, "operator").unwrap(),
            identity,
            extra,
        )
    }

    /// Likewise, with the credentials of `kubeconfig`.
    fn start_as(kubeconfig: &std::path::Path, identity: &str, extra: &[&str]) -> Self {
        let admin = free_port();
        let process = Process(
            Command::new(env!("CARGO_BIN_EXE_palisade-operator"))
                .args(["--namespace", "palisade-system", "--log-format", "text"])
                .args(["--pod-name", identity, "--lease-duration", "4"])
                .args(extra)
                .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
                .env("KUBECONFIG", kubeconfig)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let operator = Self { process, admin };
        palisade_e2e::util::eventually(
            "the operator's readiness",
            Duration::from_secs(20),
            Some(200),
            || http_get(admin, "/readyz").map(|r| r.0),
        );
        operator
    }

    fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    }
}

fn setup_as(
    identity: &str,
) -> (
    &'static ControlPlane,
    std::sync::MutexGuard<'static, ()>,
    Operator,
) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    // The chart's CRDs, Palisade's namespace (where the Lease lives) and RBAC: the operator
    // runs with the chart's ServiceAccount.
    chart::install_rbac(cp).unwrap();
    let operator = Operator::start(cp, identity);
    (cp, serial, operator)
}

fn apply(cp: &ControlPlane, yaml: &str) {
    cp.apply(yaml).unwrap_or_else(|e| panic!("{e}"));
}

/// Applies the NetworkBaseline `name` with `spec` (YAML flow, e.g. `{mode: Audit}`).
fn baseline(cp: &ControlPlane, name: &str, spec: &str) {
    apply(
        cp,
        &format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ),
    );
}

/// The policies a NetworkBaseline without `policyTypes` gives each namespace, by name.
const BOTH_POLICIES: &str = "palisade-baseline-deny palisade-baseline-dns";

/// Polls until `get` returns `want` (20 s at most).
fn eventually(what: &str, want: &str, get: impl Fn() -> String) {
    palisade_e2e::util::eventually(what, Duration::from_secs(20), want.to_string(), get);
}

/// `jsonpath` of the namespace's `palisade-baseline-dns`.
fn dns_allowance(cp: &ControlPlane, ns: &str, jsonpath: &str) -> String {
    cp.kubectl_must(&[
        "get",
        "networkpolicy",
        "palisade-baseline-dns",
        "-n",
        ns,
        "-o",
        &format!("jsonpath={jsonpath}"),
    ])
}

fn policies(cp: &ControlPlane, ns: &str) -> String {
    cp.kubectl_must(&[
        "get",
        "networkpolicies",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
}

#[test]
fn a_labelled_namespace_gets_and_keeps_its_baseline() {
    let (cp, _serial, mut operator) = setup_as("at-rest");
    baseline(cp, "default", "{}");
    let _shop = opted_in(cp, "shop", "default");
    eventually("opt-in", BOTH_POLICIES, || policies(cp, "shop"));
    let labels = cp.kubectl_must(&[
        "get",
        "networkpolicy",
        "palisade-baseline-deny",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(
        labels,
        r#"{"app.kubernetes.io/managed-by":"palisade","palisade.dev/baseline":"default"}"#
    );
    eventually("status", "1 shop True", || {
        baseline_status(
            cp,
            "default",
            "{.status.namespaceCount} {.status.namespaces[*]} {.status.conditions[?(@.type==\"Ready\")].status}",
        )
    });

    // At rest the operator writes nothing: the apiserver's own request counters for writes to
    // NetworkPolicies and NetworkBaselines do not move over a quiet period.
    let writes = || -> u64 {
        cp.kubectl_must(&["get", "--raw", "/metrics"])
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
    cp.kubectl_must(&[
        "patch",
        "networkbaseline",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"allow":{"sameNamespace":true}}}"#,
    ]);
    eventually(
        "edit",
        "palisade-baseline-deny palisade-baseline-dns palisade-baseline-same-namespace",
        || policies(cp, "shop"),
    );

    // Drift is repaired: a deleted policy comes back, an edited one is put back.
    cp.kubectl_must(&[
        "delete",
        "networkpolicy",
        "palisade-baseline-deny",
        "-n",
        "shop",
    ]);
    eventually(
        "delete repaired",
        "palisade-baseline-deny palisade-baseline-dns palisade-baseline-same-namespace",
        || policies(cp, "shop"),
    );
    cp.kubectl_must(&[
        "patch",
        "networkpolicy",
        "palisade-baseline-dns",
        "-n",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/egress/0/ports/0/port","value":5353}]"#,
    ]);
    eventually("edit repaired", "53", || {
        dns_allowance(cp, "shop", "{.spec.egress[0].ports[0].port}")
    });
    // Policies it does not own are left alone.
    apply(
        cp,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: mine, namespace: shop}\nspec: {podSelector: {}}\n",
    );

    // A label naming a missing baseline: an Event on the namespace, nothing applied.
    let _orphan = cp.test_namespace("orphan").unwrap();
    cp.kubectl_must(&["label", "namespace", "orphan", "palisade.dev/baseline=nope"]);
    let events = |field: &str| namespace_events(cp, "orphan", "BaselineNotFound", field);
    eventually("event", "BaselineNotFound", || events("reason"));
    let note = events("message");
    assert_eq!(
        note,
        "palisade.dev/baseline=nope, but there is no NetworkBaseline nope: nothing applied (kubectl get networkbaselines)"
    );
    // Where the namespace's owner looks: the namespace's own Events.
    let shown = cp.kubectl_must(&["events", "-n", "orphan"]);
    let line = shown.lines().find(|l| l.contains("BaselineNotFound"));
    assert!(
        line.is_some_and(|l| l.contains("Warning") && l.contains("Namespace/orphan")),
        "{shown}"
    );
    assert_eq!(policies(cp, "orphan"), "");

    // Opting out removes the managed policies, and only those.
    cp.kubectl_must(&["label", "namespace", "shop", "palisade.dev/baseline-"]);
    eventually("opt-out", "mine", || policies(cp, "shop"));
    eventually("status after opt-out", "0", || {
        baseline_status(cp, "default", "{.status.namespaceCount}")
    });

    // The admin port says what happened.
    let metrics = operator.metrics();
    assert_eq!(
        sample(&metrics, "palisade_operator_leader"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"palisade_operator_namespaces_covered{baseline="default"}"#
        ),
        Some(0.0), // shop opted out above
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"palisade_operator_reconciles_total{controller="namespace",result="ok"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(metrics.contains("palisade_operator_reconcile_duration_seconds_bucket"));
    assert_eq!(
        http_get(operator.admin, "/healthz"),
        Some((200, "ok\n".into()))
    );

    // SIGTERM, as Kubernetes stops a pod: the operator exits cleanly and hands the Lease on.
    let status = operator
        .process
        .terminate(Duration::from_secs(10))
        .expect("the operator ignored SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert_eq!(lease_holder(cp), "");
}

fn lease_holder(cp: &ControlPlane) -> String {
    cp.kubectl_must(&[
        "get",
        "lease",
        "palisade-operator",
        "-n",
        "palisade-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

/// `kubectl get networkbaseline NAME -o jsonpath=PATH`.
fn baseline_status(cp: &ControlPlane, name: &str, path: &str) -> String {
    cp.kubectl_must(&[
        "get",
        "networkbaseline",
        name,
        "-o",
        &format!("jsonpath={path}"),
    ])
}

/// A field (`reason`, `message`) of the Events with `reason` about namespace `ns`, which are
/// stored in that namespace (`kubectl describe namespace` shows no Events at all).
fn namespace_events(cp: &ControlPlane, ns: &str, reason: &str, field: &str) -> String {
    cp.kubectl_must(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        &format!("reason={reason},involvedObject.name={ns}"),
        "-o",
        &format!("jsonpath={{.items[*].{field}}}"),
    ])
}

/// A namespace of the test's own, opted in to `baseline`.
fn opted_in<'a>(cp: &'a ControlPlane, ns: &str, baseline: &str) -> TestNamespace<'a> {
    let namespace = cp.test_namespace(ns).unwrap();
    opt_in(cp, ns, baseline);
    namespace
}

fn opt_in(cp: &ControlPlane, ns: &str, baseline: &str) {
    cp.kubectl_must(&[
        "label",
        "--overwrite",
        "namespace",
        ns,
        &format!("palisade.dev/baseline={baseline}"),
    ]);
}

#[test]
fn a_standby_replica_takes_over_when_the_leader_dies() {
    let (cp, _serial, leader) = setup_as("replica-a");
    baseline(cp, "failover", "{}");
    eventually("the first replica leads", "replica-a", || lease_holder(cp));
    let standby = Operator::start(cp, "replica-b");
    let _one = opted_in(cp, "failover-one", "failover");
    eventually("the leader applies", BOTH_POLICIES, || {
        policies(cp, "failover-one")
    });
    // Only the holder writes: the standby has reconciled nothing.
    let metrics = standby.metrics();
    assert_eq!(
        sample(&metrics, "palisade_operator_leader"),
        Some(0.0),
        "{metrics}"
    );
    assert!(!metrics.contains("controller=\"namespace\""), "{metrics}");
    assert_eq!(lease_holder(cp), "replica-a");

    // SIGKILL: no chance to hand the Lease on; the standby waits out the lease duration.
    drop(leader);
    eventually("the standby takes over", "replica-b", || lease_holder(cp));
    let _two = opted_in(cp, "failover-two", "failover");
    eventually("the new leader applies", BOTH_POLICIES, || {
        policies(cp, "failover-two")
    });
    cp.kubectl_must(&[
        "delete",
        "networkpolicy",
        "palisade-baseline-deny",
        "-n",
        "failover-one",
    ]);
    eventually("the new leader repairs", BOTH_POLICIES, || {
        policies(cp, "failover-one")
    });
    assert_eq!(
        sample(&standby.metrics(), "palisade_operator_leader"),
        Some(1.0)
    );
}

#[test]
fn the_operator_converges_after_the_apiserver_restarts() {
    let (cp, _serial, _operator) = setup_as("restart");
    let Some(cp) = cp.local_for("an external cluster's apiserver is not ours to restart") else {
        return;
    };
    baseline(cp, "restart", "{}");
    let _before = opted_in(cp, "restart-before", "restart");
    eventually("before the restart", BOTH_POLICIES, || {
        policies(cp, "restart-before")
    });

    cp.restart_apiserver().unwrap();

    // The operator's watches reconnect: new changes and drift are handled again.
    let _after = opted_in(cp, "restart-after", "restart");
    cp.kubectl_must(&[
        "delete",
        "networkpolicy",
        "palisade-baseline-dns",
        "-n",
        "restart-before",
    ]);
    // The watches' backoff after an outage can take a while on a busy machine: a minute.
    let after_restart = |what: &str, ns: &str| {
        palisade_e2e::util::eventually(
            what,
            Duration::from_secs(60),
            BOTH_POLICIES.to_string(),
            || policies(cp, ns),
        )
    };
    after_restart("a namespace labelled after the restart", "restart-after");
    after_restart("drift after the restart", "restart-before");
}

#[test]
fn namespaces_follow_their_own_baselines_and_a_deleted_baseline_takes_its_policies() {
    let (cp, _serial, _operator) = setup_as("baselines");
    baseline(cp, "ingress-only", "{policyTypes: [Ingress]}");
    baseline(
        cp,
        "audit",
        "{mode: Audit, allow: {fromNamespaces: [monitoring]}}",
    );
    let _a = cp.test_namespace("team-a").unwrap();
    let _b = cp.test_namespace("team-b").unwrap();
    opt_in(cp, "team-a", "ingress-only");
    opt_in(cp, "team-b", "audit");
    eventually("team-a", "palisade-baseline-deny", || {
        policies(cp, "team-a")
    });
    eventually(
        "team-b",
        "palisade-baseline-deny palisade-baseline-dns palisade-baseline-from-namespaces",
        || policies(cp, "team-b"),
    );
    assert_eq!(
        cp.kubectl_must(&[
            "get",
            "networkpolicy",
            "palisade-baseline-deny",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.policyTypes}"
        ]),
        r#"["Ingress"]"#
    );
    assert_eq!(
        cp.kubectl_must(&[
            "get",
            "networkpolicy",
            "palisade-baseline-deny",
            "-n",
            "team-b",
            "-o",
            "jsonpath={.metadata.annotations.palisade\\.dev/mode}"
        ]),
        "audit"
    );

    cp.kubectl_must(&["delete", "networkbaseline", "audit"]);
    eventually("deleted baseline", "", || policies(cp, "team-b"));
    assert_eq!(
        policies(cp, "team-a"),
        "palisade-baseline-deny",
        "the other baseline's namespace is untouched"
    );

    // An excluded namespace is a conflict in the status, and gets nothing.
    baseline(
        cp,
        "ingress-only",
        "{policyTypes: [Ingress], excludeNamespaces: [team-a]}",
    );
    eventually("excluded", "", || policies(cp, "team-a"));
    eventually(
        "conflict",
        "namespace team-a is listed in spec.excludeNamespaces",
        || baseline_status(cp, "ingress-only", "{.status.conflicts[*]}"),
    );
    assert_eq!(
        baseline_status(
            cp,
            "ingress-only",
            "{.status.conditions[?(@.type==\"Degraded\")].reason}"
        ),
        "Conflicts"
    );
}

#[test]
fn a_baseline_policy_refused_by_admission_is_reported_on_the_namespace() {
    let (cp, _serial, _operator) = setup_as("refused");
    baseline(cp, "refused", "{}");
    let _ns = cp.test_namespace("locked-down").unwrap();
    // An admission rule of the cluster (here a ValidatingAdmissionPolicy) refuses the deny.
    apply(
        cp,
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-default-deny}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}
  validations:
  - expression: "object.metadata.name != 'palisade-baseline-deny'"
    message: "default denies need a change ticket here"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-default-deny}
spec:
  policyName: no-default-deny
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: locked-down}
"#,
    );
    // The binding takes a moment to reach the admission chain: wait until it refuses.
    let probe = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: palisade-baseline-deny, namespace: locked-down}\nspec: {podSelector: {}}\n";
    palisade_e2e::util::eventually(
        "the admission rule in force",
        Duration::from_secs(20),
        false,
        || {
            cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], probe)
                .unwrap()
                .status
                .success()
        },
    );
    opt_in(cp, "locked-down", "refused");
    let reason = |field: &str| namespace_events(cp, "locked-down", "ApplyFailed", field);
    eventually("the refusal reported", "ApplyFailed", || reason("reason"));
    let note = reason("message");
    assert!(
        note.starts_with("baseline policy palisade-baseline-deny could not be applied: ")
            && note.contains("default denies need a change ticket here"),
        "{note}"
    );
    // The allows went in (they come before the deny); the deny did not.
    assert_eq!(policies(cp, "locked-down"), "palisade-baseline-dns");
    cp.kubectl_must(&[
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        "no-default-deny",
    ]);
    eventually("applied once the rule is gone", BOTH_POLICIES, || {
        policies(cp, "locked-down")
    });
}

/// The CRD `networkbaselines.palisade.dev` as the apiserver has it.
fn baseline_crd(cp: &ControlPlane) -> serde_json::Value {
    serde_json::from_str(&cp.kubectl_must(&[
        "get",
        "crd",
        "networkbaselines.palisade.dev",
        "-o",
        "json",
    ]))
    .unwrap()
}

/// Replaces the CRD with `crd` (the operator's token cannot; the admin can).
fn replace_crd(cp: &ControlPlane, mut crd: serde_json::Value) {
    crd["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let o = cp
        .kubectl_stdin(&["replace", "-f", "-"], &crd.to_string())
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn the_leader_upgrades_older_crds_keeping_baselines_and_refuses_newer_ones() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    chart::install_rbac(cp).unwrap();
    // As an older release left it (Helm upgrades never touch crds/): an older version stamp and
    // a schema without `excludeNamespaces`; a baseline stored under it.
    let mut old = baseline_crd(cp);
    old["metadata"]["annotations"]["palisade.dev/version"] = "0.0.9".into();
    old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("excludeNamespaces");
    replace_crd(cp, old);
    baseline(cp, "kept", "{mode: Audit}");

    let mut operator = Operator::start(cp, "upgrader");
    let version = || {
        baseline_crd(cp)["metadata"]["annotations"]["palisade.dev/version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    eventually("the CRD's version", env!("CARGO_PKG_VERSION"), version);
    let crd = baseline_crd(cp);
    assert!(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .get("excludeNamespaces")
            .is_some(),
        "the schema was not brought up to date: {crd}"
    );
    assert_eq!(
        cp.kubectl_must(&[
            "get",
            "networkbaseline",
            "kept",
            "-o",
            "jsonpath={.spec.mode}"
        ]),
        "Audit"
    );
    assert!(
        operator
            .process
            .terminate(Duration::from_secs(10))
            .is_some()
    );

    // A CRD from a newer Palisade: an operator of this version refuses to lead against it.
    let kubeconfig = chart::kubeconfig_for(cp, "operator").unwrap(); // (re-applies the chart's CRDs)
    let mut newer = baseline_crd(cp);
    newer["metadata"]["annotations"]["palisade.dev/version"] = "99.0.0".into();
    replace_crd(cp, newer);
    let refused = Command::new(env!("CARGO_BIN_EXE_palisade-operator"))
        .args(["--namespace", "palisade-system", "--log-format", "text"])
        .args(["--pod-name", "too-old", "--lease-duration", "4"])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = palisade_e2e::util::wait_with_timeout(refused, Duration::from_secs(30))
        .unwrap_or_else(|o| panic!("the operator did not stop by itself:\n{}", text(&o)));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "the cluster's CRD networkbaselines.palisade.dev comes from Palisade 99.0.0, newer than this operator ({})",
            env!("CARGO_PKG_VERSION")
        )),
        "{log}"
    );
    assert_eq!(version(), "99.0.0", "the newer CRD must stay as it is");

    cp.kubectl_must(&["delete", "networkbaseline", "kept"]);
    // This version's CRD again, for the tests after this one.
    cp.kubectl_must(&[
        "annotate",
        "--overwrite",
        "crd",
        "networkbaselines.palisade.dev",
        &format!("palisade.dev/version={}", env!("CARGO_PKG_VERSION")),
    ]);
}

#[test]
fn every_baseline_says_whether_the_webhook_can_be_reached() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    chart::install_rbac(cp).unwrap();
    let ready_slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: palisade-webhook-x, namespace: palisade-system, labels: {kubernetes.io/service-name: palisade-webhook}}\naddressType: IPv4\nports: [{name: https, port: 8443, protocol: TCP}]\nendpoints: [{addresses: [10.1.2.3], conditions: {ready: true}}]\n";
    let operator = Operator::start_with(cp, "watcher", &["--webhook-service", "palisade-webhook"]);
    // The metric is measured with no baseline at all, too: a ready endpoint, then none.
    let metric = |v: &str| {
        let want = format!("palisade_operator_webhook_available {v}\n");
        palisade_e2e::util::eventually("the metric", Duration::from_secs(20), true, || {
            operator.metrics().contains(&want)
        });
    };
    let remove_slice = || {
        cp.kubectl_must(&[
            "delete",
            "endpointslice",
            "palisade-webhook-x",
            "-n",
            "palisade-system",
        ]);
    };
    apply(cp, ready_slice);
    metric("1");
    remove_slice();
    metric("0");

    baseline(cp, "watched", "{}");
    let condition = || {
        cp.kubectl_must(&[
                "get",
                "networkbaseline",
                "watched",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"WebhookAvailable\")].status} {.status.conditions[?(@.type==\"WebhookAvailable\")].reason}",
            ],
        )
    };
    let events = |reason: &str| {
        cp.kubectl_must(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason={reason},involvedObject.name=watched"),
            "-o",
            "jsonpath={.items[*].note}{.items[*].message}",
        ])
    };
    // No webhook pod at all (as when its image cannot be pulled).
    eventually(
        "the condition without a webhook",
        "False NoReadyEndpoints",
        condition,
    );
    let warning = events("WebhookUnavailable");
    assert!(
        warning.contains("no ready endpoint behind Service palisade-system/palisade-webhook (no webhook pod): the apiserver cannot reach Palisade's webhook, so NetworkPolicies are admitted unchecked"),
        "{warning}"
    );

    // A ready webhook endpoint appears.
    apply(cp, ready_slice);
    eventually(
        "the condition with a webhook",
        "True EndpointsReady",
        condition,
    );
    assert!(
        events("WebhookAvailable").contains(
            "1 ready webhook endpoint(s) behind Service palisade-system/palisade-webhook"
        )
    );
    metric("1");

    remove_slice();
    eventually(
        "the condition once it is gone again",
        "False NoReadyEndpoints",
        condition,
    );
    cp.kubectl_must(&["delete", "networkbaseline", "watched"]);
}

/// `helm uninstall` on a cluster whose garbage collector runs (a control plane of its own, with
/// kube-controller-manager): the chart's `default` NetworkBaseline goes, and with it its
/// NetworkPolicies in every namespace that opted in, although the operator is gone by then (Helm
/// deletes its Deployment and RBAC before the baseline); a NetworkBaseline the user created
/// (kept, like the CRDs) keeps its policies.
#[test]
fn helm_uninstall_removes_the_default_baselines_policies_and_keeps_the_users() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::start_with(&palisade_e2e::control_plane::Options {
        real_nodes: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting a control plane with a garbage collector: {e}"));
    let cp = &cp;
    chart::helm_must(cp, &chart::install_args(chart::CHART_DIR, &[]));
    // No kubelet runs pods here: the operator runs as a process, as the release's ServiceAccount.
    let kubeconfig =
        chart::token_kubeconfig(cp, "operator", std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
    let mut operator = Operator::start_as(&kubeconfig, "uninstall", &[]);
    baseline(cp, "mine", "{}");
    let _shop = opted_in(cp, "shop", "default");
    let _books = opted_in(cp, "books", "mine");
    eventually("the chart's baseline in shop", BOTH_POLICIES, || {
        policies(cp, "shop")
    });
    eventually("the user's baseline in books", BOTH_POLICIES, || {
        policies(cp, "books")
    });
    // Each allowance also names the deny policy as its owner once the deny is stored, so the
    // garbage collector removes the deny first.
    eventually(
        "the owners of shop's DNS allowance",
        "NetworkBaseline/default NetworkPolicy/palisade-baseline-deny",
        || {
            dns_allowance(
                cp,
                "shop",
                "{range .metadata.ownerReferences[*]}{.kind}/{.name} {end}",
            )
            .trim()
            .to_string()
        },
    );

    // The operator is gone first, as its pod is once Helm deleted its Deployment and RBAC:
    // nothing but the cluster itself removes the chart baseline's policies.
    assert!(
        operator
            .process
            .terminate(Duration::from_secs(10))
            .is_some()
    );
    chart::helm_must(cp, &["uninstall", chart::RELEASE, "-n", chart::NAMESPACE]);
    eventually("shop's policies after helm uninstall", "", || {
        policies(cp, "shop")
    });
    assert_eq!(
        policies(cp, "books"),
        BOTH_POLICIES,
        "the user's baseline keeps its policies"
    );
    assert_eq!(
        cp.kubectl_must(&["get", "networkbaselines", "-o", "name"])
            .trim(),
        "networkbaseline.palisade.dev/mine"
    );
}
