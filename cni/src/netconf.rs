//! The plugin's network configuration on stdin: the CNI fields, the plugin's own (`socket`,
//! `nodeName`, `timeoutSeconds`, written by the enforcer's installer), and the previous plugin's
//! result, whose addresses are the pod's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::PluginError;
use crate::protocol::{DEFAULT_SOCKET, DEFAULT_TIMEOUT_SECONDS};

/// The CNI versions whose configuration and results the plugin reads (a chained plugin needs a
/// previous result: 0.3.0 and later). Results pass through unchanged, so their format is the
/// configuration's.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// What the plugin answers when it cannot tell the configuration's version.
pub const NEWEST_VERSION: &str = "1.0.0";

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    /// The enforcer's socket on the node.
    pub socket: PathBuf,
    /// The node, for messages.
    pub node_name: Option<String>,
    /// How long ADD waits for the enforcer.
    pub timeout: Duration,
    /// The previous plugin's result (ADD and CHECK in a chain).
    pub prev_result: Option<Value>,
}

impl NetConf {
    pub fn parse(stdin: &str) -> Result<Self, PluginError> {
        let value: Value = serde_json::from_str(stdin).map_err(|e| {
            PluginError::Decode(format!("the network configuration is not JSON: {e}"))
        })?;
        let Value::Object(conf) = value else {
            return Err(PluginError::Decode(
                "the network configuration is not a JSON object".into(),
            ));
        };
        let cni_version = conf
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_string();
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(PluginError::IncompatibleVersion(format!(
                "CNI version {cni_version} is not supported (supported: {}; a chained plugin needs 0.3.0 or later)",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let socket = match conf.get("socket") {
            None => PathBuf::from(DEFAULT_SOCKET),
            Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            Some(other) => {
                return Err(PluginError::InvalidConfig(format!(
                    "socket must be a path, not {other}"
                )));
            }
        };
        let timeout = match conf.get("timeoutSeconds") {
            None => DEFAULT_TIMEOUT_SECONDS,
            Some(v) => v
                .as_u64()
                .filter(|s| (1..=300).contains(s))
                .ok_or_else(|| {
                    PluginError::InvalidConfig(format!(
                        "timeoutSeconds must be a whole number of seconds from 1 to 300, not {v}"
                    ))
                })?,
        };
        Ok(Self {
            cni_version,
            socket,
            node_name: conf
                .get("nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            timeout: Duration::from_secs(timeout),
            prev_result: conf.get("prevResult").cloned(),
        })
    }

    /// The node as messages name it.
    pub fn node(&self) -> String {
        match &self.node_name {
            Some(n) => format!("node {n}"),
            None => "this node".into(),
        }
    }
}

/// The pod's addresses in a previous result (`ips[].address`, CIDR notation; 0.3.x and 0.4.0
/// add a `version`, 1.0.0 does not), without duplicates.
pub fn result_ips(result: &Value) -> Result<Vec<IpAddr>, PluginError> {
    let Some(list) = result.get("ips") else {
        return Ok(Vec::new());
    };
    let Value::Array(list) = list else {
        return Err(PluginError::Decode("prevResult.ips is not a list".into()));
    };
    let mut ips = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let address = entry
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::Decode(format!("prevResult.ips[{i}] has no address")))?;
        let ip: IpAddr = address
            .split_once('/')
            .map_or(address, |(ip, _)| ip)
            .parse()
            .map_err(|e| {
                PluginError::Decode(format!(
                    "prevResult.ips[{i}].address {address:?} is not an address: {e}"
                ))
            })?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLANNEL_LIKE: &str = r#"{
      "cniVersion": "0.3.1", "name": "cbr0", "type": "palisade-cni",
      "socket": "/run/palisade/enforcer.sock", "nodeName": "node-1", "timeoutSeconds": 7,
      "prevResult": {"cniVersion": "0.3.1",
        "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"version": "4", "interface": 2, "address": "10.244.1.5/24", "gateway": "10.244.1.1"}],
        "dns": {}}
    }"#;

    #[test]
    fn the_installers_entry_with_a_previous_result() {
        let conf = NetConf::parse(FLANNEL_LIKE).unwrap();
        assert_eq!(conf.cni_version, "0.3.1");
        assert_eq!(conf.socket, PathBuf::from("/run/palisade/enforcer.sock"));
        assert_eq!(conf.node(), "node node-1");
        assert_eq!(conf.timeout, Duration::from_secs(7));
        let ips = result_ips(conf.prev_result.as_ref().unwrap()).unwrap();
        assert_eq!(ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn defaults() {
        let conf =
            NetConf::parse(r#"{"cniVersion": "1.0.0", "name": "n", "type": "palisade-cni"}"#)
                .unwrap();
        assert_eq!(conf.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(conf.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECONDS));
        assert_eq!(conf.node(), "this node");
        assert_eq!(conf.prev_result, None);
    }

    #[test]
    fn dual_stack_results_of_1_0_0() {
        let result: Value = serde_json::from_str(
            r#"{"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.7/24"}, {"address": "fd00:1::7/64"}, {"address": "10.1.0.7/24"}]}"#,
        )
        .unwrap();
        let ips = result_ips(&result).unwrap();
        assert_eq!(ips.len(), 2);
        assert!(ips[1].is_ipv6());
        assert!(result_ips(&serde_json::json!({})).unwrap().is_empty());
    }

    #[test]
    fn refusals() {
        assert_eq!(NetConf::parse("not json").unwrap_err().code(), 6);
        assert_eq!(NetConf::parse("[]").unwrap_err().code(), 6);
        let old = NetConf::parse(r#"{"cniVersion": "0.2.0", "type": "palisade-cni"}"#).unwrap_err();
        assert_eq!(old.code(), 1);
        assert!(old.to_string().contains("0.2.0 is not supported"), "{old}");
        let bad = NetConf::parse(r#"{"cniVersion": "1.0.0", "timeoutSeconds": 0}"#).unwrap_err();
        assert_eq!(bad.code(), 7);
        assert!(NetConf::parse(r#"{"cniVersion": "1.0.0", "socket": 3}"#).is_err());
        let no_address = serde_json::json!({"ips": [{"gateway": "10.0.0.1"}]});
        assert_eq!(result_ips(&no_address).unwrap_err().code(), 6);
        let bad_address = serde_json::json!({"ips": [{"address": "10.0.0.300/24"}]});
        assert!(result_ips(&bad_address).is_err());
    }
}
