//! ClusterNetworkPolicy through the real apiserver: the upstream CRD installed while the webhook
//! runs (it starts without it), ClusterNetworkPolicies and NetworkPolicies applied with
//! kubectl, and what kubectl shows: refusals with their reasons, warnings naming the policies.
//! (Its own test binary: it registers a webhook for every ClusterNetworkPolicy.)

mod common;

use std::time::{Duration, Instant};

use common::{start_webhook, text};
use palisade_e2e::webhook_config::ca_bundle;
use palisade_e2e::{ControlPlane, objects};

/// The webhook for NetworkPolicies of `cnp-shop` and for every ClusterNetworkPolicy, as the
/// chart registers them.
fn register(cp: &ControlPlane, port: u16) {
    let ca = ca_bundle(cp).unwrap();
    let config = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: palisade-cnp}}
webhooks:
- name: networkpolicies.palisade.dev
  clientConfig: {{url: "https://127.0.0.1:{port}/validate", caBundle: "{ca}"}}
  rules: [{{apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [networkpolicies]}}]
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: cnp-shop}}}}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 10
- name: clusternetworkpolicies.palisade.dev
  clientConfig: {{url: "https://127.0.0.1:{port}/validate", caBundle: "{ca}"}}
  rules: [{{apiGroups: [policy.networking.k8s.io], apiVersions: [v1beta1, v1alpha2], operations: [CREATE, UPDATE], resources: [clusternetworkpolicies], scope: Cluster}}]
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 10
"#
    );
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &config).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

const WORLD: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: cnp-shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: cnp-monitoring, labels: {purpose: monitoring}}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: cnp-shop, labels: {app: api}}
spec: {containers: [{name: api, image: api, ports: [{name: metrics, containerPort: 9090}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: prometheus, namespace: cnp-monitoring, labels: {app: prometheus}}
spec: {containers: [{name: prom, image: prometheus}]}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: coredns, image: coredns}]}
";

/// shop's api pods accept Prometheus on 9090.
fn metrics_policy(name: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: cnp-shop}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  policyTypes: [Ingress]\n  ingress:\n  \
         - from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: cnp-monitoring}}}}}}]\n    \
         ports: [{{port: 9090}}]\n"
    )
}

/// An Admin ClusterNetworkPolicy over shop's namespace.
fn cnp(name: &str, priority: u16, rules: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  tier: Admin\n  priority: {priority}\n  subject: {{namespaces: {{matchLabels: {{team: shop}}}}}}\n{rules}"
    )
}

const DENY_MONITORING: &str = "  ingress:\n  - name: no-monitoring\n    action: Deny\n    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: cnp-monitoring}}}]\n";

