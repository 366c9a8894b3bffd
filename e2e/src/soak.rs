//! A chaos soak on the real-node cluster: Palisade's components and the control plane are hit
//! by faults on a seeded schedule while the cluster keeps changing, and real handshakes between
//! two fixed pairs of pods are watched all along (an allowed pair must keep answering, a denied
//! pair must never answer); after each fault the whole tutorial matrix is measured until it
//! equals what `palisade reach` predicts from the cluster's objects.
//!
//! The schedule is drawn from a printed seed (`PALISADE_SOAK_SEED` replays one), so a failure can
//! be run again. Used by `e2e/tests/soak.rs` and `palisade-e2e soak`.

mod churn;
mod ending;
mod faults;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::chart;
use crate::control_plane::Component;
use crate::handshakes::{Outcome, Prober};
use crate::real_nodes::{BUSYBOX_IMAGE, NODES, NodeRules, RealCluster, Target};
use crate::real_world::RealWorld;
use crate::world::{TUTORIAL_PORTS, differences};
use crate::{ControlPlane, Error};

pub use churn::{FILLER_NAMESPACE, create_churn, create_filler};
pub use ending::{Ending, LAST_SYNC_BOUND, NodeFigures, end_checks};
pub use faults::{Fault, Injected, inject};

/// The tutorial's policies, applied by [`prepare`].
const THREE_TIER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policy/tests/fixtures/tutorial/three-tier.yaml"
);

/// The namespace the churn works in (created by [`run`], removed by [`end_checks`]).
pub const CHURN_NAMESPACE: &str = "soak-churn";

/// The values the soak installs the chart with: the webhook's `failurePolicy: Fail`, so a write
/// made while it is down is refused (and must then succeed when retried).
/// And the upstream ClusterNetworkPolicy CRD, which the churn writes.
pub const CHART_VALUES: [&str; 4] = [
    "--set",
    "webhook.failurePolicy=Fail",
    "--set",
    "clusterNetworkPolicy.installCRDs=true",
];

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Faults are injected until this much time has passed.
    pub duration: Duration,
    /// Time between two faults.
    pub fault_every: Duration,
    /// How long after a fault the measured matrix may differ from the prediction.
    pub converge_within: Duration,
    /// The enforcers' periodic check (`enforcer.resyncSeconds`): rules flushed by hand hold
    /// again within it.
    pub resync: Duration,
    /// The kinds of fault drawn from ([`Fault::ALL`], or those `PALISADE_SOAK_FAULTS` names).
    pub faults: Vec<Fault>,
    /// Small pods of a Deployment spread over both nodes, in a namespace opted in to the
    /// baseline, created before the soak starts (0: none).
    pub filler_pods: usize,
}

impl Options {
    /// `duration` long, with the seed of `PALISADE_SOAK_SEED` or a fresh one, drawing from the
    /// faults `PALISADE_SOAK_FAULTS` names (e.g. `webhook-down,etcd-paused`; see [`Fault::id`])
    /// or from all of them.
    pub fn new(duration: Duration) -> Self {
        let seed = std::env::var("PALISADE_SOAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        Self {
            seed,
            duration,
            fault_every: Duration::from_secs(20),
            converge_within: Duration::from_secs(30),
            resync: Duration::from_secs(10),
            faults: match std::env::var("PALISADE_SOAK_FAULTS").map(|l| Fault::parse_list(&l)) {
                Ok(Ok(faults)) if !faults.is_empty() => faults,
                Ok(Err(e)) => {
                    eprintln!("PALISADE_SOAK_FAULTS: {e}; drawing from every fault");
                    Fault::ALL.to_vec()
                }
                _ => Fault::ALL.to_vec(),
            },
            filler_pods: 0,
        }
    }
}

/// A small deterministic generator (xorshift64*), so a seed replays the same schedule.
#[derive(Debug, Clone)]
pub struct Schedule(u64);

