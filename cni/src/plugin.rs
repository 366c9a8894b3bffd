//! One run of the plugin: what it does for `CNI_COMMAND` given its configuration and
//! environment, with the enforcer behind [`Ask`] so the decisions are tested without a socket.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::netconf::{self, NEWEST_VERSION, NetConf, SUPPORTED_VERSIONS};
use crate::protocol::{Reply, Request};
use crate::{PluginError, args};

/// How long DEL tries to tell the enforcer (best effort: DEL always succeeds).
pub const DEL_TIMEOUT: Duration = Duration::from_secs(2);

/// What the runtime gave the plugin.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// `CNI_COMMAND`.
    pub command: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_ARGS`.
    pub args: &'a str,
    /// The network configuration.
    pub stdin: &'a str,
}

/// Why the enforcer gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskError {
    /// Nothing listens on the socket (or it cannot be reached), in words.
    NotAnswering(String),
    /// No answer within the timeout.
    Timeout,
    /// An answer that is not one, in words.
    Garbled(String),
}

/// The enforcer, asked one question.
pub trait Ask {
    fn ask(&self, socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, AskError>;
}

/// Runs the command; `Ok(Some(text))` is printed on stdout, `Err` as the CNI error result.
pub fn run(inv: Invocation<'_>, enforcer: &dyn Ask) -> Result<Option<String>, PluginError> {
    match inv.command {
        "ADD" => add(inv, enforcer).map(Some),
        "DEL" => {
            del(inv, enforcer);
            Ok(None)
        }
        "CHECK" => check(inv).map(|()| None),
        "VERSION" => Ok(Some(version(inv.stdin))),
        "" => Err(PluginError::InvalidEnv("CNI_COMMAND is not set".into())),
        other => Err(PluginError::InvalidEnv(format!(
            "CNI_COMMAND {other} is not supported (ADD, DEL, CHECK, VERSION)"
        ))),
    }
}

/// The version an error result is written in: the configuration's when it names one the plugin
/// speaks.
pub fn error_version(stdin: &str) -> String {
    serde_json::from_str::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| NEWEST_VERSION.to_string())
}

fn add(inv: Invocation<'_>, enforcer: &dyn Ask) -> Result<String, PluginError> {
    let conf = NetConf::parse(inv.stdin)?;
    let Some(prev) = conf.prev_result.clone() else {
        return Err(PluginError::InvalidConfig(
            "no prevResult: palisade-cni is a chained plugin and must come after the plugin that \
             gives the pod its addresses"
                .into(),
        ));
    };
    let pass_through = |mut result: Value| {
        if let Value::Object(o) = &mut result {
            o.insert("cniVersion".into(), Value::String(conf.cni_version.clone()));
        }
        result.to_string()
    };
    // A container Kubernetes did not start, or one without addresses: no policy can apply.
    let Some(pod) = args::pod(inv.args)? else {
        return Ok(pass_through(prev));
    };
    let ips = netconf::result_ips(&prev)?;
    if ips.is_empty() {
        return Ok(pass_through(prev));
    }
    if inv.container_id.is_empty() {
        return Err(PluginError::InvalidEnv("CNI_CONTAINERID is not set".into()));
    }
    let node = conf.node();
    let request = Request::Add {
        pod: pod.clone(),
        container_id: inv.container_id.to_string(),
        ips,
    };
    match enforcer.ask(&conf.socket, &request, conf.timeout) {
        Ok(Reply::Ready { .. }) => Ok(pass_through(prev)),
        Ok(Reply::Refused { reason }) => Err(PluginError::NotConfirmed(format!(
            "the enforcer on {node} did not confirm the rules of pod {pod}: {reason}"
        ))),
        Err(AskError::NotAnswering(e)) => Err(PluginError::NotConfirmed(format!(
            "the enforcer on {node} is not answering at {} ({e}): it is not running, starting \
             or being upgraded, so it did not confirm the rules of pod {pod}",
            conf.socket.display()
        ))),
        Err(AskError::Timeout) => Err(PluginError::NotConfirmed(format!(
            "the enforcer on {node} did not confirm the rules of pod {pod} within {}s",
            conf.timeout.as_secs()
        ))),
        Err(AskError::Garbled(e)) => Err(PluginError::NotConfirmed(format!(
            "the enforcer on {node} gave no answer the plugin understands about pod {pod} ({e})"
        ))),
    }
}

/// Tells the enforcer, best effort; never fails (the runtime must be able to tear a sandbox
/// down whatever the enforcer does).
fn del(inv: Invocation<'_>, enforcer: &dyn Ask) {
    let Ok(conf) = NetConf::parse(inv.stdin) else {
        return;
    };
    let (Ok(Some(pod)), false) = (args::pod(inv.args), inv.container_id.is_empty()) else {
        return;
    };
    let request = Request::Del {
        pod,
        container_id: inv.container_id.to_string(),
    };
    let _ = enforcer.ask(&conf.socket, &request, DEL_TIMEOUT.min(conf.timeout));
}

/// CHECK (0.4.0 and later): the configuration is one the plugin runs with. The pod's rules are
/// the enforcer's to keep; it repairs them on every resync.
fn check(inv: Invocation<'_>) -> Result<(), PluginError> {
    let conf = NetConf::parse(inv.stdin)?;
    if conf.cni_version.starts_with("0.3.") {
        return Err(PluginError::IncompatibleVersion(format!(
            "CHECK is not defined for CNI version {}",
            conf.cni_version
        )));
    }
    let Some(prev) = conf.prev_result else {
        return Err(PluginError::InvalidConfig(
            "no prevResult: palisade-cni is a chained plugin".into(),
        ));
    };
    netconf::result_ips(&prev).map(|_| ())
}

fn version(stdin: &str) -> String {
    serde_json::json!({
        "cniVersion": error_version(stdin),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=guarded;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=c1";
    const CONF: &str = r#"{"cniVersion": "0.4.0", "name": "palisade-e2e", "type": "palisade-cni",
      "socket": "/run/palisade/enforcer.sock", "nodeName": "node-1", "timeoutSeconds": 10,
      "prevResult": {"cniVersion": "0.4.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "interface": 0, "address": "10.100.1.12/24", "gateway": "10.100.1.1"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}}"#;

    /// An enforcer that answers `answer` and remembers the questions.
    struct Fake {
        answer: Result<Reply, AskError>,
        asked: RefCell<Vec<(Request, Duration)>>,
    }

    impl Fake {
        fn answering(answer: Result<Reply, AskError>) -> Self {
            Self {
                answer,
                asked: RefCell::new(Vec::new()),
            }
        }
    }

    impl Ask for Fake {
        fn ask(
            &self,
            socket: &Path,
            request: &Request,
            timeout: Duration,
        ) -> Result<Reply, AskError> {
            assert_eq!(socket, Path::new("/run/palisade/enforcer.sock"));
            self.asked.borrow_mut().push((request.clone(), timeout));
            self.answer.clone()
        }
    }

    fn inv<'a>(command: &'a str, args: &'a str, stdin: &'a str) -> Invocation<'a> {
        Invocation {
            command,
            container_id: "c1",
            args,
            stdin,
        }
    }

    #[test]
    fn add_asks_the_enforcer_and_passes_the_previous_result_through() {
        let fake = Fake::answering(Ok(Reply::Ready { isolated: true }));
        let out = run(inv("ADD", ARGS, CONF), &fake).unwrap().unwrap();
        let conf: Value = serde_json::from_str(CONF).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            conf["prevResult"]
        );
        let asked = fake.asked.borrow();
        assert_eq!(asked.len(), 1);
        let (
            Request::Add {
                pod,
                container_id,
                ips,
            },
            timeout,
        ) = &asked[0]
        else {
            panic!("not an add: {asked:?}");
        };
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("guarded", "web-1")
        );
        assert_eq!(container_id, "c1");
        assert_eq!(
            ips,
            &vec!["10.100.1.12".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(*timeout, Duration::from_secs(10));
    }

    #[test]
    fn add_fails_closed_with_what_and_why() {
        let cases = [
            (
                Err(AskError::Timeout),
                "palisade: the enforcer on node node-1 did not confirm the rules of pod guarded/web-1 within 10s; the pod stays without network until it does (fail closed)",
            ),
            (
                Err(AskError::NotAnswering("connection refused".into())),
                "palisade: the enforcer on node node-1 is not answering at /run/palisade/enforcer.sock (connection refused): it is not running, starting or being upgraded, so it did not confirm the rules of pod guarded/web-1; the pod stays without network until it does (fail closed)",
            ),
            (
                Ok(Reply::Refused {
                    reason: "the last sync failed: iptables-restore: exit 4".into(),
                }),
                "palisade: the enforcer on node node-1 did not confirm the rules of pod guarded/web-1: the last sync failed: iptables-restore: exit 4; the pod stays without network until it does (fail closed)",
            ),
            (
                Err(AskError::Garbled("EOF".into())),
                "palisade: the enforcer on node node-1 gave no answer the plugin understands about pod guarded/web-1 (EOF); the pod stays without network until it does (fail closed)",
            ),
        ];
        for (answer, message) in cases {
            let e = run(inv("ADD", ARGS, CONF), &Fake::answering(answer)).unwrap_err();
            assert_eq!(e.code(), 11);
            assert_eq!(e.to_string(), message);
            let json: Value = serde_json::from_str(&e.to_json(&error_version(CONF))).unwrap();
            assert_eq!(json["cniVersion"], "0.4.0");
        }
    }

    #[test]
    fn containers_outside_kubernetes_and_pods_without_addresses_pass_through_unasked() {
        let fake = Fake::answering(Err(AskError::Timeout));
        assert!(run(inv("ADD", "IgnoreUnknown=1", CONF), &fake).is_ok());
        let no_ips = CONF.replace(
            r#""ips": [{"version": "4", "interface": 0, "address": "10.100.1.12/24", "gateway": "10.100.1.1"}],"#,
            "",
        );
        assert_ne!(no_ips, CONF);
        assert!(run(inv("ADD", ARGS, &no_ips), &fake).is_ok());
        assert!(fake.asked.borrow().is_empty());
    }

    #[test]
    fn add_without_a_previous_result_is_a_configuration_error() {
        let conf = r#"{"cniVersion": "1.0.0", "name": "n", "type": "palisade-cni"}"#;
        let e = run(
            inv("ADD", ARGS, conf),
            &Fake::answering(Err(AskError::Timeout)),
        )
        .unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("chained plugin"), "{e}");
    }

    #[test]
    fn del_always_succeeds_and_tells_the_enforcer() {
        let fake = Fake::answering(Err(AskError::NotAnswering("no such file".into())));
        assert_eq!(run(inv("DEL", ARGS, CONF), &fake).unwrap(), None);
        let asked = fake.asked.borrow();
        assert!(
            matches!(&asked[0], (Request::Del { container_id, .. }, t) if container_id == "c1" && *t == DEL_TIMEOUT)
        );
        // Even with a configuration or arguments it cannot read.
        assert_eq!(run(inv("DEL", "garbage", "not json"), &fake).unwrap(), None);
    }

    #[test]
    fn check_and_version() {
        let fake = Fake::answering(Err(AskError::Timeout));
        assert_eq!(run(inv("CHECK", ARGS, CONF), &fake).unwrap(), None);
        let v031 = CONF.replace("0.4.0", "0.3.1");
        assert_eq!(run(inv("CHECK", ARGS, &v031), &fake).unwrap_err().code(), 1);
        let out = run(inv("VERSION", "", r#"{"cniVersion": "1.0.0"}"#), &fake)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(
            v["supportedVersions"],
            serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
        );
        assert_eq!(run(inv("GC", ARGS, CONF), &fake).unwrap_err().code(), 4);
        assert_eq!(run(inv("", ARGS, CONF), &fake).unwrap_err().code(), 4);
    }
}
