//! The demo: Palisade's main job end to end on this machine, in five steps, with real kubectl
//! output and real probes: the release image on two real nodes (kubelet, containerd, a CNI
//! that enforces nothing), installed with `helm install`. `e2e/demo.sh` runs it; an e2e test
//! runs it too, so it keeps working.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_policy::reach::Probe;

use crate::real_nodes::{NODES, RealCluster};
use crate::real_world::RealWorld;
use crate::util::text;
use crate::world::{TUTORIAL_NAMESPACES, TUTORIAL_PORTS, differences, tutorial_pods};
use crate::{ControlPlane, Error, chart};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policy/tests/fixtures/tutorial"
);

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

/// `helm install --wait` of the unmodified chart, as the README says.
fn install(cp: &ControlPlane, out: &mut Out) -> Result<(), Error> {
    let helm = crate::tools::tool("helm")?;
    let o = std::process::Command::new(helm)
        .args(["install", chart::RELEASE, chart::CHART_DIR])
        .args([
            "--namespace",
            chart::NAMESPACE,
            "--create-namespace",
            "--wait",
        ])
        .args(["--timeout", "3m"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .map_err(|source| Error::Io {
            what: "running helm".into(),
            source,
        })?;
    out.shell(
        &format!(
            "helm install palisade charts/palisade -n {} --create-namespace --wait",
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
    let pods = cp.kubectl_ok(&["get", "pods", "-n", chart::NAMESPACE, "-o", "wide"])?;
    out.shell("kubectl get pods -n palisade-system -o wide", &pods);
    // The enforcers report once they have synced.
    let start = Instant::now();
    let nodes = loop {
        let nodes = cp.kubectl_ok(&["get", "nodeenforcements"])?;
        if nodes.matches("true").count() >= NODES.len() || start.elapsed() > Duration::from_secs(30)
        {
            break nodes;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    out.shell("kubectl get nodeenforcements", &nodes);
    Ok(())
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

/// Probes until the measured matrix equals the prediction from the cluster's objects.
fn measure_until_predicted(world: &RealWorld, limit: Duration) -> Result<Comparison, Error> {
    let start = Instant::now();
    loop {
        let predicted = world.predict(&TUTORIAL_PORTS)?;
        let measured = world.measure(&TUTORIAL_PORTS)?;
        let diff = differences(&measured, &predicted);
        if diff.is_empty() || start.elapsed() > limit {
            return Ok((measured, predicted, diff));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the demo runs: the release image (`e2e/image.sh`) and the `palisade` CLI.
#[derive(Debug, Clone)]
pub struct Setup {
    pub image: PathBuf,
    pub palisade: PathBuf,
}

impl Setup {
    /// The image where `e2e/image.sh` writes it and the CLI of a cargo build in `dir`.
    pub fn find(dir: &Path) -> Result<Self, Error> {
        let missing = |path: &Path, how: &str| Error::Command {
            what: format!("finding {}", path.display()),
            stderr: format!("it does not exist: {how}"),
        };
        let image = crate::real_nodes::default_image_archive();
        if !image.is_file() {
            return Err(missing(&image, "build it with ./e2e/image.sh"));
        }
        let palisade = dir.join("palisade");
        if !palisade.is_file() {
            return Err(missing(
                &palisade,
                "build first (cargo build --workspace --bins)",
            ));
        }
        Ok(Self { image, palisade })
    }
}

/// Runs the five steps, printing to `w`. With `keep`, waits until `interrupted` says so (Ctrl-C)
/// before tearing down, printing how to explore meanwhile.
pub fn run(
    setup: &Setup,
    keep: Option<&dyn Fn() -> bool>,
    w: &mut dyn Write,
) -> Result<Outcome, Error> {
    let mut out = Out {
        w,
        start: Instant::now(),
    };
    let mut outcome = Outcome::default();

    out.step(
        1,
        "Two real nodes whose CNI enforces nothing, and `helm install` of Palisade",
    );
    let start = Instant::now();
    let cluster = RealCluster::start(&NODES, &mut |step| {
        let _ = writeln!(out.w, "  [{:>3}s] {step}", start.elapsed().as_secs());
        let _ = out.w.flush();
    })?;
    out.line(&format!(
        "  [{:>3}s] importing {} into every node",
        start.elapsed().as_secs(),
        setup.image.display()
    ));
    cluster.import_image(&setup.image)?;
    let cp = &cluster.cp;
    let nodes = cp.kubectl_ok(&["get", "nodes", "-o", "wide"])?;
    out.shell("kubectl get nodes -o wide", &nodes);
    out.line("Each node runs kubelet, containerd and kube-proxy in its own network namespace; pods get a bridge CNI, which (like flannel) ignores NetworkPolicy.");
    install(cp, &mut out)?;

    out.step(
        2,
        "The tutorial world as real pods, measured with real connections: everything is open",
    );
    let world = RealWorld::create(cp, &TUTORIAL_NAMESPACES, tutorial_pods())?;
    let pods = cp.kubectl_ok(&[
        "get",
        "pods",
        "-o",
        "wide",
        "-A",
        "--field-selector",
        "metadata.namespace!=palisade-system",
    ])?;
    out.shell("kubectl get pods -A -o wide", &pods);
    let (open, predicted, diff) = measure_until_predicted(&world, Duration::from_secs(10))?;
    out.line("\nMeasured (a TCP connection from inside each pod, kubectl exec ... nc):");
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
        let (shown, refused) = apply_fixture(cp, file)?;
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
    let (shown, refused) = apply_fixture(cp, "three-tier.yaml")?;
    out.shell(
        "kubectl apply -f policy/tests/fixtures/tutorial/three-tier.yaml",
        &shown,
    );
    if refused {
        outcome
            .failures
            .push("step 4: the correct three-tier policies were refused".into());
    }
    let (protected, predicted, diff) = measure_until_predicted(&world, Duration::from_secs(30))?;
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

    if let Some(interrupted) = keep {
        let (frontend, save) = cluster
            .node("node-1")
            .map(|n| (n.netns.clone(), n.iptables.save()))
            .unwrap_or_default();
        out.line(&format!(
            "\nThe cluster stays up until you press Ctrl-C. To explore:\n  export KUBECONFIG={} PATH={}:$PATH\n  kubectl get networkbaselines,nodeenforcements\n  kubectl exec -n production frontend -- nc -w 1 {} 5432   # frontend -> database: blocked\n  kubectl get namespaces,pods,networkpolicies -A -o yaml > /tmp/cluster.yaml\n  {} reach -f /tmp/cluster.yaml --port 5432/TCP --explain\n  ip netns exec {frontend} {save} -t filter | grep PAL",
            cp.kubeconfig.display(),
            crate::tools::bin_dir().display(),
            world.ips()?.get("production/database").cloned().unwrap_or_default(),
            setup.palisade.display(),
        ));
        while !interrupted() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    out.step(5, "Tearing everything down");
    drop(world);
    drop(cluster);
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
