//! `palisade denials`: the connection attempts Palisade's enforcers denied (or an audit-mode
//! policy would deny), from the Events they write on the pods, grouped by pod, each with why in
//! the words of `reach --explain`.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_OK, EXIT_UNREADABLE};

#[derive(Debug, Args)]
pub struct DenialsArgs {
    /// Only the pods of this namespace (default: every namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only this pod (with `-n`).
    #[arg(requires = "namespace")]
    pub pod: Option<String>,
    /// At most this many Events are shown, the most recent first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// The kubeconfig to read the cluster with (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

pub(super) fn run(args: &DenialsArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<i32> {
    let target = crate::live::Target {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    match crate::live::denials(&target, args.namespace.as_deref(), args.pod.as_deref()) {
        Ok(denials) => {
            show(&denials, args, k8s_openapi::jiff::Timestamp::now(), out)?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "palisade: {e}")?;
            Ok(EXIT_UNREADABLE)
        }
    }
}

/// Where the denials were looked for, in words.
fn scope(args: &DenialsArgs) -> String {
    match (&args.namespace, &args.pod) {
        (Some(ns), Some(pod)) => format!("pod {ns}/{pod}"),
        (Some(ns), None) => format!("namespace {ns}"),
        _ => "any namespace".to_string(),
    }
}

/// The denials (most recent first), at most `args.limit`, grouped by pod in the order of each
/// pod's most recent one.
fn show(
    denials: &[crate::live::Denial],
    args: &DenialsArgs,
    now: k8s_openapi::jiff::Timestamp,
    out: &mut dyn Write,
) -> io::Result<()> {
    use palisade_policy::node_enforcement::human_duration;

    if denials.is_empty() {
        writeln!(
            out,
            "No denials recorded in {}. Palisade's enforcers write one Event per pod, peer, port and reason a minute (kept for the apiserver's --event-ttl, 1 h by default), where denial reporting is on (enforcer.denials.enabled).",
            scope(args)
        )?;
        return Ok(());
    }
    let shown = &denials[..denials.len().min(args.limit)];
    let mut pods: Vec<(&str, &str)> = Vec::new();
    for d in shown {
        if !pods.contains(&(d.namespace.as_str(), d.pod.as_str())) {
            pods.push((&d.namespace, &d.pod));
        }
    }
    for (namespace, pod) in pods {
        writeln!(out, "{namespace}/{pod}:")?;
        for d in shown
            .iter()
            .filter(|d| d.namespace == namespace && d.pod == pod)
        {
            let age = d.last_seen.map_or_else(
                || "?".to_string(),
                |t| {
                    let secs = now.duration_since(t).as_secs().max(0) as u64;
                    human_duration(std::time::Duration::from_secs(secs))
                },
            );
            writeln!(
                out,
                "  {age:>4} ago  {:>4}x  {}{}  (node {})",
                d.count,
                if d.audit { "[audit] " } else { "" },
                d.message,
                if d.node.is_empty() { "?" } else { &d.node }
            )?;
        }
    }
    if denials.len() > shown.len() {
        writeln!(
            out,
            "({} older Events not shown; --limit {} shows them)",
            denials.len() - shown.len(),
            denials.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Denial;

    fn denial(ns: &str, pod: &str, secs_ago: i64, count: i32, message: &str) -> Denial {
        let now: k8s_openapi::jiff::Timestamp = "2026-12-07T08:00:00Z".parse().unwrap();
        Denial {
            namespace: ns.into(),
            pod: pod.into(),
            audit: false,
            count,
            last_seen: Some(now - k8s_openapi::jiff::SignedDuration::from_secs(secs_ago)),
            node: "node-1".into(),
            message: message.into(),
        }
    }

    fn args(limit: usize) -> DenialsArgs {
        DenialsArgs {
            namespace: Some("production".into()),
            pod: None,
            limit,
            kubeconfig: None,
            context: None,
        }
    }

    fn shown(denials: &[Denial], limit: usize) -> String {
        let mut out = Vec::new();
        let now = "2026-12-07T08:00:00Z".parse().unwrap();
        show(denials, &args(limit), now, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn denials_are_grouped_by_pod_most_recent_first_and_bounded() {
        let denials = [
            denial(
                "production",
                "database",
                5,
                3,
                "production/frontend to production/database:5432/TCP denied: a",
            ),
            denial(
                "production",
                "backend",
                90,
                1,
                "monitoring/x to production/backend:9090/TCP denied: b",
            ),
            denial(
                "production",
                "database",
                600,
                7,
                "ingress-nginx/controller to production/database:5432/TCP denied: c",
            ),
        ];
        assert_eq!(
            shown(&denials, 50),
            "production/database:\n\
             \x20   5s ago     3x  production/frontend to production/database:5432/TCP denied: a  (node node-1)\n\
             \x20  10m ago     7x  ingress-nginx/controller to production/database:5432/TCP denied: c  (node node-1)\n\
             production/backend:\n\
             \x20  90s ago     1x  monitoring/x to production/backend:9090/TCP denied: b  (node node-1)\n"
        );
        let bounded = shown(&denials, 1);
        assert!(
            bounded.ends_with("(2 older Events not shown; --limit 3 shows them)\n"),
            "{bounded}"
        );
        assert!(!bounded.contains("backend"), "{bounded}");
    }

    #[test]
    fn no_denials_says_where_it_looked_and_what_it_needs() {
        let text = shown(&[], 50);
        assert!(
            text.starts_with("No denials recorded in namespace production."),
            "{text}"
        );
        assert!(text.contains("enforcer.denials.enabled"), "{text}");
    }
}
