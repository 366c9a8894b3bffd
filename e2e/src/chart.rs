//! The Helm chart's own objects on the test apiserver: CRDs and the per-component
//! ServiceAccounts with their RBAC, rendered by the real `helm template`, and tokens for those
//! ServiceAccounts (TokenRequest), so components under test have exactly the chart's rights.

use std::process::Command;

use crate::util::succeeded;
use crate::{ControlPlane, Error};

pub const CHART_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/palisade");
/// The release's namespace in the tests, as in the README's `helm install`.
pub const NAMESPACE: &str = "palisade-system";
/// The release name in the tests; objects are named `<release>-<component>`.
pub const RELEASE: &str = "palisade";
/// The namespace of its own the chart gives the enforcer by default (`enforcer.namespace.name`).
pub const ENFORCER_NAMESPACE: &str = "palisade-enforcer";
/// The enforcer's admin port (`/metrics`, `/healthz`) on its node's address, as the chart sets it
/// by default (`enforcer.adminPort`).
pub const ENFORCER_ADMIN_PORT: u16 = 9102;

/// `helm template` of the chart with `args` (e.g. `--show-only templates/rbac.yaml`).
pub fn template(args: &[&str]) -> Result<String, Error> {
    let helm = crate::tools::tool("helm")?;
    let o = Command::new(helm)
        .args(["template", RELEASE, CHART_DIR, "--namespace", NAMESPACE])
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            what: "running helm".into(),
            source,
        })?;
    succeeded("helm template", o)
}

/// Applies the chart's CRDs (waiting until they are established), its namespace, and its
/// ServiceAccounts and roles. Idempotent.
pub fn install_rbac(cp: &ControlPlane) -> Result<(), Error> {
    crate::objects::palisade_crds(cp)?;
    for ns in [NAMESPACE, ENFORCER_NAMESPACE] {
        cp.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        ))?;
    }
    cp.apply(&template(&["--show-only", "templates/rbac.yaml"])?)?;
    Ok(())
}

/// A token of the chart's ServiceAccount for `component` (webhook, operator, enforcer), as
/// `install_rbac` lays them out (the chart's defaults).
pub fn token(cp: &ControlPlane, component: &str) -> Result<String, Error> {
    let sa = format!("{RELEASE}-{component}");
    let ns = if component == "enforcer" {
        ENFORCER_NAMESPACE
    } else {
        NAMESPACE
    };
    let out = cp.kubectl_ok(&["create", "token", &sa, "-n", ns, "--duration=2h"])?;
    Ok(out.trim().to_string())
}

/// A kubeconfig for a component running on this machine: with its ServiceAccount's token on the
/// local control plane (the chart's RBAC installed first), the given cluster's own otherwise.
pub fn kubeconfig_for(cp: &ControlPlane, component: &str) -> Result<std::path::PathBuf, Error> {
    if !cp.is_local() {
        return Ok(cp.kubeconfig.clone());
    }
    install_rbac(cp)?;
    token_kubeconfig(cp, component, std::net::Ipv4Addr::LOCALHOST.into())
}

/// A kubeconfig reaching the apiserver at `address` with a fresh token of the chart's
/// ServiceAccount for `component` (which must exist already).
pub fn token_kubeconfig(
    cp: &ControlPlane,
    component: &str,
    address: std::net::IpAddr,
) -> Result<std::path::PathBuf, Error> {
    let token = token(cp, component)?;
    cp.kubeconfig_at(address, Some(&token))
}

/// The last commit whose chart ran the enforcer in the release namespace by default: the layout
/// every release installed before then has, which upgrades must keep working.
pub const RELEASE_NAMESPACE_LAYOUT_COMMIT: &str = "b51aefb";

/// The chart as it was at `commit` of this repository, extracted with `git archive` into
/// `into` (created; its previous content replaced). Returns the chart's directory there.
pub fn chart_at(commit: &str, into: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| Error::Io { what, source }
    };
    let _ = std::fs::remove_dir_all(into);
    std::fs::create_dir_all(into).map_err(io("creating the chart's directory"))?;
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let archive = Command::new("git")
        .args([
            "-C",
            repo,
            "archive",
            "--format=tar",
            commit,
            "charts/palisade",
        ])
        .output()
        .map_err(io("running git archive"))?;
    if !archive.status.success() {
        return Err(Error::Command {
            what: format!("git archive {commit} charts/palisade (a git checkout is needed)"),
            stderr: crate::util::text(&archive),
        });
    }
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(io("running tar"))?;
    if let Some(mut stdin) = tar.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(&archive.stdout)
            .map_err(io("writing to tar"))?;
    }
    let status = tar.wait().map_err(io("waiting for tar"))?;
    if !status.success() {
        return Err(Error::Io {
            what: format!("extracting the chart of {commit}"),
            source: std::io::Error::other(status.to_string()),
        });
    }
    Ok(into.join("charts/palisade"))
}

/// `helm ARGS` against the control plane, its output whatever happened. Helm's cache, config
/// and data live in a directory of the tests' own, so a user's repositories and plugins play
/// no part.
pub fn helm(cp: &ControlPlane, args: &[&str]) -> Result<std::process::Output, Error> {
    let home = std::env::temp_dir().join("palisade-helm");
    Command::new(crate::tools::tool("helm")?)
        .args(args)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .map_err(|source| Error::Io {
            what: "running helm".into(),
            source,
        })
}

/// `helm ARGS` that must succeed; its output.
pub fn helm_ok(cp: &ControlPlane, args: &[&str]) -> Result<String, Error> {
    succeeded(format!("helm {}", args.join(" ")), helm(cp, args)?)
}

