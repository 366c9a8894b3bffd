//! (baseline, namespace) -> the exact NetworkPolicies, for each option; and what they mean,
//! through the policy crate's semantics and checks.

mod common;

use common::allowed;
use palisade_api::{BaselineMode, NetworkBaselineSpec, PolicyType};
use palisade_policy::checks::{self, CheckConfig, CheckId, Context};
use palisade_policy::desired::{BaselineError, desired_policies, exclusion};
use palisade_policy::{Cluster, Endpoint, Labels, Namespace, Pod, Policy, Protocol};
use serde_json::json;

fn spec(v: serde_json::Value) -> NetworkBaselineSpec {
    serde_json::from_value(v).expect("a valid spec")
}

fn names(spec: &NetworkBaselineSpec) -> Vec<String> {
    desired_policies("default", spec, "shop")
        .unwrap()
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

#[test]
fn defaults_deny_both_directions_and_allow_dns() {
    let s = spec(json!({}));
    assert_eq!(
        s.policy_types,
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
    let policies = desired_policies("default", &s, "shop").unwrap();
    let as_json: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    assert_eq!(
        as_json,
        vec![
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "palisade-baseline-deny", "namespace": "shop",
                    "labels": {"app.kubernetes.io/managed-by": "palisade", "palisade.dev/baseline": "default"}},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
            }),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "palisade-baseline-dns", "namespace": "shop",
                    "labels": {"app.kubernetes.io/managed-by": "palisade", "palisade.dev/baseline": "default"}},
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
                    }]
                }
            }),
        ]
    );
}

#[test]
fn ingress_only_baselines_have_no_dns_policy() {
    assert_eq!(
        names(&spec(json!({"policyTypes": ["Ingress"]}))),
        vec!["palisade-baseline-deny"]
    );
    assert_eq!(
        names(&spec(json!({"dns": {"enabled": false}}))),
        vec!["palisade-baseline-deny"]
    );
}

#[test]
fn every_option_adds_its_policy() {
    let s = spec(json!({
        "dns": {"nodeLocalIP": "169.254.20.10"},
        "allow": {
            "sameNamespace": true,
            "fromNamespaces": ["ingress-nginx", "monitoring"],
            "egress": [{"cidr": "10.20.0.0/16", "ports": ["5432/TCP"]}, {"namespaces": ["payments"], "ports": ["443"]}]
        },
        "mode": "Audit"
    }));
    let policies = desired_policies("strict", &s, "shop").unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "palisade-baseline-deny",
            "palisade-baseline-dns",
            "palisade-baseline-egress",
            "palisade-baseline-from-namespaces",
            "palisade-baseline-same-namespace",
        ]
    );
    for p in &policies {
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()["palisade.dev/mode"],
            "audit"
        );
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["palisade.dev/baseline"],
            "strict"
        );
    }
    let dns = serde_json::to_value(&policies[1]).unwrap();
    assert_eq!(
        dns["spec"]["egress"][0]["to"][1],
        json!({"ipBlock": {"cidr": "169.254.20.10/32"}})
    );
    let egress = serde_json::to_value(&policies[2]).unwrap();
    assert_eq!(
        egress["spec"]["egress"],
        json!([
            {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5432, "protocol": "TCP"}]},
            {"to": [{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["payments"]}]}}],
             "ports": [{"port": 443, "protocol": "TCP"}]}
        ])
    );
    let from = serde_json::to_value(&policies[3]).unwrap();
    assert_eq!(
        from["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["ingress-nginx", "monitoring"])
    );
    let same = serde_json::to_value(&policies[4]).unwrap();
    assert_eq!(
        same["spec"]["ingress"],
        json!([{"from": [{"podSelector": {}}]}])
    );
    assert_eq!(
        same["spec"]["egress"],
        json!([{"to": [{"podSelector": {}}]}])
    );
    assert_eq!(s.mode, BaselineMode::Audit);
}

#[test]
fn bad_specs_say_which_field() {
    let bad_cidr = spec(json!({"allow": {"egress": [{"cidr": "10.0.0.0/33"}]}}));
    assert_eq!(
        desired_policies("b", &bad_cidr, "shop")
            .unwrap_err()
            .to_string(),
        "spec.allow.egress[0].cidr: \"10.0.0.0/33\" is not a CIDR (write it as 10.0.0.0/16 or fd00::/64)"
    );
    let bad_port = spec(json!({"allow": {"egress": [{"cidr": "10.0.0.0/8", "ports": ["https"]}]}}));
    assert_eq!(
        desired_policies("b", &bad_port, "shop")
            .unwrap_err()
            .to_string(),
        "spec.allow.egress[0].ports[0]: \"https\" is not a port number (1-65535)"
    );
    let empty = spec(json!({"allow": {"egress": [{"ports": ["443"]}]}}));
    assert_eq!(
        desired_policies("b", &empty, "shop").unwrap_err(),
        BaselineError::EmptyEgress { index: 0 }
    );
    let ip = spec(json!({"dns": {"nodeLocalIP": "cache"}}));
    assert_eq!(
        desired_policies("b", &ip, "shop").unwrap_err().to_string(),
        "spec.dns.nodeLocalIP: \"cache\" is not an IP address"
    );
}

