//! The `palisade` command line: `check` and `reach` over YAML/JSON files.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::checks::{self, CheckConfig, CheckId, Context, Mode};
use crate::input::{Inputs, LoadError};
use crate::reach::{self, Matrix, ProbePort};

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "Checks Kubernetes NetworkPolicies before they reach a cluster, and shows who can reach whom."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check NetworkPolicies for mistakes, using the Pods, Namespaces and workloads in the same inputs as the cluster.
    Check(CheckArgs),
    /// Print the connectivity matrix of the Pods in the inputs under their NetworkPolicies.
    Reach(ReachArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin); repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
    pub output: CheckFormat,
    /// Set a check's mode, e.g. `--mode one-sided=off` or `--mode egress-dns=warn`; repeatable.
    #[arg(long = "mode", value_parser = checks::parse_setting)]
    pub modes: Vec<(CheckId, Mode)>,
}

#[derive(Debug, Args)]
pub struct ReachArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin); repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Port to probe, `80`, `80/TCP`, `53/UDP`; repeatable. Default: every port the pods declare.
    #[arg(long = "port")]
    pub ports: Vec<ProbePort>,
    /// Only this source pod, `namespace/name`.
    #[arg(long)]
    pub from: Option<String>,
    /// Only this destination pod, `namespace/name`.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(short, long, value_enum, default_value_t = ReachFormat::Table)]
    pub output: ReachFormat,
    /// Say for each cell which policy and rule decided it.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReachFormat {
    Table,
    Json,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Outcome {
    fn unreadable(e: LoadError) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("palisade: {e}\n"),
            code: 2,
        }
    }
}

pub fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Check(args) => match Inputs::load_paths(&args.files) {
            Ok(inputs) => check(&inputs, &args),
            Err(e) => Outcome::unreadable(e),
        },
        Command::Reach(args) => match Inputs::load_paths(&args.files) {
            Ok(inputs) => reach(&inputs, &args),
            Err(e) => Outcome::unreadable(e),
        },
    }
}

/// One finding as the CLI prints it (text) and serializes it (JSON).
#[derive(serde::Serialize)]
struct Row {
    check: String,
    severity: &'static str,
    object: String,
    file: String,
    line: usize,
    summary: String,
    message: String,
}

