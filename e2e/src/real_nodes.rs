//! Real nodes: kubelet, containerd, runc and kube-proxy, each node in its own network and mount
//! namespace, with the control plane (apiserver, etcd, controller-manager, scheduler) in the
//! root namespace. Pods are real containers on a bridge CNI, which, like flannel, does not
//! enforce NetworkPolicy.
//!
//! Wiring (network id `k`, see `network.rs`): node `i` is 172.(16+k).i.2 behind the root-side
//! gateway 172.(16+k).i.1; its pods get 10.(100+k).i.10.. on the node's bridge `cni0`, routed
//! from the root namespace through the node. The apiserver advertises node-1's gateway, so the
//! `kubernetes` Service leads there from every pod. A root-namespace chain drops whatever the
//! nodes and pods send anywhere but to each other: no traffic leaves the machine.
//!
//! The nodes differ as users' nodes do (see [`flavour`]): node-1 is an older distribution's
//! node, where `iptables` is iptables-legacy and kube-proxy runs in iptables mode; node-2 a
//! current one, iptables-nft and kube-proxy in nftables mode (GA since Kubernetes 1.33). Each
//! node's components (containerd and the CNI plugins it runs, kubelet, kube-proxy) find their
//! `iptables` in a per-node directory first on their PATH.
//!
//! Everything a node runs lives in one cgroup tree (`/palisade-<k>-<node>` in every
//! hierarchy): containerd, its shims, kubelet, kube-proxy and the containers. Stopping a node
//! kills that tree and removes it; the kernel settings kubelet changes are restored.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::{Component, Described, Keeper, Launched, Options, spawn_tied};
use crate::network::Network;
use crate::tools::{bin_dir, tool};
use crate::{ControlPlane, Error};

/// The test workload images `e2e/tools/install.sh` builds (docker-archive tars).
pub const PAUSE_IMAGE: &str = "palisade.test/pause:1";
pub const BUSYBOX_IMAGE: &str = "palisade.test/busybox:1";
/// Where Debian's containernetworking-plugins installs the CNI plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Where each node's containerd finds its CNI plugins: a per-node directory bound there, with
/// links to Debian's plugins, into which the enforcer installs `palisade-cni` as on real nodes.
const NODE_CNI_BIN_DIR: &str = "/opt/cni/bin";
/// Global kernel settings kubelet writes even from inside a network namespace.
const KUBELET_SYSCTLS: [&str; 6] = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];
/// Directories each node has its own copy of, bind-mounted in its mount namespace.
/// (`/run/netns` too: containerd names each pod's network namespace there, and those must not
/// show up, or be left, on the host.)
const NODE_MOUNTS: [(&str, &str); 9] = [
    ("kubelet", "/var/lib/kubelet"),
    ("log-pods", "/var/log/pods"),
    ("log-containers", "/var/log/containers"),
    ("run-containerd", "/run/containerd"),
    ("cni-state", "/var/lib/cni"),
    ("cni-conf", "/etc/cni/net.d"),
    ("netns", "/run/netns"),
    ("cni-bin", NODE_CNI_BIN_DIR),
    // The enforcer's socket for the CNI plugin (the chart's enforcer.firstPacket.socketDir).
    ("run-palisade", "/run/palisade"),
];

/// What this machine lacks for real nodes, one item per missing piece; empty when nothing is.
pub fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for name in [
        "kubelet",
        "kube-proxy",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        if !bin_dir().join(name).is_file() {
            missing.push(format!("{name} (e2e/tools/install.sh builds it)"));
        }
    }
    for (program, package) in [
        ("containerd", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        // kube-proxy in nftables mode (node-2) runs `nft`.
        ("nft", "nftables"),
        ("xtables-legacy-multi", "iptables"),
        ("xtables-nft-multi", "iptables"),
    ] {
        if which(program).is_none() {
            missing.push(format!("{program} (apt-get install {package})"));
        }
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !Path::new(CNI_BIN_DIR).join(plugin).is_file() {
            missing.push(format!(
                "{CNI_BIN_DIR}/{plugin} (apt-get install containernetworking-plugins)"
            ));
        }
    }
    for image in ["pause.tar", "busybox.tar"] {
        if !images_dir().join(image).is_file() {
            missing.push(format!(
                "the test image {} (e2e/tools/install.sh builds it)",
                images_dir().join(image).display()
            ));
        }
    }
    if !Path::new("/sys/fs/cgroup/pids").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
    {
        missing.push("a cgroup filesystem at /sys/fs/cgroup".to_string());
    }
    if !std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay")) {
        missing.push("the kernel's overlay filesystem (containerd's snapshotter)".to_string());
    }
    missing
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Where `e2e/image.sh` writes the release image by default (`PALISADE_IMAGE` overrides).
pub fn default_image_archive() -> PathBuf {
    if let Some(path) = std::env::var_os("PALISADE_IMAGE") {
        return PathBuf::from(path);
    }
    let chart = std::fs::read_to_string(format!("{}/Chart.yaml", crate::chart::CHART_DIR))
        .unwrap_or_default();
    let version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    bin_dir()
        .parent()
        .map(|p| p.join("image").join(format!("palisade-{version}.tar")))
        .unwrap_or_default()
}

