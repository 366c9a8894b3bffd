//! kubectl apply -> kube-apiserver -> palisade-webhook (a real process, registered by url and
//! caBundle) -> the verdict in kubectl's own output.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{http_get, register, register_for, start_webhook, start_webhook_with, text};
use palisade_e2e::{ControlPlane, objects};

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
    let Some(cp) = cp.local_for(
        "the webhook runs on this machine's loopback, which an existing cluster cannot call",
    ) else {
        return;
    };
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
        text(&denied).contains(
            "Evidence: no pod has app=backend, nor a value spelled like it; 1 pod has app=api"
        ),
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
            "[unmatched-selector] NetworkPolicy production/metrics-from-prometheus ingress[0].from[1] has a podSelector (app=prometheus) without a namespaceSelector"
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
            "Warning: [peer-and-or] metrics: ingress[0].from: namespaceSelector OR podSelector (2 items); AND is one item"
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
            "Warning: [unmatched-selector] payments: podSelector app=payments matches no pod"
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
    let Some(cp) = cp.local_for("needs the local control plane's CA") else {
        return;
    };
    let _ns = cp.test_namespace("rotation").unwrap();
    let webhook = start_webhook(cp);
    let config_name = "palisade-rotation";
    register_for(cp, config_name, "rotation", webhook.port);
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

/// The three tiers of the tutorial in namespace `settle`, in the fixture's order: DNS, default
/// deny, then frontend, backend, database. When frontend's egress to the backend arrives, the
/// backend's ingress is closed by the deny and its own policy is still to come.
const SETTLE_PODS: &str = "apiVersion: v1\nkind: List\nitems:\n\
- {apiVersion: v1, kind: Pod, metadata: {name: frontend, namespace: settle, labels: {app: frontend}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}}\n\
- {apiVersion: v1, kind: Pod, metadata: {name: backend, namespace: settle, labels: {app: api}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]}}\n\
- {apiVersion: v1, kind: Pod, metadata: {name: database, namespace: settle, labels: {app: database}}, spec: {containers: [{name: c, image: i, ports: [{containerPort: 5432}]}]}}\n";

const SETTLE_POLICIES: &str = "\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-dns, namespace: settle}\n\
spec: {podSelector: {}, policyTypes: [Egress], egress: [{ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: settle}\n\
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: frontend, namespace: settle}\n\
spec: {podSelector: {matchLabels: {app: frontend}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 8080}]}]}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: backend, namespace: settle}\n\
spec: {podSelector: {matchLabels: {app: api}}, policyTypes: [Ingress, Egress], ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}], ports: [{port: 8080}]}], egress: [{to: [{podSelector: {matchLabels: {app: database}}}], ports: [{port: 5432}]}]}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: database, namespace: settle}\n\
spec: {podSelector: {matchLabels: {app: database}}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}]}]}\n";

