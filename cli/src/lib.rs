//! The `palisade` command line: `check` and `reach` over YAML/JSON files or a live cluster,
//! `status` and `denials` of a live cluster. What the commands say comes from `palisade-policy`
//! (the semantics and the checks every component shares); this crate parses arguments, reads
//! the cluster ([`live`]) and writes the answers.

mod check;
mod denials;
pub mod live;
mod reach;
mod status;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use palisade_policy::checks::{self, CheckId, Mode};
use palisade_policy::input::{InputCheck, Inputs};
use palisade_policy::reach::ProbePort;

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
    /// Say, per policy of a live cluster, on which nodes the pods it selects run and whether each node enforces it.
    ///
    /// From each node's NodeEnforcement status (its Palisade enforcer's mode, IP families, last
    /// sync and ClusterNetworkPolicy support), else its CNI, as the webhook's `enforcement` check
    /// reads them. Exit code: 0 when every policy shown is enforced on every node where a pod it
    /// selects runs (or selects no pod on a node); 1 when on some such node it is not enforced,
    /// or not known to be; 2 when the cluster cannot be read or POLICY names no policy.
    Status(status::StatusArgs),
    /// List the connection attempts Palisade's enforcers denied, from the Events they write on the pods, with why.
    ///
    /// Grouped by pod, most recent first: each Event gathers one peer, port and reason for a
    /// minute, with a count, and says why in the words of `reach --explain` (`[audit]`: a policy
    /// in audit mode would deny it). Exit code: 0 when the cluster was read (denials or none), 2
    /// when it cannot be read.
    Denials(denials::DenialsArgs),
}

/// Where the objects come from: files, or else a live cluster.
#[derive(Debug, Args)]
pub struct Source {
    /// Files or directories of YAML/JSON manifests (`-` for stdin); repeatable. Without it, the
    /// cluster of the current kubeconfig context is read, as kubectl would.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The kubeconfig to read the cluster with (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, conflicts_with = "files")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, conflicts_with = "files")]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: Source,
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
    #[command(flatten)]
    pub source: Source,
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
    /// Say for each cell which policy and rule decided it (on a live cluster, also whether the
    /// nodes enforce it).
    #[arg(long)]
    pub explain: bool,
    /// The matrix of one IP family's traffic: each pod by its address of that family (pods
    /// without one left out), ipBlocks of the other family matching nothing. Default: each pod
    /// by its `status.podIP`.
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FamilyArg {
    #[value(name = "IPv4", alias = "ipv4")]
    V4,
    #[value(name = "IPv6", alias = "ipv6")]
    V6,
}

impl FamilyArg {
    pub fn family(self) -> palisade_policy::IpFamily {
        match self {
            FamilyArg::V4 => palisade_policy::IpFamily::V4,
            FamilyArg::V6 => palisade_policy::IpFamily::V6,
        }
    }
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
        Command::Check(args) if !args.source.files.is_empty() => check::run(
            &Inputs::load_paths(&args.source.files),
            None,
            args,
            out,
            err,
        ),
        Command::Reach(args) if !args.source.files.is_empty() => reach::run(
            &Inputs::load_paths(&args.source.files),
            None,
            args,
            out,
            err,
        ),
        Command::Check(args) => read_live(&args.source, true, err).and_then(|l| match l {
            Some(l) => check::run(&l.inputs, Some(&l), args, out, err),
            None => Ok(EXIT_UNREADABLE),
        }),
        Command::Reach(args) => read_live(&args.source, false, err).and_then(|l| match l {
            Some(l) => reach::run(&l.inputs, Some(&l), args, out, err),
            None => Ok(EXIT_UNREADABLE),
        }),
        Command::Status(args) => status::run(args, out, err),
        Command::Denials(args) => denials::run(args, out, err),
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

pub use crate::live::Live;

/// Reads the live cluster, or says why not (then `None`).
fn read_live(source: &Source, workloads: bool, err: &mut dyn Write) -> io::Result<Option<Live>> {
    let target = crate::live::Target {
        kubeconfig: source.kubeconfig.clone(),
        context: source.context.clone(),
    };
    match crate::live::read(&target, workloads) {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            writeln!(err, "palisade: {e}")?;
            Ok(None)
        }
    }
}

/// Runs `palisade ARGS...` (without the program name) with its output in memory, as a user
/// would see it: (stdout, stderr, exit code). For tests that run the CLI in-process.
pub fn run_args<I, T>(args: I) -> (String, String, i32)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = std::iter::once(std::ffi::OsString::from("palisade"))
        .chain(args.into_iter().map(Into::into));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = match Cli::try_parse_from(args) {
        Ok(cli) => run(cli, &mut out, &mut err),
        Err(e) => {
            err.extend(e.render().to_string().bytes());
            e.exit_code()
        }
    };
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
