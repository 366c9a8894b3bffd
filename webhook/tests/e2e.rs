//! kubectl apply -> kube-apiserver -> palisade-webhook (a real process, registered by url and
//! caBundle) -> the verdict in kubectl's own output.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::ControlPlane;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policy/tests/fixtures/tutorial"
);

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Webhook {
    child: Child,
    port: u16,
    admin: u16,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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

fn start_webhook(cp: &ControlPlane) -> Webhook {
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
    let webhook = Webhook { child, port, admin };
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

fn register(cp: &ControlPlane, port: u16) {
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
    matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, palisade-system]}}]
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

fn apply(cp: &ControlPlane, file: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "-f", file];
    args.extend_from_slice(extra);
    cp.kubectl(&args).unwrap()
}

#[test]
fn kubectl_apply_shows_palisade_verdicts() {
    let cp = ControlPlane::shared();
    if !cp.is_local() {
        eprintln!(
            "skipped: the webhook runs on this machine's loopback, which an existing cluster cannot call"
        );
        return;
    }
    let world = apply(cp, &format!("{FIXTURES}/world.yaml"), &[]);
    assert!(world.status.success(), "{}", text(&world));
    let webhook = start_webhook(cp);
    register(cp, webhook.port);

    // The apiserver loads the configuration asynchronously: wait until a dry run is judged.
    let typo = format!("{FIXTURES}/typo-labels.yaml");
    let start = Instant::now();
    let denied = loop {
        let o = apply(cp, &typo, &["--dry-run=server"]);
        if !o.status.success() || start.elapsed() > Duration::from_secs(20) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let prefix = "admission webhook \"networkpolicies.palisade.dev\" denied the request: Palisade refuses NetworkPolicy";
    assert!(
        text(&denied).contains(&format!("{prefix} production/backend-ingress:")),
        "{}",
        text(&denied)
    );
    assert!(
        text(&denied).contains("Evidence: no pod has app=backend; 1 pod has app=api"),
        "{}",
        text(&denied)
    );

    // Each tutorial mistake, for real: refused with its explanation.
    let real = apply(cp, &typo, &[]);
    assert!(!real.status.success());
    assert_eq!(
        text(&real).lines().next(),
        text(&denied).lines().next(),
        "dry-run and real apply agree"
    );
    let dns = apply(cp, &format!("{FIXTURES}/egress-without-dns.yaml"), &[]);
    assert!(!dns.status.success());
    assert!(text(&dns).contains("[egress-dns] NetworkPolicy production/frontend-egress isolates egress of production/frontend and nothing allows DNS"), "{}", text(&dns));
    let and_or = apply(cp, &format!("{FIXTURES}/and-or-confusion.yaml"), &[]);
    assert!(!and_or.status.success());
    assert!(
        text(&and_or).contains("the matching pods are in monitoring")
            || text(&and_or).contains("1 pod runs with app=prometheus in namespace monitoring"),
        "{}",
        text(&and_or)
    );

    // A correct policy is created; a merely suspicious one gets kubectl's Warning: lines.
    let good = apply(cp, &format!("{FIXTURES}/three-tier.yaml"), &[]);
    assert!(good.status.success(), "{}", text(&good));
    let suspicious = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: metrics, namespace: production}\n\
                      spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {purpose: monitoring}}\n    - podSelector: {matchLabels: {app: frontend}}\n";
    let warned = cp.kubectl_stdin(&["apply", "-f", "-"], suspicious).unwrap();
    assert!(warned.status.success(), "{}", text(&warned));
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains(
            "Warning: [peer-and-or] ingress[0].from: namespaceSelector and podSelector are separate items (OR); one item means AND"
        ),
        "{}",
        text(&warned)
    );

    // Helm applies policies before Deployments: admitted, with a warning that says why.
    let helm = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: payments, namespace: production, labels: {app.kubernetes.io/managed-by: Helm}}\n\
                spec:\n  podSelector: {matchLabels: {app: payments}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}]}]\n";
    let helmed = cp.kubectl_stdin(&["apply", "-f", "-"], helm).unwrap();
    assert!(helmed.status.success(), "{}", text(&helmed));
    assert!(
        String::from_utf8_lossy(&helmed.stderr).contains(
            "Warning: [unmatched-selector] Helm-managed, so a warning: podSelector app=payments"
        ),
        "{}",
        text(&helmed)
    );

    // kube-system is never judged.
    let system = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: kube-system}\nspec:\n  podSelector: {matchLabels: {app: nothing}}\n";
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], system).unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // Metrics saw it all.
    let (code, metrics) = http_get(webhook.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("palisade_webhook_findings_total{check=\"egress-dns\",severity=\"deny\"} 1"),
        "{metrics}"
    );

    // The webhook stopped: failurePolicy Fail is what the user sees.
    drop(webhook);
    let down = apply(cp, &format!("{FIXTURES}/typo-labels.yaml"), &[]);
    assert!(!down.status.success());
    assert!(
        text(&down).contains("failed calling webhook \"networkpolicies.palisade.dev\""),
        "{}",
        text(&down)
    );
    let _ = cp.kubectl(&["delete", "validatingwebhookconfiguration", "palisade"]);
}