#[test]
fn kube_system_palisade_and_listed_namespaces_are_excluded() {
    let s = spec(json!({"excludeNamespaces": ["legacy"]}));
    assert!(exclusion(&s, "kube-system", "palisade-system").is_some());
    assert!(exclusion(&s, "palisade-system", "palisade-system").is_some());
    assert_eq!(
        exclusion(&s, "legacy", "palisade-system").unwrap(),
        "namespace legacy is listed in spec.excludeNamespaces"
    );
    assert_eq!(exclusion(&s, "shop", "palisade-system"), None);
}

/// What the default baseline means: everything denied but DNS to kube-dns, and the webhook's
/// checks accept its deny policy (its DNS companion is there).
#[test]
fn the_default_baseline_blocks_everything_but_dns_and_passes_the_checks() {
    let policies: Vec<Policy> = desired_policies("default", &spec(json!({})), "shop")
        .unwrap()
        .iter()
        .map(|p| Policy::compile(p).unwrap())
        .collect();
    let labels = |k: &str, v: &str| -> Labels { [(k.to_string(), v.to_string())].into() };
    let pods = vec![
        Pod::running(
            "shop",
            "web",
            labels("app", "web"),
            "10.0.0.1".parse().unwrap(),
        ),
        Pod::running(
            "shop",
            "db",
            labels("app", "db"),
            "10.0.0.2".parse().unwrap(),
        ),
        Pod::running(
            "kube-system",
            "coredns",
            labels("k8s-app", "kube-dns"),
            "10.0.0.53".parse().unwrap(),
        ),
    ];
    let c = Cluster::new(
        vec![
            Namespace::new("shop", Labels::new()),
            Namespace::new("kube-system", Labels::new()),
        ],
        pods,
        vec![],
        policies,
    );
    assert!(!allowed(&c, "shop/web", "shop/db", 5432, Protocol::Tcp));
    assert!(allowed(
        &c,
        "shop/web",
        "kube-system/coredns",
        53,
        Protocol::Udp
    ));
    assert!(allowed(
        &c,
        "shop/web",
        "kube-system/coredns",
        53,
        Protocol::Tcp
    ));
    assert!(!allowed(
        &c,
        "shop/web",
        "kube-system/coredns",
        80,
        Protocol::Tcp
    ));
    assert!(!allowed(
        &c,
        "kube-system/coredns",
        "shop/web",
        80,
        Protocol::Tcp
    ));

    let ctx = Context {
        cluster: &c,
        enforcement: None,
        knows_pods: true,
        knows_namespaces: true,
    };
    for p in c.policies() {
        let report = checks::run(p, &ctx, &CheckConfig::default());
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.check == CheckId::EgressDns),
            "{}: {:?}",
            p.name,
            report.findings
        );
        assert!(!report.denied(), "{}: {:?}", p.name, report.findings);
    }
}

#[test]
fn extra_egress_allowances_reach_what_they_name_and_nothing_else() {
    let s = spec(json!({"allow": {"egress": [{"cidr": "203.0.113.0/24", "ports": ["443"]}]}}));
    let policies: Vec<Policy> = desired_policies("b", &s, "shop")
        .unwrap()
        .iter()
        .map(|p| Policy::compile(p).unwrap())
        .collect();
    let web = Pod::running("shop", "web", Labels::new(), "10.0.0.1".parse().unwrap());
    let c = Cluster::new(
        vec![Namespace::new("shop", Labels::new())],
        vec![web],
        vec![],
        policies,
    );
    let web = Endpoint::Pod(&c.pods()[0]);
    let ext = |ip: &str, port| {
        c.evaluate(
            &web,
            &Endpoint::External(ip.parse().unwrap()),
            port,
            Protocol::Tcp,
        )
        .allowed()
    };
    assert!(ext("203.0.113.9", 443));
    assert!(!ext("203.0.113.9", 80));
    assert!(!ext("198.51.100.9", 443));
}
