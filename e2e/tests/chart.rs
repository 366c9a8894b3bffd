//! The Helm chart with the real `helm` against the local kube-apiserver: lint, every toggle
//! renders to objects the apiserver accepts, install / upgrade / uninstall, and the RBAC of each
//! ServiceAccount: enough for its component, nothing it should not have. (Its own test binary:
//! installing the chart registers a webhook for the whole apiserver.)

use std::sync::{Mutex, MutexGuard};

use palisade_e2e::ControlPlane;
use palisade_e2e::chart::{self, CHART_DIR, ENFORCER_NAMESPACE, NAMESPACE, RELEASE};
use palisade_e2e::objects::{
    CLUSTER_NETWORK_POLICY_CRD as CNP_CRD_FILE, CLUSTER_NETWORK_POLICY_CRD_NAME as CNP_CRD,
    cluster_network_policy_crd, wait_established,
};
use palisade_e2e::util::{assert_success, text};

static SERIAL: Mutex<()> = Mutex::new(());

/// The control plane started on this machine, for one test at a time: each installs objects
/// for the whole apiserver. `None` (the test is skipped, saying why) on an existing cluster.
fn local() -> Option<(MutexGuard<'static, ()>, &'static ControlPlane)> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared()
        .local_for("installs the chart for the whole apiserver, which no kubelet serves here")?;
    Some((serial, cp))
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
        crd(
            "monitoring.coreos.com",
            "PrometheusRule",
            "prometheusrules",
            "v1",
        ),
    ]
    .concat();
    assert_success(
        cp.kubectl_stdin(&["apply", "-f", "-"], &all).unwrap(),
        "third-party CRDs",
    );
    wait_established(
        cp,
        &[
            "certificates.cert-manager.io",
            "issuers.cert-manager.io",
            "podmonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com",
        ],
    )
    .expect("third-party CRDs established");
}

#[test]
fn the_chart_lints_strictly() {
    let cp = ControlPlane::shared();
    chart::helm_must(cp, &["lint", "--strict", CHART_DIR]);
}

#[test]
fn every_toggle_renders_objects_the_apiserver_accepts() {
    let Some((_serial, cp)) = local() else {
        return;
    };
    chart::install_rbac(cp).unwrap(); // CRDs and the namespace, which a dry run needs
    third_party_crds(cp);
    let toggles: [&[&str]; 13] = [
        &[],
        &["--set", "clusterNetworkPolicy.installCRDs=true"],
        &["--set", "webhook.enabled=false"],
        &["--set", "operator.enabled=false"],
        &["--set", "enforcer.enabled=false"],
        // No enforcer: nothing of it goes to a namespace the chart does not create.
        &[
            "--set",
            "enforcer.enabled=false,enforcer.namespace.create=true",
        ],
        &["--set", "networkPolicy.enabled=false"],
        &[
            "--set",
            "webhook.hostNetwork=true,webhook.port=9443,fullnameOverride=pal,enforcer.denyAction=reject",
        ],
        &["--set", "baseline.create=false"],
        &["--set", "webhook.certificates.certManager=true"],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.podAnnotations=false",
        ],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true",
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
    let o = chart::helm(
        cp,
        &[
            "template",
            RELEASE,
            CHART_DIR,
            "--set",
            "enforcer.mode=strict",
        ],
    )
    .expect("running helm");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("at '/enforcer/mode': value must be one of 'auto', 'enforce', 'off'"),
        "{}",
        text(&o)
    );
}

