//! The local control plane answers like a real cluster: readiness, RBAC for ServiceAccount tokens.

use palisade_e2e::ControlPlane;
use palisade_e2e::util::text;

#[test]
fn apiserver_is_ready_and_rbac_governs_service_account_tokens() {
    let cp = ControlPlane::shared();

    let ready = cp.kubectl(&["get", "--raw", "/readyz"]).unwrap();
    assert!(ready.status.success(), "{}", text(&ready));
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ok");

    let _ns = cp.test_namespace("rbac-test").unwrap();
    let o = cp
        .kubectl(&["create", "serviceaccount", "viewer", "-n", "rbac-test"])
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
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

#[test]
fn a_killed_run_leaves_no_processes_and_its_leftovers_are_swept() {
    let state =
        std::env::temp_dir().join(format!("palisade-e2e-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    /// Kills the child even when an assertion fails first.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut serve = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade-e2e"))
            .arg("serve")
            .env("PALISADE_E2E_STATE", &state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let file = state.join("state");
    let start = std::time::Instant::now();
    while !file.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&file).expect("serve wrote its state");
    let kubeconfig = text
        .lines()
        .find_map(|l| l.strip_prefix("kubeconfig: "))
        .unwrap();
    let run_dir = std::path::Path::new(kubeconfig)
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let netns: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(": netns ").nth(1))
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(netns.len(), 2, "{text}");
    let children = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
                let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
                (String::from_utf8_lossy(&cmd).contains(&run_dir) && !status.contains("State:\tZ"))
                    .then_some(pid)
            })
            .collect()
    };
    assert_eq!(children().len(), 2, "etcd and kube-apiserver run");

    serve.0.kill().unwrap(); // SIGKILL: no destructor runs
    serve.0.wait().unwrap();
    let start = std::time::Instant::now();
    while !children().is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        children(),
        Vec::<i32>::new(),
        "the kernel stops the control plane with its parent"
    );

    // What the dead run left (its network namespaces, its directory) goes with the next run.
    assert!(std::path::Path::new(&run_dir).exists());
    drop(palisade_e2e::Network::create(&["sweeper"]).unwrap());
    for n in &netns {
        assert!(
            !std::path::Path::new(&format!("/run/netns/{n}")).exists(),
            "{n} left behind"
        );
    }
    drop(ControlPlane::start().unwrap());
    assert!(
        !std::path::Path::new(&run_dir).exists(),
        "{run_dir} left behind"
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn an_existing_cluster_is_reached_through_its_kubeconfig() {
    // The local apiserver stands in for "an existing cluster" (kind, k3d): the external mode
    // starts nothing and stops nothing.
    let local = ControlPlane::shared();
    let _ns = local.test_namespace("external-test").unwrap();
    let external = ControlPlane::external(local.kubeconfig.clone()).expect("reaches the cluster");
    assert!(!external.is_local());
    assert_eq!(external.server, local.server);
    let ns = external
        .kubectl(&["get", "namespace", "external-test", "-o", "name"])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ns.stdout).trim(),
        "namespace/external-test"
    );
    let sa = external
        .kubectl(&["create", "serviceaccount", "ext", "-n", "external-test"])
        .unwrap();
    assert!(sa.status.success(), "{}", text(&sa));
    let token = external
        .kubectl(&["create", "token", "ext", "-n", "external-test"])
        .unwrap();
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let denied = external
        .kubectl_as(&token, &["get", "pods", "-n", "external-test"])
        .unwrap();
    assert!(
        text(&denied).contains("system:serviceaccount:external-test:ext"),
        "{}",
        text(&denied)
    );
    assert!(
        external
            .issue_serving_certificate("x", &[])
            .unwrap_err()
            .to_string()
            .contains("needs the local control plane")
    );
    drop(external);
    let still = local.kubectl(&["get", "--raw", "/readyz"]).unwrap();
    assert!(
        still.status.success(),
        "dropping the external handle must not stop the cluster"
    );
}
