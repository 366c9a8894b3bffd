//! What the plugin and the enforcer say to each other over the enforcer's unix socket: one JSON
//! request line, one JSON reply line.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The plugin's `type` in the CNI configuration (and its file name in the CNI bin directory).
pub const PLUGIN_TYPE: &str = "palisade-cni";
/// Where the enforcer listens on the node unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/palisade/enforcer.sock";
/// How long ADD waits for the enforcer unless configured otherwise.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// The longest line either side reads.
pub const MAX_LINE: u64 = 64 * 1024;

/// A Kubernetes pod, as the kubelet names it in `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `K8S_POD_UID`, where the runtime passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Request {
    /// The pod's sandbox `containerId` got `ips`: answer once its rules are in the kernel.
    #[serde(rename_all = "camelCase")]
    Add {
        pod: PodRef,
        container_id: String,
        ips: Vec<IpAddr>,
    },
    /// The sandbox is gone (best effort: the pod's status and the pod watch say so too).
    #[serde(rename_all = "camelCase")]
    Del { pod: PodRef, container_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Reply {
    /// The pod's rules are in the kernel (`isolated`: some policy may deny its traffic, and the
    /// answer waited for a sync; otherwise it came at once).
    Ready { isolated: bool },
    /// Not confirmed, and why in words.
    Refused { reason: String },
}

/// One line of JSON, newline-terminated.
pub fn encode<T: Serialize>(message: &T) -> String {
    // Serializing these plain types cannot fail; an empty object would be refused by the peer.
    let mut line = serde_json::to_string(message).unwrap_or_else(|_| "{}".into());
    line.push('\n');
    line
}

pub fn decode<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef {
            namespace: "guarded".into(),
            name: "web-1".into(),
            uid: Some("0c1f".into()),
        }
    }

    #[test]
    fn requests_round_trip_as_one_line() {
        let add = Request::Add {
            pod: pod(),
            container_id: "abc".into(),
            ips: vec!["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
        };
        let line = encode(&add);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(
            line,
            "{\"command\":\"add\",\"pod\":{\"namespace\":\"guarded\",\"name\":\"web-1\",\"uid\":\"0c1f\"},\"containerId\":\"abc\",\"ips\":[\"10.244.1.5\",\"fd00::5\"]}\n"
        );
        assert_eq!(decode::<Request>(&line).unwrap(), add);
        let del = Request::Del {
            pod: pod(),
            container_id: "abc".into(),
        };
        assert_eq!(decode::<Request>(&encode(&del)).unwrap(), del);
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ready { isolated: true },
            Reply::Refused {
                reason: "no sync".into(),
            },
        ] {
            assert_eq!(decode::<Reply>(&encode(&reply)).unwrap(), reply);
        }
        assert_eq!(
            decode::<Reply>("{\"result\":\"ready\",\"isolated\":false}\n").unwrap(),
            Reply::Ready { isolated: false }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<Reply>("").is_err());
        assert!(decode::<Reply>("{\"result\":\"maybe\"}").is_err());
        assert!(decode::<Request>("{\"command\":\"add\"}").is_err());
        assert!(decode::<Request>("[1,2]").is_err());
    }
}
