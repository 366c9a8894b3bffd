//! `unmatched-selector` through real `kubectl apply` (apiserver -> palisade-webhook -> kubectl):
//! a podSelector copied from a Service's name is refused with the pods' own label to paste, and
//! the policy with that label pasted in is admitted.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{register_for, start_webhook, text};
use palisade_e2e::ControlPlane;

const NS: &str = "selector-fix";

/// Two frontend pods serving 8080 (their Service would be `frontend-svc`), and an api.
const PODS: &str = "apiVersion: v1\nkind: List\nitems:\n\
- {apiVersion: v1, kind: Pod, metadata: {name: frontend-1, namespace: selector-fix, labels: {app: frontend}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]}}\n\
- {apiVersion: v1, kind: Pod, metadata: {name: frontend-2, namespace: selector-fix, labels: {app: frontend}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]}}\n\
- {apiVersion: v1, kind: Pod, metadata: {name: api, namespace: selector-fix, labels: {app: api}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 9000}]}]}}\n";

const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: frontend, namespace: selector-fix}\n";
const RULES: &str = "  ingress:\n  - ports:\n    - port: 8080\n";

fn apply(cp: &ControlPlane, policy: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    cp.kubectl_stdin(&args, policy).unwrap()
}

/// The YAML a refusal offers to paste: the indented lines after `Select it:`, unindented.
fn offered(message: &str) -> String {
    message
        .lines()
        .skip_while(|l| !l.ends_with("Select it:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect()
}

#[test]
fn a_selector_copied_from_a_service_name_is_refused_with_the_label_to_paste() {
    let cp = ControlPlane::shared();
    let Some(cp) = cp.local_for("the webhook runs on this machine's loopback") else {
        return;
    };
    let _ns = cp.test_namespace(NS).unwrap();
    cp.apply(PODS).unwrap();
    let webhook = start_webhook(cp);
    register_for(cp, "palisade-selector-fix", NS, webhook.port);

    let wrong =
        format!("{HEAD}spec:\n  podSelector:\n    matchLabels:\n      app: frontend-svc\n{RULES}");
    // The apiserver loads the configuration asynchronously: wait until a dry run is judged.
    let start = Instant::now();
    while !text(&apply(cp, &wrong, &["--dry-run=server"])).contains("Palisade refuses") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the webhook was never called"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let refused = apply(cp, &wrong, &[]);
    let message = text(&refused);
    assert!(!refused.status.success(), "{message}");
    assert!(
        message.contains(
            "[unmatched-selector] NetworkPolicy selector-fix/frontend selects no pod: its podSelector \
             app=frontend-svc matches no pod"
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "Evidence: no pod has app=frontend-svc; 2 pods have app=frontend, 1 pod has app=api. Of these, only \
             app=frontend serves 8080/TCP, which this policy allows.\n\
             Fix: did you mean app=frontend (app=frontend-svc without -svc)? Its 2 pods serve 8080/TCP, which \
             this policy allows. Select it:\n"
        ),
        "{message}"
    );
    assert!(!message.contains("spelled like"), "{message}");
    assert!(!message.contains("no label to suggest"), "{message}");

    // The suggestion pasted as offered, under the same metadata and rules: admitted.
    let paste = offered(&message);
    assert_eq!(
        paste,
        "spec:\n  podSelector:\n    matchLabels:\n      app: frontend\n"
    );
    let fixed = apply(cp, &format!("{HEAD}{paste}{RULES}"), &[]);
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert!(!text(&fixed).contains("Warning"), "{}", text(&fixed));

    drop(webhook);
    let _ = cp.kubectl(&[
        "delete",
        "validatingwebhookconfiguration",
        "palisade-selector-fix",
    ]);
}
