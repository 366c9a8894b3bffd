//! `palisade reach`: the matrix, streamed a row at a time, alike pods grouped.

use std::io::{self, Write};
use std::time::Instant;

use super::{EXIT_OK, EXIT_UNREADABLE, Live, ReachArgs, ReachFormat, place};
use palisade_policy::cluster::Cluster;
use palisade_policy::input::{InputCheck, Inputs};
use palisade_policy::reach::{self, Cell, Plan, ProbePort};

/// Above this many cells, the size of the work is said before it starts.
const ESTIMATE_ABOVE: u64 = 1_000_000;

pub(super) fn run(
    inputs: &Inputs,
    live: Option<&Live>,
    args: &ReachArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let mut unreadable = false;
    for p in &inputs.problems {
        match p.check {
            InputCheck::Unreadable => {
                unreadable = true;
                writeln!(err, "palisade: {}: {}", place(&p.file, p.line), p.message)?;
            }
            InputCheck::Schema => writeln!(
                err,
                "palisade: {}: {}: {} (left out of the matrix)",
                place(&p.file, p.line),
                p.object,
                p.message
            )?,
            InputCheck::FailingClosed => writeln!(
                err,
                "palisade: {}: {}: {} (in the matrix as enforced)",
                place(&p.file, p.line),
                p.object,
                p.message
            )?,
            InputCheck::DuplicateObject | InputCheck::EmptyFile => writeln!(
                err,
                "palisade: warning: {}: {}",
                place(&p.file, p.line),
                p.message
            )?,
        }
    }
    if unreadable {
        // A matrix without some of the policies would predict what the cluster does not do.
        writeln!(
            err,
            "palisade: no matrix: some inputs could not be read, and the matrix would be wrong without them"
        )?;
        return Ok(EXIT_UNREADABLE);
    }
    let mut cluster = inputs.cluster();
    if let Some(family) = args.family {
        cluster = cluster.in_family(family.family());
    }
    run_on(&cluster, live, args, out, err)
}

/// The matrix of a cluster, however it was read (files or a live cluster).
fn run_on(
    cluster: &Cluster,
    live: Option<&Live>,
    args: &ReachArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let pods = reach::reachable_pods(cluster);
    if pods.is_empty() {
        match args.family {
            Some(f) => writeln!(
                err,
                "palisade: the inputs hold no Pod with an {} address; nothing to probe",
                f.family()
            )?,
            None => writeln!(
                err,
                "palisade: the inputs hold no Pod with status.podIP; nothing to probe"
            )?,
        }
        return Ok(EXIT_UNREADABLE);
    }
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
            writeln!(err, "palisade: {e}")?;
            return Ok(EXIT_UNREADABLE);
        }
    };
    let mut ports = args.ports.clone();
    if ports.is_empty() {
        ports = reach::declared_ports(cluster, &destinations);
    }
    if ports.is_empty() {
        ports.push(ProbePort {
            port: 80,
            protocol: palisade_policy::Protocol::Tcp,
        });
    }
    // On a live cluster the nodes' enforcement is part of the answer, so pods on different
    // nodes are told apart.
    let plan = Plan::grouped(cluster, &sources, &destinations, ports, live.is_some());
    if plan.cells() > ESTIMATE_ABOVE {
        estimate(&plan, sources.len(), destinations.len(), args, err)?;
    }
    match args.output {
        ReachFormat::Json => json(&plan, live, out)?,
        ReachFormat::Table => {
            table(&plan, out)?;
            in_audit_mode(cluster, out)?;
            if args.explain {
                why(&plan, live, out)?;
            }
        }
    }
    Ok(EXIT_OK)
}

/// A group as a row or column names it: its first pod, and how many behave alike.
fn label(plan: &Plan, group: &[usize]) -> String {
    let key = plan_pod(plan, group[0]).key();
    match group.len() {
        1 => key,
        n => format!("{key} (+{} alike)", n - 1),
    }
}

fn plan_pod<'a>(plan: &'a Plan, i: usize) -> &'a palisade_policy::Pod {
    &plan.cluster().pods()[i]
}