/// `kubectl get events -n settle` about one object with one reason: their notes.
fn events_about(cp: &ControlPlane, name: &str, reason: &str) -> String {
    let o = cp
        .kubectl(&[
            "get",
            "events",
            "-n",
            "settle",
            "--field-selector",
            &format!("reason={reason},involvedObject.name={name}"),
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn one_sided_is_judged_once_the_apply_settles_and_skips_are_never_silent() {
    let cp = ControlPlane::shared();
    let Some(cp) = cp.local_for("the webhook runs on this machine's loopback") else {
        return;
    };
    let _ns = cp.test_namespace("settle").unwrap();
    cp.apply(SETTLE_PODS).unwrap();
    // Running with an address, as a kubelet would report them: only such pods are peers.
    for (i, pod) in ["frontend", "backend", "database"].iter().enumerate() {
        let ip = format!("10.250.0.{}", i + 1);
        objects::set_running(cp, "settle", pod, &ip).unwrap();
    }
    let webhook = start_webhook_with(cp, &["--settle-seconds", "1"]);
    register_for(cp, "palisade-settle", "settle", webhook.port);
    let ghost = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ghost, namespace: settle}\n\
                 spec:\n  podSelector: {matchLabels: {app: ghost}}\n";
    let start = Instant::now();
    while !text(
        &cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], ghost)
            .unwrap(),
    )
    .contains("Palisade refuses NetworkPolicy settle/ghost")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the webhook was never called"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A consistent set in one apply: no warning at all, now or once it has settled.
    let set = cp
        .kubectl_stdin(&["apply", "-f", "-"], SETTLE_POLICIES)
        .unwrap();
    assert!(set.status.success(), "{}", text(&set));
    assert!(!text(&set).contains("Warning"), "{}", text(&set));

    // A rule the other side blocks: nothing at apply time (its counterpart could be next in
    // the file), a Warning Event on the policy once settled.
    let extra = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: frontend-db, namespace: settle}\n\
                 spec: {podSelector: {matchLabels: {app: frontend}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: database}}}], ports: [{port: 5432}]}]}\n";
    let applied = cp.kubectl_stdin(&["apply", "-f", "-"], extra).unwrap();
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(!text(&applied).contains("Warning"), "{}", text(&applied));
    let start = Instant::now();
    let note = loop {
        let note = events_about(cp, "frontend-db", "OneSided");
        if !note.is_empty() || start.elapsed() > Duration::from_secs(20) {
            break note;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        note.starts_with(
            "NetworkPolicy settle/frontend-db egress[0] allows connections that the destinations' ingress policies \
             block, so they will still fail."
        ),
        "{note}"
    );
    assert!(
        note.contains("settle/frontend -> settle/database on 5432/TCP: settle/database ingress is isolated by settle/database, settle/default-deny and none of its rules allows it"),
        "{note}"
    );
    // Where users look (`kubectl describe networkpolicy` shows no Events at all).
    let shown = cp
        .kubectl_ok(&[
            "events",
            "-n",
            "settle",
            "--for",
            "networkpolicy/frontend-db",
        ])
        .unwrap();
    let line = shown.lines().find(|l| l.contains("OneSided"));
    assert!(
        line.is_some_and(|l| l.contains("Warning") && l.contains("NetworkPolicy/frontend-db")),
        "{shown}"
    );
    // The consistent set got none, though it was judged a second earlier.
    for name in [
        "allow-dns",
        "default-deny",
        "frontend",
        "backend",
        "database",
    ] {
        assert_eq!(events_about(cp, name, "OneSided"), "", "{name}");
    }

    // A skip is never silent; an id that is no check skips nothing and says so.
    let skipping = |ids: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: ghost, namespace: settle, \
             annotations: {{palisade.dev/skip-checks: \"{ids}\"}}}}\nspec:\n  podSelector: {{matchLabels: {{app: ghost}}}}\n"
        )
    };
    let skipped = cp
        .kubectl_stdin(&["apply", "-f", "-"], &skipping("unmatched-selector"))
        .unwrap();
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(
        String::from_utf8_lossy(&skipped.stderr).contains(
            "Warning: [skip-checks] ghost: not checked for unmatched-selector (palisade.dev/skip-checks)"
        ),
        "{}",
        text(&skipped)
    );
    let misspelt = cp
        .kubectl_stdin(&["apply", "-f", "-"], &skipping("unmatched-selectors"))
        .unwrap();
    assert!(!misspelt.status.success(), "{}", text(&misspelt));
    let stderr = String::from_utf8_lossy(&misspelt.stderr);
    assert!(
        stderr.contains(
            "Warning: [skip-checks] ghost: unknown check \"unmatched-selectors\", ignored; did you mean unmatched-selector?"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: [skip-checks] ghost: check ids: enforcement, unmatched-selector, egress-dns, peer-and-or, named-port, one-sided, implicit-ingress, admin-shadowed, equal-priority"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Palisade refuses NetworkPolicy settle/ghost"),
        "{stderr}"
    );
    let _ = cp.kubectl(&[
        "delete",
        "validatingwebhookconfiguration",
        "palisade-settle",
    ]);
}