/// Where the test images are cached.
pub fn images_dir() -> PathBuf {
    bin_dir()
        .parent()
        .map(|p| p.join("images"))
        .unwrap_or_else(|| PathBuf::from("images"))
}

/// Which iptables a node's `iptables`, `iptables-save`, `iptables-restore` (and the ip6tables
/// ones) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iptables {
    Legacy,
    Nft,
}

impl Iptables {
    /// As Palisade's NodeEnforcement status names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Iptables::Legacy => "legacy",
            Iptables::Nft => "nft",
        }
    }

    /// The `iptables-save` of this backend, e.g. `iptables-legacy-save`.
    pub fn save(self) -> String {
        format!("iptables-{}-save", self.as_str())
    }

    /// The multi-call binary behind every command of this backend.
    fn multi(self) -> String {
        format!("xtables-{}-multi", self.as_str())
    }
}

/// kube-proxy's mode on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        }
    }
}

/// How node `index` (1-based) is set up: node-1 iptables-legacy with kube-proxy in iptables
/// mode, node-2 iptables-nft with kube-proxy in nftables mode, further nodes iptables-nft with
/// kube-proxy in iptables mode.
pub fn flavour(index: u8) -> (Iptables, ProxyMode) {
    match index {
        1 => (Iptables::Legacy, ProxyMode::Iptables),
        2 => (Iptables::Nft, ProxyMode::Nftables),
        _ => (Iptables::Nft, ProxyMode::Iptables),
    }
}

/// The commands a node's components find first on their PATH, all pointing at one backend.
const IPTABLES_COMMANDS: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

/// One real node.
pub struct RealNode {
    pub name: String,
    /// The node's address (its InternalIP).
    pub address: Ipv4Addr,
    /// The network namespace of the node (and of its hostNetwork pods).
    pub netns: String,
    /// The node's pod subnet.
    pub pod_cidr: String,
    /// The iptables the node's components use.
    pub iptables: Iptables,
    /// kube-proxy's mode.
    pub proxy_mode: ProxyMode,
    dir: PathBuf,
    cgroup: String,
    /// The process holding the node's mount namespace; everything else is entered through it.
    holder: Option<Child>,
    /// containerd, kubelet, kube-proxy, each with how it was started, to start it again.
    processes: std::sync::Mutex<Vec<Launched>>,
    /// Threads whose end kills the node's processes (PR_SET_PDEATHSIG), also if the test dies.
    keepers: std::sync::Mutex<Vec<Keeper>>,
}

/// Palisade's state in a node's kernel (see [`RealNode::palisade_rules`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRules {
    /// `<save command>: :PAL… ` lines: the chains, per backend and family.
    pub chains: Vec<String>,
    /// Rules in those chains.
    pub rules: usize,
    /// The rules themselves (`<save command>: -A PAL…`), to tell two states apart.
    pub rule_lines: Vec<String>,
    /// Palisade's ipsets.
    pub sets: Vec<String>,
    /// Every NFLOG rule (Palisade's denial and audit logging are the only ones on these nodes).
    pub nflog: Vec<String>,
}

impl NodeRules {
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.rules == 0 && self.sets.is_empty() && self.nflog.is_empty()
    }
}

/// What runs on each node, by the name [`RealNode::restart`] and [`Target`] take.
pub const NODE_COMPONENTS: [&str; 3] = ["containerd", "kubelet", "kube-proxy"];

/// Something of a real-node cluster that can be restarted or paused by name: a control-plane
/// component (`etcd`, `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`) or a
/// node's (`node-1/kubelet`, `node-1/containerd`, `node-1/kube-proxy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    ControlPlane(Component),
    Node { node: String, component: String },
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let known = || {
            let control: Vec<&str> = Component::ALL.iter().map(|c| c.name()).collect();
            format!(
                "{} or NODE/COMPONENT with COMPONENT one of {}",
                control.join(", "),
                NODE_COMPONENTS.join(", ")
            )
        };
        match s.split_once('/') {
            Some((node, component)) if NODE_COMPONENTS.contains(&component) && !node.is_empty() => {
                Ok(Target::Node {
                    node: node.to_string(),
                    component: component.to_string(),
                })
            }
            Some(_) => Err(format!("{s}: not a node's component; known: {}", known())),
            None => Component::named(s)
                .map(Target::ControlPlane)
                .ok_or_else(|| format!("{s}: unknown; known: {}", known())),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::ControlPlane(c) => f.write_str(c.name()),
            Target::Node { node, component } => write!(f, "{node}/{component}"),
        }
    }
}