impl Schedule {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`, from the draw's high bits (the low bits of consecutive draws go
    /// together: a fault's node followed its kind).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.draw() >> 32) * n.max(1) as u64) >> 32) as usize
    }
}

/// What happened to one fault.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Since the soak started.
    pub at: Duration,
    pub fault: Fault,
    pub node: &'static str,
    /// From the fault to the measured matrix equal to the prediction and every node's
    /// NodeEnforcement enforcing; `None`: not within `converge_within`.
    pub converged_after: Option<Duration>,
    pub last_difference: String,
    /// What the injection saw (e.g. how long a helm upgrade took).
    pub note: String,
    /// A promise the injection itself found broken (a write lost, a container restarted).
    pub broken: Option<String>,
    /// Each node's enforcer once the fault converged.
    pub enforcer_memory: Vec<(&'static str, ending::EnforcerMemory)>,
}

/// What a soak saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub faults: Vec<FaultRecord>,
    pub churn_steps: usize,
    /// The filler pods running when the soak started.
    pub filler_pods: usize,
    pub allowed: Outcome,
    /// Its handshake times count from the allowed prober's start, as the faults' do.
    pub denied: Outcome,
    /// The longest time the allowed pair did not answer.
    pub longest_allowed_gap: Duration,
    /// Handshakes of the denied pair not explained by a fault that removes rules (within
    /// `resync` plus 5 s of it).
    pub unexplained_denied: Vec<Duration>,
    /// Handshakes of the denied pair within that allowance, with the fault.
    pub explained_denied: Vec<(Duration, Fault)>,
    /// How long after a fault that removes rules the denied pair may still answer.
    pub allowance: Duration,
    /// What became of the policy the webhook must refuse, each time the churn tried it.
    pub verdicts: Verdicts,
}

/// The outcomes of writing [`REFUSED_POLICY`].
#[derive(Debug, Clone, Default)]
pub struct Verdicts {
    /// Refused by the webhook (`denied the request`), as it must be.
    pub refused: usize,
    /// Refused because the apiserver could not call the webhook (`failurePolicy: Fail`).
    pub webhook_unreachable: usize,
    /// Not answered by the webhook at all (the apiserver was down or slow).
    pub no_answer: usize,
    /// Admitted (since the soak started): a promise broken.
    pub admitted: Vec<Duration>,
}

impl Verdicts {
    fn attempts(&self) -> usize {
        self.refused + self.webhook_unreachable + self.no_answer + self.admitted.len()
    }
}

/// One line per enforcer process seen after two faults or more: its live heap and anonymous
/// resident memory at the first and last of them, the highest, and the time between (a leak
/// grows within one process; a process replaced by a fault starts afresh).
fn memory_lines(faults: &[FaultRecord]) -> Vec<String> {
    // Node, PID, and (time, memory) samples.
    type Life<'a> = (&'a str, u32, Vec<(Duration, ending::EnforcerMemory)>);
    let mut lives: Vec<Life> = Vec::new();
    for f in faults {
        for (node, m) in &f.enforcer_memory {
            match lives.iter_mut().find(|(n, p, _)| n == node && *p == m.pid) {
                Some((_, _, samples)) => samples.push((f.at, *m)),
                None => lives.push((node, m.pid, vec![(f.at, *m)])),
            }
        }
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    lives
        .iter()
        .filter(|(_, _, samples)| samples.len() >= 2)
        .filter_map(|(node, pid, samples)| {
            let ((t0, first), (t1, last)) = (samples.first()?, samples.last()?);
            let most = |of: fn(&ending::EnforcerMemory) -> u64| samples.iter().map(|(_, m)| of(m)).max();
            Some(format!(
                "    {node} pid {pid}: heap {:.2} -> {:.2} MiB (max {:.2}), RSS {:.1} -> {:.1} MiB (max {:.1}) over {:.1} min, {} samples",
                mib(first.heap_kib),
                mib(last.heap_kib),
                mib(most(|m| m.heap_kib)?),
                mib(first.anon_kib),
                mib(last.anon_kib),
                mib(most(|m| m.anon_kib)?),
                (*t1 - *t0).as_secs_f64() / 60.0,
                samples.len()
            ))
        })
        .collect()
}

/// p50 and max of `d` (sorted here), as `p50 X s, max Y s`.
fn p50_max(mut d: Vec<Duration>) -> String {
    d.sort();
    match (d.get(d.len() / 2), d.last()) {
        (Some(p50), Some(max)) => format!(
            "p50 {:.1} s, max {:.1} s",
            p50.as_secs_f64(),
            max.as_secs_f64()
        ),
        _ => "none converged".into(),
    }
}

impl Report {
    /// The enforcers' memory over each process's life, sampled once each fault converged.
    fn memory_over_each_life(&self) -> Vec<String> {
        let lines = memory_lines(&self.faults);
        if lines.is_empty() {
            return lines;
        }
        std::iter::once(
            "  enforcer memory over each process's life, live heap and anonymous RSS (once each fault converged; a fault may replace it):".to_string(),
        )
        .chain(lines)
        .collect()
    }

    /// What the soak promises and this run broke, one line each (empty: it held). Faults must
    /// converge within `converge_within`; the allowed pair is never silent for 2 s or more (the
    /// rules stay in the kernel through every fault); the denied pair answers only after a fault
    /// that removes rules, before the periodic repair; the webhook refuses the policy it must
    /// refuse every time it answers, and at least once; at least 2 faults and 100 probe rounds
    /// a pair, or the run proves nothing.
    pub fn violations(&self, options: &Options) -> Vec<String> {
        let mut out = Vec::new();
        if self.faults.len() < 2 {
            out.push(format!("only {} faults were injected", self.faults.len()));
        }
        if self.allowed.rounds < 100 || self.denied.rounds < 100 {
            out.push(format!(
                "only {} and {} probe rounds",
                self.allowed.rounds, self.denied.rounds
            ));
        }
        for f in self.faults.iter().filter(|f| f.converged_after.is_none()) {
            out.push(format!(
                "{} on {} at {:.1} s: not converged within {:?}: {}",
                f.fault.name(),
                f.node,
                f.at.as_secs_f64(),
                options.converge_within,
                f.last_difference
            ));
        }
        if self.longest_allowed_gap >= Duration::from_secs(2) {
            out.push(format!(
                "the allowed pair was silent for {:.1} s",
                self.longest_allowed_gap.as_secs_f64()
            ));
        }
        if !self.unexplained_denied.is_empty() {
            out.push(format!(
                "the denied pair answered at {:?} (since the start), outside a hand flush's repair window",
                self.unexplained_denied
            ));
        }
        for f in &self.faults {
            if let Some(broken) = &f.broken {
                out.push(format!(
                    "{} on {} at {:.1} s: {broken}",
                    f.fault.name(),
                    f.node,
                    f.at.as_secs_f64()
                ));
            }
        }
        if !self.verdicts.admitted.is_empty() {
            out.push(format!(
                "the policy the webhook must refuse was admitted at {:?} (since the start)",
                self.verdicts.admitted
            ));
        }
        if self.verdicts.refused == 0 {
            out.push(format!(
                "the webhook never refused the policy it must refuse ({} tries)",
                self.verdicts.attempts()
            ));
        }
        out
    }

    /// Convergence per kind of fault: `(kind, count, p50/max)`, in [`Fault::ALL`]'s order.
    pub fn convergence_by_kind(&self) -> Vec<(Fault, usize, String)> {
        Fault::ALL
            .into_iter()
            .filter_map(|kind| {
                let of: Vec<&FaultRecord> =
                    self.faults.iter().filter(|f| f.fault == kind).collect();
                (!of.is_empty()).then(|| {
                    (
                        kind,
                        of.len(),
                        p50_max(of.iter().filter_map(|f| f.converged_after).collect()),
                    )
                })
            })
            .collect()
    }

    /// Every line a reader needs, for the test's output and the CLI.
    pub fn summary(&self) -> String {
        let mut out = vec![format!(
            "soak seed {} (PALISADE_SOAK_SEED={} replays it): {} faults, {} churn steps, {} filler pods",
            self.seed,
            self.seed,
            self.faults.len(),
            self.churn_steps,
            self.filler_pods
        )];
        for f in &self.faults {
            // For a hand flush: the last answer of the denied pair before the rules held again.
            let open = f
                .fault
                .removes_rules()
                .then(|| {
                    self.denied
                        .handshakes
                        .iter()
                        .filter(|h| h.at >= f.at && h.at <= f.at + self.allowance)
                        .map(|h| h.at - f.at)
                        .max()
                })
                .flatten()
                .map_or_else(String::new, |d| {
                    format!(
                        "; the denied pair answered until {:.1} s after it",
                        d.as_secs_f64()
                    )
                });
            let note = if f.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.note)
            };
            out.push(format!(
                "  {:>6.1} s  {:<26} {:<7} converged {}{open}{note}",
                f.at.as_secs_f64(),
                f.fault.name(),
                if f.fault.on_a_node() { f.node } else { "-" },
                f.converged_after.map_or_else(
                    || format!("NOT within the bound: {}", f.last_difference),
                    |d| format!("after {:.1} s", d.as_secs_f64())
                )
            ));
        }
        out.push("  convergence per kind of fault (from the fault to the matrix and every NodeEnforcement right):".into());
        for (kind, n, figures) in self.convergence_by_kind() {
            out.push(format!("    {:<26} x{n:<3} {figures}", kind.name()));
        }
        out.extend(self.memory_over_each_life());
        out.push(format!(
            "  allowed pair: {} handshakes in {} rounds, longest silence {:.1} s",
            self.allowed.handshakes.len(),
            self.allowed.rounds,
            self.longest_allowed_gap.as_secs_f64()
        ));
        out.push(format!(
            "  denied pair: {} rounds, {} handshakes after a hand flush (before the periodic repair), {} otherwise",
            self.denied.rounds,
            self.explained_denied.len(),
            self.unexplained_denied.len()
        ));
        out.push(format!(
            "  webhook verdicts on the policy it must refuse: {} tries, {} refused by it, {} refused because it was unreachable, {} unanswered, {} admitted",
            self.verdicts.attempts(),
            self.verdicts.refused,
            self.verdicts.webhook_unreachable,
            self.verdicts.no_answer,
            self.verdicts.admitted.len()
        ));
        out.join("\n")
    }
}

/// The pod's first container's ID (`containerd://…`) and node.
fn container_of(cp: &ControlPlane, namespace: &str, pod: &str) -> Result<(String, String), Error> {
    let out = cp.kubectl_ok(&[
        "get",
        "pod",
        pod,
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID} {.spec.nodeName}",
    ])?;
    let mut f = out.split_whitespace();
    match (f.next(), f.next()) {
        (Some(id), Some(node)) => Ok((id.to_string(), node.to_string())),
        _ => Err(Error::Command {
            what: format!("the container of {namespace}/{pod}"),
            stderr: out,
        }),
    }
}

