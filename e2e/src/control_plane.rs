//! etcd + kube-apiserver on loopback, on free ports, in a temporary directory. Dropping the
//! handle stops both processes and removes the directory, also when a test panics.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{SigSet, Signal};

use crate::tools::tool;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{name} not found at {path}: run e2e/tools/install.sh (or ./e2e/test.sh) first")]
    MissingTool { name: String, path: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Command { what: String, stderr: String },
    #[error("the apiserver was not ready within {0:?}; its log: {1}")]
    NotReady(Duration, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// How the local control plane is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The address the apiserver advertises: the `kubernetes` Service's endpoint, which pods on
    /// real nodes reach. Loopback when `None`.
    pub advertise: Option<std::net::Ipv4Addr>,
    /// A cluster for real nodes: kube-controller-manager and kube-scheduler run too, pods get
    /// ServiceAccount tokens, and the apiserver reaches kubelets and webhooks by pod and node IP.
    pub real_nodes: bool,
}

pub struct ControlPlane {
    /// Started here (and stopped on drop), or an existing cluster given by kubeconfig.
    local: bool,
    port: u16,
    dir: PathBuf,
    /// etcd, the apiserver, then (real nodes) the controller-manager and the scheduler, each
    /// with how it was started, to start it again.
    processes: Mutex<Vec<Launched>>,
    keepers: Mutex<Vec<Keeper>>,
    pub server: String,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
}

/// The Service ClusterIP range; `kubernetes` is 10.96.0.1.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading a free port"))?.port())
}

