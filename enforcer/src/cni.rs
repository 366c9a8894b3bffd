//! Which CNI the node runs, read from its CNI configuration directory, and whether that CNI
//! enforces NetworkPolicy (then the enforcer can stand aside in mode `auto`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use palisade_policy::checks::cni_enforces_network_policy;
use serde_json::Value;

/// The default CNI configuration directory of kubelet and the container runtimes.
pub const DEFAULT_DIR: &str = "/etc/cni/net.d";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CniInfo {
    /// The active configuration: the first valid file in lexical order.
    pub file: PathBuf,
    /// The network's `name`.
    pub network: Option<String>,
    /// The plugin `type`s of the chain, in order (e.g. `["flannel", "portmap"]`).
    pub plugins: Vec<String>,
    /// The CNI Palisade identifies (e.g. `flannel`, `kube-router`): the first plugin known to
    /// enforce NetworkPolicy, else the first plugin of the chain.
    pub cni: String,
    /// Whether it enforces NetworkPolicy; `None` for a CNI Palisade does not know.
    pub enforces: Option<bool>,
    /// Files before the active one that were not valid configurations, with why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub file: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cannot read CNI configuration directory {dir}: {source}")]
    Unreadable {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no valid CNI configuration in {dir}{}", describe_skipped(.skipped))]
    NoConfig { dir: PathBuf, skipped: Vec<Skipped> },
}

fn describe_skipped(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return " (no .conflist, .conf or .json file)".into();
    }
    let reasons: Vec<String> = skipped
        .iter()
        .map(|s| format!("{}: {}", s.file.display(), s.reason))
        .collect();
    format!(" (skipped {})", reasons.join("; "))
}

/// Reads `dir` as kubelet and the container runtimes do: `*.conflist`, `*.conf` and `*.json`
/// in lexical order, the first valid one is the network pods get.
pub fn detect(dir: &Path) -> Result<CniInfo, CniError> {
    let unreadable = |source| CniError::Unreadable {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"))
        })
        .collect();
    files.sort();
    let mut skipped = Vec::new();
    for file in files {
        let parsed = fs::read_to_string(&file)
            .map_err(|e| format!("unreadable: {e}"))
            .and_then(|text| parse_config(&text));
        match parsed {
            Ok((network, plugins)) => {
                let (cni, enforces) = identify(&plugins);
                return Ok(CniInfo {
                    file,
                    network,
                    plugins,
                    cni,
                    enforces,
                    skipped,
                });
            }
            Err(reason) => skipped.push(Skipped { file, reason }),
        }
    }
    Err(CniError::NoConfig {
        dir: dir.to_path_buf(),
        skipped,
    })
}

/// A configuration's network name and plugin types. A file with a `plugins` list is read as a
/// list whatever its extension (flannel ships its list as `cni-conf.json`), otherwise as a
/// single plugin with a `type`.
pub fn parse_config(text: &str) -> Result<(Option<String>, Vec<String>), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = &value else {
        return Err("not a JSON object".into());
    };
    let network = obj.get("name").and_then(Value::as_str).map(str::to_string);
    let plugin_type = |p: &Value| -> Option<String> {
        let t = p.get("type")?.as_str()?;
        if t.is_empty() {
            return None;
        }
        // kube-router configures the standard bridge plugin on its own bridge.
        if t == "bridge" && p.get("bridge").and_then(Value::as_str) == Some("kube-bridge") {
            return Some("kube-router".into());
        }
        Some(t.to_string())
    };
    match obj.get("plugins") {
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err("empty plugins list".into());
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| plugin_type(p).ok_or_else(|| format!("plugins[{i}] has no type")))
                .collect::<Result<Vec<_>, _>>()
                .map(|plugins| (network, plugins))
        }
        Some(_) => Err("plugins is not a list".into()),
        None => plugin_type(&value)
            .map(|t| (network, vec![t]))
            .ok_or_else(|| "no plugins list and no type".into()),
    }
}

/// The names plugins use in configuration, as [`cni_enforces_network_policy`] knows them.
fn canonical(plugin: &str) -> &str {
    match plugin {
        "cilium-cni" => "cilium",
        "antrea-cni" => "antrea",
        "weave-net" => "weave",
        other => other,
    }
}

/// The CNI a plugin chain stands for and whether it enforces NetworkPolicy. Chained helpers
/// (portmap, bandwidth, tuning) say nothing; a policy engine anywhere in the chain counts
/// (Cilium and Calico can be chained after another CNI).
pub fn identify(plugins: &[String]) -> (String, Option<bool>) {
    if let Some(p) = plugins
        .iter()
        .map(|p| canonical(p))
        .find(|p| cni_enforces_network_policy(p) == Some(true))
    {
        return (p.to_string(), Some(true));
    }
    let main = plugins.first().map(|p| canonical(p)).unwrap_or_default();
    (main.to_string(), cni_enforces_network_policy(main))
}
