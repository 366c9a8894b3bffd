//! Running the webhook binary against the local control plane, for the e2e test binaries.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::ControlPlane;
pub use palisade_e2e::util::{free_port, http_get, text};
use palisade_e2e::webhook_config::ca_bundle;

pub struct Webhook {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_webhook(cp: &ControlPlane) -> Webhook {
    start_webhook_with(cp, &[])
}

/// The webhook with extra flags (e.g. `--settle-seconds 1`).
pub fn start_webhook_with(cp: &ControlPlane, flags: &[&str]) -> Webhook {
    let (cert, key) = cp
        .issue_serving_certificate("palisade-webhook", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_palisade-webhook"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--log-format", "text"])
        .args(flags)
        // The chart's ServiceAccount: its RBAC is what these tests exercise.
        .env(
            "KUBECONFIG",
            palisade_e2e::chart::kubeconfig_for(cp, "webhook").unwrap(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let webhook = Webhook {
        child,
        port,
        admin,
        cert,
        key,
    };
    let start = Instant::now();
    while http_get(admin, "/readyz").map(|r| r.0) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the webhook did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    webhook
}

/// Registers the webhook as the chart does: every namespace but kube-system and Palisade's own
/// (and `rotation` and `settle`, which tests running alongside judge with their own webhook).
pub fn register(cp: &ControlPlane, port: u16) {
    let ca = ca_bundle(cp).unwrap();
    let config = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: palisade}}
webhooks:
- name: networkpolicies.palisade.dev
  clientConfig: {{url: "https://127.0.0.1:{port}/validate", caBundle: "{}"}}
  rules: [{{apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}}]
  namespaceSelector:
    matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, palisade-system, rotation, settle]}}]
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 5
"#,
        ca
    );
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &config).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// Registers a webhook for one namespace only, as `name`.
pub fn register_for(cp: &ControlPlane, name: &str, namespace: &str, port: u16) {
    let ca = ca_bundle(cp).unwrap();
    let config = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {name}}}\n\
         webhooks:\n- name: networkpolicies.palisade.dev\n  clientConfig: {{url: \"https://127.0.0.1:{port}/validate\", caBundle: \"{}\"}}\n  \
         rules: [{{apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}}]\n  \
         namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  \
         failurePolicy: Fail\n  timeoutSeconds: 5\n",
        ca
    );
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &config).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