fn run(what: &str, cmd: &mut Command) -> Result<Output, Error> {
    let out = cmd.output().map_err(io(what))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            what: what.into(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), Error> {
    run(
        &format!("openssl {}", args.join(" ")),
        Command::new("openssl").current_dir(dir).args(args),
    )
    .map(|_| ())
}

/// A CA, the apiserver's serving certificate (also valid for `extra_ips`), an admin client
/// certificate (system:masters) and the service-account signing key.
fn make_certificates(dir: &Path, extra_ips: &[std::net::Ipv4Addr]) -> Result<(), Error> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=palisade-e2e-ca",
        ],
    )?;
    let extra: String = extra_ips.iter().map(|ip| format!(",IP:{ip}")).collect();
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:127.0.0.1,IP:10.96.0.1{extra},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n"),
    )
    .map_err(io("writing server.ext"))?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
        .map_err(io("writing client.ext"))?;
    for (name, subject, ext) in [
        ("server", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=e2e-admin", "client.ext"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        )?;
    }
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits for `/readyz`.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(&Options::default())
    }

    /// Starts the control plane as `options` say and waits until the apiserver is ready.
    pub fn start_with(options: &Options) -> Result<Self, Error> {
        sweep_leftovers();
        let (etcd_bin, apiserver_bin, kubectl) =
            (tool("etcd")?, tool("kube-apiserver")?, tool("kubectl")?);
        let dir = std::env::temp_dir().join(format!(
            "palisade-e2e-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir).map_err(io("creating the control plane directory"))?;
        make_certificates(&dir, options.advertise.as_slice())?;
        let log = |name: &str| {
            std::fs::File::create(dir.join(name)).map_err(io(format!("creating {name}")))
        };

        let (client, peer, secure) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        let mut etcd = Command::new(etcd_bin);
        etcd.args(["--data-dir", &dir.join("etcd").to_string_lossy()])
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(log("etcd.log")?);
        let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let mut apiserver = Command::new(apiserver_bin);
        apiserver
            .args([
                "--etcd-servers",
                &etcd_url,
                // All addresses: the nodes' network namespaces reach it through their gateway.
                // The port is random and every request needs a client certificate or token.
                "--bind-address",
                "0.0.0.0",
                "--advertise-address",
                &options
                    .advertise
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST)
                    .to_string(),
            ])
            .args(["--secure-port", &secure.to_string()])
            .args([
                "--tls-cert-file",
                &d("server.crt"),
                "--tls-private-key-file",
                &d("server.key"),
            ])
            .args([
                "--client-ca-file",
                &d("ca.crt"),
                "--authorization-mode",
                "Node,RBAC",
            ])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args([
                "--service-account-key-file",
                &d("sa.pub"),
                "--service-account-signing-key-file",
                &d("sa.key"),
            ])
            .args(["--service-cluster-ip-range", SERVICE_CIDR])
            .stdout(Stdio::null())
            .stderr(log("apiserver.log")?);
        if options.real_nodes {
            apiserver
                .args(["--enable-admission-plugins", "NodeRestriction"])
                // kubectl logs/exec reach kubelets by node IP (never through a DNS lookup of
                // the node's name), and webhooks and aggregated APIs by endpoint pod IP: the
                // root namespace runs no kube-proxy.
                .args(["--kubelet-preferred-address-types", "InternalIP"])
                .args(["--enable-aggregator-routing=true"])
                .args([
                    "--kubelet-client-certificate",
                    &d("admin.crt"),
                    "--kubelet-client-key",
                    &d("admin.key"),
                ]);
        } else {
            // No controller-manager creates `default` ServiceAccounts and no kubelet mounts
            // their tokens, so the plugin that insists on them would refuse every pod.
            apiserver.args(["--disable-admission-plugins", "ServiceAccount"]);
        }
        let launched = [
            Described::new(Component::Etcd.name(), &etcd, dir.join("etcd.log")),
            Described::new(
                Component::Apiserver.name(),
                &apiserver,
                dir.join("apiserver.log"),
            ),
        ];
        let (children, keeper) = spawn_tied(vec![etcd, apiserver])?;
        let processes = launched
            .into_iter()
            .zip(children)
            .map(|(l, child)| l.with(child))
            .collect();
        let server = format!("https://127.0.0.1:{secure}");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: e2e, cluster: {{server: \"{server}\", certificate-authority: \"{}\"}}}}]\n\
                 users: [{{name: admin, user: {{client-certificate: \"{}\", client-key: \"{}\"}}}}]\n\
                 contexts: [{{name: e2e, context: {{cluster: e2e, user: admin}}}}]\ncurrent-context: e2e\n",
                d("ca.crt"),
                d("admin.crt"),
                d("admin.key")
            ),
        )
        .map_err(io("writing the kubeconfig"))?;
        let port = secure;
        let cp = Self {
            local: true,
            port,
            dir,
            processes: Mutex::new(processes),
            keepers: Mutex::new(vec![keeper]),
            server,
            kubeconfig,
            kubectl,
        };
        cp.wait_ready(Duration::from_secs(90))?;
        if options.real_nodes {
            cp.start_controllers()?;
        }
        Ok(cp)
    }

    /// kube-controller-manager (Deployments, DaemonSets, Jobs, garbage collection, namespaces,
    /// ServiceAccounts and their tokens) and kube-scheduler, both as the admin, on loopback.
    fn start_controllers(&self) -> Result<(), Error> {
        let (kcm_bin, scheduler_bin) = (tool("kube-controller-manager")?, tool("kube-scheduler")?);
        let d = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        let log = |name: &str| {
            std::fs::File::create(self.dir.join(name)).map_err(io(format!("creating {name}")))
        };
        let kubeconfig = self.kubeconfig.to_string_lossy().into_owned();
        let mut kcm = Command::new(kcm_bin);
        kcm.args(["--kubeconfig", &kubeconfig, "--leader-elect=false"])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &free_port()?.to_string(),
            ])
            .args(["--cert-dir", &d("kcm-certs")])
            .args(["--service-account-private-key-file", &d("sa.key")])
            .args(["--root-ca-file", &d("ca.crt")])
            .args(["--service-cluster-ip-range", SERVICE_CIDR])
            .args(["--cluster-signing-cert-file", &d("ca.crt")])
            .args(["--cluster-signing-key-file", &d("ca.key")])
            // Dead pods and finished Jobs go quickly, and a Node that stops reporting is noticed.
            .args(["--terminated-pod-gc-threshold", "50"])
            .stdout(Stdio::null())
            .stderr(log("kube-controller-manager.log")?);
        let mut scheduler = Command::new(scheduler_bin);
        scheduler
            .args(["--kubeconfig", &kubeconfig, "--leader-elect=false"])
            .args(["--authentication-kubeconfig", &kubeconfig])
            .args(["--authorization-kubeconfig", &kubeconfig])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &free_port()?.to_string(),
            ])
            .args(["--cert-dir", &d("scheduler-certs")])
            .stdout(Stdio::null())
            .stderr(log("kube-scheduler.log")?);
        let launched = [
            Described::new(
                Component::ControllerManager.name(),
                &kcm,
                self.dir.join("kube-controller-manager.log"),
            ),
            Described::new(
                Component::Scheduler.name(),
                &scheduler,
                self.dir.join("kube-scheduler.log"),
            ),
        ];
        let (started, keeper) = spawn_tied(vec![kcm, scheduler])?;
        self.processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(launched.into_iter().zip(started).map(|(l, c)| l.with(c)));
        self.keepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(keeper);
        Ok(())
    }

    /// The directory holding the control plane's certificates, kubeconfigs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the apiserver and starts it again on the same port and etcd (what clients see
    /// during a control-plane upgrade or crash), then waits until it is ready.
    pub fn restart_apiserver(&self) -> Result<(), Error> {
        self.restart_within(Component::Apiserver, Duration::ZERO)
    }

    /// Stops `component` (SIGTERM, SIGKILL after 10 s) and starts it again with the same
    /// arguments, its log appended to; for etcd and the apiserver, waits until the apiserver is
    /// ready again (at most 90 s).
    pub fn restart(&self, component: Component) -> Result<(), Error> {
        self.restart_within(component, Duration::from_secs(10))
    }

    /// Stops `component` (SIGTERM, SIGKILL after `grace`; at once when it is zero) and starts it
    /// again as [`Self::restart`] does.
    pub fn restart_within(&self, component: Component, grace: Duration) -> Result<(), Error> {
        self.local_only(&format!("restarting {}", component.name()))?;
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        let launched = processes
            .iter_mut()
            .find(|l| l.name() == component.name())
            .ok_or_else(|| not_running(component.name()))?;
        let keeper = launched.restart(grace)?;
        drop(processes);
        self.keepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(keeper);
        match component {
            Component::Etcd | Component::Apiserver => self.wait_ready(Duration::from_secs(90)),
            Component::ControllerManager | Component::Scheduler => Ok(()),
        }
    }

    /// The host PID of `component`, while it runs.
    pub fn pid(&self, component: Component) -> Option<u32> {
        let processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        processes
            .iter()
            .find(|l| l.name() == component.name())
            .map(|l| l.child.id())
    }

    /// Freezes `component` (SIGSTOP) for `how_long`, then lets it go on (SIGCONT): what clients
    /// see when etcd stalls on a slow disk, or a process is descheduled. Waits until the
    /// apiserver is ready again (at most 90 s).
    pub fn pause(&self, component: Component, how_long: Duration) -> Result<(), Error> {
        self.local_only(&format!("pausing {}", component.name()))?;
        let pid = self
            .pid(component)
            .ok_or_else(|| not_running(component.name()))?;
        pause_process(component.name(), pid, how_long)?;
        self.wait_ready(Duration::from_secs(90))
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), Error> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self
                .kubectl(&["get", "--raw", "/readyz"])
                .is_ok_and(|out| out.status.success())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        Err(Error::NotReady(limit, tail))
    }

    /// A kubeconfig reaching the apiserver at `address` (e.g. a node's gateway, from inside the
    /// node's namespace), authenticated with `token`, or as the admin when `None`. The serving
    /// certificate is checked against the name `kubernetes` whatever the address.
    pub fn kubeconfig_at(
        &self,
        address: std::net::IpAddr,
        token: Option<&str>,
    ) -> Result<PathBuf, Error> {
        self.local_only("a kubeconfig for a node")?;
        let d = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        let user = match token {
            Some(t) => format!("{{token: \"{t}\"}}"),
            None => format!(
                "{{client-certificate: \"{}\", client-key: \"{}\"}}",
                d("admin.crt"),
                d("admin.key")
            ),
        };
        // One file per (address, identity): tokens of different accounts must not share one.
        let who = token.map_or_else(
            || "admin".to_string(),
            |t| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                t.hash(&mut h);
                format!("token-{:016x}", h.finish())
            },
        );
        let path = self.dir.join(format!("kubeconfig-{address}-{who}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: e2e, cluster: {{server: \"https://{address}:{}\", certificate-authority: \"{}\", tls-server-name: kubernetes}}}}]\n\
                 users: [{{name: u, user: {user}}}]\ncontexts: [{{name: e2e, context: {{cluster: e2e, user: u}}}}]\ncurrent-context: e2e\n",
                self.port,
                d("ca.crt")
            ),
        )
        .map_err(io("writing a kubeconfig"))?;
        Ok(path)
    }

    /// A kubeconfig reaching the apiserver at `address` as the holder of a client certificate
    /// (see `issue_client_certificate`), e.g. a kubelet from inside its node's namespace.
    pub fn kubeconfig_with_certificate(
        &self,
        address: std::net::IpAddr,
        name: &str,
        (crt, key): (&Path, &Path),
    ) -> Result<PathBuf, Error> {
        self.local_only("a kubeconfig for a certificate")?;
        let path = self.dir.join(format!("kubeconfig-{address}-{name}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: e2e, cluster: {{server: \"https://{address}:{}\", certificate-authority: \"{}\", tls-server-name: kubernetes}}}}]\n\
                 users: [{{name: u, user: {{client-certificate: \"{}\", client-key: \"{}\"}}}}]\ncontexts: [{{name: e2e, context: {{cluster: e2e, user: u}}}}]\ncurrent-context: e2e\n",
                self.port,
                self.ca_file().display(),
                crt.display(),
                key.display()
            ),
        )
        .map_err(io("writing a kubeconfig"))?;
        Ok(path)
    }

    /// The kubectl binary the harness uses.
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// The cluster CA, PEM, for a webhook configuration's `caBundle` (base64 of this).
    /// Whether this control plane was started here (its CA key and processes are ours).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// For a test that needs the control plane started here: `self`, or `None` after saying on
    /// stderr that the test is skipped and `why` (`PALISADE_E2E_KUBECONFIG` names an existing
    /// cluster). `let Some(cp) = cp.local_for("why") else { return };`
    pub fn local_for(&self, why: &str) -> Option<&Self> {
        if self.local {
            Some(self)
        } else {
            eprintln!("skipped: {why}");
            None
        }
    }

    fn local_only(&self, what: &str) -> Result<(), Error> {
        if self.local {
            Ok(())
        } else {
            Err(Error::Command { what: what.into(), stderr: "needs the local control plane (PALISADE_E2E_KUBECONFIG names an existing cluster)".into() })
        }
    }

    /// An existing cluster, reached through `kubeconfig`; nothing is started or stopped.
    pub fn external(kubeconfig: PathBuf) -> Result<Self, Error> {
        let kubectl = tool("kubectl")?;
        let dir = std::env::temp_dir().join(format!(
            "palisade-e2e-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir).map_err(io("creating a scratch directory"))?;
        let mut cp = Self {
            local: false,
            port: 0,
            dir,
            processes: Mutex::new(Vec::new()),
            keepers: Mutex::new(Vec::new()),
            server: String::new(),
            kubeconfig,
            kubectl,
        };
        let out = cp.kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])?;
        cp.server = String::from_utf8_lossy(&out.stdout).trim().to_string();
        cp.wait_ready(Duration::from_secs(30))?;
        Ok(cp)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A serving certificate for `ips`, signed by the cluster CA: (certificate, key) files.
    pub fn issue_serving_certificate(
        &self,
        name: &str,
        ips: &[std::net::IpAddr],
    ) -> Result<(PathBuf, PathBuf), Error> {
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        self.issue_certificate(
            name,
            &format!("/CN={name}"),
            &format!(
                "subjectAltName={},DNS:{name}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
    }

    /// A client certificate for `subject` (e.g. `/O=system:nodes/CN=system:node:node-1`),
    /// signed by the cluster CA: (certificate, key) files named after `name`.
    pub fn issue_client_certificate(
        &self,
        name: &str,
        subject: &str,
    ) -> Result<(PathBuf, PathBuf), Error> {
        self.issue_certificate(name, subject, "extendedKeyUsage=clientAuth\n")
    }

    fn issue_certificate(
        &self,
        name: &str,
        subject: &str,
        extensions: &str,
    ) -> Result<(PathBuf, PathBuf), Error> {
        self.local_only("issuing a certificate")?;
        let ext = format!("{name}.ext");
        std::fs::write(self.dir.join(&ext), extensions).map_err(io(format!("writing {ext}")))?;
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            &self.dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subject,
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        )?;
        Ok((self.dir.join(crt), self.dir.join(key)))
    }

    /// Runs kubectl with `kubeconfig` (bounded by `--request-timeout`), feeding `input` on stdin.
    fn run_kubectl(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output, Error> {
        let child = self.spawn_kubectl(kubeconfig, args, input)?;
        child
            .wait_with_output()
            .map_err(io(format!("running kubectl {}", args.join(" "))))
    }

    fn spawn_kubectl(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Child, Error> {
        let what = format!("running kubectl {}", args.join(" "));
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(what.clone()))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin
                .write_all(input.as_bytes())
                .map_err(io("writing kubectl's stdin"))?;
        }
        Ok(child)
    }

    /// [`Self::kubectl_ok`] that kills kubectl after `limit`, for `kubectl exec`: its stream is
    /// not bounded by `--request-timeout`, and one hung for 20 minutes across a fault in the
    /// chaos soak. For commands whose output is small (it is read once kubectl has exited).
    pub fn kubectl_ok_within(&self, args: &[&str], limit: Duration) -> Result<String, Error> {
        let what = format!("kubectl {}", args.join(" "));
        let child = self.spawn_kubectl(&self.kubeconfig, args, None)?;
        match crate::util::wait_with_timeout(child, limit) {
            Ok(output) => crate::util::succeeded(what, output),
            Err(output) => Err(Error::Command {
                what: format!("{what} (killed after {limit:?})"),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
        }
    }

    /// Runs kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output, Error> {
        self.run_kubectl(&self.kubeconfig, args, None)
    }

    /// Runs `kubectl apply -f -` (or any command reading stdin) with `input` as the manifest.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<Output, Error> {
        self.run_kubectl(&self.kubeconfig, args, Some(input))
    }

    /// Runs kubectl and returns its stdout; a failure is an error carrying kubectl's output.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, Error> {
        crate::util::succeeded(format!("kubectl {}", args.join(" ")), self.kubectl(args)?)
    }

    /// [`Self::kubectl_ok`] for tests: a failure panics with the command and kubectl's output.
    pub fn kubectl_must(&self, args: &[&str]) -> String {
        self.kubectl_ok(args)
            .unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
    }

    /// `kubectl apply -f -` of `yaml`; a refusal is an error carrying kubectl's output.
    pub fn apply(&self, yaml: &str) -> Result<String, Error> {
        crate::util::succeeded(
            "kubectl apply",
            self.kubectl_stdin(&["apply", "-f", "-"], yaml)?,
        )
    }

    /// Runs kubectl with a bearer token instead of the admin certificate.
    pub fn kubectl_as(&self, token: &str, args: &[&str]) -> Result<Output, Error> {
        let view = self.kubectl(&["config", "view", "--minify", "--flatten", "-o", "json"])?;
        let config: serde_json::Value =
            serde_json::from_slice(&view.stdout).map_err(|e| Error::Command {
                what: "reading the kubeconfig".into(),
                stderr: e.to_string(),
            })?;
        let token_config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": config["clusters"],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": "token", "context": {"cluster": config["clusters"][0]["name"], "user": "token"}}],
            "current-context": "token",
        });
        let path = self.dir.join(format!("kubeconfig-token-{}", free_port()?));
        std::fs::write(&path, token_config.to_string())
            .map_err(io("writing a token kubeconfig"))?;
        let out = self.run_kubectl(&path, args, None);
        let _ = std::fs::remove_file(&path);
        out
    }
}

