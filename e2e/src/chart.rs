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
    let crds = format!("{CHART_DIR}/crds/palisade.dev.yaml");
    cp.kubectl_ok(&["apply", "-f", &crds])?;
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/networkbaselines.palisade.dev",
        "crd/nodeenforcements.palisade.dev",
    ])?;
    cp.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"
    ))?;
    cp.apply(&template(&["--show-only", "templates/rbac.yaml"])?)?;
    Ok(())
}

/// A token of the chart's ServiceAccount for `component` (webhook, operator, enforcer).
pub fn token(cp: &ControlPlane, component: &str) -> Result<String, Error> {
    let sa = format!("{RELEASE}-{component}");
    let out = cp.kubectl_ok(&["create", "token", &sa, "-n", NAMESPACE, "--duration=2h"])?;
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

/// `helm ARGS` against the control plane, its output whatever happened.
pub fn helm(cp: &ControlPlane, args: &[&str]) -> Result<std::process::Output, Error> {
    Command::new(crate::tools::tool("helm")?)
        .args(args)
        .env("KUBECONFIG", &cp.kubeconfig)
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

/// Waits until every enforcer pod of the release's current DaemonSet revision is Ready (at most
/// 2 min); panics naming kubectl's output otherwise.
pub fn wait_for_enforcer_rollout(cp: &ControlPlane) {
    cp.kubectl_must(&[
        "rollout",
        "status",
        "daemonset/palisade-enforcer",
        "-n",
        NAMESPACE,
        "--timeout=120s",
    ]);
}