pub fn check(inputs: &Inputs, args: &CheckArgs) -> Outcome {
    let cluster = inputs.cluster();
    let config = CheckConfig {
        modes: args.modes.iter().copied().collect(),
    };
    let ctx = Context {
        cluster: &cluster,
        enforcement: None,
        knows_pods: !inputs.pods.is_empty() || !inputs.workloads.is_empty(),
        knows_namespaces: !inputs.namespaces.is_empty(),
    };

    let mut rows: Vec<Row> = inputs
        .problems
        .iter()
        .map(|p| Row {
            check: "schema".into(),
            severity: "deny",
            object: p.object.clone(),
            file: p.file.clone(),
            line: p.line,
            summary: p.message.clone(),
            message: p.message.clone(),
        })
        .collect();
    let mut notes: Vec<String> = Vec::new();
    for src in &inputs.policies {
        let report = checks::run(&src.policy, &ctx, &config);
        let object = src.policy.id().to_string();
        for f in &report.findings {
            rows.push(Row {
                check: f.check.to_string(),
                severity: f.severity.as_str(),
                object: object.clone(),
                file: src.file.clone(),
                line: src.line,
                summary: f.summary.clone(),
                message: f.message.clone(),
            });
        }
        if !report.skipped.is_empty() {
            let ids: Vec<&str> = report.skipped.iter().map(|c| c.as_str()).collect();
            notes.push(format!(
                "{object}: skipped by its {} annotation: {}",
                checks::SKIP_ANNOTATION,
                ids.join(", ")
            ));
        }
        let (_, unknown) = checks::skip_list(&src.policy);
        if !unknown.is_empty() {
            notes.push(format!(
                "{object}: {} names unknown checks: {}",
                checks::SKIP_ANNOTATION,
                unknown.join(", ")
            ));
        }
        for (id, why) in report.not_evaluated {
            let note = format!("{id} not run: {why}");
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    rows.sort_by(|a, b| (&a.file, a.line, &a.check).cmp(&(&b.file, b.line, &b.check)));
    let denied = rows.iter().filter(|r| r.severity == "deny").count();
    let warned = rows.len() - denied;

    let stdout = match args.output {
        CheckFormat::Json => {
            let mut s = serde_json::to_string_pretty(
                &serde_json::json!({ "findings": rows, "notes": notes }),
            )
            .unwrap_or_default();
            s.push('\n');
            s
        }
        CheckFormat::Text => {
            let mut s = String::new();
            for r in &rows {
                let _ = writeln!(
                    s,
                    "{}:{}: {} {} [{}]",
                    r.file, r.line, r.object, r.severity, r.check
                );
                for line in r.message.lines() {
                    let _ = writeln!(s, "    {line}");
                }
                s.push('\n');
            }
            for n in &notes {
                let _ = writeln!(s, "note: {n}");
            }
            let _ = writeln!(
                s,
                "{} policies checked: {denied} denied, {warned} warnings",
                inputs.policies.len()
            );
            s
        }
    };
    Outcome {
        stdout,
        stderr: String::new(),
        code: i32::from(denied > 0),
    }
}

pub fn reach(inputs: &Inputs, args: &ReachArgs) -> Outcome {
    let cluster = inputs.cluster();
    let mut stderr = String::new();
    for p in &inputs.problems {
        let _ = writeln!(
            stderr,
            "palisade: {}:{}: {}: {} (left out of the matrix)",
            p.file, p.line, p.object, p.message
        );
    }
    let pods = reach::reachable_pods(&cluster);
    let pick = |which: &Option<String>, flag: &str| -> Result<Vec<usize>, String> {
        match which {
            None => Ok(pods.clone()),
            Some(key) => {
                let found: Vec<usize> = pods
                    .iter()
                    .copied()
                    .filter(|&i| cluster.pods()[i].key() == *key)
                    .collect();
                if found.is_empty() {
                    Err(format!(
                        "--{flag} {key}: no pod with an IP by that name in the inputs"
                    ))
                } else {
                    Ok(found)
                }
            }
        }
    };
    let (sources, destinations) = match (pick(&args.from, "from"), pick(&args.to, "to")) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            let _ = writeln!(stderr, "palisade: {e}");
            return Outcome {
                stdout: String::new(),
                stderr,
                code: 2,
            };
        }
    };
    if pods.is_empty() {
        let _ = writeln!(
            stderr,
            "palisade: the inputs hold no Pod with status.podIP; nothing to probe"
        );
        return Outcome {
            stdout: String::new(),
            stderr,
            code: 2,
        };
    }
    let mut ports = args.ports.clone();
    if ports.is_empty() {
        ports = reach::declared_ports(&cluster, &destinations);
    }
    if ports.is_empty() {
        ports.push(ProbePort {
            port: 80,
            protocol: crate::Protocol::Tcp,
        });
    }
    let matrix = Matrix::compute(&cluster, sources, destinations, ports);
    let stdout = match args.output {
        ReachFormat::Json => {
            let mut s =
                serde_json::to_string_pretty(&serde_json::json!({ "probes": matrix.probes(true) }))
                    .unwrap_or_default();
            s.push('\n');
            s
        }
        ReachFormat::Table => {
            let mut s = matrix.render_table();
            if args.explain {
                s.push_str("\nwhy:\n");
                for p in matrix.probes(true) {
                    let mark = if p.allowed { "✓" } else { "✗" };
                    let _ = writeln!(
                        s,
                        "{mark} {} -> {} {}/{}: {}",
                        p.from, p.to, p.port, p.protocol, p.reason
                    );
                }
            }
            s
        }
    };
    Outcome {
        stdout,
        stderr,
        code: 0,
    }
}
