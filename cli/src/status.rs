//! `palisade status`: is it enforced? For each NetworkPolicy and ClusterNetworkPolicy of a live
//! cluster (or those named), the nodes where the pods it selects run and whether each enforces
//! it ([`report`]).

mod report;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;

use super::Source;
use super::{EXIT_DENIED, EXIT_OK, EXIT_UNREADABLE};
use report::Outcome;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the NetworkPolicies of this namespace (ClusterNetworkPolicies only when POLICY
    /// names one).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The policy: `NAME` (the NetworkPolicies of that name, in every namespace or in the one of
    /// `-n`, and the ClusterNetworkPolicy of that name) or `NAMESPACE/NAME`. Default: every
    /// policy.
    pub policy: Option<String>,
    /// The kubeconfig to read the cluster with (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// Which policies to show.
struct Scope<'a> {
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

impl<'a> Scope<'a> {
    fn of(args: &'a StatusArgs) -> Self {
        match args.policy.as_deref().and_then(|p| p.split_once('/')) {
            Some((ns, name)) => Scope {
                namespace: Some(ns),
                name: Some(name),
            },
            None => Scope {
                namespace: args.namespace.as_deref(),
                name: args.policy.as_deref(),
            },
        }
    }

    fn network_policy(&self, namespace: &str, name: &str) -> bool {
        self.namespace.is_none_or(|n| n == namespace) && self.name.is_none_or(|n| n == name)
    }

    /// ClusterNetworkPolicies are shown with every policy, or when named (not by `NS/NAME`).
    fn cluster_policy(&self, name: &str, qualified: bool) -> bool {
        match self.name {
            Some(n) => !qualified && n == name,
            None => self.namespace.is_none(),
        }
    }

    /// A problem's object (`ns/name` or `name`) is in scope.
    fn object(&self, object: &str, qualified: bool) -> bool {
        match object.split_once('/') {
            Some((ns, name)) => self.network_policy(ns, name),
            None => self.cluster_policy(object, qualified),
        }
    }
}

pub(super) fn run(args: &StatusArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<i32> {
    let source = Source {
        files: Vec::new(),
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    let Some(live) = super::read_live(&source, false, err)? else {
        return Ok(EXIT_UNREADABLE);
    };
    show(&live, args, out, err)
}

fn show(
    live: &super::Live,
    args: &StatusArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    use palisade_policy::input::InputCheck;
    use report::{Nodes, cluster_policy, network_policy};

    let scope = Scope::of(args);
    let qualified = args.policy.as_deref().is_some_and(|p| p.contains('/'));
    let cluster = live.inputs.cluster();
    let nodes = Nodes::new(
        &live.enforcement,
        &live.reported,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    for p in &live.inputs.problems {
        if p.check == InputCheck::Schema && scope.object(&p.object, qualified) {
            writeln!(
                err,
                "palisade: {}: {} (cannot be read, so whether it is enforced is not known)",
                p.object, p.message
            )?;
            outcomes.push(Outcome::Unknown);
        }
    }
    for policy in cluster.policies() {
        if scope.network_policy(&policy.namespace, &policy.name) {
            let s = network_policy(&cluster, policy, &nodes);
            for line in &s.lines {
                writeln!(out, "{line}")?;
            }
            outcomes.push(s.outcome);
        }
    }
    for policy in cluster.cluster_policies() {
        if scope.cluster_policy(&policy.name, qualified) {
            let s = cluster_policy(&cluster, policy, &nodes);
            for line in &s.lines {
                writeln!(out, "{line}")?;
            }
            outcomes.push(s.outcome);
        }
    }
    if outcomes.is_empty() {
        let what = match (&args.policy, scope.namespace) {
            (Some(p), Some(ns)) if !qualified => {
                format!("no NetworkPolicy {p} in namespace {ns} and no ClusterNetworkPolicy {p}")
            }
            (Some(p), _) if qualified => format!("no NetworkPolicy {p}"),
            (Some(p), _) => format!("no NetworkPolicy and no ClusterNetworkPolicy named {p}"),
            (None, Some(ns)) => format!("no NetworkPolicy in namespace {ns}"),
            (None, None) => "no NetworkPolicy and no ClusterNetworkPolicy".into(),
        };
        writeln!(err, "palisade: {what} in {}", live.source)?;
        return Ok(if args.policy.is_some() {
            EXIT_UNREADABLE
        } else {
            EXIT_OK
        });
    }
    writeln!(out, "{}", summary(&outcomes))?;
    Ok(exit_code(&outcomes))
}

/// `0` when every policy is enforced wherever a pod it selects runs (or selects none), `1`
/// when on some such node it is not, or not known to be.
pub fn exit_code(outcomes: &[Outcome]) -> i32 {
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::NotEnforced | Outcome::Unknown))
    {
        EXIT_DENIED
    } else {
        EXIT_OK
    }
}

/// The last line: how many policies of each answer.
pub fn summary(outcomes: &[Outcome]) -> String {
    let n = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    let parts: Vec<String> = [
        (Outcome::NotEnforced, "NOT enforced on some node"),
        (Outcome::Unknown, "not known to be enforced on some node"),
        (Outcome::Enforced, "enforced wherever their pods run"),
        (Outcome::NothingSelected, "select no pod on a node"),
    ]
    .into_iter()
    .filter(|(o, _)| n(*o) > 0)
    .map(|(o, what)| format!("{} {what}", n(o)))
    .collect();
    let total = outcomes.len();
    format!(
        "{total} {}: {}",
        if total == 1 { "policy" } else { "policies" },
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_and_summary_follow_the_worst_answer() {
        use Outcome::*;
        assert_eq!(exit_code(&[Enforced, NothingSelected]), 0);
        assert_eq!(exit_code(&[Enforced, Unknown]), 1);
        assert_eq!(exit_code(&[NotEnforced]), 1);
        assert_eq!(
            summary(&[Enforced, NotEnforced, Enforced, NothingSelected]),
            "4 policies: 1 NOT enforced on some node, 2 enforced wherever their pods run, 1 select no pod on a node"
        );
        assert_eq!(
            summary(&[Unknown]),
            "1 policy: 1 not known to be enforced on some node"
        );
    }

    #[test]
    fn a_policy_is_named_by_name_or_namespace_and_name() {
        let args = |ns: Option<&str>, p: Option<&str>| StatusArgs {
            namespace: ns.map(String::from),
            policy: p.map(String::from),
            kubeconfig: None,
            context: None,
        };
        let all = args(None, None);
        let s = Scope::of(&all);
        assert!(s.network_policy("a", "x") && s.cluster_policy("c", false));
        let ns = args(Some("a"), None);
        let s = Scope::of(&ns);
        assert!(s.network_policy("a", "x") && !s.network_policy("b", "x"));
        assert!(!s.cluster_policy("c", false));
        let named = args(None, Some("x"));
        let s = Scope::of(&named);
        assert!(s.network_policy("a", "x") && s.network_policy("b", "x"));
        assert!(s.cluster_policy("x", false) && !s.cluster_policy("y", false));
        let qualified = args(None, Some("a/x"));
        let s = Scope::of(&qualified);
        assert!(s.network_policy("a", "x") && !s.network_policy("b", "x"));
        assert!(!s.cluster_policy("x", true));
        assert!(s.object("a/x", true) && !s.object("x", true));
    }
}