impl ControlPlane {
    /// Stops the processes and removes the directory; idempotent.
    fn shutdown(&self) {
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        for launched in processes.iter_mut().rev() {
            let _ = launched.child.kill();
            let _ = launched.child.wait();
        }
        processes.clear();
        self.keepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// One control plane for the whole test binary: the cluster named by
    /// `PALISADE_E2E_KUBECONFIG` when set, otherwise a local one started on first use and stopped when the
    /// process exits (by atexit on a normal exit; by the kernel's parent-death signal if the
    /// process is killed).
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(cp) = SHARED.get() {
                cp.shutdown();
            }
        }
        SHARED.get_or_init(|| {
            if let Some(k) = std::env::var_os("PALISADE_E2E_KUBECONFIG") {
                return ControlPlane::external(PathBuf::from(k)).unwrap_or_else(|e| {
                    panic!("reaching the cluster of PALISADE_E2E_KUBECONFIG: {e}")
                });
            }
            let cp = ControlPlane::start()
                .unwrap_or_else(|e| panic!("starting the local control plane: {e}"));
            // SAFETY: atexit has no safe wrapper in std or nix; it registers a plain `extern
            // "C" fn()` that takes no arguments and touches only the OnceLock above.
            unsafe { nix::libc::atexit(stop_shared) };
            cp
        })
    }

    /// A Kubernetes namespace of its own for one test, deleted when the guard drops.
    pub fn test_namespace(&self, name: &str) -> Result<TestNamespace<'_>, Error> {
        let out = self.kubectl(&["create", "namespace", name])?;
        if !out.status.success() {
            return Err(Error::Command {
                what: format!("creating namespace {name}"),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(TestNamespace {
            cp: self,
            name: name.to_string(),
        })
    }
}

pub struct TestNamespace<'a> {
    cp: &'a ControlPlane,
    pub name: String,
}

