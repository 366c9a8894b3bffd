//! The local control plane answers like a real cluster: readiness, RBAC for ServiceAccount tokens.

use palisade_e2e::ControlPlane;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn apiserver_is_ready_and_rbac_governs_service_account_tokens() {
    let cp = ControlPlane::start().expect("control plane starts");

    let ready = cp.kubectl(&["get", "--raw", "/readyz"]).unwrap();
    assert!(ready.status.success(), "{}", text(&ready));
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ok");

    for args in [
        &["create", "namespace", "rbac-test"][..],
        &["create", "serviceaccount", "viewer", "-n", "rbac-test"],
    ] {
        let o = cp.kubectl(args).unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let token = cp
        .kubectl(&["create", "token", "viewer", "-n", "rbac-test"])
        .unwrap();
    assert!(token.status.success(), "TokenRequest: {}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();

    // Nothing granted yet: refused, with the reason kubectl shows users.
    let denied = cp
        .kubectl_as(&token, &["get", "pods", "-n", "rbac-test"])
        .unwrap();
    assert!(!denied.status.success());
    assert!(
        text(&denied).contains(
            "pods is forbidden: User \"system:serviceaccount:rbac-test:viewer\" cannot list resource \"pods\" in API group \"\" in the namespace \"rbac-test\""
        ),
        "{}",
        text(&denied)
    );

    for args in [
        &[
            "create",
            "role",
            "pod-reader",
            "-n",
            "rbac-test",
            "--verb=get,list",
            "--resource=pods",
        ][..],
        &[
            "create",
            "rolebinding",
            "viewer",
            "-n",
            "rbac-test",
            "--role=pod-reader",
            "--serviceaccount=rbac-test:viewer",
        ],
    ] {
        let o = cp.kubectl(args).unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let allowed = cp
        .kubectl_as(&token, &["get", "pods", "-n", "rbac-test"])
        .unwrap();
    assert!(allowed.status.success(), "{}", text(&allowed));
    // Granted pods only: secrets stay refused.
    let secrets = cp
        .kubectl_as(&token, &["get", "secrets", "-n", "rbac-test"])
        .unwrap();
    assert!(!secrets.status.success());
    assert!(
        text(&secrets).contains("secrets is forbidden"),
        "{}",
        text(&secrets)
    );
}
