//! A small cluster to run Palisade against: network-namespace nodes whose CNI configuration
//! says what the test wants (flannel by default), pods that exist both as network namespaces with
//! servers and as Pod objects in the apiserver (the harness plays the kubelet and sets their IP
//! and phase), and what `palisade reach` predicts for them. Dropping it removes every object,
//! namespace and link it made.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use palisade_policy::input::Inputs;
use palisade_policy::reach::{self, Matrix, Probe, ProbePort};
use palisade_policy::{IpFamily, Protocol};

use crate::control_plane::TestNamespace;
use crate::util::Process;
use crate::{ControlPlane, Error, Network};

/// flannel's own conflist, as its DaemonSet writes it: a CNI that ignores NetworkPolicy.
pub const FLANNEL_CONFLIST: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"#;

/// A pod of the world: where it runs, its labels and the ports it serves (name, number,
/// protocol).
#[derive(Debug, Clone)]
pub struct PodDef {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Vec<(String, String)>,
    pub ports: Vec<(Option<String>, u16, Protocol)>,
}

impl PodDef {
    pub fn new(namespace: &str, name: &str, node: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            node: node.into(),
            labels: Vec::new(),
            ports: Vec::new(),
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    pub fn port(mut self, name: Option<&str>, port: u16, protocol: Protocol) -> Self {
        self.ports.push((name.map(String::from), port, protocol));
        self
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The labels as a YAML flow mapping.
    pub fn labels_yaml(&self) -> String {
        labels_yaml(&self.labels)
    }

    /// The container ports as a YAML flow sequence.
    pub fn ports_yaml(&self) -> String {
        let ports: Vec<String> = self
            .ports
            .iter()
            .map(|(name, port, proto)| {
                let name = name
                    .as_ref()
                    .map(|n| format!("name: {n}, "))
                    .unwrap_or_default();
                format!("{{{name}containerPort: {port}, protocol: {proto}}}")
            })
            .collect();
        format!("[{}]", ports.join(", "))
    }
}

fn labels_yaml(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{k}\": \"{v}\""))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

pub struct World<'a> {
    pub cp: &'a ControlPlane,
    pub net: Network,
    pub pods: Vec<PodDef>,
    ips: BTreeMap<String, Ipv4Addr>,
    /// Dual-stack worlds: the pods' IPv6 addresses.
    ips6: BTreeMap<String, Ipv6Addr>,
    /// Per node: the CNI configuration directory its enforcer reads.
    pub cni_dirs: BTreeMap<String, PathBuf>,
    dir: PathBuf,
    nodes: Vec<String>,
    // Last: the namespaces (and their pods) go after everything else.
    namespaces: Vec<TestNamespace<'a>>,
}

impl<'a> World<'a> {
    /// Creates nodes (network namespaces and Node objects), the namespaces with their labels
    /// (those that exist already, such as kube-system, are only used), and the pods, each serving
    /// its ports.
    pub fn create(
        cp: &'a ControlPlane,
        nodes: &[&str],
        cni_conflist: &str,
        namespaces: &[(&str, &[(&str, &str)])],
        pods: &[PodDef],
    ) -> Result<Self, Error> {
        Self::create_with(
            cp,
            Network::create(nodes)?,
            nodes,
            cni_conflist,
            namespaces,
            pods,
        )
    }

    /// [`World::create`] with dual-stack nodes and pods: every pod has an IPv4 and an IPv6
    /// address (`status.podIPs`, IPv4 first).
    pub fn create_dual_stack(
        cp: &'a ControlPlane,
        nodes: &[&str],
        cni_conflist: &str,
        namespaces: &[(&str, &[(&str, &str)])],
        pods: &[PodDef],
    ) -> Result<Self, Error> {
        let net = Network::create_dual_stack(nodes)?;
        Self::create_with(cp, net, nodes, cni_conflist, namespaces, pods)
    }