#[test]
fn install_upgrade_and_uninstall_on_the_local_apiserver() {
    let Some((_serial, cp)) = local() else {
        return;
    };
    // No kubelet runs pods here: the release is installed without waiting for them (the
    // real-node tests run them).
    // Its own release name: the other tests apply the `palisade` release's RBAC by hand.
    let release = "pal";
    let ns = "palisade-install";
    let install = chart::helm(
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
            // The enforcer's own namespace (the default layout), named for this release so
            // that its deletion at uninstall never touches the other tests' palisade-enforcer.
            "--set",
            "enforcer.namespace.name=pal-enforcer",
        ],
    )
    .expect("running helm");
    let notes = assert_success(install, "helm install");
    assert!(
        notes.contains("kubectl get pods -n pal-enforcer -l app.kubernetes.io/component=enforcer"),
        "{notes}"
    );
    assert_eq!(
        cp.kubectl_must(&["get", "daemonsets", "-n", "pal-enforcer", "-o", "name"])
            .trim(),
        "daemonset.apps/pal-enforcer"
    );
    assert!(
        notes.contains("kubectl label namespace <namespace> palisade.dev/baseline=default"),
        "{notes}"
    );
    wait_established(
        cp,
        &[
            "networkbaselines.palisade.dev",
            "nodeenforcements.palisade.dev",
        ],
    )
    .expect("the chart's CRDs established");
    assert_eq!(
        cp.kubectl_must(&["get", "networkbaseline", "default", "-o", "name"])
            .trim(),
        "networkbaseline.palisade.dev/default"
    );
    let webhook_config = |path: &str| {
        cp.kubectl_must(&[
            "get",
            "validatingwebhookconfiguration",
            "pal-webhook",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    // No certificate material from the chart: the webhook pods provision it (none run here).
    assert_eq!(webhook_config("{.webhooks[*].clientConfig.caBundle}"), "");
    assert_eq!(
        webhook_config(
            "{.webhooks[*].name} {.webhooks[0].failurePolicy} {.webhooks[0].sideEffects} {.webhooks[0].namespaceSelector.matchExpressions[0].values}"
        ),
        format!(
            r#"networkpolicies.palisade.dev networkbaselines.palisade.dev clusternetworkpolicies.palisade.dev Fail NoneOnDryRun ["kube-system","{ns}","pal-enforcer"]"#
        )
    );
    let secrets = cp.kubectl_must(&["get", "secrets", "-n", ns, "-o", "name"]);
    assert!(!secrets.contains("pal-webhook-tls"), "{secrets}");

    // An upgrade to the default values: the documented default failure policy, and still no
    // caBundle from the chart (a caBundle the webhook set is left alone: no manifest has one).
    chart::helm_must(
        cp,
        &[
            "upgrade",
            release,
            CHART_DIR,
            "-n",
            ns,
            "--reset-values",
            "--set",
            "enforcer.namespace.name=pal-enforcer",
        ],
    );
    assert_eq!(
        webhook_config("{.webhooks[*].failurePolicy}"),
        "Ignore Ignore Ignore",
        "the documented default"
    );

    // Without --wait: no namespace controller runs here to finish the enforcer namespace's
    // deletion, which --wait would wait for.
    chart::helm_must(cp, &["uninstall", release, "-n", ns]);
    let left = cp.kubectl_must(&[
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
    // The enforcer's namespace goes with the release (here no namespace controller finishes
    // the deletion: it is at least terminating).
    let own = cp
        .kubectl(&[
            "get",
            "namespace",
            "pal-enforcer",
            "-o",
            "jsonpath={.status.phase}",
        ])
        .unwrap();
    assert!(
        !own.status.success() || text(&own) == "Terminating",
        "{}",
        text(&own)
    );
    let cluster_left = cp.kubectl_must(&[
        "get",
        "clusterroles,clusterrolebindings,validatingwebhookconfigurations,networkbaselines",
        "-l",
        "app.kubernetes.io/instance=pal",
        "-o",
        "name",
    ]);
    assert_eq!(cluster_left.trim(), "", "left behind in the cluster");
}

/// `clusterNetworkPolicy.installCRDs`: off, no CRD; on, the upstream CRD unchanged, kept by
/// `helm uninstall`; a CRD this release did not install (another implementation's, or a second
/// release's) is never taken over: install fails and says why.
#[test]
fn the_cluster_network_policy_crd_is_installed_only_when_asked_and_never_over_another() {
    let Some((_serial, cp)) = local() else {
        return;
    };
    let is_cnp_crd = |o: &serde_json::Value| {
        o["kind"] == "CustomResourceDefinition" && o["metadata"]["name"] == CNP_CRD
    };
    // Off by default: nothing of it renders.
    let off = objects(cp, &render(cp, NAMESPACE, &[]));
    assert!(!off.iter().any(is_cnp_crd), "a CRD rendered by default");
    let on = objects(
        cp,
        &render(
            cp,
            NAMESPACE,
            &["--set", "clusterNetworkPolicy.installCRDs=true"],
        ),
    );
    let crd = on
        .iter()
        .find(|o| is_cnp_crd(o))
        .expect("the CRD with installCRDs=true");
    let upstream = objects(cp, &std::fs::read_to_string(CNP_CRD_FILE).unwrap());
    assert_eq!(
        crd["spec"], upstream[0]["spec"],
        "the upstream CRD, unchanged"
    );
    let annotations = &crd["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    assert_eq!(
        annotations["policy.networking.k8s.io/bundle-version"],
        "v0.3.0"
    );
    assert_eq!(
        annotations["policy.networking.k8s.io/channel"],
        "experimental"
    );
    // Both versions served, v1beta1 stored (network-policy-api v0.3.0).
    let versions: Vec<(String, bool, bool)> = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["served"] == true,
                v["storage"] == true,
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("v1alpha2".to_string(), true, false),
            ("v1beta1".to_string(), true, true)
        ]
    );

    let _ = cp.kubectl(&["delete", "crd", CNP_CRD, "--ignore-not-found", "--wait"]);
    let install = |release: &str, ns: &str, crds: bool| {
        chart::helm(
            cp,
            &[
                "install",
                release,
                CHART_DIR,
                "-n",
                ns,
                "--create-namespace",
                "--set",
                "webhook.enabled=false,operator.enabled=false,enforcer.enabled=false,baseline.create=false",
                "--set",
                &format!("clusterNetworkPolicy.installCRDs={crds}"),
            ],
        ).expect("running helm")
    };
    // Installed by a release: established, upgraded in place, and kept by the uninstall.
    assert_success(
        install("cnp", "palisade-cnp", true),
        "helm install with installCRDs",
    );
    wait_established(cp, &[CNP_CRD]).expect("the CRD established");
    chart::helm_must(
        cp,
        &[
            "upgrade",
            "cnp",
            CHART_DIR,
            "-n",
            "palisade-cnp",
            "--reuse-values",
        ],
    );
    // A second release asking for it too is refused: the CRD is the first one's.
    let second = install("cnp2", "palisade-cnp2", true);
    assert!(!second.status.success());
    assert!(
        text(&second).contains(&format!(
            "clusterNetworkPolicy.installCRDs=true, but the CRD {CNP_CRD} already exists, installed by the Helm release cnp in namespace palisade-cnp (channel experimental, bundle v0.3.0). Palisade never replaces another installation's CRD: set clusterNetworkPolicy.installCRDs=false"
        )),
        "{}",
        text(&second)
    );
    chart::helm_must(cp, &["uninstall", "cnp", "-n", "palisade-cnp", "--wait"]);
    let kept = cp.kubectl_must(&[
        "get",
        "crd",
        CNP_CRD,
        "-o",
        "jsonpath={.metadata.annotations.helm\\.sh/resource-policy}",
    ]);
    assert_eq!(kept, "keep", "the CRD outlives the release");

    // Another implementation's CRD (applied without Helm): installCRDs=true fails and says
    // why; installCRDs=false installs beside it.
    cp.kubectl_must(&["delete", "crd", CNP_CRD, "--wait"]);
    cp.kubectl_must(&["apply", "-f", CNP_CRD_FILE]);
    let foreign = install("cnp", "palisade-cnp", true);
    assert!(!foreign.status.success());
    assert!(
        text(&foreign).contains(&format!(
            "the CRD {CNP_CRD} already exists, not installed by Helm (e.g. by the CNI or kubectl apply) (channel experimental, bundle v0.3.0). Palisade never replaces another installation's CRD: set clusterNetworkPolicy.installCRDs=false; Palisade uses the CRD that is there."
        )),
        "{}",
        text(&foreign)
    );
    assert_success(
        install("cnp", "palisade-cnp", false),
        "helm install beside it",
    );
    chart::helm_must(cp, &["uninstall", "cnp", "-n", "palisade-cnp", "--wait"]);
    let _ = chart::helm(cp, &["uninstall", "cnp2", "-n", "palisade-cnp2"]).expect("running helm");
    cp.kubectl_must(&["delete", "crd", CNP_CRD, "--wait"]);
    for ns in ["palisade-cnp", "palisade-cnp2"] {
        let _ = cp.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}

/// GitOps: the chart renders the same bytes every time (Argo CD and Flux see no drift), and
/// without cert-manager it renders no certificate, key or caBundle at all: the webhook
/// provisions them at run time. With cert-manager, the Certificate and the mounted Secret.
#[test]
fn two_renders_are_byte_identical_and_hold_no_certificate_material() {
    let settings: [&[&str]; 3] = [
        &[],
        &[
            "--set",
            "webhook.url=https://10.0.0.5:8443/validate,webhook.certificates.ipAddresses[0]=10.0.0.5",
        ],
        &["--set", "webhook.certificates.certManager=true"],
    ];
    for args in settings {
        let (first, second) = (
            chart::template(args).unwrap(),
            chart::template(args).unwrap(),
        );
        assert!(first == second, "{args:?}: two renders differ");
        for material in [
            "caBundle:",
            "PRIVATE KEY",
            "BEGIN CERTIFICATE",
            "tls.crt:",
            "\nkind: Secret\n",
        ] {
            assert!(!first.contains(material), "{args:?} renders {material:?}");
        }
    }
    let runtime = chart::template(&[
        "--set",
        "webhook.url=https://10.0.0.5:8443/validate,webhook.certificates.ipAddresses[0]=10.0.0.5,webhook.certificates.validityDays=30",
    ])
    .unwrap();
    for arg in [
        "- --certificate-secret=palisade-webhook-tls\n",
        "- --webhook-configuration=palisade-webhook\n",
        "- --certificate-dns-name=palisade-webhook.palisade-system.svc,",
        "- --certificate-ip-address=10.0.0.5\n",
        "- --certificate-validity=30d\n",
        "- --ca-validity=3650d\n",
        "- \"--certificate-label=app.kubernetes.io/instance=palisade\"\n",
        "fieldPath: metadata.namespace",
    ] {
        assert!(
            runtime.contains(arg),
            "no {arg:?} in the webhook's Deployment"
        );
    }
    assert!(!runtime.contains("--tls-cert"));
    let cert_manager =
        chart::template(&["--set", "webhook.certificates.certManager=true"]).unwrap();
    for wanted in [
        "kind: Certificate",
        "cert-manager.io/inject-ca-from: palisade-system/palisade-webhook",
        "- --tls-cert=/tls/tls.crt",
        "secretName: palisade-webhook-tls",
    ] {
        assert!(
            cert_manager.contains(wanted),
            "no {wanted:?} with cert-manager"
        );
    }
    assert!(!cert_manager.contains("--certificate-secret"));
    assert!(
        !cert_manager.contains("resources: [secrets]"),
        "no Secret rights with cert-manager"
    );
}

/// What each component's ServiceAccount may do, asked of the apiserver with the account's own
/// token: what the component needs is allowed, what it must not do is refused.
#[test]
fn each_service_account_has_what_its_component_needs_and_no_more() {
    let Some((_serial, cp)) = local() else {
        return;
    };
    chart::install_rbac(cp).unwrap();
    // kubectl names a resource by what discovery serves: the ClusterNetworkPolicy CRD must be
    // there for `clusternetworkpolicies.policy.networking.k8s.io` to mean that kind.
    cluster_network_policy_crd(cp).expect("the ClusterNetworkPolicy CRD");
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
            "watch",
            "clusternetworkpolicies.policy.networking.k8s.io",
            "",
            true,
        ),
        (
            "webhook",
            "create",
            "clusternetworkpolicies.policy.networking.k8s.io",
            "",
            false,
        ),
        (
            "webhook",
            "create",
            "networkpolicies.networking.k8s.io",
            "shop",
            false,
        ),
        ("webhook", "create", "events.events.k8s.io", "shop", true),
        // Its own certificate's Secret, and the caBundle of its own webhook configuration:
        // nothing else of either kind.
        ("webhook", "get", "secrets", NAMESPACE, false),
        ("webhook", "create", "secrets", NAMESPACE, true),
        (
            "webhook",
            "update",
            "secrets/palisade-webhook-tls",
            NAMESPACE,
            true,
        ),
        (
            "webhook",
            "watch",
            "secrets/palisade-webhook-tls",
            NAMESPACE,
            true,
        ),
        (
            "webhook",
            "get",
            "secrets/palisade-operator",
            NAMESPACE,
            false,
        ),
        (
            "webhook",
            "delete",
            "secrets/palisade-webhook-tls",
            NAMESPACE,
            false,
        ),
        (
            "webhook",
            "get",
            "secrets/palisade-webhook-tls",
            "kube-system",
            false,
        ),
        (
            "webhook",
            "update",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/palisade-webhook",
            "",
            true,
        ),
        (
            "webhook",
            "update",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/other",
            "",
            false,
        ),
        (
            "webhook",
            "delete",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/palisade-webhook",
            "",
            false,
        ),
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
        // The webhook's endpoints, in Palisade's namespace only.
        (
            "operator",
            "watch",
            "endpointslices.discovery.k8s.io",
            NAMESPACE,
            true,
        ),
        (
            "operator",
            "list",
            "endpointslices.discovery.k8s.io",
            "shop",
            false,
        ),
        // Its own CRDs, which Helm never upgrades, and no other.
        (
            "operator",
            "patch",
            "customresourcedefinitions.apiextensions.k8s.io/networkbaselines.palisade.dev",
            "",
            true,
        ),
        (
            "operator",
            "patch",
            "customresourcedefinitions.apiextensions.k8s.io/certificates.cert-manager.io",
            "",
            false,
        ),
        ("enforcer", "watch", "pods", "", true),
        (
            "enforcer",
            "watch",
            "clusternetworkpolicies.policy.networking.k8s.io",
            "",
            true,
        ),
        (
            "enforcer",
            "patch",
            "clusternetworkpolicies.policy.networking.k8s.io",
            "",
            false,
        ),
        (
            "operator",
            "list",
            "clusternetworkpolicies.policy.networking.k8s.io",
            "",
            false,
        ),
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
            ENFORCER_NAMESPACE,
            true,
        ),
        // Its own DaemonSet, watched so it knows about an uninstall once its RBAC is gone.
        (
            "enforcer",
            "watch",
            "daemonsets.apps/palisade-enforcer",
            ENFORCER_NAMESPACE,
            true,
        ),
        (
            "enforcer",
            "watch",
            "daemonsets.apps",
            ENFORCER_NAMESPACE,
            false,
        ),
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
            ENFORCER_NAMESPACE,
            false,
        ),
        ("enforcer", "get", "secrets", NAMESPACE, false),
        ("enforcer", "get", "secrets", ENFORCER_NAMESPACE, false),
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

/// `helm template` of the release `palisade` into namespace `ns` with `args`.
fn render(cp: &ControlPlane, ns: &str, args: &[&str]) -> String {
    let mut all = vec!["template", RELEASE, CHART_DIR, "--namespace", ns];
    all.extend(args);
    chart::helm_must(cp, &all)
}

/// The rendered objects, as JSON (kubectl reads the YAML).
/// Whether the rendered `container` has `arg` among its args.
fn has_arg(container: &serde_json::Value, arg: &str) -> bool {
    container["args"]
        .as_array()
        .is_some_and(|args| args.iter().any(|a| a == arg))
}

fn objects(cp: &ControlPlane, rendered: &str) -> Vec<serde_json::Value> {
    let json = assert_success(
        cp.kubectl_stdin(
            &["create", "--dry-run=client", "-o", "json", "-f", "-"],
            rendered,
        )
        .unwrap(),
        "reading the rendered objects",
    );
    // One JSON document per object, one after the other.
    serde_json::Deserializer::from_str(&json)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap())
        .collect()
}

