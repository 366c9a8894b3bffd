//! A node where no iptables backend works: the enforcer says so in its NodeEnforcement status and
//! its log, keeps running and trying, and enforces as soon as a backend works. Runs the enforcer
//! binary in a network-namespace node of the e2e harness, against the local apiserver.
//!
//! Needs root and the tools `e2e/tools/install.sh` installs, like the rest of the e2e suite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_e2e::util::wait_until;
use palisade_e2e::world::{FLANNEL_CONFLIST, PodDef, World};
use palisade_e2e::{ControlPlane, chart};
use palisade_policy::Protocol::Tcp;

/// Where a program is on this machine (PATH, then the sbin directories).
fn installed(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed"))
}

fn link(dir: &Path, name: &str, target: &Path) {
    std::os::unix::fs::symlink(target, dir.join(name))
        .unwrap_or_else(|e| panic!("linking {name}: {e}"));
}

/// The node's NodeEnforcement status fields, `|`-separated.
fn status(cp: &ControlPlane) -> String {
    cp.kubectl_ok(&[
        "get",
        "nodeenforcement",
        "node-1",
        "-o",
        "jsonpath={.status.enforcing}|{.status.iptablesBackend}|{.status.families}|{.status.reason}|{.status.lastError}",
    ])
    .unwrap_or_default()
}

#[test]
fn a_node_without_a_working_iptables_backend_says_so_keeps_trying_and_recovers() {
    let cp = ControlPlane::shared();
    chart::install_rbac(cp).expect("the chart's CRDs and RBAC");
    let pods = [PodDef::new("backend-x", "a", "node-1").port(None, 80, Tcp)];
    let world = World::create(
        cp,
        &["node-1"],
        FLANNEL_CONFLIST,
        &[("backend-x", &[])],
        &pods,
    )
    .expect("world");
    // The enforcer's PATH: at first neither iptables-nft-* nor iptables-legacy-* (`ip` only,
    // which starts it in the node's namespace).
    let bin = world.dir().join("no-iptables");
    std::fs::create_dir_all(&bin).expect("bin dir");
    link(&bin, "ip", &installed("ip"));
    let n = &world.net.nodes()[0];
    let token = chart::token(cp, "enforcer").expect("token");
    let kubeconfig = cp
        .kubeconfig_at(n.gateway.into(), Some(&token))
        .expect("kubeconfig");
    let log = world.dir().join("enforcer-node-1.log");
    let args: Vec<String> = [
        "--node-name",
        "node-1",
        "--cni-dir",
        &world.cni_dirs["node-1"].to_string_lossy(),
        "--admin-listen",
        &format!("{}:9102", n.address),
        "--resync-seconds",
        "2",
        "--log-format",
        "text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut enforcer = world
        .spawn_on_node(
            "node-1",
            Path::new(env!("CARGO_BIN_EXE_palisade-enforcer")),
            &args,
            &[
                ("KUBECONFIG", kubeconfig.as_os_str()),
                ("PATH", bin.as_os_str()),
            ],
            &log,
        )
        .expect("enforcer");

    // What the user sees: not enforcing, and why, naming what failed for each backend.
    let shown = wait_until(Duration::from_secs(30), "a status", || {
        let s = status(cp);
        s.starts_with("false|").then_some(s)
    });
    let fields: Vec<&str> = shown.split('|').collect();
    assert_eq!(fields[1..3], ["", ""], "no backend, no families: {shown}");
    assert!(
        fields[3].contains("no usable iptables backend: cannot run iptables-nft-save")
            && fields[3].contains("cannot run iptables-legacy-save"),
        "{shown}"
    );
    assert!(
        fields[4].starts_with("no usable iptables backend"),
        "{shown}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("no iptables backend works on this node"),
        "{logged}"
    );
    // Still running, not crash-looping.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        matches!(enforcer.0.try_wait(), Ok(None)),
        "the enforcer exited:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The nft tools appear: the next retry takes nft (the only backend that works) and enforces.
    let nft = installed("xtables-nft-multi");
    for name in [
        "iptables-nft-save",
        "iptables-nft-restore",
        "ip6tables-nft-save",
        "ip6tables-nft-restore",
    ] {
        link(&bin, name, &nft);
    }
    link(&bin, "ipset", &installed("ipset"));
    let shown = wait_until(Duration::from_secs(60), "enforcing with nft", || {
        let s = status(cp);
        s.starts_with("true|nft|").then_some(s)
    });
    assert!(shown.contains("IPv4"), "{shown}");
    assert!(!shown.contains("no usable iptables backend"), "{shown}");
    let rules = world.net.nodes()[0]
        .netns
        .command("iptables-nft-save")
        .output()
        .expect("iptables-nft-save");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(rules.contains("-j PALISADE-FORWARD"), "{rules}");
    enforcer.terminate(Duration::from_secs(10));
}
