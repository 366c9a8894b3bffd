//! The demo: Palisade's main job end to end on this machine, in five steps, with real kubectl
//! output and real probes. `e2e/demo.sh` runs it; an e2e test runs it too, so it keeps working.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_policy::reach::Probe;

use crate::util::{Process, free_port, http_get_at, text};
use crate::world::{TUTORIAL_PORTS, World, differences, tutorial};
use crate::{ControlPlane, Error, chart};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policy/tests/fixtures/tutorial"
);

/// The Palisade binaries the demo runs as processes.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub webhook: PathBuf,
    pub operator: PathBuf,
    pub enforcer: PathBuf,
    pub palisade: PathBuf,
}

impl Binaries {
    /// The binaries of a cargo build in `dir` (e.g. target/debug).
    pub fn in_dir(dir: &Path) -> Result<Self, Error> {
        let find = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::Command {
                    what: format!("finding {name}"),
                    stderr: format!(
                        "{} does not exist: build first (cargo build --workspace --bins)",
                        path.display()
                    ),
                })
            }
        };
        Ok(Self {
            webhook: find("palisade-webhook")?,
            operator: find("palisade-operator")?,
            enforcer: find("palisade-enforcer")?,
            palisade: find("palisade")?,
        })
    }
}

/// How a demo run went.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every step that did not go as it should, in words; empty when the demo passed.
    pub failures: Vec<String>,
    /// The measured matrix before and after the policies.
    pub open: Vec<Probe>,
    pub protected: Vec<Probe>,
}

struct Out<'a> {
    w: &'a mut dyn Write,
    start: Instant,
}

impl Out<'_> {
    fn step(&mut self, n: usize, title: &str) {
        let _ = writeln!(
            self.w,
            "\n[{n}/5] {title}  ({:.1} s)\n{}",
            self.start.elapsed().as_secs_f64(),
            "=".repeat(title.len() + 6)
        );
    }
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.w, "{text}");
        let _ = self.w.flush();
    }
    /// A command as the user would type it, and its output, indented.
    fn shell(&mut self, command: &str, output: &str) {
        let _ = writeln!(self.w, "\n$ {command}");
        for l in output.trim_end().lines() {
            let _ = writeln!(self.w, "  {l}");
        }
        let _ = self.w.flush();
    }
}

/// The components, running as processes with the chart's ServiceAccount tokens.
struct Components {
    _webhook: Process,
    _operator: Process,
    _enforcers: Vec<Process>,
}