/// Applies `yaml` (a dry run on the server when `dry`) until `done` holds for kubectl's
/// output: the apiserver loads webhook configurations, and the webhook its caches, a moment
/// after they change.
fn until(cp: &ControlPlane, yaml: &str, dry: bool, done: impl Fn(&str) -> bool) -> String {
    let mut args = vec!["apply", "-f", "-"];
    if dry {
        args.push("--dry-run=server");
    }
    let start = Instant::now();
    loop {
        let said = text(&cp.kubectl_stdin(&args, yaml).unwrap());
        if done(&said) {
            return said;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never came: {said}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn cluster_network_policies_are_reviewed_and_shadowed_network_policy_rules_refused() {
    let cp = ControlPlane::shared();
    let Some(cp) = cp.local_for("the webhook runs on this machine's loopback") else {
        return;
    };
    cp.apply(WORLD).unwrap();
    for (ns, pod, ip) in [
        ("cnp-shop", "api", "10.251.0.1"),
        ("cnp-monitoring", "prometheus", "10.251.1.1"),
        ("kube-system", "coredns", "10.251.9.9"),
    ] {
        objects::set_running(cp, ns, pod, ip).unwrap();
    }
    // The webhook starts where the CRD is not installed, and picks it up once it is.
    let _ = cp.kubectl(&[
        "delete",
        "crd",
        objects::CLUSTER_NETWORK_POLICY_CRD_NAME,
        "--ignore-not-found",
        "--wait",
    ]);
    let webhook = start_webhook(cp);
    register(cp, webhook.port);
    // The chart's CRD: network-policy-api v0.3.0's experimental channel, whose egress peers
    // `nodes` and `domainNames` reach the webhook (the standard schema prunes them first).
    objects::cluster_network_policy_crd(cp).unwrap();

    // Bad input that reaches the webhook (the CRD's schema refuses the rest first): peers of
    // the experimental channel, which Palisade does not enforce.
    let experimental = cnp(
        "to-nodes",
        30,
        "  egress:\n  - action: Deny\n    to: [{nodes: {matchLabels: {kubernetes.io/os: linux}}}, {domainNames: [\"*.example.com\"]}]\n",
    );
    let refused = until(cp, &experimental, true, |s| {
        s.contains("denied the request")
    });
    assert!(
        refused.contains(
            "admission webhook \"clusternetworkpolicies.palisade.dev\" denied the request: Palisade refuses ClusterNetworkPolicy to-nodes: Palisade cannot evaluate or enforce it as written, and would otherwise leave it unenforced:\n  \
             spec.egress[0].to[0].nodes: nodes peers (experimental) are not enforced by Palisade\n  \
             spec.egress[0].to[1].domainNames: domainNames peers (experimental) are not enforced by Palisade\n"
        ),
        "{refused}"
    );
    // What the CRD's schema refuses never reaches Palisade: the apiserver answers.
    let high = cnp("too-low", 1001, DENY_MONITORING);
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &high).unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("spec.priority: Invalid value: 1001: spec.priority in body should be less than or equal to 1000"),
        "{}",
        text(&o)
    );

    // A NetworkPolicy first; then an Admin Deny that decides all its traffic: created, with a
    // warning naming the rule it leaves nothing to decide.
    let o = cp
        .kubectl_stdin(&["apply", "-f", "-"], &metrics_policy("metrics"))
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // (A dry run first, until the webhook's cache has the NetworkPolicy stored an instant ago.)
    let deny_monitoring = cnp("deny-monitoring", 10, DENY_MONITORING);
    until(cp, &deny_monitoring, true, |s| {
        s.contains("[admin-shadowed]")
    });
    let o = cp
        .kubectl_stdin(&["apply", "-f", "-"], &deny_monitoring)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let created = text(&o);
    assert!(
        created.contains(
            "Warning: [admin-shadowed] deny-monitoring: shadows 1 NetworkPolicy rule: cnp-shop/metrics ingress[0]"
        ),
        "{created}"
    );

    // The same rule applied now is refused: it would allow nothing.
    let refused = until(cp, &metrics_policy("metrics-again"), true, |s| {
        s.contains("denied the request")
    });
    assert!(
        refused.contains(
            "denied the request: Palisade refuses NetworkPolicy cnp-shop/metrics-again:\n\n\
             [admin-shadowed] NetworkPolicy cnp-shop/metrics-again ingress[0] allows traffic that the Admin tier denies before any NetworkPolicy is consulted"
        ),
        "{refused}"
    );
    assert!(
        refused.contains(
            "Evidence: decided by ClusterNetworkPolicy deny-monitoring (Admin, priority 10) ingress rule 0 \"no-monitoring\": Deny."
        ),
        "{refused}"
    );

    // The same priority over the same pods: a warning with Palisade's order.
    let tie = cnp(
        "allow-monitoring",
        10,
        "  ingress:\n  - action: Accept\n    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: cnp-monitoring}}}]\n",
    );
    let o = cp
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &tie)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "Warning: [equal-priority] allow-monitoring: same Admin priority 10 as deny-monitoring; Palisade runs allow-monitoring first"
        ),
        "{}",
        text(&o)
    );

    // An Admin Deny of all egress cuts shop off from DNS: refused, with the fix.
    let lockdown = cnp(
        "lockdown",
        20,
        "  egress:\n  - action: Deny\n    to: [{networks: [0.0.0.0/0]}]\n",
    );
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], &lockdown).unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "Palisade refuses ClusterNetworkPolicy lockdown:\n\n[egress-dns] ClusterNetworkPolicy lockdown denies DNS: cnp-shop/api cannot reach the cluster DNS pods (kube-system/coredns) on UDP port 53"
        ),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains(
            "To accept this policy anyway, annotate it palisade.dev/skip-checks: \"egress-dns\"."
        ),
        "{}",
        text(&o)
    );

    // A subject that selects nothing: a warning, with the label that exists.
    let typo = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: shop-guard}\n\
                spec:\n  tier: Baseline\n  priority: 5\n  subject: {namespaces: {matchLabels: {team: shopp}}}\n  \
                ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n";
    let o = cp
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], typo)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "Warning: [unmatched-selector] shop-guard: subject selects no pod; did you mean team=shop?"
        ),
        "{}",
        text(&o)
    );

    let _ = cp.kubectl(&["delete", "validatingwebhookconfiguration", "palisade-cnp"]);
    let _ = cp.kubectl(&["delete", "clusternetworkpolicies", "--all"]);
    let _ = cp.kubectl(&[
        "delete",
        "pod",
        "coredns",
        "-n",
        "kube-system",
        "--wait=false",
    ]);
    for ns in ["cnp-shop", "cnp-monitoring"] {
        let _ = cp.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}