/// Says how big the work is before doing it, from the time one row takes.
fn estimate(
    plan: &Plan,
    sources: usize,
    destinations: usize,
    args: &ReachArgs,
    err: &mut dyn Write,
) -> io::Result<()> {
    let started = Instant::now();
    let mut row = Vec::new();
    plan.row(0, 0, &mut row);
    let rows = plan.sources.len() as f64 * plan.ports.len() as f64;
    let mut seconds = started.elapsed().as_secs_f64() * rows;
    // A table cell is its padding and a 3-byte mark; a JSON probe or a reason line, ~160 bytes.
    let colw = column_width(plan) as f64;
    let per_cell = match args.output {
        ReachFormat::Json => 160.0,
        ReachFormat::Table if args.explain => 160.0 + colw + 2.0,
        ReachFormat::Table => colw + 2.0,
    };
    let bytes = plan.cells() as f64 * per_cell;
    if args.explain || matches!(args.output, ReachFormat::Json) {
        // Writing each cell's reason costs about as much as deciding it, and more.
        seconds += plan.cells() as f64 * 1e-6;
    }
    writeln!(
        err,
        "palisade: {sources} source and {destinations} destination pods, in {} and {} groups of \
         alike pods (same namespace, labels and ports), × {} ports: {} cells, about {} and {} of \
         output. Narrow it with --from, --to or --port.",
        plan.sources.len(),
        plan.destinations.len(),
        plan.ports.len(),
        thousands(plan.cells()),
        duration(seconds),
        size(bytes),
    )
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{} s", seconds.ceil())
    } else if seconds < 3600.0 {
        format!("{} min", (seconds / 60.0).ceil())
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.0} {}", UNITS[unit])
}

/// The width of a table column: the largest column number and a space.
fn column_width(plan: &Plan) -> usize {
    plan.destinations.len().to_string().len().max(2) + 1
}