/// The pods the chart's workloads (and its test hook) would create, by component, each in the
/// namespace its workload is rendered into.
fn pods(cp: &ControlPlane, rendered: &str) -> Vec<(String, serde_json::Value)> {
    objects(cp, rendered)
        .into_iter()
        .filter_map(|o| {
            let component = o["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()?
                .to_string();
            let ns = o["metadata"]["namespace"].clone();
            let template = match o["kind"].as_str()? {
                "Deployment" | "DaemonSet" => o["spec"]["template"].clone(),
                "Pod" => o.clone(),
                _ => return None,
            };
            let pod = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": format!("psa-{component}"), "namespace": ns,
                             "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
            });
            Some((component, pod))
        })
        .collect()
}

/// Whether the apiserver would create the pod (server-side dry run: Pod Security Admission
/// judges it as it would the real one), and what it said.
fn admitted(cp: &ControlPlane, pod: &serde_json::Value) -> (bool, String) {
    let o = cp
        .kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &pod.to_string())
        .unwrap();
    (o.status.success(), text(&o))
}

/// Each workload is admitted under the Pod Security level it claims: the webhook, the operator
/// and the test pod under `restricted`; the enforcer is refused under `baseline` (it needs
/// `privileged`) when it runs in the release namespace (`enforcer.namespace.create=false`), and
/// by default it runs in a namespace of its own, which the chart creates privileged, so the
/// release namespace can enforce `restricted`.
#[test]
fn each_workload_is_admitted_under_the_pod_security_level_it_claims() {
    let Some((_serial, cp)) = local() else {
        return;
    };
    chart::install_rbac(cp).unwrap(); // the CRDs, for reading the rendered baseline
    let (restricted, baseline, own) = ("psa-restricted", "psa-baseline", "psa-enforcer");
    for (ns, level) in [(restricted, "restricted"), (baseline, "baseline")] {
        cp.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{pod-security.kubernetes.io/enforce: {level}}}\n"
        ))
        .unwrap();
    }

    let in_release_namespace = ["--set", "enforcer.namespace.create=false"];
    let in_restricted = pods(cp, &render(cp, restricted, &in_release_namespace));
    let components: Vec<&str> = in_restricted.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(components.len(), 4, "{components:?}");
    for (component, pod) in &in_restricted {
        let (ok, said) = admitted(cp, pod);
        match component.as_str() {
            "webhook" | "operator" | "test" => assert!(ok, "{component} under restricted: {said}"),
            "enforcer" => assert!(!ok, "the enforcer is not restricted: {said}"),
            other => panic!("unexpected component {other}"),
        }
    }

    let (_, enforcer) = pods(cp, &render(cp, baseline, &in_release_namespace))
        .into_iter()
        .find(|(c, _)| c == "enforcer")
        .expect("the enforcer's pod");
    let (ok, said) = admitted(cp, &enforcer);
    assert!(!ok, "{said}");
    assert!(
        said.contains(r#"violates PodSecurity "baseline:latest""#)
            && said.contains("hostNetwork")
            && said.contains("NET_ADMIN"),
        "{said}"
    );

    // The chart's default: the enforcer in a namespace of its own, which the chart creates
    // labelled privileged; everything else stays in the restricted release namespace.
    let args = ["--set", &format!("enforcer.namespace.name={own}")];
    let rendered = render(cp, restricted, &args);
    let namespace = chart::template(&[
        "--show-only",
        "templates/enforcer/namespace.yaml",
        "--set",
        &format!("enforcer.namespace.name={own}"),
    ])
    .unwrap();
    assert!(
        namespace.contains("pod-security.kubernetes.io/enforce: privileged"),
        "{namespace}"
    );
    cp.apply(&namespace).unwrap();
    for (component, pod) in pods(cp, &rendered) {
        let want = if component == "enforcer" {
            own
        } else {
            restricted
        };
        assert_eq!(pod["metadata"]["namespace"], want, "{component}");
        let (ok, said) = admitted(cp, &pod);
        assert!(ok, "{component} in {want}: {said}");
    }
    // Every object of the release renders to something the apiserver accepts there, and the
    // webhook leaves the enforcer's namespace alone as it does the release's.
    let o = cp
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        rendered.contains(&format!(
            "- kube-system\n            - {restricted}\n            - {own}\n"
        )),
        "{rendered}"
    );
    for ns in [restricted, baseline, own] {
        let _ = cp.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}