impl RealNode {
    /// The node's containerd socket, as seen from the root namespace.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("run-containerd/containerd.sock")
    }

    /// A command run inside the node's network and mount namespaces, with the node's PATH
    /// (`iptables-save` is the node's backend's).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.env("PATH", self.path());
        c.args([
            "-t",
            &self.holder_pid().to_string(),
            "-m",
            "-n",
            "--",
            program,
        ]);
        c
    }

    /// The node's PATH: its own `iptables` commands first.
    fn path(&self) -> std::ffi::OsString {
        let host = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.dir.join("bin"))
            .chain(std::env::split_paths(&host))
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from));
        std::env::join_paths(dirs).unwrap_or(host)
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map_or(0, Child::id)
    }

    /// The host PID of a running container of the node (`containerID` of a pod's status, with
    /// or without its `containerd://`), from containerd's task list.
    pub fn task_pid(&self, container_id: &str) -> Result<u32, Error> {
        let id = container_id.trim_start_matches("containerd://");
        let listed = run(
            &format!("listing the containers of {}", self.name),
            Command::new("ctr")
                .arg("--address")
                .arg(self.containerd_socket())
                .args(["-n", "k8s.io", "tasks", "ls"]),
        )?;
        listed
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(id)).then(|| f.next()?.parse().ok())?
            })
            .ok_or_else(|| Error::Command {
                what: format!("the process of container {id} on {}", self.name),
                stderr: listed.clone(),
            })
    }

    /// The host PID of the node's `component` (one of [`NODE_COMPONENTS`]), while it runs.
    pub fn pid(&self, component: &str) -> Option<u32> {
        let processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        processes
            .iter()
            .find(|l| l.name() == component)
            .map(|l| l.child.id())
    }

    /// Stops the node's `component` (SIGTERM; SIGKILL after 10 s) and starts it again in the
    /// node's namespaces and cgroup with the same arguments, its log appended to; waits until
    /// it answers (containerd its socket, kubelet and kube-proxy their `/healthz`; at most
    /// 60 s). Containers keep running through a containerd restart: their shims are processes
    /// of their own.
    pub fn restart(&self, component: &str) -> Result<(), Error> {
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        let launched = processes
            .iter_mut()
            .find(|l| l.name() == component)
            .ok_or_else(|| Error::Command {
                what: format!("restarting {}/{component}", self.name),
                stderr: format!("no such component; known: {}", NODE_COMPONENTS.join(", ")),
            })?;
        let keeper = launched.restart(Duration::from_secs(10))?;
        let pid = launched.child.id();
        drop(processes);
        self.keepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(keeper);
        enter_cgroup(&format!("{}/system", self.cgroup), pid)?;
        self.wait_answering(component, Duration::from_secs(60))
    }

    /// Freezes the node's `component` (SIGSTOP) for `how_long`, then lets it go on (SIGCONT).
    pub fn pause(&self, component: &str, how_long: Duration) -> Result<(), Error> {
        let pid = self.pid(component).ok_or_else(|| Error::Command {
            what: format!("pausing {}/{component}", self.name),
            stderr: format!("no such component; known: {}", NODE_COMPONENTS.join(", ")),
        })?;
        crate::control_plane::pause_process(component, pid, how_long)
    }

    /// Waits until the node's `component` answers: containerd on its socket, kubelet and
    /// kube-proxy on their `/healthz` (from inside the node's network namespace).
    fn wait_answering(&self, component: &str, limit: Duration) -> Result<(), Error> {
        let healthz = match component {
            "kubelet" => Some("http://127.0.0.1:10248/healthz"),
            "kube-proxy" => Some("http://127.0.0.1:10256/healthz"),
            _ => None,
        };
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            let answer = match healthz {
                Some(url) => self.command("curl").args(["-sf", "-m", "2", url]).output(),
                None => Command::new("ctr")
                    .arg("--address")
                    .arg(self.containerd_socket())
                    .arg("version")
                    .output(),
            };
            match answer {
                Ok(o) if o.status.success() => return Ok(()),
                Ok(o) => last = crate::util::text(&o),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(Error::Command {
            what: format!("{}/{component} answering after a restart", self.name),
            stderr: format!(
                "not within {limit:?}: {last}\nlast lines of its log:\n{}",
                self.log_tail(component, 15)
            ),
        })
    }

    /// What Palisade has in the node's kernel now: its chains and the rules in them (both
    /// iptables backends, IPv4 and IPv6, every table), its ipsets, and every NFLOG rule.
    pub fn palisade_rules(&self) -> Result<NodeRules, Error> {
        let mut found = NodeRules::default();
        for save in [
            "iptables-legacy-save",
            "iptables-nft-save",
            "ip6tables-legacy-save",
            "ip6tables-nft-save",
        ] {
            // A family or backend this kernel lacks fails and holds nothing.
            let dump = self
                .command(save)
                .output()
                .map_err(io(format!("running {save} on {}", self.name)))?;
            for line in String::from_utf8_lossy(&dump.stdout).lines() {
                if line.starts_with(":PAL") {
                    found.chains.push(format!("{save}: {line}"));
                } else if line.starts_with("-A PAL") {
                    found.rules += 1;
                    found.rule_lines.push(format!("{save}: {line}"));
                }
                if line.contains("-j NFLOG") {
                    found.nflog.push(format!("{save}: {line}"));
                }
            }
        }
        let sets = run(
            &format!("ipset list -name on {}", self.name),
            self.command("ipset").args(["list", "-name"]),
        )?;
        found.sets = sets
            .lines()
            .filter(|l| l.starts_with("PAL"))
            .map(String::from)
            .collect();
        Ok(found)
    }

    /// The host PIDs of the node's processes (its cgroup tree: containers included) whose
    /// command name (`/proc/PID/comm`, at most 15 characters) starts with `prefix`.
    pub fn processes_named(&self, prefix: &str) -> Vec<u32> {
        let tree = format!("/{}/", self.cgroup);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            if cgroup.contains(&tree) {
                found.push(pid);
            }
        }
        found
    }

    /// The last `lines` lines of one of the node's logs (kubelet, containerd, kube-proxy).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A control plane and two (or more) real nodes; dropping it removes everything it made.