    fn create_with(
        cp: &'a ControlPlane,
        net: Network,
        nodes: &[&str],
        cni_conflist: &str,
        namespaces: &[(&str, &[(&str, &str)])],
        pods: &[PodDef],
    ) -> Result<Self, Error> {
        let dir =
            std::env::temp_dir().join(format!("palisade-world-{}-{}", std::process::id(), net.id));
        let mut world = World {
            cp,
            net,
            pods: Vec::new(),
            ips: BTreeMap::new(),
            ips6: BTreeMap::new(),
            cni_dirs: BTreeMap::new(),
            dir: dir.clone(),
            nodes: Vec::new(),
            namespaces: Vec::new(),
        };
        for node in nodes {
            let cni = dir.join(node).join("cni");
            std::fs::create_dir_all(&cni).map_err(|source| Error::Io {
                what: format!("creating {}", cni.display()),
                source,
            })?;
            std::fs::write(cni.join("10-cni.conflist"), cni_conflist).map_err(|source| {
                Error::Io {
                    what: "writing the CNI configuration".into(),
                    source,
                }
            })?;
            world.cni_dirs.insert(node.to_string(), cni);
            world.cp.apply(&format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n"
            ))?;
            world.nodes.push(node.to_string());
            world.cp.kubectl_ok(&[
                "patch",
                "node",
                node,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"e2e"}]}}"#,
            ])?;
        }
        for (name, labels) in namespaces {
            let exists = cp
                .kubectl(&["get", "namespace", name])
                .is_ok_and(|o| o.status.success());
            if !exists {
                world.namespaces.push(cp.test_namespace(name)?);
            }
            if !labels.is_empty() {
                let mut args = vec!["label", "--overwrite", "namespace", name];
                let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                args.extend(pairs.iter().map(String::as_str));
                world.cp.kubectl_ok(&args)?;
            }
        }
        for pod in pods {
            world.add_pod(pod.clone())?;
        }
        Ok(world)
    }

    fn pod_yaml(&self, pod: &PodDef) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: \"{}\", namespace: \"{}\", labels: {}}}\n\
             spec: {{nodeName: \"{}\", containers: [{{name: main, image: e2e, ports: {}}}]}}\n",
            pod.name,
            pod.namespace,
            pod.labels_yaml(),
            pod.node,
            pod.ports_yaml()
        )
    }

    /// Adds a pod: its network namespace and servers, its Pod object, then its IP and phase.
    pub fn add_pod(&mut self, pod: PodDef) -> Result<Ipv4Addr, Error> {
        let ip = self.net.add_pod(&pod.node, &pod.namespace, &pod.name)?;
        let serve: Vec<(u16, Protocol)> =
            pod.ports.iter().map(|(_, p, proto)| (*p, *proto)).collect();
        self.net.serve(&pod.key(), &serve)?;
        self.cp.apply(&self.pod_yaml(&pod))?;
        let ip6 = self.net.pod(&pod.key()).and_then(|p| p.ip6);
        self.cp.kubectl_ok(&[
            "patch",
            "pod",
            &pod.name,
            "-n",
            &pod.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":{}}}}}"#,
                pod_ips_json(ip, ip6)
            ),
        ])?;
        self.ips.insert(pod.key(), ip);
        if let Some(ip6) = ip6 {
            self.ips6.insert(pod.key(), ip6);
        }
        self.pods.push(pod);
        Ok(ip)
    }

    /// Deletes a pod's object, then its network namespace (as a kubelet tears a pod down).
    pub fn remove_pod(&mut self, key: &str) -> Result<(), Error> {
        if let Some((ns, name)) = key.split_once('/') {
            // As a kubelet confirms the deletion of a pod that has stopped.
            self.cp.kubectl_ok(&[
                "delete",
                "pod",
                name,
                "-n",
                ns,
                "--force",
                "--grace-period=0",
            ])?;
        }
        self.net.remove_pod(key);
        self.pods.retain(|p| p.key() != key);
        self.ips.remove(key);
        self.ips6.remove(key);
        Ok(())
    }

    /// Sets a label on a pod, in the apiserver and in the world's own record.
    pub fn label_pod(&mut self, key: &str, label: &str, value: &str) -> Result<(), Error> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        self.cp.kubectl_ok(&[
            "label",
            "--overwrite",
            "pod",
            name,
            "-n",
            ns,
            &format!("{label}={value}"),
        ])?;
        if let Some(p) = self.pods.iter_mut().find(|p| p.key() == key) {
            p.labels.retain(|(k, _)| k != label);
            p.labels.push((label.into(), value.into()));
        }
        Ok(())
    }

    pub fn ip(&self, key: &str) -> Option<Ipv4Addr> {
        self.ips.get(key).copied()
    }

    /// A dual-stack pod's IPv6 address.
    pub fn ip6(&self, key: &str) -> Option<Ipv6Addr> {
        self.ips6.get(key).copied()
    }

    /// The pods as manifests with their node and IP, for `palisade reach`.
    pub fn manifests(&self) -> String {
        let mut out = String::new();
        for pod in &self.pods {
            let ip = self
                .ips
                .get(&pod.key())
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            out.push_str(&self.pod_yaml(pod));
            out.push_str(&format!(
                "status: {{phase: Running, podIP: \"{ip}\", podIPs: {}}}\n---\n",
                pod_ips_json(ip, self.ip6(&pod.key()))
            ));
        }
        out
    }

    /// Namespace objects with their labels as the apiserver has them, for `palisade reach`.
    fn namespace_manifests(&self) -> Result<String, Error> {
        self.cp.kubectl_ok(&["get", "namespaces", "-o", "yaml"])
    }

    /// Every (from, to, port) among the world's pods for those of `ports` the destination
    /// serves (a port nobody listens on refuses whatever the rules say).
    pub fn cells(&self, ports: &[(u16, Protocol)]) -> Vec<Cell> {
        cells(&self.pods, ports)
    }

    /// What Palisade's semantics say for every cell, given `policies` (YAML).
    pub fn predict(&self, policies: &str, ports: &[(u16, Protocol)]) -> Result<Vec<Probe>, Error> {
        self.predict_in(policies, ports, IpFamily::V4)
    }

    /// [`World::predict`] for the traffic of one IP family.
    pub fn predict_in(
        &self,
        policies: &str,
        ports: &[(u16, Protocol)],
        family: IpFamily,
    ) -> Result<Vec<Probe>, Error> {
        predict_in(
            &[
                ("namespaces.yaml", &self.namespace_manifests()?),
                ("pods.yaml", &self.manifests()),
                ("policies.yaml", policies),
            ],
            &self.cells(ports),
            family,
        )
    }

    /// [`World::measure`] over one IP family.
    pub fn measure_in(
        &self,
        ports: &[(u16, Protocol)],
        timeout: Duration,
        family: IpFamily,
    ) -> Result<Vec<Probe>, Error> {
        self.net.probe_all_in(&self.cells(ports), timeout, family)
    }

    /// Probes every cell for real.
    pub fn measure(
        &self,
        ports: &[(u16, Protocol)],
        timeout: Duration,
    ) -> Result<Vec<Probe>, Error> {
        self.net.probe_all(&self.cells(ports), timeout)
    }

    /// Starts `program` inside `node`'s network namespace (as a DaemonSet pod with hostNetwork
    /// runs there), with `args`; killed when the returned guard drops.
    pub fn spawn_on_node(
        &self,
        node: &str,
        program: &std::path::Path,
        args: &[String],
        env: &[(&str, &std::ffi::OsStr)],
        log: &std::path::Path,
    ) -> Result<Process, Error> {
        let netns = self
            .net
            .nodes()
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.netns.name.clone())
            .ok_or_else(|| Error::Command {
                what: format!("starting {} on {node}", program.display()),
                stderr: "no such node".into(),
            })?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns])
            .arg(program)
            .args(args)
            .envs(env.iter().copied());
        crate::util::spawn_logged(command, log)
    }

    /// A directory of this world's own for files (logs, kubeconfigs) that goes with it.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for World<'_> {
    fn drop(&mut self) {
        // Pods in namespaces the world did not create (kube-system) are deleted one by one; the
        // others go with their namespace.
        for pod in &self.pods {
            if !self.namespaces.iter().any(|n| n.name == pod.namespace) {
                let _ = self.cp.kubectl(&[
                    "delete",
                    "pod",
                    &pod.name,
                    "-n",
                    &pod.namespace,
                    "--force",
                    "--grace-period=0",
                ]);
            }
        }
        for node in &self.nodes {
            let _ = self.cp.kubectl(&["delete", "node", node, "--wait=false"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One probe to make: from pod, to pod (namespace/name), port, protocol.
pub type Cell = (String, String, u16, Protocol);

/// Every (from, to, port) among `pods` for those of `ports` the destination serves (a port
/// nobody listens on refuses whatever the rules say).
pub fn cells(pods: &[PodDef], ports: &[(u16, Protocol)]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for from in pods {
        for to in pods {
            if from.key() == to.key() {
                continue;
            }
            for &(port, proto) in ports {
                if to.ports.iter().any(|(_, p, pr)| (*p, *pr) == (port, proto)) {
                    cells.push((from.key(), to.key(), port, proto));
                }
            }
        }
    }
    cells
}

/// `podIPs` as JSON (also YAML): IPv4 first, then the IPv6 address if there is one.
fn pod_ips_json(ip: Ipv4Addr, ip6: Option<Ipv6Addr>) -> String {
    match ip6 {
        Some(ip6) => format!(r#"[{{"ip":"{ip}"}},{{"ip":"{ip6}"}}]"#),
        None => format!(r#"[{{"ip":"{ip}"}}]"#),
    }
}

/// What `palisade reach` says for `cells`, given the cluster's objects as named YAML texts
/// (namespaces, pods with their IPs, policies).
pub fn predict(documents: &[(&str, &str)], cells: &[Cell]) -> Result<Vec<Probe>, Error> {
    predict_in(documents, cells, IpFamily::V4)
}

/// [`predict`] for the traffic of one IP family: the cluster as that family sees it (each pod
/// with its address of the family), as Palisade's enforcer compiles it.
pub fn predict_in(
    documents: &[(&str, &str)],
    cells: &[Cell],
    family: IpFamily,
) -> Result<Vec<Probe>, Error> {
    let mut inputs = Inputs::default();
    for (name, text) in documents {
        inputs.add_text(name, text).map_err(|e| Error::Command {
            what: format!("reading {name} for the prediction"),
            stderr: format!("{e:?}"),
        })?;
    }
    let cluster = inputs.cluster().in_family(family);
    let pods = reach::reachable_pods(&cluster);
    let mut ports: Vec<ProbePort> = Vec::new();
    for (_, _, port, protocol) in cells {
        if !ports
            .iter()
            .any(|p| p.port == *port && p.protocol == *protocol)
        {
            ports.push(ProbePort {
                port: *port,
                protocol: *protocol,
            });
        }
    }
    let wanted: std::collections::BTreeSet<(String, String, u16, String)> = cells
        .iter()
        .map(|(f, t, p, pr)| (f.clone(), t.clone(), *p, pr.to_string()))
        .collect();
    Ok(Matrix::compute(&cluster, pods.clone(), pods, ports)
        .probes(false)
        .into_iter()
        .filter(|p| wanted.contains(&(p.from.clone(), p.to.clone(), p.port, p.protocol.clone())))
        .collect())
}

/// Differences between measured and predicted cells, one line each, empty when they agree.
pub fn differences(measured: &[Probe], predicted: &[Probe]) -> Vec<String> {
    let key = |p: &Probe| (p.from.clone(), p.to.clone(), p.port, p.protocol.clone());
    let predicted: BTreeMap<_, _> = predicted.iter().map(|p| (key(p), p)).collect();
    let mut out = Vec::new();
    for m in measured {
        match predicted.get(&key(m)) {
            Some(p) if p.allowed == m.allowed => {}
            Some(p) => out.push(format!(
                "{} -> {} {}/{}: measured {}, predicted {}",
                m.from,
                m.to,
                m.port,
                m.protocol,
                if m.allowed { "open" } else { "blocked" },
                if p.allowed { "open" } else { "blocked" },
            )),
            None => out.push(format!(
                "{} -> {} {}/{}: not predicted",
                m.from, m.to, m.port, m.protocol
            )),
        }
    }
    out
}

/// The ports the tutorial world's pods serve, as probed: web, API, metrics, database, DNS.
pub const TUTORIAL_PORTS: [(u16, Protocol); 6] = [
    (80, Protocol::Tcp),
    (8080, Protocol::Tcp),
    (9090, Protocol::Tcp),
    (5432, Protocol::Tcp),
    (53, Protocol::Udp),
    (53, Protocol::Tcp),
];

/// The tutorials' namespaces and their labels.
pub const TUTORIAL_NAMESPACES: [(&str, &[(&str, &str)]); 4] = [
    ("production", &[("team", "shop")]),
    ("monitoring", &[("purpose", "monitoring")]),
    ("ingress-nginx", &[]),
    ("kube-system", &[]),
];

/// The tutorials' pods on two nodes: a three-tier app in `production` (frontend, backend
/// labelled `app: api`, database), Prometheus in `monitoring`, an ingress controller, and
/// cluster DNS in kube-system, as in `policy/tests/fixtures/tutorial/world.yaml`.
pub fn tutorial_pods() -> Vec<PodDef> {
    use Protocol::{Tcp, Udp};
    vec![
        PodDef::new("production", "frontend", "node-1")
            .label("app", "frontend")
            .label("tier", "web")
            .port(Some("http"), 80, Tcp),
        PodDef::new("production", "backend", "node-2")
            .label("app", "api")
            .label("tier", "app")
            .port(Some("http-api"), 8080, Tcp)
            .port(Some("metrics"), 9090, Tcp),
        PodDef::new("production", "database", "node-1")
            .label("app", "database")
            .label("tier", "data")
            .port(Some("postgres"), 5432, Tcp),
        PodDef::new("monitoring", "prometheus", "node-2")
            .label("app", "prometheus")
            .port(None, 9090, Tcp),
        PodDef::new("ingress-nginx", "controller", "node-1")
            .label("app.kubernetes.io/name", "ingress-nginx")
            .port(None, 80, Tcp),
        PodDef::new("kube-system", "coredns", "node-2")
            .label("k8s-app", "kube-dns")
            .port(Some("dns"), 53, Udp)
            .port(Some("dns-tcp"), 53, Tcp),
    ]
}

/// The tutorials' world on two flannel nodes (network-namespace pods).
pub fn tutorial(cp: &ControlPlane) -> Result<World<'_>, Error> {
    World::create(
        cp,
        &["node-1", "node-2"],
        FLANNEL_CONFLIST,
        &TUTORIAL_NAMESPACES,
        &tutorial_pods(),
    )
}
