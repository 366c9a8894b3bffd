//! The chart ships the CRD that the Rust types generate, and the real apiserver accepts it.

const CHART_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/palisade/crds/palisade.dev.yaml"
);

#[test]
fn the_charts_crd_is_the_generated_one() {
    let generated = palisade_api::crd_yaml().unwrap();
    let shipped = std::fs::read_to_string(CHART_CRD).unwrap_or_default();
    assert!(
        generated == shipped,
        "charts/palisade/crds/palisade.dev.yaml is not what the types generate; run\n  \
         cargo run -p palisade-operator --bin crdgen > charts/palisade/crds/palisade.dev.yaml"
    );
}

#[test]
fn the_crd_describes_the_documented_names() {
    let crd: serde_json::Value =
        serde_json::to_value(<palisade_api::NetworkBaseline as kube::CustomResourceExt>::crd())
            .unwrap();
    assert_eq!(crd["metadata"]["name"], "networkbaselines.palisade.dev");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "NetworkBaseline");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"]["status"],
        serde_json::json!({})
    );
    let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in ["policyTypes", "dns", "allow", "mode", "excludeNamespaces"] {
        assert!(
            props.get(field).is_some(),
            "spec.{field} missing from the schema"
        );
    }
    assert_eq!(
        props["mode"]["enum"],
        serde_json::json!(["Enforce", "Audit"])
    );
}

#[test]
fn the_apiserver_accepts_the_crd_and_refuses_invalid_baselines_with_the_reason() {
    let cp = palisade_e2e::ControlPlane::shared();
    let out = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let applied = cp.kubectl(&["apply", "-f", CHART_CRD]).unwrap();
    assert!(applied.status.success(), "{}", out(&applied));
    let established = cp
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/networkbaselines.palisade.dev",
        ])
        .unwrap();
    assert!(established.status.success(), "{}", out(&established));

    let good = "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: default}\nspec:\n  mode: Audit\n  allow: {fromNamespaces: [ingress-nginx]}\n";
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], good).unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let stored = cp
        .kubectl(&[
            "get",
            "networkbaseline",
            "default",
            "-o",
            "jsonpath={.spec.mode} {.spec.dns.enabled}",
        ])
        .unwrap();
    // The schema carries the defaults, so the apiserver fills them in where users can see them.
    assert_eq!(String::from_utf8_lossy(&stored.stdout), "Audit true");

    let bad_mode = "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: bad}\nspec: {mode: Strict}\n";
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], bad_mode).unwrap();
    assert!(!o.status.success());
    assert!(
        out(&o).contains(
            "spec.mode: Unsupported value: \"Strict\": supported values: \"Enforce\", \"Audit\""
        ),
        "{}",
        out(&o)
    );
    let no_types = "apiVersion: palisade.dev/v1alpha1\nkind: NetworkBaseline\nmetadata: {name: bad}\nspec: {policyTypes: []}\n";
    let o = cp.kubectl_stdin(&["apply", "-f", "-"], no_types).unwrap();
    assert!(!o.status.success());
    assert!(out(&o).contains("spec.policyTypes: Invalid value: 0: spec.policyTypes in body should have at least 1 items"), "{}", out(&o));
}

#[test]
fn versions_compare_by_their_numbers() {
    use palisade_operator::crd_upgrade::newer;
    assert!(newer("0.10.0", "0.9.3"));
    assert!(newer("1.0.0", "0.99.99"));
    assert!(newer("v0.2.0", "0.1.9"));
    assert!(!newer("0.1.0", "0.1.0"));
    assert!(!newer("0.1.0-rc.1", "0.1.0"));
    assert!(!newer("0.0.9", "0.1.0"));
}

#[test]
fn a_newer_crd_is_refused_with_what_to_do() {
    use palisade_operator::crd_upgrade::check;
    assert!(check("networkbaselines.palisade.dev", None, "0.1.0").is_ok());
    assert!(check("networkbaselines.palisade.dev", Some("0.0.9"), "0.1.0").is_ok());
    assert!(check("networkbaselines.palisade.dev", Some("0.1.0"), "0.1.0").is_ok());
    assert_eq!(
        check("networkbaselines.palisade.dev", Some("0.2.0"), "0.1.0")
            .unwrap_err()
            .to_string(),
        "the cluster's CRD networkbaselines.palisade.dev comes from Palisade 0.2.0, newer than \
         this operator (0.1.0), whose schema it does not know; this operator will not run \
         against it. Run Palisade 0.2.0 or later (helm upgrade), or, to go back to 0.1.0 on \
         purpose, remove the annotation palisade.dev/version from the CRD"
    );
}

#[test]
fn the_crds_carry_their_version() {
    for crd in palisade_api::crds() {
        assert_eq!(
            crd.metadata.annotations.unwrap()["palisade.dev/version"],
            env!("CARGO_PKG_VERSION")
        );
    }
}