pub struct RealCluster {
    // Field order is drop order: nodes, then the network they sit in, then the control plane.
    nodes: Vec<RealNode>,
    guard: Option<RootGuard>,
    pub net: Network,
    pub cp: ControlPlane,
    /// Last: the machine's settings are put back once the nodes are gone.
    _machine: MachineClaim,
}

/// Real-node cluster `k`'s use of the machine's settings ([`crate::machine::claim`]), released
/// when dropped.
struct MachineClaim(u8);

impl Drop for MachineClaim {
    fn drop(&mut self) {
        crate::machine::release(self.0);
    }
}

/// The root-namespace chain that keeps node and pod traffic on this machine.
struct RootGuard {
    chain: String,
    sources: String,
}

impl RootGuard {
    fn install(k: u8) -> Result<Self, Error> {
        let guard = Self {
            chain: format!("PALISADE-E2E-{k}"),
            sources: format!("172.{}.0.0/16,10.{}.0.0/16", 16 + k, 100 + k),
        };
        guard.remove();
        iptables(&["-N", &guard.chain])?;
        for local in [
            format!("172.{}.0.0/16", 16 + k),
            format!("10.{}.0.0/16", 100 + k),
        ] {
            iptables(&["-A", &guard.chain, "-d", &local, "-j", "RETURN"])?;
        }
        iptables(&["-A", &guard.chain, "-j", "DROP"])?;
        iptables(&[
            "-I",
            "FORWARD",
            "1",
            "-s",
            &guard.sources,
            "-j",
            &guard.chain,
        ])?;
        Ok(guard)
    }

