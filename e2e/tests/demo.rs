//! The demo of README.md, run as CI runs the suite: it must pass, and show what it promises.

use palisade_e2e::demo::{Setup, run};

#[test]
fn the_demo_shows_palisade_working_end_to_end() {
    if std::env::var_os("PALISADE_E2E_KUBECONFIG").is_some() {
        return; // the demo starts its own local control plane
    }
    let missing = palisade_e2e::real_nodes::missing();
    if !missing.is_empty() {
        eprintln!(
            "the demo runs on real nodes; skipped: this machine lacks {}",
            missing.join(", ")
        );
        return;
    }
    // target/debug/deps/demo-… -> target/debug, where `cargo test --workspace` built the binaries.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let setup = Setup::find(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut printed = Vec::new();
    let outcome = run(&setup, None, &mut printed).unwrap();
    let printed = String::from_utf8_lossy(&printed);
    assert!(outcome.failures.is_empty(), "{printed}");
    for shown in [
        "[1/5] Two real nodes whose CNI enforces nothing, and `helm install` of Palisade",
        "STATUS: deployed",
        "[5/5] Tearing everything down",
        "denied the request: Palisade refuses NetworkPolicy production/frontend-egress",
        "[unmatched-selector] NetworkPolicy production/backend-ingress selects no pod",
        "Warning: [peer-and-or]",
        "palisade-baseline-deny",
        "measured cells are what palisade reach predicts",
    ] {
        assert!(
            printed.contains(shown),
            "the demo did not show {shown:?}:\n{printed}"
        );
    }
    assert!(outcome.open.iter().all(|p| p.allowed));
    assert!(outcome.protected.iter().any(|p| !p.allowed));
}
