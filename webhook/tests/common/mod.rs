//! Running the webhook binary against the local control plane, for the e2e test binaries.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::ControlPlane;

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string(),
    ))
}

pub fn start_webhook(cp: &ControlPlane) -> Webhook {
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
        .env("KUBECONFIG", &cp.kubeconfig)
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
/// (and `rotation`, which the rotation test, running alongside, judges with its own webhook).
pub fn register(cp: &ControlPlane, port: u16) {
    let ca = Command::new("base64")
        .arg("-w0")
        .arg(cp.ca_file())
        .output()
        .unwrap();
    let config = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: palisade}}
webhooks:
- name: networkpolicies.palisade.dev
  clientConfig: {{url: "https://127.0.0.1:{port}/validate", caBundle: "{}"}}
  rules: [{{apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}}]
  namespaceSelector:
    matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, palisade-system, rotation]}}]
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 5
"#,
        String::from_utf8_lossy(&ca.stdout)
    );
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &config).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