/// The name of the enforcer pod on `node`.
fn enforcer_on(cp: &ControlPlane, node: &str) -> Result<String, Error> {
    cp.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        &chart::enforcer_namespace(cp),
        "-l",
        "app.kubernetes.io/component=enforcer",
        "--field-selector",
        &format!("spec.nodeName={node},status.phase=Running"),
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])
}

fn run_on_node(
    cluster: &RealCluster,
    node: &str,
    program: &str,
    args: &[&str],
) -> Result<String, Error> {
    let n = cluster.node(node).ok_or_else(|| Error::Command {
        what: format!("node {node}"),
        stderr: "no such node".into(),
    })?;
    let o = n
        .command(program)
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            what: format!("running {program} on {node}"),
            source,
        })?;
    crate::util::succeeded(format!("{program} {} on {node}", args.join(" ")), o)
}

/// Polls `check` every 500 ms until it is `Ok`, at most `limit`; the last `Err` otherwise.
fn within<T>(limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Whether every node's NodeEnforcement says it enforces.
fn every_node_enforcing(cp: &ControlPlane) -> Result<(), String> {
    let out = cp
        .kubectl_ok(&[
            "get",
            "nodeenforcements",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.enforcing} {.status.lastError}{\"\\n\"}{end}",
        ])
        .map_err(|e| e.to_string())?;
    let enforcing: Vec<&str> = out
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("true"))
        .collect();
    if enforcing.len() == NODES.len() {
        Ok(())
    } else {
        Err(format!("NodeEnforcements: {out}"))
    }
}