impl Drop for TestNamespace<'_> {
    fn drop(&mut self) {
        let ns = self.name.as_str();
        if self.cp.is_local() {
            // No kubelet confirms pod deletions and no namespace controller empties and
            // finalizes namespaces here: do both, so the name can be used again at once and no
            // pod of this test lingers in later tests' caches.
            let _ = self.cp.kubectl(&[
                "delete",
                "pods,networkpolicies",
                "--all",
                "-n",
                ns,
                "--force",
                "--grace-period=0",
            ]);
        }
        let _ = self
            .cp
            .kubectl(&["delete", "namespace", ns, "--wait=false"]);
        if self.cp.is_local() {
            let finalize = format!(
                r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}},"spec":{{"finalizers":[]}}}}"#
            );
            let _ = self.cp.kubectl_stdin(
                &[
                    "replace",
                    "--raw",
                    &format!("/api/v1/namespaces/{ns}/finalize"),
                    "-f",
                    "-",
                ],
                &finalize,
            );
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A component of the control plane, by the name of its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Etcd,
    Apiserver,
    ControllerManager,
    /// Runs with real nodes only, as the controller-manager does.
    Scheduler,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Etcd,
        Component::Apiserver,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Apiserver => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }

    /// The component of that name (`etcd`, `kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