/// Every value the chart added for real clusters is typed: a wrong one fails `helm install`
/// (here `helm template`, which validates the same way), naming the value.
#[test]
fn a_wrong_value_is_refused_naming_it() {
    let cp = ControlPlane::shared();
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "webhook.port=0"], "/webhook/port"),
        (
            &["--set", "clusterNetworkPolicy.installCRDs=yes"],
            "/clusterNetworkPolicy/installCRDs",
        ),
        (&["--set", "webhook.adminPort=70000"], "/webhook/adminPort"),
        (
            &["--set", "webhook.hostNetwork=yes"],
            "/webhook/hostNetwork",
        ),
        (
            &[
                "--set",
                "webhook.namespaceSelector.matchExpressions[0].key=team,webhook.namespaceSelector.matchExpressions[0].operator=Is",
            ],
            "/webhook/namespaceSelector/matchExpressions/0/operator",
        ),
        (
            &["--set", "webhook.objectSelector.matchLabel.app=x"],
            "/webhook/objectSelector",
        ),
        (
            &["--set-json", "webhook.priorityClassName=5"],
            "/webhook/priorityClassName",
        ),
        (
            &["--set", "operator.extraArgs=--verbose"],
            "/operator/extraArgs",
        ),
        (
            &["--set-json", r#"operator.extraEnv=[{"value":"x"}]"#],
            "/operator/extraEnv/0",
        ),
        (
            &["--set-json", "enforcer.podLabels={\"team\":1}"],
            "/enforcer/podLabels/team",
        ),
        (
            &["--set", "webhook.podAnnotations=x"],
            "/webhook/podAnnotations",
        ),
        (
            &["--set", "enforcer.adminAddress=everywhere"],
            "/enforcer/adminAddress",
        ),
        (
            &["--set", "enforcer.namespace.create=maybe"],
            "/enforcer/namespace/create",
        ),
        (
            &["--set", "enforcer.namespace.name=Palisade_Enforcer"],
            "/enforcer/namespace/name",
        ),
        (&["--set", "enforcer.affinity=x"], "/enforcer/affinity"),
        (
            &["--set", "enforcer.iptablesBackend=iptables"],
            "/enforcer/iptablesBackend",
        ),
        (
            &["--set", "fullnameOverride=My_Palisade"],
            "/fullnameOverride",
        ),
        (
            &["--set-json", "commonLabels={\"team\":true}"],
            "/commonLabels/team",
        ),
        (
            &["--set", "networkPolicy.enabled=on"],
            "/networkPolicy/enabled",
        ),
        (
            &[
                "--set",
                "networkPolicy.webhookFrom[0].ipblock.cidr=10.0.0.0/8",
            ],
            "/networkPolicy/webhookFrom/0",
        ),
        (
            &[
                "--set",
                "networkPolicy.metricsFrom[0].podSelector.matchLabels=x",
            ],
            "/networkPolicy/metricsFrom/0/podSelector/matchLabels",
        ),
        (
            &["--set", "networkPolicy.apiServer.ports[0]=https"],
            "/networkPolicy/apiServer/ports/0",
        ),
        (
            &["--set", "networkPolicy.apiServer.cidrs[0]=apiserver"],
            "/networkPolicy/apiServer/cidrs/0",
        ),
        (
            &["--set", "networkPolicy.dns.to=kube-dns"],
            "/networkPolicy/dns/to",
        ),
        (
            &["--set", "webhook.certificates.caValidityDays=0"],
            "/webhook/certificates/caValidityDays",
        ),
        (
            &["--set", "webhook.certificates.rotationGraceSeconds=5m"],
            "/webhook/certificates/rotationGraceSeconds",
        ),
        (
            &[
                "--set",
                "webhook.certificates.ipAddresses[0]=webhook.example.com",
            ],
            "/webhook/certificates/ipAddresses/0",
        ),
    ];
    let mut wrong = Vec::new();
    for (args, path) in cases {
        let mut all = vec!["template", RELEASE, CHART_DIR];
        all.extend(*args);
        let o = chart::helm(cp, &all).expect("running helm");
        let said = text(&o);
        if o.status.success() || !said.contains(&format!("at '{path}'")) {
            wrong.push(format!("{args:?}: want an error at '{path}', got: {said}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The knobs reach the objects: names, labels, annotations, arguments, environment, scheduling,
/// ports, selectors, the enforcer's admin address and Palisade's own NetworkPolicies.
#[test]
fn the_values_reach_the_rendered_objects() {
    let Some((_serial, cp)) = local() else {
        return;
    };
    chart::install_rbac(cp).unwrap();
    let find = |objs: &[serde_json::Value], kind: &str, name: &str| -> serde_json::Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };

    // Defaults: the enforcer's admin port on the node's own address; the policies.
    let objs = objects(cp, &render(cp, NAMESPACE, &[]));
    let enforcer = find(&objs, "DaemonSet", "palisade-enforcer");
    let c = &enforcer["spec"]["template"]["spec"]["containers"][0];
    for arg in ["--admin-listen=$(HOST_IP):9102", "--iptables-backend=auto"] {
        assert!(has_arg(c, arg), "{}", c["args"]);
    }
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HOST_IP"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP")
    );
    let webhook_np = find(&objs, "NetworkPolicy", "palisade-webhook");
    assert_eq!(
        webhook_np["spec"]["ingress"],
        serde_json::json!([
            {"ports": [{"protocol": "TCP", "port": 8443}]},
            {"ports": [{"protocol": "TCP", "port": 8080}],
             "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}
        ])
    );
    assert_eq!(
        webhook_np["spec"]["egress"],
        serde_json::json!([
            {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        ])
    );
    find(&objs, "NetworkPolicy", "palisade-operator");

    let rendered = render(
        cp,
        NAMESPACE,
        &[
            "--set",
            "fullnameOverride=pal,commonLabels.team=platform,webhook.port=10250,webhook.adminPort=9443,webhook.hostNetwork=true",
            "--set",
            "webhook.priorityClassName=system-cluster-critical,operator.priorityClassName=system-cluster-critical",
            "--set",
            "webhook.podAnnotations.a=b,operator.podLabels.c=d,enforcer.extraArgs[0]=--verbose,operator.extraEnv[0].name=HTTPS_PROXY,operator.extraEnv[0].value=http://proxy:3128",
            "--set",
            "enforcer.adminAddress=10.0.0.1,enforcer.nodeSelector.pool=net,operator.tolerations[0].operator=Exists",
            "--set-json",
            r#"webhook.objectSelector={"matchExpressions":[{"key":"palisade.dev/ignore","operator":"DoesNotExist"}]}"#,
            "--set-json",
            r#"webhook.namespaceSelector={"matchLabels":{"palisade.dev/review":"true"}}"#,
            "--set-json",
            r#"networkPolicy={"metricsFrom":[],"apiServer":{"ports":[443],"cidrs":["10.0.0.0/24"]},"dns":{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kube-system"}}}]}}"#,
        ],
    );
    let o = cp
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let objs = objects(cp, &rendered);
    assert!(
        objs.iter()
            .all(|o| o["metadata"]["labels"]["team"] == "platform"),
        "commonLabels on every object"
    );
    let webhook = find(&objs, "Deployment", "pal-webhook");
    let spec = &webhook["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        webhook["spec"]["template"]["metadata"]["annotations"]["a"],
        "b"
    );
    assert_eq!(
        spec["containers"][0]["ports"],
        serde_json::json!([{"name": "https", "containerPort": 10250}, {"name": "admin", "containerPort": 9443}])
    );
    assert!(has_arg(&spec["containers"][0], "--listen=0.0.0.0:10250"));
    let operator = find(&objs, "Deployment", "pal-operator");
    let spec = &operator["spec"]["template"]["spec"];
    assert_eq!(operator["spec"]["template"]["metadata"]["labels"]["c"], "d");
    assert_eq!(
        spec["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert_eq!(
        spec["containers"][0]["env"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        &serde_json::json!({"name": "HTTPS_PROXY", "value": "http://proxy:3128"})
    );
    let enforcer = find(&objs, "DaemonSet", "pal-enforcer");
    let spec = &enforcer["spec"]["template"]["spec"];
    assert_eq!(spec["nodeSelector"], serde_json::json!({"pool": "net"}));
    let container = &spec["containers"][0];
    assert!(
        has_arg(container, "--admin-listen=10.0.0.1:9102"),
        "{}",
        container["args"]
    );
    assert_eq!(
        container["args"].as_array().unwrap().last().unwrap(),
        "--verbose"
    );
    let config = find(&objs, "ValidatingWebhookConfiguration", "pal-webhook");
    let hook = &config["webhooks"][0];
    assert_eq!(
        hook["namespaceSelector"],
        serde_json::json!({"matchLabels": {"palisade.dev/review": "true"},
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE, ENFORCER_NAMESPACE]}]})
    );
    assert_eq!(
        hook["objectSelector"]["matchExpressions"][0]["key"],
        "palisade.dev/ignore"
    );
    // A host-network webhook gets no pod policy (none would select it); the operator's has no
    // metrics rule (metricsFrom empty) and the configured apiserver and DNS.
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "pal-webhook")
    );
    let np = find(&objs, "NetworkPolicy", "pal-operator");
    assert_eq!(np["spec"]["ingress"], serde_json::json!([]));
    assert_eq!(
        np["spec"]["egress"][0],
        serde_json::json!({"ports": [{"protocol": "TCP", "port": 443}], "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]})
    );
    assert_eq!(
        np["spec"]["egress"][1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "kube-system"
    );
    // Nothing more: the operator learns whether the webhook is up from the apiserver.
    assert_eq!(
        np["spec"]["egress"].as_array().map(Vec::len),
        Some(2),
        "{np}"
    );

    // networkPolicy.enabled=false: none.
    let objs = objects(
        cp,
        &render(cp, NAMESPACE, &["--set", "networkPolicy.enabled=false"]),
    );
    assert!(!objs.iter().any(|o| o["kind"] == "NetworkPolicy"));
}