/// [`helm`] for tests: a failure panics with the command and helm's output.
pub fn helm_must(cp: &ControlPlane, args: &[&str]) -> String {
    helm_ok(cp, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Installs the release as the README says (`helm install palisade charts/palisade -n
/// palisade-system --create-namespace`) with `values` (e.g. `["--set", "a=b"]`), waits for it
/// (at most 3 min) and for every enforcer pod to be Ready. Panics on failure, saying why.
pub fn install_release(cp: &ControlPlane, values: &[&str]) {
    install_chart(cp, CHART_DIR, values);
}

/// [`install_release`] as the upstream conformance suites want it (`values-conformance.yaml`,
/// the README's "Running the upstream conformance suites"), with the ClusterNetworkPolicy CRD
/// and `values` on top.
pub fn install_release_for_conformance(cp: &ControlPlane, values: &[&str]) {
    let file = format!("{CHART_DIR}/values-conformance.yaml");
    let mut args = vec![
        "-f",
        &file,
        "--set",
        "clusterNetworkPolicy.installCRDs=true",
    ];
    args.extend_from_slice(values);
    install_release(cp, &args);
}

/// The arguments of the README's `helm install` of the chart in `chart_dir` with `values`,
/// without waiting.
pub fn install_args<'a>(chart_dir: &'a str, values: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "install",
        RELEASE,
        chart_dir,
        "-n",
        NAMESPACE,
        "--create-namespace",
    ];
    args.extend_from_slice(values);
    args
}

/// `helm install --wait` (at most 3 min) of the chart in `chart_dir` with `values`; a failure
/// says why (see [`not_ready`]).
pub fn try_install_chart(cp: &ControlPlane, chart_dir: &str, values: &[&str]) -> Result<(), Error> {
    let mut args = install_args(chart_dir, values);
    args.extend(["--wait", "--timeout", "3m"]);
    helm_ok(cp, &args).map_err(|e| not_ready(cp, "helm install", e))?;
    Ok(())
}

/// `e` of `what` (a helm command with `--wait`), with the pods, the workloads, the last events
/// and the webhook's last log lines: Helm 3 says only that it timed out.
pub fn not_ready(cp: &ControlPlane, what: &str, e: Error) -> Error {
    let why = |args: &[&str]| {
        cp.kubectl(args)
            .map(|o| crate::util::text(&o))
            .unwrap_or_else(|e| e.to_string())
    };
    let events = why(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
    let last: Vec<&str> = events.lines().rev().take(40).collect();
    Error::Command {
        what: what.into(),
        stderr: format!(
            "{e}\n{}\n{}\nlast events:\n{}\nthe webhook's last lines:\n{}",
            why(&["get", "pods", "-A", "-o", "wide"]),
            why(&[
                "get",
                "deployments,daemonsets,replicasets",
                "-A",
                "-o",
                "wide"
            ]),
            last.into_iter().rev().collect::<Vec<_>>().join("\n"),
            why(&[
                "logs",
                "-n",
                NAMESPACE,
                "deploy/palisade-webhook",
                "--tail=20"
            ]),
        ),
    }
}

/// [`install_release`] of the chart in `chart_dir` (e.g. an earlier commit's, [`chart_at`]).
pub fn install_chart(cp: &ControlPlane, chart_dir: &str, values: &[&str]) {
    try_install_chart(cp, chart_dir, values).unwrap_or_else(|e| panic!("{e}"));
    // Helm's --wait counts a DaemonSet ready with `maxUnavailable` (1) of its pods not ready
    // yet: the enforcers are waited for as `kubectl rollout status` does.
    wait_for_enforcer_rollout(cp);
}

/// `helm uninstall --wait` of the release installed by [`install_release`] (at most 2 min);
/// panics on failure.
pub fn uninstall_release(cp: &ControlPlane) {
    helm_must(
        cp,
        &[
            "uninstall",
            RELEASE,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "2m",
        ],
    );
}

/// The name of the release's enforcer pod on `node` in the default layout's enforcer namespace
/// ([`ENFORCER_NAMESPACE`]); empty when none runs there.
pub fn enforcer_pod_on(cp: &ControlPlane, node: &str) -> String {
    cp.kubectl_must(&[
        "get",
        "pods",
        "-n",
        ENFORCER_NAMESPACE,
        "-l",
        "app.kubernetes.io/component=enforcer",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
}

/// The namespace the release's enforcer DaemonSet runs in: its own by default, the release's
/// for a release installed that way (and kept so by upgrades). Panics when there is none.
pub fn enforcer_namespace(cp: &ControlPlane) -> String {
    let ns = cp.kubectl_must(&[
        "get",
        "daemonsets",
        "--all-namespaces",
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=enforcer"),
        "-o",
        "jsonpath={.items[*].metadata.namespace}",
    ]);
    let found: Vec<&str> = ns.split_whitespace().collect();
    match found.as_slice() {
        [one] => one.to_string(),
        _ => panic!(
            "expected one enforcer DaemonSet of release {RELEASE}, found namespaces {found:?}"
        ),
    }
}

/// Waits until every enforcer pod of the release's current DaemonSet revision is Ready (at most
/// 2 min); panics naming kubectl's output otherwise.
pub fn wait_for_enforcer_rollout(cp: &ControlPlane) {
    cp.kubectl_must(&[
        "rollout",
        "status",
        "daemonset/palisade-enforcer",
        "-n",
        &enforcer_namespace(cp),
        "--timeout=120s",
    ]);
}