fn not_running(name: &str) -> Error {
    Error::Command {
        what: format!("finding {name}"),
        stderr: "this cluster does not run it".into(),
    }
}

/// SIGSTOP to `pid`, `how_long`, then SIGCONT (also sent when the wait is cut short).
pub(crate) fn pause_process(name: &str, pid: u32, how_long: Duration) -> Result<(), Error> {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, Signal::SIGSTOP).map_err(|e| Error::Command {
        what: format!("stopping {name} (SIGSTOP)"),
        stderr: e.to_string(),
    })?;
    std::thread::sleep(how_long);
    nix::sys::signal::kill(pid, Signal::SIGCONT).map_err(|e| Error::Command {
        what: format!("continuing {name} (SIGCONT)"),
        stderr: e.to_string(),
    })
}

/// How a process the harness starts was started: enough to start it again the same way.
pub(crate) struct Described {
    pub name: String,
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
    log: PathBuf,
}

/// A process the harness started, and how.
pub(crate) struct Launched {
    pub how: Described,
    pub child: Child,
}

impl Described {
    /// Records how `cmd` starts (its program, arguments and environment changes), logging to
    /// `log`; [`Described::with`] adds the process once spawned.
    pub fn new(name: &str, cmd: &Command, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            program: cmd.get_program().to_os_string(),
            args: cmd.get_args().map(|a| a.to_os_string()).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
                .collect(),
            log,
        }
    }

    pub fn with(self, child: Child) -> Launched {
        Launched { how: self, child }
    }

    /// The command again, its log appended to.
    fn command(&self) -> Result<Command, Error> {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in &self.envs {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        Ok(cmd)
    }
}