/// One table per port (sources down the side, destinations across, numbered), one row at a
/// time; the legend once at the top, the column key once at the end.
fn table(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let rows: Vec<String> = plan.sources.iter().map(|g| label(plan, g)).collect();
    let width = rows
        .iter()
        .map(|r| r.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let colw = column_width(plan);
    let audit = plan
        .cluster()
        .policies()
        .iter()
        .any(|p| plan.cluster().audit_mode(p).is_some());
    writeln!(
        out,
        "✓ allowed, ✗ blocked{}; rows: from, columns: to (numbered, key below)",
        if audit {
            ", ~ allowed: policies in audit mode would block it (not enforced)"
        } else {
            ""
        }
    )?;
    let mut cells = Vec::new();
    for (pi, port) in plan.ports.iter().enumerate() {
        writeln!(out, "\n{port}")?;
        write!(out, "{:width$}", "")?;
        for d in 1..=plan.destinations.len() {
            write!(out, "{d:>colw$}")?;
        }
        writeln!(out)?;
        for (sg, name) in rows.iter().enumerate() {
            plan.row(sg, pi, &mut cells);
            let pad = width - name.chars().count();
            let mut line = String::with_capacity(width + cells.len() * (colw + 2));
            line.push_str(name);
            line.extend(std::iter::repeat_n(' ', pad));
            for c in &cells {
                line.extend(std::iter::repeat_n(' ', colw - 1));
                line.push(match (c.allowed(), c.audit_would_deny()) {
                    (true, false) => '✓',
                    (true, true) => '~',
                    (false, _) => '✗',
                });
            }
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out, "\ncolumns:")?;
    for (i, g) in plan.destinations.iter().enumerate() {
        writeln!(out, "{:>4}  {}", i + 1, label(plan, g))?;
    }
    Ok(())
}

/// Policies in audit mode named at most, then "and K more".
const MAX_AUDIT: usize = 10;

/// The policies in audit mode: evaluated, their denials only reported. One line each: why, and
/// how to enforce it.
fn in_audit_mode(cluster: &Cluster, out: &mut dyn Write) -> io::Result<()> {
    let audit: Vec<String> = cluster
        .policies()
        .iter()
        .filter_map(|p| {
            let mode = cluster.audit_mode(p)?;
            Some(format!(
                "  {}/{}: {}; to enforce it, {}",
                p.namespace,
                p.name,
                mode.why(p),
                mode.promote(p)
            ))
        })
        .collect();
    if audit.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "
in audit mode (not enforced: what they deny is logged and counted, not dropped):"
    )?;
    for line in audit.iter().take(MAX_AUDIT) {
        writeln!(out, "{line}")?;
    }
    if audit.len() > MAX_AUDIT {
        writeln!(out, "  and {} more", audit.len() - MAX_AUDIT)?;
    }
    Ok(())
}

/// One line per cell naming the policy and rule that decided it.
fn why(plan: &Plan, live: Option<&Live>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "\nwhy:")?;
    let mut cells = Vec::new();
    for (sg, sgroup) in plan.sources.iter().enumerate() {
        let per_port = rows_of(plan, sg, &mut cells);
        for (dg, dgroup) in plan.destinations.iter().enumerate() {
            for (pi, port) in plan.ports.iter().enumerate() {
                let cell = per_port[pi][dg];
                let (s, d) = plan.pair(sg, dg);
                let (src, dst) = (plan_pod(plan, s), plan_pod(plan, d));
                let p = plan.probe(src, dst, *port, cell, true);
                let mark = if p.allowed { "✓" } else { "✗" };
                writeln!(
                    out,
                    "{mark} {} -> {} {port}: {}{}",
                    label(plan, sgroup),
                    label(plan, dgroup),
                    p.reason,
                    enforced(live, src, dst, cell)
                )?;
                if plan.hides_itself(sg, dg) {
                    let own = plan_pod(plan, sgroup[0]).key();
                    writeln!(
                        out,
                        "✓ {own} -> {own} {port} (and each alike pod to itself): {}",
                        palisade_policy::verdict::TO_ITSELF
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// On a live cluster: whether the nodes enforce what policy decides for a cell (egress on the
/// source's node, ingress on the destination's), so one line says why it is blocked or open.
fn enforced(
    live: Option<&Live>,
    src: &palisade_policy::Pod,
    dst: &palisade_policy::Pod,
    cell: Cell,
) -> String {
    let Some(live) = live else {
        return String::new();
    };
    let [egress, ingress] = cell.sides();
    let mut parts = Vec::new();
    for (side, isolated, pod) in [("egress", egress, src), ("ingress", ingress, dst)] {
        if isolated.is_none() {
            continue;
        }
        parts.push(match pod.node.as_deref() {
            Some(node) => format!("{side}: {}", live.describe_pod(node, pod)),
            None => format!("{side}: {} is on no node yet", pod.key()),
        });
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(". Enforcement: {}", parts.join("; "))
}

/// Every port's row of one source group.
fn rows_of(plan: &Plan, sg: usize, scratch: &mut Vec<Cell>) -> Vec<Vec<Cell>> {
    (0..plan.ports.len())
        .map(|pi| {
            plan.row(sg, pi, scratch);
            scratch.clone()
        })
        .collect()
}

/// `{"alike": {...}, "probes": [...]}`, a probe per line as it is decided. `alike` maps the pod
/// that stands for a group to the others that behave the same (their probes are not repeated).
fn json(plan: &Plan, live: Option<&Live>, out: &mut dyn Write) -> io::Result<()> {
    let mut alike = serde_json::Map::new();
    for g in plan.sources.iter().chain(&plan.destinations) {
        if g.len() > 1 {
            let others: Vec<String> = g[1..].iter().map(|&i| plan_pod(plan, i).key()).collect();
            alike.insert(plan_pod(plan, g[0]).key(), others.into());
        }
    }
    writeln!(
        out,
        "{{\"alike\": {},\n\"probes\": [",
        serde_json::Value::Object(alike)
    )?;
    let mut cells = Vec::new();
    let mut first = true;
    for (sg, sgroup) in plan.sources.iter().enumerate() {
        let per_port = rows_of(plan, sg, &mut cells);
        for (dg, _) in plan.destinations.iter().enumerate() {
            for (pi, port) in plan.ports.iter().enumerate() {
                let (s, d) = plan.pair(sg, dg);
                let (src, dst) = (plan_pod(plan, s), plan_pod(plan, d));
                let cell = per_port[pi][dg];
                let mut p = plan.probe(src, dst, *port, cell, true);
                p.reason.push_str(&enforced(live, src, dst, cell));
                if !first {
                    writeln!(out, ",")?;
                }
                first = false;
                serde_json::to_writer(&mut *out, &p).map_err(io::Error::other)?;
                if plan.hides_itself(sg, dg) {
                    // The pod reaching itself, which the cell of its group does not decide.
                    let own = plan_pod(plan, sgroup[0]);
                    let itself = plan.probe(own, own, *port, Cell::TO_ITSELF, true);
                    writeln!(out, ",")?;
                    serde_json::to_writer(&mut *out, &itself).map_err(io::Error::other)?;
                }
            }
        }
    }
    writeln!(out, "\n]}}")
}
