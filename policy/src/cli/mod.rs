//! The `palisade` command line: `check` and `reach` over YAML/JSON files.

mod check;
mod reach;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::checks::{self, CheckId, Mode};
use crate::input::{InputCheck, Inputs};
use crate::reach::ProbePort;

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
    #[arg(long = "mode", value_name = "CHECK=MODE", value_parser = checks::parse_setting, help = mode_help())]
    pub modes: Vec<(CheckId, Mode)>,
}

/// `--mode`'s help: the ids it takes, from the one list of checks.
fn mode_help() -> String {
    let ids: Vec<String> = CheckId::ALL
        .iter()
        .map(|c| format!("{c} ({})", c.default_mode()))
        .collect();
    let input: Vec<String> = InputCheck::ALL
        .iter()
        .map(|c| format!("{} ({})", c.as_str(), c.severity().as_str()))
        .collect();
    format!(
        "Set a check's mode to deny, warn or off, e.g. `--mode one-sided=off`; repeatable. \
         Checks (default mode): {}. Findings about the files themselves, always reported: {}.",
        ids.join(", "),
        input.join(", ")
    )
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

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_DENIED: i32 = 1;
pub const EXIT_UNREADABLE: i32 = 2;

/// Runs a command, writing its output as it goes; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let result = match &cli.command {
        Command::Check(args) => check::run(&Inputs::load_paths(&args.files), args, out, err),
        Command::Reach(args) => reach::run(&Inputs::load_paths(&args.files), args, out, err),
    };
    let flushed = out.flush();
    match result.and_then(|code| flushed.map(|()| code)) {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted was written.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "palisade: writing the output: {e}");
            EXIT_UNREADABLE
        }
    }
}

/// Runs a command on its output in memory (tests, benchmarks): (stdout, stderr, exit code).
pub fn run_captured(cli: Cli) -> (String, String, i32) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(cli, &mut out, &mut err);
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
    )
}

/// `file:line`, or `file` where the line is not known.
fn place(file: &str, line: usize) -> String {
    if line == 0 {
        file.to_string()
    } else {
        format!("{file}:{line}")
    }
}