impl Launched {
    pub fn name(&self) -> &str {
        &self.how.name
    }

    /// Stops the process (SIGTERM; SIGKILL after `grace`) and starts it again the same way, its
    /// log appended to. Returns the keeper of the new process.
    pub fn restart(&mut self, grace: Duration) -> Result<Keeper, Error> {
        crate::util::signal(self.child.id() as i32, Signal::SIGTERM);
        let start = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if start.elapsed() > grace {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (mut started, keeper) = spawn_tied(vec![self.how.command()?])?;
        self.child = started.pop().ok_or_else(|| Error::Command {
            what: format!("starting {} again", self.how.name),
            stderr: "nothing started".into(),
        })?;
        Ok(keeper)
    }
}

/// Keeps alive the thread that spawned the control plane's processes: they receive SIGKILL from
/// the kernel when it ends (PR_SET_PDEATHSIG), which also happens when the test process dies.
pub(crate) struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn_tied(commands: Vec<Command>) -> Result<(Vec<Child>, Keeper), Error> {
    let (result_tx, result_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let mut children = Vec::new();
        for mut cmd in commands {
            // SAFETY: pre_exec is unsafe because its closure runs in the child between fork
            // and exec, where only async-signal-safe calls are allowed: prctl and
            // pthread_sigmask are, and the closure allocates nothing (an empty SigSet is a
            // value on the stack).
            unsafe {
                cmd.pre_exec(|| {
                    set_pdeathsig(Signal::SIGKILL)?;
                    // A caller that takes signals with sigwait blocks them; its children must
                    // not inherit that, or SIGTERM never reaches them.
                    SigSet::empty().thread_set_mask()?;
                    Ok(())
                });
            }
            match cmd.spawn() {
                Ok(c) => children.push(c),
                Err(source) => {
                    for c in &mut children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    let _ = result_tx.send(Err(Error::Io {
                        what: format!("starting {:?}", cmd.get_program()),
                        source,
                    }));
                    return;
                }
            }
        }
        let _ = result_tx.send(Ok(children));
        let _ = stop_rx.recv(); // until the keeper is dropped
    });
    let children = result_rx.recv().map_err(|_| Error::Command {
        what: "starting the control plane".into(),
        stderr: "the spawner thread died".into(),
    })??;
    Ok((
        children,
        Keeper {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    ))
}

/// Removes what crashed earlier runs left: directories of dead test processes, and any process
/// still running from one of them.
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("palisade-e2e-") else {
            continue;
        };
        let pid: i32 = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid <= 0 || crate::util::alive(pid) {
            continue;
        }
        kill_processes_of(&entry.path());
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Kills every process whose command line names `dir` (the control plane's processes all take
/// their files from it).
pub(crate) fn kill_processes_of(dir: &Path) {
    let dir = dir.to_string_lossy().into_owned();
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = proc_entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(proc_entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&dir) {
            // A process whose command line names the run's directory.
            crate::util::signal(p, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