/// How the measured tutorial matrix differs from what `palisade reach` predicts from the
/// cluster's objects now; `None`: equal.
pub fn matrix_difference_now(world: &RealWorld) -> Option<String> {
    let predicted = match world.predict(&TUTORIAL_PORTS) {
        Ok(p) => p,
        Err(e) => return Some(format!("predicting: {e}")),
    };
    let measured = match world.measure(&TUTORIAL_PORTS) {
        Ok(m) => m,
        Err(e) => return Some(format!("measuring: {e}")),
    };
    let diff = differences(&measured, &predicted);
    if diff.is_empty() && measured.len() == predicted.len() {
        None
    } else {
        Some(diff.join("; "))
    }
}

/// The faults of the schedule, one every `fault_every`, each followed by the wait for the
/// matrix to converge; stops at the first fault that cannot be injected (with why).
fn inject_on_schedule(
    cluster: &RealCluster,
    world: &RealWorld,
    options: &Options,
    started: Instant,
) -> (Vec<FaultRecord>, Option<String>) {
    let cp = &cluster.cp;
    let mut schedule = Schedule::new(options.seed);
    let mut faults = Vec::new();
    while started.elapsed() < options.duration {
        let fault = options.faults[schedule.below(options.faults.len())];
        let node = NODES[schedule.below(NODES.len())];
        let at = started.elapsed();
        let injected = match inject(cluster, world, fault, node) {
            Ok(injected) => injected,
            Err(e) => {
                return (
                    faults,
                    Some(format!("injecting {} on {node}: {e}", fault.name())),
                );
            }
        };
        let Injected { note, broken } = injected;
        let injected = Instant::now();
        let mut last = String::new();
        let mut converged_after = None;
        // Settle a moment first: a fault's effect (a pod going, a process killed) is not instant.
        std::thread::sleep(Duration::from_secs(2));
        while injected.elapsed() < options.converge_within {
            match every_node_enforcing(cp)
                .err()
                .or_else(|| matrix_difference_now(world))
            {
                None => {
                    converged_after = Some(injected.elapsed());
                    break;
                }
                Some(difference) => last = difference,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let ns = chart::enforcer_namespace(cp);
        let enforcer_memory = NODES
            .iter()
            .filter_map(|n| Some((*n, ending::enforcer_memory(cluster, &ns, n).ok()?)))
            .collect();
        faults.push(FaultRecord {
            at,
            fault,
            node,
            converged_after,
            last_difference: last,
            note,
            broken,
            enforcer_memory,
        });
        if let Some(rest) = options.fault_every.checked_sub(injected.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    (faults, None)
}

/// The host PID of a process of `namespace/pod` (its network namespace is the pod's).
fn pod_pid(cluster: &RealCluster, namespace: &str, pod: &str) -> Result<u32, Error> {
    let (container, node) = container_of(&cluster.cp, namespace, pod)?;
    let n = cluster.node(&node).ok_or_else(|| Error::Command {
        what: format!("node {node}"),
        stderr: "no such node".into(),
    })?;
    n.task_pid(&container)
}

fn ip_of(world: &RealWorld, pod: &str) -> Result<Ipv4Addr, Error> {
    let ips = world.ips()?;
    ips.get(pod)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| Error::Command {
            what: format!("the IP of {pod}"),
            stderr: format!("{ips:?}"),
        })
}

/// Runs the soak on a cluster with the chart installed and the tutorial world under its
/// three-tier policies: `production/frontend` → `production/backend:8080` allowed (across
/// nodes), `production/frontend` → `production/database:5432` denied (same node).
pub fn run(cluster: &RealCluster, world: &RealWorld, options: &Options) -> Result<Report, Error> {
    let cp = &cluster.cp;
    create_churn(cp)?;
    if options.filler_pods > 0 {
        churn::create_filler(cp, options.filler_pods)?;
    }
    let frontend = pod_pid(cluster, "production", "frontend")?;
    let round = Duration::from_millis(100);
    let limit = options.duration + Duration::from_secs(600);
    let allowed = Prober::start(
        frontend,
        vec![ip_of(world, "production/backend")?],
        8080,
        round,
        limit,
    )?;
    let denied = Prober::start(
        frontend,
        vec![ip_of(world, "production/database")?],
        5432,
        round,
        limit,
    )?;
    let started = allowed.started;
    let stop = AtomicBool::new(false);
    let steps = AtomicUsize::new(0);
    let (faults, failure, verdicts) = std::thread::scope(|s| {
        let churner = s.spawn(|| churn::churn(cp, options.seed, &stop, &steps, started));
        let (faults, failure) = inject_on_schedule(cluster, world, options, started);
        stop.store(true, Ordering::SeqCst);
        let verdicts = churner.join().unwrap_or_default();
        (faults, failure, verdicts)
    });
    // Each prober counts from its own start; the faults from the allowed one's.
    let denied_offset = denied.started.saturating_duration_since(started);
    let allowed = allowed.stop()?;
    let mut denied = denied.stop()?;
    for h in &mut denied.handshakes {
        h.at += denied_offset;
    }
    if let Some(failure) = failure {
        return Err(Error::Command {
            what: "the soak".into(),
            stderr: failure,
        });
    }

    let mut times: Vec<Duration> = allowed.handshakes.iter().map(|h| h.at).collect();
    times.sort();
    let end = started.elapsed();
    let longest_allowed_gap = std::iter::once(Duration::ZERO)
        .chain(times.iter().copied())
        .zip(times.iter().copied().chain(std::iter::once(end)))
        .map(|(a, b)| b.saturating_sub(a))
        .max()
        .unwrap_or(end);
    let allowance = options.resync + Duration::from_secs(5);
    let (mut explained_denied, mut unexplained_denied) = (Vec::new(), Vec::new());
    for h in &denied.handshakes {
        match faults
            .iter()
            .find(|f| f.fault.removes_rules() && h.at >= f.at && h.at <= f.at + allowance)
        {
            Some(f) => explained_denied.push((h.at, f.fault)),
            None => unexplained_denied.push(h.at),
        }
    }
    Ok(Report {
        seed: options.seed,
        faults,
        churn_steps: steps.load(Ordering::SeqCst),
        filler_pods: options.filler_pods,
        allowed,
        denied,
        longest_allowed_gap,
        unexplained_denied,
        explained_denied,
        allowance,
        verdicts,
    })
}

/// `helm install --wait` of the chart with [`CHART_VALUES`].
fn install_chart(cp: &ControlPlane) -> Result<(), Error> {
    chart::try_install_chart(cp, chart::CHART_DIR, &CHART_VALUES)
}

/// Installs the chart (with [`CHART_VALUES`], `--wait`, every enforcer ready), creates the tutorial world as
/// real pods, opts `production` in to the baseline, applies the three-tier policies and waits
/// (at most 60 s) until the measured matrix equals the prediction: the state the soak starts in.
pub fn prepare(cluster: &RealCluster) -> Result<RealWorld<'_>, Error> {
    let cp = &cluster.cp;
    install_chart(cp)?;
    chart::wait_for_enforcer_rollout(cp);
    let world = RealWorld::create(
        cp,
        &crate::world::TUTORIAL_NAMESPACES,
        crate::world::tutorial_pods(),
    )?;
    cp.kubectl_ok(&[
        "label",
        "namespace",
        "production",
        "palisade.dev/baseline=default",
    ])?;
    cp.kubectl_ok(&["apply", "-f", THREE_TIER])?;
    let start = Instant::now();
    while let Some(difference) = matrix_difference_now(&world) {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(Error::Command {
                what: "the three-tier policies holding".into(),
                stderr: difference,
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(world)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_followed_per_enforcer_process_not_per_node() {
        let memory = |pid, heap_kib, anon_kib| ending::EnforcerMemory {
            pid,
            heap_kib,
            anon_kib,
            vm_rss_kib: anon_kib + 14_336,
        };
        let record = |secs: u64, memory| FaultRecord {
            at: Duration::from_secs(secs),
            fault: Fault::EnforcerPodDeleted,
            node: "node-1",
            converged_after: Some(Duration::from_secs(10)),
            last_difference: String::new(),
            note: String::new(),
            broken: None,
            enforcer_memory: memory,
        };
        let faults = [
            record(
                0,
                vec![
                    ("node-1", memory(10, 1_024, 4_096)),
                    ("node-2", memory(20, 1_536, 4_352)),
                ],
            ),
            record(
                60,
                vec![
                    ("node-1", memory(10, 1_280, 4_352)),
                    ("node-2", memory(21, 1_024, 3_072)),
                ],
            ),
            record(
                180,
                vec![
                    ("node-1", memory(10, 1_126, 4_608)),
                    ("node-2", memory(21, 1_024, 3_584)),
                ],
            ),
        ];
        assert_eq!(
            memory_lines(&faults),
            [
                "    node-1 pid 10: heap 1.00 -> 1.10 MiB (max 1.25), RSS 4.0 -> 4.5 MiB (max 4.5) over 3.0 min, 3 samples",
                "    node-2 pid 21: heap 1.00 -> 1.00 MiB (max 1.00), RSS 3.0 -> 3.5 MiB (max 3.5) over 2.0 min, 2 samples",
            ]
        );
    }

    #[test]
    fn a_seed_replays_the_same_schedule_and_every_fault_is_drawn() {
        let draw = |seed| {
            let mut s = Schedule::new(seed);
            (0..200)
                .map(|_| Fault::ALL[s.below(Fault::ALL.len())])
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let ids: Vec<String> = Fault::ALL.iter().map(|f| f.id()).collect();
        assert_eq!(
            Fault::parse_list(&ids.join(",")),
            Ok(Fault::ALL.to_vec()),
            "every fault's id is its own: {ids:?}"
        );
        assert!(Fault::parse_list("etcd").is_err());
        // Node faults land on both nodes, also in a short run: with the draws' low bits, the
        // 16 faults of a 6-minute soak of this seed hit node-1 only (six node faults).
        let mut s = Schedule::new(1_796_638_237_596_553_134);
        let mut nodes = std::collections::BTreeSet::new();
        for _ in 0..16 {
            let fault = Fault::ALL[s.below(Fault::ALL.len())];
            let node = NODES[s.below(NODES.len())];
            if fault.on_a_node() {
                nodes.insert(node);
            }
        }
        assert_eq!(nodes.len(), NODES.len(), "{nodes:?}");
        let drawn = draw(7);
        for fault in Fault::ALL {
            assert!(drawn.contains(&fault), "{} never drawn", fault.name());
        }
    }
}