    fn remove(&self) {
        while iptables(&["-D", "FORWARD", "-s", &self.sources, "-j", &self.chain]).is_ok() {}
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

fn iptables(args: &[&str]) -> Result<(), Error> {
    run(
        "iptables",
        Command::new("iptables").args(["-w", "5"]).args(args),
    )
    .map(|_| ())
}

fn run(what: &str, cmd: &mut Command) -> Result<String, Error> {
    let out = cmd.output().map_err(|source| Error::Io {
        what: what.to_string(),
        source,
    })?;
    crate::util::succeeded(what, out)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// The cgroup hierarchies of this machine (v1: one directory per controller; v2: one).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").is_file() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").is_file() && !p.is_symlink())
        .collect()
}

/// Kills every process in the cgroup tree `name` (all hierarchies) and removes the tree,
/// deepest first. Bounded: gives up after a few seconds and leaves what still resists.
fn remove_cgroup_tree(name: &str) {
    let start = Instant::now();
    loop {
        let mut alive = 0;
        for h in cgroup_hierarchies() {
            for dir in cgroup_dirs(&h.join(name)) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    alive += 1;
                    // A process of the node's own cgroup tree.
                    crate::util::signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        if alive == 0 || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for h in cgroup_hierarchies() {
        let mut dirs = cgroup_dirs(&h.join(name));
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            for _ in 0..20 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// `dir` and every cgroup below it.
fn cgroup_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if !d.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out
}

/// Moves process `pid` into the cgroup `name` of every hierarchy, creating it.
fn enter_cgroup(name: &str, pid: u32) -> Result<(), Error> {
    for h in cgroup_hierarchies() {
        let dir = h.join(name);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        // cpuset cgroups start with no CPUs or memory nodes: each level inherits its parent's.
        let mut level = h.clone();
        for part in Path::new(name).components() {
            let parent = level.clone();
            level.push(part);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if level.join(file).is_file() {
                    let value = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                    let _ = std::fs::write(level.join(file), value.trim());
                }
            }
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(io(format!("moving {pid} into {}", dir.display())))?;
    }
    Ok(())
}

/// Removes what a real-node run with network id `k` left: every process of its nodes' cgroup
/// trees and the trees, and the root guard chain. (The kernel settings its kubelets changed are
/// put back by the next cluster's [`crate::machine::claim`].)
fn sweep(k: u8) {
    let prefix = format!("palisade-{k}-");
    for h in cgroup_hierarchies() {
        for e in std::fs::read_dir(&h).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                remove_cgroup_tree(&name);
            }
        }
    }
    RootGuard {
        chain: format!("PALISADE-E2E-{k}"),
        sources: format!("172.{}.0.0/16,10.{}.0.0/16", 16 + k, 100 + k),
    }
    .remove();
}

/// Real-node clusters of this process: network id and control-plane directory.
fn active() -> std::sync::MutexGuard<'static, Vec<(u8, PathBuf)>> {
    static ACTIVE: std::sync::Mutex<Vec<(u8, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// For a process that is being interrupted (Ctrl-C) and will exit without unwinding: removes
/// everything its real-node clusters made (nodes, namespaces, links, guard chain, kernel
/// settings, directories). The control-plane processes die with the process.
pub fn abandon_all() {
    let clusters: Vec<(u8, PathBuf)> = active().drain(..).collect();
    for (k, dir) in clusters {
        sweep(k);
        crate::network::sweep(k);
        crate::machine::release(k);
        let _ = std::fs::remove_file(format!("/run/palisade-e2e/net-{k}.pid"));
        crate::control_plane::kill_processes_of(&dir);
        for _ in 0..20 {
            if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Node names of the cluster `palisade-e2e up --real-nodes` and the tests start.
pub const NODES: [&str; 2] = ["node-1", "node-2"];

/// For a test: the real nodes [`NODES`] with the release image (`PALISADE_IMAGE`, or where
/// `e2e/image.sh` writes it) imported; `None`, after one line saying what is missing, where this
/// machine cannot run them. Panics when they fail to start.
pub fn cluster_for_tests() -> Option<RealCluster> {
    let mut lacks = missing();
    let image = default_image_archive();
    if !image.is_file() {
        lacks.push(format!(
            "the release image {} (./e2e/image.sh)",
            image.display()
        ));
    }
    if !lacks.is_empty() {
        eprintln!(
            "real-node tier skipped: this machine lacks {}",
            lacks.join(", ")
        );
        return None;
    }
    let start = Instant::now();
    let cluster = RealCluster::start(&NODES, &mut |step| {
        eprintln!("[real nodes {:>3}s] {step}", start.elapsed().as_secs())
    })
    .unwrap_or_else(|e| panic!("starting real nodes: {e}"));
    cluster
        .import_image(&image)
        .unwrap_or_else(|e| panic!("importing the release image: {e}"));
    eprintln!(
        "[real nodes {:>3}s] up, {} imported",
        start.elapsed().as_secs(),
        image.display()
    );
    Some(cluster)
}

impl RealCluster {
    /// Starts the control plane and real nodes named `nodes`, imports the test images into
    /// every node, and waits until each node is Ready. `progress` hears each step.
    pub fn start(nodes: &[&str], progress: &mut dyn FnMut(&str)) -> Result<Self, Error> {
        let missing = missing();
        if !missing.is_empty() {
            return Err(Error::Command {
                what: "real nodes".into(),
                stderr: format!("this machine lacks: {}", missing.join(", ")),
            });
        }
        let net = Network::create(nodes)?;
        let k = net.id;
        // What a crashed run with this network id left: its cgroups and its guard chain.
        sweep(k);
        let targets: Vec<&str> = NODE_MOUNTS.iter().map(|(_, target)| *target).collect();
        crate::machine::claim(k, &KUBELET_SYSCTLS, &targets)?;
        let machine = MachineClaim(k);
        let guard = RootGuard::install(k)?;
        progress("control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler");
        let advertise = net.nodes().first().map(|n| n.gateway);
        let cp = ControlPlane::start_with(&Options {
            advertise,
            real_nodes: true,
        })?;
        active().push((k, cp.dir().to_path_buf()));
        let mut cluster = Self {
            nodes: Vec::new(),
            guard: Some(guard),
            net,
            cp,
            _machine: machine,
        };
        for i in 0..cluster.net.nodes().len() {
            let name = cluster.net.nodes()[i].name.clone();
            progress(&format!("{name}: containerd, kubelet, kube-proxy"));
            let node = cluster.start_node(i)?;
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            for image in ["pause.tar", "busybox.tar"] {
                import_image(node, &images_dir().join(image))?;
            }
        }
        progress("waiting for the nodes to be Ready");
        for node in &cluster.nodes {
            cluster.wait_node_ready(node, Duration::from_secs(120))?;
        }
        // Pods need their namespace's `default` ServiceAccount, made by the controller-manager.
        cluster.wait_for(
            Duration::from_secs(60),
            "the default ServiceAccount",
            || {
                cluster
                    .cp
                    .kubectl_ok(&["get", "serviceaccount", "default", "-n", "default"])
                    .is_ok()
            },
        )?;
        Ok(cluster)
    }

    pub fn nodes(&self) -> &[RealNode] {
        &self.nodes
    }

    /// Restarts `target` with the same arguments (see [`ControlPlane::restart`] and
    /// [`RealNode::restart`]) and waits until it answers again.
    pub fn restart(&self, target: &Target) -> Result<(), Error> {
        match target {
            Target::ControlPlane(c) => self.cp.restart(*c),
            Target::Node { node, component } => self.node_or_err(node)?.restart(component),
        }
    }

    /// Freezes `target` (SIGSTOP) for `how_long`, then lets it go on (SIGCONT); for a
    /// control-plane component, waits until the apiserver is ready again.
    pub fn pause(&self, target: &Target, how_long: Duration) -> Result<(), Error> {
        match target {
            Target::ControlPlane(c) => self.cp.pause(*c, how_long),
            Target::Node { node, component } => self.node_or_err(node)?.pause(component, how_long),
        }
    }

    /// The node `name`, or an error naming the nodes there are.
    pub fn node_or_err(&self, name: &str) -> Result<&RealNode, Error> {
        self.node(name).ok_or_else(|| Error::Command {
            what: format!("node {name}"),
            stderr: format!(
                "no such node; nodes: {}",
                self.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    pub fn node(&self, name: &str) -> Option<&RealNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Imports a docker-archive image (e.g. the one `e2e/image.sh` builds) into every node.
    pub fn import_image(&self, archive: &Path) -> Result<(), Error> {
        for node in &self.nodes {
            import_image(node, archive)?;
        }
        Ok(())
    }

    fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(Error::Command {
            what: format!("waiting for {what}"),
            stderr: format!("not there after {limit:?}"),
        })
    }

    fn wait_node_ready(&self, node: &RealNode, limit: Duration) -> Result<(), Error> {
        let ready = || {
            self.cp
                .kubectl_ok(&[
                    "get",
                    "node",
                    &node.name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .is_ok_and(|s| s.trim() == "True")
        };
        self.wait_for(limit, &format!("node {} to be Ready", node.name), ready)
            .map_err(|_| Error::Command {
                what: format!("node {} did not become Ready within {limit:?}", node.name),
                stderr: format!(
                    "last lines of its kubelet log:\n{}\nlast lines of its containerd log:\n{}",
                    node.log_tail("kubelet", 15),
                    node.log_tail("containerd", 15)
                ),
            })
    }

    fn start_node(&self, i: usize) -> Result<RealNode, Error> {
        let k = self.net.id;
        let n = &self.net.nodes()[i];
        let index = n.index;
        let dir = self.cp.dir().join("nodes").join(&n.name);
        for (sub, _) in NODE_MOUNTS {
            std::fs::create_dir_all(dir.join(sub)).map_err(io("creating a node directory"))?;
        }
        for sub in ["containerd", "pki", "volume-plugins", "opt"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io("creating a node directory"))?;
        }
        link_cni_plugins(&dir.join("cni-bin"))?;
        let pod_cidr = format!("10.{}.{index}.0/24", 100 + k);
        let cgroup = format!("palisade-{k}-{}", n.name);
        let (iptables, proxy_mode) = flavour(index);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).map_err(io("creating a node directory"))?;
        let multi = which(&iptables.multi()).ok_or_else(|| Error::Command {
            what: format!("{}: iptables for the node", n.name),
            stderr: format!("{} not found (apt-get install iptables)", iptables.multi()),
        })?;
        for command in IPTABLES_COMMANDS {
            let link = bin.join(command);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&multi, &link)
                .map_err(io(format!("linking {}", link.display())))?;
        }
        let mut node = RealNode {
            name: n.name.clone(),
            address: n.address,
            netns: n.netns.name.clone(),
            pod_cidr: pod_cidr.clone(),
            iptables,
            proxy_mode,
            dir: dir.clone(),
            cgroup: cgroup.clone(),
            holder: None,
            processes: std::sync::Mutex::new(Vec::new()),
            keepers: std::sync::Mutex::new(Vec::new()),
        };
        self.write_node_config(&node, k, index, &n.gateway)?;

        // The holder: a mount namespace in the node's network namespace with the node's own
        // directories bound over the well-known paths, kept alive by `sleep`.
        let mut binds = String::new();
        for (sub, target) in NODE_MOUNTS {
            binds.push_str(&format!(
                "mkdir -p {target} && mount --bind {} {target} && ",
                dir.join(sub).display()
            ));
        }
        let mut holder = Command::new("nsenter");
        holder
            .arg(format!("--net=/run/netns/{}", node.netns))
            .args(["--", "unshare", "-m", "--propagation", "slave", "--"])
            .args(["sh", "-c", &format!("{binds}exec sleep infinity")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "holder")?);
        let (mut started, keeper) = spawn_tied(vec![holder])?;
        node.keepers
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(keeper);
        let holder = started.pop().ok_or_else(|| Error::Command {
            what: "starting the node's mount namespace".into(),
            stderr: "nothing started".into(),
        })?;
        enter_cgroup(&format!("{cgroup}/system"), holder.id())?;
        node.holder = Some(holder);
        // The binds are in place once the holder is sleeping.
        let bound = dir.join("run-containerd");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", node.holder_pid()))
                .unwrap_or_default();
            if cmdline.starts_with("sleep") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !bound.is_dir() {
            return Err(Error::Command {
                what: format!("{}: mount namespace", node.name),
                stderr: std::fs::read_to_string(dir.join("holder.log")).unwrap_or_default(),
            });
        }

        let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
        node_process(&node, "containerd", &["--config", &d("containerd.toml")])?;
        let socket = node.containerd_socket();
        let start = Instant::now();
        while !socket.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !socket.exists() {
            return Err(Error::Command {
                what: format!("{}: containerd did not start", node.name),
                stderr: node.log_tail("containerd", 15),
            });
        }
        let kubelet = tool("kubelet")?;
        let (name, address) = (node.name.clone(), node.address.to_string());
        node_process(
            &node,
            &kubelet.to_string_lossy(),
            &[
                "--config",
                &d("kubelet.yaml"),
                "--kubeconfig",
                &d("kubelet.kubeconfig"),
                "--hostname-override",
                &name,
                "--node-ip",
                &address,
                "--root-dir",
                "/var/lib/kubelet",
                "--cert-dir",
                &d("pki"),
                "--volume-plugin-dir",
                &d("volume-plugins"),
            ],
        )?;
        let proxy = tool("kube-proxy")?;
        node_process(
            &node,
            &proxy.to_string_lossy(),
            &["--config", &d("kube-proxy.yaml")],
        )?;
        Ok(node)
    }

    fn write_node_config(
        &self,
        node: &RealNode,
        k: u8,
        index: u8,
        gateway: &Ipv4Addr,
    ) -> Result<(), Error> {
        let dir = &node.dir;
        let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let apiserver: IpAddr = (*gateway).into();
        // Each component with a client certificate of its own identity, as on real nodes.
        let identity = |name: String, subject: &str| -> Result<PathBuf, Error> {
            let (crt, key) = self.cp.issue_client_certificate(&name, subject)?;
            self.cp
                .kubeconfig_with_certificate(apiserver, &name, (&crt, &key))
        };
        let kubelet_kubeconfig = identity(
            format!("kubelet-{}", node.name),
            &format!("/O=system:nodes/CN=system:node:{}", node.name),
        )?;
        std::fs::copy(&kubelet_kubeconfig, dir.join("kubelet.kubeconfig"))
            .map_err(io("copying the kubelet kubeconfig"))?;
        let proxy_kubeconfig =
            identity(format!("kube-proxy-{}", node.name), "/CN=system:kube-proxy")?;
        write(
            &dir.join("resolv.conf"),
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n",
        )?;
        write(
            &dir.join("containerd.toml"),
            &format!(
                r#"version = 2
root = "{root}"
state = "/run/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine's capability bounding set lacks CAP_SYS_RESOURCE: oom_score_adj cannot go down.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{NODE_CNI_BIN_DIR}"
    conf_dir = "/etc/cni/net.d"
"#,
                root = d("containerd"),
                opt = d("opt"),
            ),
        )?;
        // The bridge plugin, like flannel, connects pods and enforces no NetworkPolicy.
        write(
            &dir.join("cni-conf/10-bridge.conflist"),
            &format!(
                r#"{{"cniVersion": "0.4.0", "name": "palisade-e2e", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.{p}.{index}.0/24", "rangeStart": "10.{p}.{index}.10", "gateway": "10.{p}.{index}.1"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}
"#,
                p = 100 + k
            ),
        )?;
        write(
            &dir.join("kubelet.yaml"),
            &format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: {address}
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: AlwaysAllow}}
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
resolvConf: "{resolv}"
evictionHard: {{memory.available: "1%", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
maxPods: 150
"#,
                cgroup = node.cgroup,
                address = node.address,
                ca = self.cp.ca_file().display(),
                resolv = d("resolv.conf"),
            ),
        )?;
        write(
            &dir.join("kube-proxy.yaml"),
            &format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: "{kubeconfig}"}}
hostnameOverride: {name}
mode: {mode}
clusterCIDR: 10.{p}.0.0/16
bindAddress: {address}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [{address}/32]
iptables: {{localhostNodePorts: false}}
# Zeros: kube-proxy leaves the machine-wide conntrack settings alone.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
                kubeconfig = proxy_kubeconfig.display(),
                name = node.name,
                mode = node.proxy_mode.as_str(),
                p = 100 + k,
                address = node.address,
            ),
        )?;
        Ok(())
    }
}

/// Links to each of Debian's CNI plugins in `dir` (the node's CNI bin directory).
fn link_cni_plugins(dir: &Path) -> Result<(), Error> {
    let plugins = std::fs::read_dir(CNI_BIN_DIR).map_err(io(format!("reading {CNI_BIN_DIR}")))?;
    for plugin in plugins.filter_map(Result::ok) {
        let link = dir.join(plugin.file_name());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(plugin.path(), &link)
            .map_err(io(format!("linking {}", link.display())))?;
    }
    Ok(())
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, Error> {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .map_err(io(format!("creating {name}.log")))
}

/// Starts `program` inside the node's namespaces and cgroup, logging to `<name>.log`.
fn node_process(node: &RealNode, program: &str, args: &[&str]) -> Result<(), Error> {
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = node.command(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(&node.dir, &name)?);
    let how = Described::new(&name, &cmd, node.dir.join(format!("{name}.log")));
    let (mut started, keeper) = spawn_tied(vec![cmd])?;
    node.keepers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(keeper);
    let child = started.pop().ok_or_else(|| Error::Command {
        what: format!("starting {name} on {}", node.name),
        stderr: "nothing started".into(),
    })?;
    let pid = child.id();
    node.processes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(how.with(child));
    enter_cgroup(&format!("{}/system", node.cgroup), pid)
}

fn import_image(node: &RealNode, archive: &Path) -> Result<(), Error> {
    run(
        &format!("importing {} into {}", archive.display(), node.name),
        Command::new("ctr")
            .arg("--address")
            .arg(node.containerd_socket())
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive),
    )
    .map(|_| ())
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        // Killing each node's cgroup tree stops containerd, its shims, kubelet, kube-proxy and
        // every container at once; their mounts go with the node's mount namespace.
        for node in &mut self.nodes {
            let processes = node.processes.get_mut().unwrap_or_else(|e| e.into_inner());
            for p in processes
                .iter_mut()
                .map(|l| &mut l.child)
                .chain(node.holder.as_mut())
            {
                let _ = p.kill();
            }
            remove_cgroup_tree(&node.cgroup);
            for p in processes
                .iter_mut()
                .map(|l| &mut l.child)
                .chain(node.holder.as_mut())
            {
                let _ = p.wait();
            }
            node.keepers
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        self.nodes.clear();
        self.guard.take();
        let k = self.net.id;
        active().retain(|(id, _)| *id != k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_as_the_cli_takes_them() {
        assert_eq!(
            "etcd".parse::<Target>(),
            Ok(Target::ControlPlane(Component::Etcd))
        );
        assert_eq!(
            "node-2/containerd".parse::<Target>(),
            Ok(Target::Node {
                node: "node-2".into(),
                component: "containerd".into()
            })
        );
        assert_eq!(
            "node-1/kubelet".parse::<Target>().map(|t| t.to_string()),
            Ok("node-1/kubelet".to_string())
        );
        for wrong in ["etc", "node-1/etcd", "/kubelet", "node-1/"] {
            let e = wrong.parse::<Target>().expect_err(wrong);
            assert!(e.contains("kube-apiserver") && e.contains("kubelet"), "{e}");
        }
    }
}
