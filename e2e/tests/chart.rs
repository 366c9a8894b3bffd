//! The Helm chart with the real `helm` against the local kube-apiserver: lint, every toggle
//! renders to objects the apiserver accepts, install / upgrade / uninstall, and the RBAC of each
//! ServiceAccount: enough for its component, nothing it should not have. (Its own test binary:
//! installing the chart registers a webhook for the whole apiserver.)

use std::process::{Command, Output};
use std::sync::Mutex;

use palisade_e2e::chart::{self, CHART_DIR, NAMESPACE, RELEASE};
use palisade_e2e::util::text;
use palisade_e2e::{ControlPlane, tools};

static SERIAL: Mutex<()> = Mutex::new(());

fn helm(cp: &ControlPlane, args: &[&str]) -> Output {
    Command::new(tools::tool("helm").unwrap())
        .args(args)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("palisade-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("palisade-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("palisade-helm/data"),
        )
        .output()
        .unwrap()
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    ok(
        cp.kubectl(args).unwrap(),
        &format!("kubectl {}", args.join(" ")),
    )
}

/// Minimal CRDs for the third-party kinds the toggles render (cert-manager, Prometheus
/// Operator), so the apiserver can judge the objects as it would in a cluster that has them.
fn third_party_crds(cp: &ControlPlane) {
    let crd = |group: &str, kind: &str, plural: &str, version: &str| {
        format!(
            concat!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n",
                "metadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n",
                "  names: {{kind: {kind}, plural: {plural}, singular: {singular}}}\n  versions:\n",
                "  - name: {version}\n    served: true\n    storage: true\n",
                "    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n---\n",
            ),
            group = group,
            kind = kind,
            plural = plural,
            version = version,
            singular = plural.trim_end_matches('s')
        )
    };
    let all = [
        crd("cert-manager.io", "Certificate", "certificates", "v1"),
        crd("cert-manager.io", "Issuer", "issuers", "v1"),
        crd("monitoring.coreos.com", "PodMonitor", "podmonitors", "v1"),
    ]
    .concat();
    ok(
        cp.kubectl_stdin(&["apply", "-f", "-"], &all).unwrap(),
        "third-party CRDs",
    );
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/certificates.cert-manager.io",
            "crd/issuers.cert-manager.io",
            "crd/podmonitors.monitoring.coreos.com",
        ],
    );
}

#[test]
fn the_chart_lints_strictly() {
    let cp = ControlPlane::shared();
    ok(
        helm(cp, &["lint", "--strict", CHART_DIR]),
        "helm lint --strict",
    );
}

#[test]
fn every_toggle_renders_objects_the_apiserver_accepts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    if !cp.is_local() {
        return;
    }
    chart::install_rbac(cp).unwrap(); // CRDs and the namespace, which a dry run needs
    third_party_crds(cp);
    let toggles: [&[&str]; 8] = [
        &[],
        &["--set", "webhook.enabled=false"],
        &["--set", "operator.enabled=false"],
        &["--set", "enforcer.enabled=false"],
        &["--set", "baseline.create=false"],
        &["--set", "webhook.certificates.certManager=true"],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.podAnnotations=false",
        ],
        &[
            "--set",
            "webhook.failurePolicy=Fail,enforcer.mode=enforce,webhook.checks.enforcement=warn",
            "--set-json",
            r#"baseline.spec={"policyTypes":["Ingress"],"allow":{"fromNamespaces":["monitoring"]}}"#,
        ],
    ];
    for toggle in toggles {
        let rendered = chart::template(toggle).unwrap_or_else(|e| panic!("{toggle:?}: {e}"));
        let o = cp
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered)
            .unwrap();
        assert!(o.status.success(), "{toggle:?} refused: {}", text(&o));
    }
    // A typo in a value is refused by the schema, naming it.
    let o = helm(
        cp,
        &[
            "template",
            RELEASE,
            CHART_DIR,
            "--set",
            "enforcer.mode=strict",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("at '/enforcer/mode': value must be one of 'auto', 'enforce', 'off'"),
        "{}",
        text(&o)
    );
}

