//! The webhook provisioning its own serving certificate against a real kube-apiserver, with the
//! chart's RBAC: two replicas share the Secret, rotate the certificate and the CA (short
//! lifetimes) while a real `kubectl apply` loop goes through the webhook, and repair the
//! caBundle when something resets it.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, text};
use palisade_e2e::ControlPlane;
use palisade_e2e::chart::{self, NAMESPACE};
use palisade_e2e::webhook_config::ca_bundle;

/// The chart's names for the release `palisade`, which its RBAC allows.
const SECRET: &str = "palisade-webhook-tls";
const CONFIG: &str = "palisade-webhook";
const POLICIES: &str = "rotation";

struct Replica {
    child: Child,
    port: u16,
    admin: u16,
    log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Replica {
    fn log_tail(&self) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn start_replica(cp: &ControlPlane, kubeconfig: &std::path::Path, n: usize) -> Replica {
    let (port, admin) = (free_port(), free_port());
    let log = std::env::temp_dir().join(format!(
        "palisade-webhook-certs-{}-{n}.log",
        std::process::id()
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_palisade-webhook"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--certificate-secret",
            SECRET,
            "--webhook-configuration",
            CONFIG,
            "--certificate-dns-name",
            "palisade-webhook.palisade-system.svc",
            "--certificate-ip-address",
            "127.0.0.1",
            // Short enough to see the certificate renewed every ~20 s and the CA every ~50 s.
            "--certificate-validity",
            "30s",
            "--ca-validity",
            "75s",
            "--rotation-grace",
            "3s",
            "--certificate-label",
            "app.kubernetes.io/instance=palisade",
            "--log-format",
            "text",
        ])
        .env("POD_NAMESPACE", NAMESPACE)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _ = cp;
    Replica {
        child,
        port,
        admin,
        log,
    }
}

/// The webhook configuration as the chart renders it for a `url`, without a caBundle: the
/// webhook fills it in. Only for the test's namespace.
fn register(cp: &ControlPlane, port: u16) {
    let config = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {CONFIG}}}\n\
         webhooks:\n- name: networkpolicies.palisade.dev\n  clientConfig: {{url: \"https://127.0.0.1:{port}/validate\"}}\n  \
         rules: [{{apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}}]\n  \
         namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {POLICIES}}}}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  \
         failurePolicy: Fail\n  timeoutSeconds: 5\n"
    );
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &config).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// (SHA-256 fingerprint, issuer) of the certificate served on `port`.
fn served(port: u16) -> (String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 -issuer"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
    )
}

fn config_bundle(cp: &ControlPlane) -> String {
    cp.kubectl_must(&[
        "get",
        "validatingwebhookconfiguration",
        CONFIG,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ])
}

fn secret_field(cp: &ControlPlane, path: &str) -> String {
    cp.kubectl_must(&[
        "get",
        "secret",
        SECRET,
        "-n",
        NAMESPACE,
        "-o",
        &format!("jsonpath={path}"),
    ])
}

