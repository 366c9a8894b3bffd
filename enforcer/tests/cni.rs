//! CNI detection on the configuration files the common CNIs install (trimmed to what matters,
//! structure as shipped).

use std::fs;
use std::path::{Path, PathBuf};

use palisade_enforcer::cni::{CniError, detect};

/// A fresh directory under the system temp dir, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("palisade-cni-test-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    fn with(self, name: &str, content: &str) -> Self {
        fs::write(self.0.join(name), content).expect("write");
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const FLANNEL: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    { "type": "flannel", "delegate": { "hairpinMode": true, "isDefaultGateway": true } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}"#;

const CALICO: &str = r#"{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "info",
      "datastore_type": "kubernetes",
      "nodename": "node-1",
      "mtu": 1440,
      "ipam": { "type": "calico-ipam" },
      "policy": { "type": "k8s" },
      "kubernetes": { "kubeconfig": "/etc/cni/net.d/calico-kubeconfig" }
    },
    { "type": "bandwidth", "capabilities": { "bandwidth": true } },
    { "type": "portmap", "snat": true, "capabilities": { "portMappings": true } }
  ]
}"#;

const CILIUM: &str = r#"{
  "cniVersion": "0.3.1",
  "name": "cilium",
  "plugins": [
    {
       "type": "cilium-cni",
       "enable-debug": false,
       "log-file": "/var/run/cilium/cilium-cni.log"
    }
  ]
}"#;

const WEAVE: &str = r#"{
    "cniVersion": "0.3.0",
    "name": "weave",
    "plugins": [
        { "name": "weave", "type": "weave-net", "hairpinMode": true },
        { "type": "portmap", "capabilities": {"portMappings": true}, "snat": true }
    ]
}"#;

const KUBE_ROUTER: &str = r#"{
   "cniVersion":"0.3.0",
   "name":"mynet",
   "plugins":[
      {
         "name":"kubernetes",
         "type":"bridge",
         "bridge":"kube-bridge",
         "isDefaultGateway":true,
         "ipam":{ "type":"host-local" }
      },
      { "type":"portmap", "capabilities":{ "snat":true, "portMappings":true } }
   ]
}"#;

const ANTREA: &str = r#"{
    "cniVersion":"0.3.0",
    "name": "antrea",
    "plugins": [
        { "type": "antrea", "ipam": { "type": "host-local" } },
        { "type": "portmap", "capabilities": {"portMappings": true} },
        { "type": "bandwidth", "capabilities": {"bandwidth": true} }
    ]
}"#;

const BRIDGE: &str = r#"{
    "cniVersion": "0.4.0",
    "name": "mynet",
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": true,
    "ipam": { "type": "host-local", "subnet": "10.22.0.0/16" }
}"#;

fn found(file: &str, content: &str) -> (String, Option<bool>, Vec<String>) {
    let dir = Dir::new(file).with(file, content);
    let info = detect(dir.path()).expect("a valid configuration");
    assert_eq!(info.file, dir.path().join(file));
    assert!(info.skipped.is_empty());
    (info.cni, info.enforces, info.plugins)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn flannel_does_not_enforce() {
    assert_eq!(
        found("10-flannel.conflist", FLANNEL),
        (
            "flannel".into(),
            Some(false),
            strings(&["flannel", "portmap"])
        )
    );
    // kube-flannel ships the list as cni-conf.json; a list is a list whatever the extension.
    assert_eq!(found("cni-conf.json", FLANNEL).1, Some(false));
}

#[test]
fn policy_engines_enforce() {
    assert_eq!(
        found("10-calico.conflist", CALICO),
        (
            "calico".into(),
            Some(true),
            strings(&["calico", "bandwidth", "portmap"])
        )
    );
    assert_eq!(
        found("05-cilium.conflist", CILIUM),
        ("cilium".into(), Some(true), strings(&["cilium-cni"]))
    );
    assert_eq!(
        found("10-weave.conflist", WEAVE),
        (
            "weave".into(),
            Some(true),
            strings(&["weave-net", "portmap"])
        )
    );
    assert_eq!(
        found("10-antrea.conflist", ANTREA),
        (
            "antrea".into(),
            Some(true),
            strings(&["antrea", "portmap", "bandwidth"])
        )
    );
}

#[test]
fn kube_router_is_recognised_by_its_bridge() {
    assert_eq!(
        found("10-kuberouter.conflist", KUBE_ROUTER),
        (
            "kube-router".into(),
            Some(true),
            strings(&["kube-router", "portmap"])
        )
    );
}

#[test]
fn a_plain_bridge_does_not_enforce() {
    assert_eq!(
        found("10-bridge.conf", BRIDGE),
        ("bridge".into(), Some(false), strings(&["bridge"]))
    );
}

#[test]
fn an_unknown_plugin_is_unknown() {
    let conf = r#"{"name": "aws", "plugins": [{"type": "aws-cni"}, {"type": "portmap"}]}"#;
    assert_eq!(found("10-aws.conflist", conf).1, None);
}

#[test]
fn the_first_valid_file_in_lexical_order_wins_and_broken_ones_are_skipped() {
    let dir = Dir::new("order")
        .with("00-broken.conflist", "{ not json")
        .with("01-empty.conflist", r#"{"name": "x", "plugins": []}"#)
        .with("02-notype.conf", r#"{"name": "x"}"#)
        .with("05-cilium.conflist", CILIUM)
        .with("10-flannel.conflist", FLANNEL)
        .with("README.md", "not a configuration")
        .with("99-loopback.txt", "{}");
    let info = detect(dir.path()).expect("cilium is valid");
    assert_eq!(info.cni, "cilium");
    let skipped: Vec<(String, &str)> = info
        .skipped
        .iter()
        .map(|s| {
            (
                s.file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                s.reason.split(':').next().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("00-broken.conflist".to_string(), "not JSON"),
            ("01-empty.conflist".to_string(), "empty plugins list"),
            ("02-notype.conf".to_string(), "no plugins list and no type"),
        ]
    );
}

#[test]
fn an_empty_directory_has_no_configuration() {
    let dir = Dir::new("empty");
    let err = detect(dir.path()).unwrap_err();
    assert!(matches!(err, CniError::NoConfig { ref skipped, .. } if skipped.is_empty()));
    assert!(
        err.to_string()
            .contains("no .conflist, .conf or .json file"),
        "{err}"
    );

    let dir = Dir::new("only-broken").with("10-x.conflist", "[]");
    let err = detect(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("10-x.conflist: not a JSON object"),
        "{err}"
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let err = detect(Path::new("/nonexistent/palisade/cni")).unwrap_err();
    assert!(matches!(err, CniError::Unreadable { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read CNI configuration directory /nonexistent/palisade/cni"),
        "{err}"
    );
}
