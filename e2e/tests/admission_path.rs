//! The path Palisade's webhook will use: kubectl apply -> kube-apiserver -> a webhook registered
//! by `url:` + `caBundle` -> the denial in kubectl's own output.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use palisade_e2e::ControlPlane;
use palisade_e2e::admission_stub::AdmissionStub;
use palisade_e2e::util::text;
use palisade_e2e::webhook_config::ca_bundle;

fn deny_unless_allowed(review: &serde_json::Value) -> Option<String> {
    let name = review["request"]["name"].as_str().unwrap_or_default();
    (name != "allowed")
        .then(|| format!("the e2e stub refuses configmap {name}: it is not named allowed"))
}

#[test]
fn a_url_webhook_denial_reaches_kubectl() {
    let cp = ControlPlane::shared();
    let Some(cp) = cp.local_for("the webhook stub listens on this machine's loopback, which an existing cluster cannot call") else {
        return;
    };
    let (cert, key) = cp
        .issue_serving_certificate("admission-stub", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let stub = AdmissionStub::start(&cert, &key, deny_unless_allowed).expect("stub");

    let ca = ca_bundle(cp).unwrap();
    let config = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: e2e-stub}}
webhooks:
- name: stub.palisade.dev
  clientConfig: {{url: "https://{}/validate", caBundle: "{ca}"}}
  rules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: webhook-test}}}}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 5
"#,
        stub.addr
    );
    let applied = cp.kubectl_stdin(&["apply", "-f", "-"], &config).unwrap();
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        cp.kubectl(&["create", "namespace", "webhook-test"])
            .unwrap()
            .status
            .success()
    );

    // The apiserver picks the configuration up asynchronously: wait (dry-run, so nothing is
    // stored meanwhile) until the webhook answers.
    let start = Instant::now();
    let denied = loop {
        let o = cp
            .kubectl(&[
                "create",
                "configmap",
                "refused",
                "-n",
                "webhook-test",
                "--dry-run=server",
            ])
            .unwrap();
        if !o.status.success() || start.elapsed() > Duration::from_secs(20) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        text(&denied).contains(
            "admission webhook \"stub.palisade.dev\" denied the request: the e2e stub refuses configmap refused: it is not named allowed"
        ),
        "{}",
        text(&denied)
    );
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: refused, namespace: webhook-test}\n";
    let real = cp.kubectl_stdin(&["apply", "-f", "-"], manifest).unwrap();
    assert!(!real.status.success());
    assert!(
        text(&real).contains("denied the request: the e2e stub refuses configmap refused"),
        "{}",
        text(&real)
    );

    let allowed = cp
        .kubectl(&["create", "configmap", "allowed", "-n", "webhook-test"])
        .unwrap();
    assert!(allowed.status.success(), "{}", text(&allowed));

    // The webhook gone: failurePolicy Fail is what the user sees.
    drop(stub);
    let down = cp
        .kubectl(&["create", "configmap", "while-down", "-n", "webhook-test"])
        .unwrap();
    assert!(!down.status.success());
    assert!(
        text(&down).contains("failed calling webhook \"stub.palisade.dev\""),
        "{}",
        text(&down)
    );
}