/// The number of certificates in a base64 PEM bundle.
fn certificates_in(b64: &str) -> usize {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo {b64} | base64 -d | grep -c 'BEGIN CERTIFICATE'"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} within {limit:?}: {}",
            why()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_certificate_and_its_ca_rotate_while_every_kubectl_apply_succeeds() {
    let cp = ControlPlane::shared();
    let Some(cp) = cp.local_for(
        "the webhook runs on this machine's loopback, which an existing cluster cannot call",
    ) else {
        return;
    };
    let kubeconfig = chart::kubeconfig_for(cp, "webhook").unwrap();
    let _ns = cp.test_namespace(POLICIES).unwrap();
    let (a, b) = (
        start_replica(cp, &kubeconfig, 1),
        start_replica(cp, &kubeconfig, 2),
    );
    register(cp, a.port);
    // Both replicas create the Secret at once: one wins, the other adopts it.
    let why = || format!("replica 1:\n{}\nreplica 2:\n{}", a.log_tail(), b.log_tail());
    for r in [&a, &b] {
        wait_for(
            "ready (the served certificate trusted by the webhook configuration)",
            Duration::from_secs(30),
            || http_get(r.admin, "/readyz").map(|x| x.0) == Some(200),
            why,
        );
    }
    assert_eq!(
        secret_field(
            cp,
            "{.metadata.labels.app\\.kubernetes\\.io/managed-by} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        format!("palisade-webhook ValidatingWebhookConfiguration/{CONFIG}")
    );
    assert_eq!(
        config_bundle(cp),
        secret_field(cp, "{.data.ca\\.crt}"),
        "the caBundle is the Secret's bundle"
    );

    // kubectl apply, again and again, each time with a new label so the apiserver calls the
    // webhook for every one (Fail: a call that fails refuses the apply).
    let apply = |i: usize| {
        let policy = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: same-namespace, namespace: {POLICIES}, labels: {{round: \"{i}\"}}}}\n\
             spec: {{podSelector: {{}}, policyTypes: [Ingress], ingress: [{{from: [{{podSelector: {{}}}}]}}]}}\n"
        );
        cp.kubectl_stdin(&["apply", "-f", "-"], &policy).unwrap()
    };
    let first = apply(0);
    assert!(first.status.success(), "{}", text(&first));

    let start = Instant::now();
    let (mut applied, mut failed) = (0usize, Vec::new());
    let (mut leaves, mut cas) = (BTreeSet::new(), BTreeSet::new());
    let mut most_cas = 0;
    let mut i = 1;
    // Until the CA has turned over and the bundle is back to one CA (~60 s), at most 150 s.
    loop {
        let o = apply(i);
        i += 1;
        if o.status.success() {
            applied += 1;
        } else {
            failed.push(text(&o));
        }
        let (leaf, issuer) = served(a.port);
        if !leaf.is_empty() {
            leaves.insert(leaf);
            cas.insert(issuer);
        }
        let bundle = certificates_in(&config_bundle(cp));
        most_cas = most_cas.max(bundle);
        if cas.len() >= 2 && bundle == 1 && leaves.len() >= 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "no CA rotation seen within 150 s: {} leaves, CAs {cas:?}, {bundle} CAs in the bundle\n{}",
            leaves.len(),
            why()
        );
    }
    eprintln!(
        "{applied} applies in {:.0} s, {} served certificates from {} CAs, at most {most_cas} CAs in the bundle",
        start.elapsed().as_secs_f64(),
        leaves.len(),
        cas.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} applies failed during rotation; first: {}\n{}",
        failed.len(),
        applied + failed.len(),
        failed.first().unwrap(),
        why()
    );
    assert!(applied >= 20, "only {applied} applies ran");
    assert_eq!(most_cas, 2, "the new CA joined the old one in the bundle");
    // Both replicas serve the Secret's certificate.
    wait_for(
        "both replicas serving the same certificate",
        Duration::from_secs(10),
        || served(a.port).0 == served(b.port).0,
        why,
    );

    // A GitOps sync or helm upgrade resets the caBundle: repaired, and applies go through.
    let foreign = ca_bundle(cp).unwrap();
    cp.kubectl_must(&[
        "patch",
        "validatingwebhookconfiguration",
        CONFIG,
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"{foreign}"}}]"#
        ),
    ]);
    wait_for(
        "the caBundle repaired",
        Duration::from_secs(10),
        || config_bundle(cp) == secret_field(cp, "{.data.ca\\.crt}"),
        why,
    );
    wait_for(
        "an apply through the repaired caBundle",
        Duration::from_secs(10),
        || apply(i + 1).status.success(),
        why,
    );
    let metrics = http_get(a.admin, "/metrics").unwrap().1;
    assert!(
        metrics.contains("palisade_webhook_serving_certificate_expiry_timestamp_seconds "),
        "{metrics}"
    );
    // Each rotation is a Normal Event on the Secret, saying what changed and why.
    let events = cp.kubectl_must(&[
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        &format!("reason=CertificateRotated,involvedObject.name={SECRET}"),
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    for said in [
        "new signing CA",
        "less than a third of its lifetime left",
        "replaced by the signing CA",
    ] {
        assert!(events.contains(said), "no Event saying {said:?}: {events}");
    }
    // Neither replica was refused a watch or a write along the way (the chart's RBAC suffices).
    for r in [&a, &b] {
        let log = std::fs::read_to_string(&r.log).unwrap();
        for trouble in [
            "watching the certificate Secret",
            "watching the ValidatingWebhookConfiguration",
            "keeping the serving certificate",
            "cannot provision",
        ] {
            assert!(!log.contains(trouble), "{trouble}:\n{}", r.log_tail());
        }
    }
    let _ = cp.kubectl(&["delete", "validatingwebhookconfiguration", CONFIG]);
}