fn wait_ready(what: &str, admin: SocketAddr, log: &Path) -> Result<(), Error> {
    let start = Instant::now();
    while http_get_at(admin, "/readyz").map(|r| r.0) != Some(200) {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(Error::Command {
                what: format!("waiting for {what}"),
                stderr: std::fs::read_to_string(log).unwrap_or_default(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn spawn(program: &Path, args: &[String], kubeconfig: &Path, log: &Path) -> Result<Process, Error> {
    let mut command = std::process::Command::new(program);
    command.args(args).env("KUBECONFIG", kubeconfig);
    crate::util::spawn_logged(command, log)
}

/// `helm install` with the webhook reached at a loopback port (no kubelet runs pods here: the
/// components run as processes), then the components with the chart's tokens.
fn install(
    cp: &ControlPlane,
    world: &World,
    bins: &Binaries,
    out: &mut Out,
) -> Result<Components, Error> {
    let port = free_port();
    let helm = crate::tools::tool("helm")?;
    let url = format!("webhook.url=https://127.0.0.1:{port}/validate");
    let args = [
        "install",
        chart::RELEASE,
        chart::CHART_DIR,
        "--namespace",
        chart::NAMESPACE,
        "--create-namespace",
        "--set",
        &url,
        "--set",
        "webhook.certificates.ipAddresses={127.0.0.1}",
    ];
    let o = std::process::Command::new(helm)
        .args(args)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .map_err(|source| Error::Io {
            what: "running helm".into(),
            source,
        })?;
    out.shell(
        &format!(
            "helm install palisade charts/palisade -n {} --create-namespace --set {url} ...",
            chart::NAMESPACE
        ),
        &text(&o),
    );
    if !o.status.success() {
        return Err(Error::Command {
            what: "helm install".into(),
            stderr: text(&o),
        });
    }
    let dir = world.dir();
    // The webhook serves the certificate the chart generated for it.
    for key in ["tls.crt", "tls.key"] {
        let pem = cp.kubectl_ok(&[
            "get",
            "secret",
            "palisade-webhook-tls",
            "-n",
            chart::NAMESPACE,
            "-o",
            &format!("go-template={{{{index .data \"{key}\" | base64decode}}}}"),
        ])?;
        std::fs::write(dir.join(key), pem).map_err(|source| Error::Io {
            what: format!("writing {key}"),
            source,
        })?;
    }
    let localhost = std::net::Ipv4Addr::LOCALHOST.into();
    let webhook_admin = free_port();
    let webhook = spawn(
        &bins.webhook,
        &[
            format!("--listen=127.0.0.1:{port}"),
            format!("--admin-listen=127.0.0.1:{webhook_admin}"),
            format!("--tls-cert={}", dir.join("tls.crt").display()),
            format!("--tls-key={}", dir.join("tls.key").display()),
            "--log-format=text".into(),
        ],
        &chart::token_kubeconfig(cp, "webhook", localhost)?,
        &dir.join("webhook.log"),
    )?;
    let operator_admin = free_port();
    let operator = spawn(
        &bins.operator,
        &[
            format!("--namespace={}", chart::NAMESPACE),
            format!("--admin-listen=127.0.0.1:{operator_admin}"),
            "--pod-name=palisade-operator-demo".into(),
            "--log-format=text".into(),
        ],
        &chart::token_kubeconfig(cp, "operator", localhost)?,
        &dir.join("operator.log"),
    )?;
    let mut enforcers = Vec::new();
    let mut admins = Vec::new();
    for node in world.net.nodes() {
        let kubeconfig = chart::token_kubeconfig(cp, "enforcer", node.gateway.into())?;
        let args: Vec<String> = vec![
            "run".into(),
            format!("--node-name={}", node.name),
            format!("--cni-dir={}", world.cni_dirs[&node.name].display()),
            "--admin-listen=0.0.0.0:9102".into(),
            "--debounce-ms=50".into(),
            "--resync-seconds=5".into(),
            "--log-format=text".into(),
        ];
        let log = dir.join(format!("enforcer-{}.log", node.name));
        enforcers.push(world.spawn_on_node(
            &node.name,
            &bins.enforcer,
            &args,
            &[("KUBECONFIG", kubeconfig.as_os_str())],
            &log,
        )?);
        admins.push((SocketAddr::from((node.address, 9102)), log));
    }
    wait_ready(
        "the webhook",
        SocketAddr::from(([127, 0, 0, 1], webhook_admin)),
        &dir.join("webhook.log"),
    )?;
    wait_ready(
        "the operator",
        SocketAddr::from(([127, 0, 0, 1], operator_admin)),
        &dir.join("operator.log"),
    )?;
    for (admin, log) in &admins {
        wait_ready("an enforcer", *admin, log)?;
    }
    out.line("\nRunning as processes with the chart's ServiceAccount tokens: palisade-webhook (127.0.0.1),");
    out.line("palisade-operator, and palisade-enforcer inside each node's network namespace.");
    let nodes = cp.kubectl_ok(&["get", "nodeenforcements"])?;
    out.shell("kubectl get nodeenforcements", &nodes);
    Ok(Components {
        _webhook: webhook,
        _operator: operator,
        _enforcers: enforcers,
    })
}

/// The matrix as a table: rows are sources, columns are destination:port, cells ✓ or ✗.
pub fn table(probes: &[Probe]) -> String {
    let mut columns: Vec<(String, u16, String)> = probes
        .iter()
        .map(|p| (p.to.clone(), p.port, p.protocol.clone()))
        .collect();
    columns.sort();
    columns.dedup();
    let mut rows: Vec<String> = probes.iter().map(|p| p.from.clone()).collect();
    rows.sort();
    rows.dedup();
    let width = rows.iter().map(String::len).max().unwrap_or(4);
    let mut out = String::new();
    for (i, (to, port, proto)) in columns.iter().enumerate() {
        let _ = writeln!(out, "  {:>2} = {to} {port}/{proto}", i + 1);
    }
    let _ = write!(out, "  {:width$}", "from \\ to");
    for i in 1..=columns.len() {
        let _ = write!(out, " {i:>2}");
    }
    out.push('\n');
    for row in &rows {
        let _ = write!(out, "  {row:width$}");
        for (to, port, proto) in &columns {
            let cell = probes
                .iter()
                .find(|p| &p.from == row && &p.to == to && p.port == *port && &p.protocol == proto);
            let mark = match cell {
                Some(p) if p.allowed => "✓",
                Some(_) => "✗",
                None => "·",
            };
            let _ = write!(out, "  {mark}");
        }
        out.push('\n');
    }
    out
}

/// Applies a fixture with kubectl as a user would, and returns kubectl's own output and
/// whether it was refused.
fn apply_fixture(cp: &ControlPlane, file: &str) -> Result<(String, bool), Error> {
    let path = std::fs::canonicalize(format!("{FIXTURES}/{file}")).map_err(|source| Error::Io {
        what: format!("finding {file}"),
        source,
    })?;
    let o = cp.kubectl(&["apply", "-f", &path.to_string_lossy()])?;
    Ok((text(&o), !o.status.success()))
}

/// Measured cells, predicted cells, and the differences in words.
type Comparison = (Vec<Probe>, Vec<Probe>, Vec<String>);

/// Probes until the measured matrix equals the prediction from the policies in the cluster.
fn measure_until_predicted(
    cp: &ControlPlane,
    world: &World,
    limit: Duration,
) -> Result<Comparison, Error> {
    let start = Instant::now();
    loop {
        let policies = cp.kubectl_ok(&["get", "networkpolicies", "-A", "-o", "yaml"])?;
        let predicted = world.predict(&policies, &TUTORIAL_PORTS)?;
        let measured = world.measure(&TUTORIAL_PORTS, Duration::from_millis(500))?;
        let diff = differences(&measured, &predicted);
        if diff.is_empty() || start.elapsed() > limit {
            return Ok((measured, predicted, diff));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the five steps, printing to `w`. With `keep`, waits for Ctrl-C (or SIGTERM) before
/// tearing down, printing how to explore meanwhile.
pub fn run(bins: &Binaries, keep: bool, w: &mut dyn Write) -> Result<Outcome, Error> {
    let mut out = Out {
        w,
        start: Instant::now(),
    };
    let mut outcome = Outcome::default();

    out.step(
        1,
        "A local cluster with two flannel nodes, and `helm install` of Palisade",
    );
    let cp = ControlPlane::start()?;
    out.line(&format!(
        "kube-apiserver and etcd up at {} (RBAC on, no kubelet: pods are network namespaces).",
        cp.server
    ));
    let world = tutorial(&cp)?;
    out.line("Nodes node-1 and node-2 (network namespaces; CNI configuration: flannel, which ignores NetworkPolicy).");
    let components = install(&cp, &world, bins, &mut out)?;

    out.step(
        2,
        "The tutorial world, measured with real probes: everything is open",
    );
    let pods = cp.kubectl_ok(&["get", "pods", "-A", "-o", "wide"])?;
    out.shell("kubectl get pods -A -o wide", &pods);
    let (open, predicted, diff) = measure_until_predicted(&cp, &world, Duration::from_secs(10))?;
    out.line("\nMeasured (TCP connect / UDP echo from each pod's namespace):");
    out.line(&table(&open));
    if !diff.is_empty() {
        outcome.failures.push(format!(
            "step 2: measured differs from prediction:\n{}",
            diff.join("\n")
        ));
    }
    if open.iter().any(|p| !p.allowed) || predicted.iter().any(|p| !p.allowed) {
        outcome
            .failures
            .push("step 2: something was blocked before any policy".into());
    }
    outcome.open = open;

    out.step(3, "The classic mistakes, applied with kubectl");
    for (file, what, want_refused, want_warning) in [
        (
            "egress-without-dns.yaml",
            "An egress lockdown that forgets DNS:",
            true,
            false,
        ),
        (
            "typo-labels.yaml",
            "A policy for app: backend, where the pods say app: api:",
            true,
            false,
        ),
        (
            "and-or-confusion.yaml",
            "Two peers where one (namespace AND pod) was meant:",
            true,
            true,
        ),
    ] {
        out.line(&format!("\n{what}"));
        let (shown, refused) = apply_fixture(&cp, file)?;
        out.shell(
            &format!("kubectl apply -f policy/tests/fixtures/tutorial/{file}"),
            &shown,
        );
        let warned = shown.contains("Warning:");
        if refused != want_refused || (want_warning && !warned) {
            outcome.failures.push(format!(
                "step 3: {file}: refused={refused} warned={warned}, expected refused={want_refused} warned={want_warning}"
            ));
        }
    }
    // The warned policy was admitted; it is not part of the tutorial's final state.
    cp.kubectl_ok(&[
        "delete",
        "networkpolicy",
        "metrics-from-prometheus",
        "-n",
        "production",
        "--ignore-not-found",
    ])?;

    out.step(
        4,
        "A default-deny baseline, the correct policies, and the matrix again",
    );
    let label = cp.kubectl_ok(&[
        "label",
        "namespace",
        "production",
        "palisade.dev/baseline=default",
    ])?;
    out.shell(
        "kubectl label namespace production palisade.dev/baseline=default",
        &label,
    );
    let start = Instant::now();
    let baseline = loop {
        let got = cp.kubectl_ok(&[
            "get",
            "networkpolicies",
            "-n",
            "production",
            "-l",
            "app.kubernetes.io/managed-by=palisade",
        ])?;
        let both = got.contains("palisade-baseline-dns") && got.contains("palisade-baseline-deny");
        if both || start.elapsed() > Duration::from_secs(20) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    out.shell(
        "kubectl get networkpolicies -n production -l app.kubernetes.io/managed-by=palisade",
        &baseline,
    );
    if !baseline.contains("palisade-baseline-deny") || !baseline.contains("palisade-baseline-dns") {
        outcome
            .failures
            .push("step 4: the operator did not create the baseline policies".into());
    }
    let (shown, refused) = apply_fixture(&cp, "three-tier.yaml")?;
    out.shell(
        "kubectl apply -f policy/tests/fixtures/tutorial/three-tier.yaml",
        &shown,
    );
    if refused {
        outcome
            .failures
            .push("step 4: the correct three-tier policies were refused".into());
    }
    let (protected, predicted, diff) =
        measure_until_predicted(&cp, &world, Duration::from_secs(20))?;
    out.line("\nMeasured now:");
    out.line(&table(&protected));
    out.line("Predicted by `palisade reach` from the policies in the cluster:");
    out.line(&table(&predicted));
    if diff.is_empty() {
        out.line(&format!(
            "All {} measured cells are what palisade reach predicts: frontend -> backend -> database only, DNS working, prometheus scraping backend, ingress to frontend, everything else into production blocked.",
            protected.len()
        ));
    } else {
        outcome.failures.push(format!(
            "step 4: measured differs from prediction:\n{}",
            diff.join("\n")
        ));
    }
    for (from, to, port, want) in [
        ("production/frontend", "production/backend", 8080, true),
        ("production/backend", "production/database", 5432, true),
        ("monitoring/prometheus", "production/backend", 9090, true),
        ("production/frontend", "production/database", 5432, false),
        ("monitoring/prometheus", "production/database", 5432, false),
    ] {
        let cell = protected
            .iter()
            .find(|p| p.from == from && p.to == to && p.port == port);
        if cell.map(|p| p.allowed) != Some(want) {
            outcome.failures.push(format!(
                "step 4: {from} -> {to}:{port} should be {}",
                if want { "open" } else { "blocked" }
            ));
        }
    }
    outcome.protected = protected;

    if keep {
        out.line(&format!(
            "\nThe cluster stays up until you press Ctrl-C. To explore:\n  export KUBECONFIG={} PATH={}:$PATH\n  kubectl get networkbaselines,nodeenforcements\n  ip netns exec {} timeout 1 bash -c 'echo > /dev/tcp/{}/5432'   # frontend -> database: blocked\n  kubectl get namespaces,pods,networkpolicies -A -o yaml > /tmp/cluster.yaml\n  {} reach -f /tmp/cluster.yaml --port 5432/TCP --explain\n  ip netns exec {} iptables-save -t filter | grep PAL",
            cp.kubeconfig.display(),
            crate::tools::bin_dir().display(),
            world.net.pod("production/frontend").map(|p| p.netns.name.clone()).unwrap_or_default(),
            world.ip("production/database").map(|i| i.to_string()).unwrap_or_default(),
            bins.palisade.display(),
            world.net.nodes()[0].netns.name,
        ));
        wait_for_interrupt();
    }

    out.step(5, "Tearing everything down");
    drop(components);
    drop(world);
    drop(cp);
    if outcome.failures.is_empty() {
        out.line(&format!(
            "Done in {:.1} s: every step as expected.",
            out.start.elapsed().as_secs_f64()
        ));
    } else {
        out.line(&format!("FAILED:\n{}", outcome.failures.join("\n")));
    }
    Ok(outcome)
}

fn wait_for_interrupt() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
}