#[test]
fn install_upgrade_and_uninstall_on_the_local_apiserver() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    if !cp.is_local() {
        return;
    }
    // No kubelet runs pods here: the release is installed without waiting for them (the
    // real-node tests run them).
    // Its own release name: the other tests apply the `palisade` release's RBAC by hand.
    let release = "pal";
    let ns = "palisade-install";
    let install = helm(
        cp,
        &[
            "install",
            release,
            CHART_DIR,
            "-n",
            ns,
            "--create-namespace",
            // The strictest setting installs too: the chart's own baseline is created before
            // any webhook pod runs, and the baseline review never blocks.
            "--set",
            "webhook.failurePolicy=Fail",
        ],
    );
    let notes = ok(install, "helm install");
    assert!(
        notes.contains("kubectl label namespace <namespace> palisade.dev/baseline=default"),
        "{notes}"
    );
    for crd in [
        "crd/networkbaselines.palisade.dev",
        "crd/nodeenforcements.palisade.dev",
    ] {
        kubectl(
            cp,
            &["wait", "--for=condition=Established", "--timeout=30s", crd],
        );
    }
    assert_eq!(
        kubectl(cp, &["get", "networkbaseline", "default", "-o", "name"]).trim(),
        "networkbaseline.palisade.dev/default"
    );
    let webhook_config = |path: &str| {
        kubectl(
            cp,
            &[
                "get",
                "validatingwebhookconfiguration",
                "pal-webhook",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    let ca_bundle = webhook_config("{.webhooks[0].clientConfig.caBundle}");
    assert!(!ca_bundle.is_empty());
    assert_eq!(
        webhook_config(
            "{.webhooks[*].name} {.webhooks[0].failurePolicy} {.webhooks[0].sideEffects} {.webhooks[0].namespaceSelector.matchExpressions[0].values}"
        ),
        format!(
            r#"networkpolicies.palisade.dev networkbaselines.palisade.dev Fail None ["kube-system","{ns}"]"#
        )
    );
    let secret = |key: &str| {
        kubectl(
            cp,
            &[
                "get",
                "secret",
                "pal-webhook-tls",
                "-n",
                ns,
                "-o",
                &format!("jsonpath={{.data.{key}}}"),
            ],
        )
    };
    let (cert, ca) = (secret("tls\\.crt"), secret("ca\\.crt"));
    assert_eq!(
        ca, ca_bundle,
        "the webhook trusts the CA that signed its certificate"
    );
    // The certificate names the Service the apiserver calls.
    let pem = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo {cert} | base64 -d | openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .unwrap();
    assert!(
        text(&pem).contains(&format!("DNS:pal-webhook.{ns}.svc")),
        "{}",
        text(&pem)
    );

    // An upgrade to the default values keeps the certificate and the caBundle.
    ok(
        helm(
            cp,
            &["upgrade", release, CHART_DIR, "-n", ns, "--reset-values"],
        ),
        "helm upgrade",
    );
    assert_eq!(secret("tls\\.crt"), cert);
    assert_eq!(
        webhook_config("{.webhooks[0].clientConfig.caBundle}"),
        ca_bundle
    );
    assert_eq!(
        webhook_config("{.webhooks[*].failurePolicy}"),
        "Ignore Ignore",
        "the documented default"
    );

    ok(
        helm(cp, &["uninstall", release, "-n", ns, "--wait"]),
        "helm uninstall",
    );
    let left = kubectl(
        cp,
        &[
            "get",
            "deployments,daemonsets,services,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/instance=pal",
            "-o",
            "name",
        ],
    );
    assert_eq!(left.trim(), "", "left behind in {ns}");
    let cluster_left = kubectl(
        cp,
        &[
            "get",
            "clusterroles,clusterrolebindings,validatingwebhookconfigurations,networkbaselines",
            "-l",
            "app.kubernetes.io/instance=pal",
            "-o",
            "name",
        ],
    );
    assert_eq!(cluster_left.trim(), "", "left behind in the cluster");
}

/// What each component's ServiceAccount may do, asked of the apiserver with the account's own
/// token: what the component needs is allowed, what it must not do is refused.
#[test]
fn each_service_account_has_what_its_component_needs_and_no_more() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    if !cp.is_local() {
        return;
    }
    chart::install_rbac(cp).unwrap();
    let can = |component: &str, verb: &str, resource: &str, namespace: &str| -> bool {
        let token = chart::token(cp, component).unwrap();
        let (resource, sub) = match resource.strip_suffix("/status") {
            Some(r) => (r, vec!["--subresource=status"]),
            None => (resource, vec![]),
        };
        let mut args = vec!["auth", "can-i", verb, resource, "-n", namespace];
        args.extend(sub);
        let o = cp.kubectl_as(&token, &args).unwrap();
        match String::from_utf8_lossy(&o.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!("{component} {verb} {resource}: {other} {}", text(&o)),
        }
    };
    let cases: &[(&str, &str, &str, &str, bool)] = &[
        ("webhook", "list", "pods", "shop", true),
        (
            "webhook",
            "watch",
            "networkpolicies.networking.k8s.io",
            "shop",
            true,
        ),
        ("webhook", "list", "nodeenforcements.palisade.dev", "", true),
        (
            "webhook",
            "create",
            "networkpolicies.networking.k8s.io",
            "shop",
            false,
        ),
        ("webhook", "create", "events.events.k8s.io", "shop", true),
        ("webhook", "get", "secrets", NAMESPACE, false),
        (
            "operator",
            "patch",
            "networkpolicies.networking.k8s.io",
            "shop",
            true,
        ),
        (
            "operator",
            "delete",
            "networkpolicies.networking.k8s.io",
            "shop",
            true,
        ),
        (
            "operator",
            "patch",
            "networkbaselines.palisade.dev/status",
            "",
            true,
        ),
        ("operator", "create", "events.events.k8s.io", "shop", true),
        (
            "operator",
            "update",
            "leases.coordination.k8s.io/palisade-operator",
            NAMESPACE,
            true,
        ),
        (
            "operator",
            "update",
            "leases.coordination.k8s.io/kube-scheduler",
            "kube-system",
            false,
        ),
        ("operator", "delete", "namespaces", "", false),
        (
            "operator",
            "update",
            "networkbaselines.palisade.dev",
            "",
            false,
        ),
        ("operator", "get", "secrets", NAMESPACE, false),
        ("enforcer", "watch", "pods", "", true),
        (
            "enforcer",
            "patch",
            "nodeenforcements.palisade.dev/status",
            "",
            true,
        ),
        (
            "enforcer",
            "get",
            "daemonsets.apps/palisade-enforcer",
            NAMESPACE,
            true,
        ),
        // Its own DaemonSet, watched so it knows about an uninstall once its RBAC is gone.
        (
            "enforcer",
            "watch",
            "daemonsets.apps/palisade-enforcer",
            NAMESPACE,
            true,
        ),
        ("enforcer", "watch", "daemonsets.apps", NAMESPACE, false),
        (
            "enforcer",
            "create",
            "networkpolicies.networking.k8s.io",
            "shop",
            false,
        ),
        (
            "enforcer",
            "delete",
            "nodeenforcements.palisade.dev",
            "",
            false,
        ),
        (
            "enforcer",
            "delete",
            "daemonsets.apps/palisade-enforcer",
            NAMESPACE,
            false,
        ),
        ("enforcer", "get", "secrets", NAMESPACE, false),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(c, verb, res, ns, want)| can(c, verb, res, ns) != *want)
        .map(|(c, verb, res, ns, want)| {
            format!(
                "{c} {verb} {res} in {ns:?}: want {}",
                if *want { "yes" } else { "no" }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
