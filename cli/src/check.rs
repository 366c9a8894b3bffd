//! `palisade check`: findings with file and line, as text or JSON.

use std::io::{self, Write};

use super::{CheckArgs, CheckFormat, EXIT_DENIED, EXIT_OK, EXIT_UNREADABLE};
use palisade_policy::checks::{self, CheckConfig, Context};
use palisade_policy::input::{InputCheck, Inputs};

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

pub(super) fn run(
    inputs: &Inputs,
    live: Option<&super::Live>,
    args: &CheckArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let cluster = inputs.cluster();
    let config = CheckConfig {
        modes: args.modes.iter().copied().collect(),
    };
    let enforcement = live.map(|l| &l.enforcement);
    let ctx = Context {
        cluster: &cluster,
        enforcement,
        knows_pods: !inputs.pods.is_empty() || !inputs.workloads.is_empty(),
        knows_namespaces: !inputs.namespaces.is_empty(),
    };

    let mut rows: Vec<Row> = inputs
        .problems
        .iter()
        .map(|p| {
            let summary = p.message.lines().next().unwrap_or_default().to_string();
            Row {
                check: p.check.as_str().into(),
                severity: p.check.severity().as_str(),
                object: p.object.clone(),
                file: p.file.clone(),
                line: p.line,
                summary,
                message: p.message.clone(),
            }
        })
        .collect();
    let mut notes: Vec<String> = Vec::new();
    let mut reports: Vec<(String, &str, usize, checks::Report, Vec<String>)> = Vec::new();
    for src in &inputs.policies {
        let report = checks::run(&src.policy, &ctx, &config);
        let (_, unknown) = checks::skip_list(&src.policy);
        reports.push((
            src.policy.id().to_string(),
            &src.file,
            src.line,
            report,
            unknown,
        ));
    }
    for src in &inputs.cluster_policies {
        let report = checks::run_cluster_policy(&src.policy, &src.annotations, &ctx, &config);
        let unknown = report.unknown_skips.clone();
        reports.push((
            src.policy.name.clone(),
            &src.file,
            src.line,
            report,
            unknown,
        ));
    }
    for (object, file, line, report, unknown) in reports {
        for f in &report.findings {
            rows.push(Row {
                check: f.check.to_string(),
                severity: f.severity.as_str(),
                object: object.clone(),
                file: file.to_string(),
                line,
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
    let unreadable = inputs
        .problems
        .iter()
        .filter(|p| p.check == InputCheck::Unreadable)
        .count();
    for p in inputs
        .problems
        .iter()
        .filter(|p| p.check == InputCheck::Unreadable)
    {
        writeln!(
            err,
            "palisade: {}: {}",
            super::place(&p.file, p.line),
            p.message
        )?;
    }
    if inputs.objects == 0 && unreadable == 0 {
        writeln!(
            err,
            "palisade: nothing to check: the inputs hold no Kubernetes object"
        )?;
    } else if inputs.policies.is_empty() && inputs.cluster_policies.is_empty() {
        notes.push("the inputs hold no NetworkPolicy: nothing to check".into());
    }

    match args.output {
        CheckFormat::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &serde_json::json!({ "findings": rows, "notes": notes }),
            )
            .map_err(io::Error::other)?;
            writeln!(out)?;
        }
        CheckFormat::Text => {
            for r in &rows {
                let object = if r.object.is_empty() { "-" } else { &r.object };
                writeln!(
                    out,
                    "{}: {object} {} [{}]",
                    super::place(&r.file, r.line),
                    r.severity,
                    r.check
                )?;
                for line in r.message.lines() {
                    writeln!(out, "    {line}")?;
                }
                writeln!(out)?;
            }
            for n in &notes {
                writeln!(out, "note: {n}")?;
            }
            write!(
                out,
                "{} policies checked: {denied} denied, {warned} warnings",
                inputs.policies.len() + inputs.cluster_policies.len()
            )?;
            if unreadable > 0 {
                write!(
                    out,
                    "; {unreadable} {} could not be read",
                    if unreadable == 1 { "input" } else { "inputs" }
                )?;
            }
            writeln!(out)?;
        }
    }
    Ok(if unreadable > 0 || inputs.objects == 0 {
        EXIT_UNREADABLE
    } else if denied > 0 {
        EXIT_DENIED
    } else {
        EXIT_OK
    })
}
