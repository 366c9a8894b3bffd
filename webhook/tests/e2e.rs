//! kubectl apply -> kube-apiserver -> palisade-webhook (a real process, registered by url and
//! caBundle) -> the verdict in kubectl's own output.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{http_get, register, start_webhook, text};
use palisade_e2e::ControlPlane;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policy/tests/fixtures/tutorial"
);

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
        text(&and_or).contains(
            "[unmatched-selector] NetworkPolicy production/metrics-from-prometheus: peer ingress[0].from[1] has a podSelector (app=prometheus) without a namespaceSelector"
        ),
        "{}",
        text(&and_or)
    );
    assert!(
        text(&and_or).contains("1 pod runs with app=prometheus in namespace monitoring"),
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

/// The serial number of the certificate a TLS server presents.
fn served_serial(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_serving_certificate_is_rotated_under_load_without_failed_reviews() {
    let cp = ControlPlane::shared();
    if !cp.is_local() {
        eprintln!("skipped: needs the local control plane's CA");
        return;
    }
    let _ns = cp.test_namespace("rotation").unwrap();
    let webhook = start_webhook(cp);
    let config_name = "palisade-rotation";
    let ca = Command::new("base64")
        .arg("-w0")
        .arg(cp.ca_file())
        .output()
        .unwrap();
    let config = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {config_name}}}\n\
         webhooks:\n- name: networkpolicies.palisade.dev\n  clientConfig: {{url: \"https://127.0.0.1:{}/validate\", caBundle: \"{}\"}}\n  \
         rules: [{{apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}}]\n  \
         namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: rotation}}}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  \
         failurePolicy: Fail\n  timeoutSeconds: 5\n",
        webhook.port,
        String::from_utf8_lossy(&ca.stdout)
    );
    assert!(
        cp.kubectl_stdin(&["apply", "-f", "-"], &config)
            .unwrap()
            .status
            .success()
    );
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: nothing-here, namespace: rotation}\n\
                  spec:\n  podSelector: {matchLabels: {app: ghost}}\n";
    let judged = |o: &Output| {
        text(o).contains("denied the request: Palisade refuses NetworkPolicy rotation/nothing-here")
    };
    let start = Instant::now();
    while !judged(
        &cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], policy)
            .unwrap(),
    ) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the webhook was never called"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let before = served_serial(webhook.port);
    assert!(before.starts_with("serial="), "{before}");

    // Load: three clients applying (dry-run) through the apiserver while the certificate turns.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let results: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let cp = ControlPlane::shared();
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = cp
                        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], policy)
                        .unwrap();
                    if judged(&o) {
                        ok += 1
                    } else {
                        failed.push(text(&o))
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let (cert, key) = cp
        .issue_serving_certificate("palisade-webhook-next", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    std::fs::rename(&key, &webhook.key).unwrap();
    std::fs::rename(&cert, &webhook.cert).unwrap();
    let rotated = Instant::now();
    while served_serial(webhook.port) == before {
        assert!(
            rotated.elapsed() < Duration::from_secs(15),
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for r in results {
        let (o, f) = r.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} reviews failed during rotation: {:?}",
        failed.len(),
        ok + failed.len(),
        failed.first()
    );
    assert!(ok >= 10, "only {ok} reviews ran during the rotation");
    let _ = cp.kubectl(&["delete", "validatingwebhookconfiguration", config_name]);
}
