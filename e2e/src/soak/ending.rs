//! The soak's end checks: everything right and fresh once the faults stop, then the leak check
//! (`helm uninstall` leaves nothing behind; a fresh install with the same objects has the same
//! figures).

use super::*;
use crate::util::http_get_at;

/// How a NodeEnforcement's `lastSync` may be old: the enforcer renews it at least every 30 s
/// (README); 5 s more for the second-granular timestamp and the write.
pub const LAST_SYNC_BOUND: Duration = Duration::from_secs(35);

/// Seconds since the epoch of an RFC 3339 UTC time as the apiserver writes it
/// (`2026-12-07T09:21:12Z`, fractions allowed).
fn epoch_seconds(rfc3339: &str) -> Option<i64> {
    let (date, time) = rfc3339.trim().trim_end_matches('Z').split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + min * 60 + sec)
}

/// Every NodeEnforcement: enforcing, and its `lastSync` at most [`LAST_SYNC_BOUND`] old.
/// The ages, by node.
fn every_node_fresh(cp: &ControlPlane) -> Result<Vec<(String, Duration)>, String> {
    let out = cp
        .kubectl_ok(&[
            "get",
            "nodeenforcements",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.enforcing} {.status.lastSync}{\"\\n\"}{end}",
        ])
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut ages = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(node), Some(enforcing)) = (f.first(), f.get(1)) else {
            continue;
        };
        let age = f.get(2).and_then(|t| epoch_seconds(t)).map(|t| now - t);
        match age {
            Some(age) if *enforcing == "true" && age <= LAST_SYNC_BOUND.as_secs() as i64 => {
                ages.push((node.to_string(), Duration::from_secs(age.max(0) as u64)))
            }
            _ => {
                return Err(format!(
                    "NodeEnforcement {node}: enforcing {enforcing}, lastSync age {age:?} s (bound {LAST_SYNC_BOUND:?})"
                ));
            }
        }
    }
    if ages.len() == NODES.len() {
        Ok(ages)
    } else {
        Err(format!("NodeEnforcements: {out}"))
    }
}

/// The NetworkPolicies Palisade's operator manages, one per line: namespace, name, baseline.
fn managed_policies(cp: &ControlPlane) -> Result<String, Error> {
    cp.kubectl_ok(&[
        "get",
        "networkpolicies",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=palisade",
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name} {.metadata.labels.palisade\\.dev/baseline}{\"\\n\"}{end}",
    ])
}

/// Every namespace labelled `palisade.dev/baseline=NAME`, NAME an existing NetworkBaseline, has
/// that baseline's policies, and no other namespace has any.
fn baselines_in_place(cp: &ControlPlane) -> Result<(), String> {
    let get = |args: &[&str]| cp.kubectl_ok(args).map_err(|e| e.to_string());
    let baselines = get(&[
        "get",
        "networkbaselines",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let baselines: Vec<&str> = baselines.split_whitespace().collect();
    let labelled = get(&[
        "get",
        "namespaces",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.palisade\\.dev/baseline}{\"\\n\"}{end}",
    ])?;
    let managed = managed_policies(cp).map_err(|e| e.to_string())?;
    let mut wrong = Vec::new();
    for line in labelled.lines() {
        let mut f = line.split_whitespace();
        let (Some(ns), wanted) = (f.next(), f.next()) else {
            continue;
        };
        let wanted = wanted.filter(|b| baselines.contains(b));
        let has: Vec<&str> = managed
            .lines()
            .filter(|m| m.split_whitespace().next() == Some(ns))
            .filter_map(|m| m.split_whitespace().nth(2))
            .collect();
        match wanted {
            Some(b) if !has.contains(&b) || has.iter().any(|h| *h != b) => wrong.push(format!(
                "{ns}: opted in to {b}, has the policies of {has:?}"
            )),
            None if !has.is_empty() => {
                wrong.push(format!("{ns}: not opted in, has the policies of {has:?}"))
            }
            _ => {}
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// A node's enforcer and what it holds in the kernel.
#[derive(Debug, Clone)]
pub struct NodeFigures {
    pub node: String,
    pub memory: EnforcerMemory,
    pub rules: NodeRules,
}

impl NodeFigures {
    fn line(&self) -> String {
        format!(
            "{}: enforcer {}, {} PAL chains, {} rules in them, {} ipsets",
            self.node,
            self.memory.line(),
            self.rules.chains.len(),
            self.rules.rules,
            self.rules.sets.len()
        )
    }
}

/// One enforcer process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnforcerMemory {
    /// Its host PID: a fault that replaces the enforcer starts a new process.
    pub pid: u32,
    /// Its live heap (`palisade_enforcer_heap_bytes`, the least of three readings 0.3 s apart,
    /// so a sync in flight does not count), KiB. What a leak grows.
    pub heap_kib: u64,
    /// Its anonymous resident memory (`RssAnon`: the heap, what the allocator keeps of freed
    /// memory, and thread stacks), KiB.
    pub anon_kib: u64,
    /// All of its resident memory (`VmRSS`, the binary's pages too), KiB.
    pub vm_rss_kib: u64,
}

impl EnforcerMemory {
    fn line(&self) -> String {
        format!(
            "heap {} KiB, RSS {} KiB anonymous ({} KiB in all)",
            self.heap_kib, self.anon_kib, self.vm_rss_kib
        )
    }
}

/// Chains and the rules in them, summed over the nodes, leaving out those of Palisade's own
/// pods (their rules' comments name the release namespace): where those pods run changes with
/// every install and rollout, and a node needs the chains of every policy rule its pods use;
/// and the ipsets.
fn totals(figures: &[NodeFigures]) -> (usize, usize, usize) {
    let own = format!("--comment \"{}/", chart::NAMESPACE);
    figures.iter().fold((0, 0, 0), |(c, r, s), f| {
        let chain_of = |line: &str| -> Option<String> {
            line.split_once("-A ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(String::from)
        };
        let own_chains: std::collections::BTreeSet<String> = f
            .rules
            .rule_lines
            .iter()
            .filter(|l| l.contains(&own))
            .filter_map(|l| chain_of(l))
            .collect();
        let chains = f
            .rules
            .chains
            .iter()
            .filter(|c| !own_chains.iter().any(|o| c.contains(&format!(":{o} "))))
            .count();
        let rules = f
            .rules
            .rule_lines
            .iter()
            .filter(|l| chain_of(l).is_none_or(|c| !own_chains.contains(&c)))
            .count();
        (c + chains, r + rules, s + f.rules.sets.len())
    })
}

/// The pods and directions with chains of their own on `figures`' nodes (`ns/pod ingress`),
/// from the comment of each chain's first rule; Palisade's own pods by workload and count
/// (their names change with every install).
fn protected(figures: &[NodeFigures]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for line in figures.iter().flat_map(|f| &f.rules.rule_lines) {
        let Some(comment) = line
            .split("--comment \"")
            .nth(1)
            .and_then(|c| c.split('"').next())
        else {
            continue;
        };
        let Some(owner) = comment.strip_suffix(": start unmarked") else {
            continue;
        };
        let owner = match owner.strip_prefix(&format!("{}/", chart::NAMESPACE)) {
            // `palisade-webhook-6d4976679c-7h6xw ingress` → `palisade-webhook pods ingress`
            Some(own) => {
                let (pod, direction) = own.rsplit_once(' ').unwrap_or((own, ""));
                let workload: Vec<&str> = pod.split('-').take(2).collect();
                format!(
                    "{}/{} pods {direction}",
                    chart::NAMESPACE,
                    workload.join("-")
                )
            }
            None => owner.to_string(),
        };
        *out.entry(owner).or_insert(0) += 1;
    }
    out
}

/// How the protected pods of `end` and `fresh` differ (see [`protected`]).
fn protected_apart(end_figures: &[NodeFigures], fresh_figures: &[NodeFigures]) -> String {
    let (end, fresh) = (protected(end_figures), protected(fresh_figures));
    let apart: Vec<String> = end
        .keys()
        .chain(fresh.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| end.get(*k) != fresh.get(*k))
        .map(|k| {
            format!(
                "{k}: {} at the end, {} fresh",
                end.get(k).copied().unwrap_or(0),
                fresh.get(k).copied().unwrap_or(0)
            )
        })
        .collect();
    let rules = |figures: &[NodeFigures]| -> std::collections::BTreeSet<String> {
        figures
            .iter()
            .flat_map(|f| &f.rules.rule_lines)
            .filter(|l| !l.contains(&format!("\"{}/", chart::NAMESPACE)))
            .map(|l| {
                l.split_once(": ")
                    .map_or(l.as_str(), |(_, r)| r)
                    .to_string()
            })
            .collect()
    };
    let (end_rules, fresh_rules) = (rules(end_figures), rules(fresh_figures));
    let only = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| {
        a.difference(b)
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    };
    // Chains by name (a hash of what they hold), each with its first rule.
    let chains = |figures: &[NodeFigures]| -> std::collections::BTreeMap<String, String> {
        figures
            .iter()
            .flat_map(|f| {
                f.rules.chains.iter().map(|c| {
                    let name = c
                        .split_once(": :")
                        .map_or(c.as_str(), |(_, n)| n)
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let first = f
                        .rules
                        .rule_lines
                        .iter()
                        .find(|l| l.contains(&format!("-A {name} ")))
                        .cloned()
                        .unwrap_or_else(|| "(empty)".into());
                    (format!("{}: {name}", f.node), first)
                })
            })
            .collect()
    };
    let (end_chains, fresh_chains) = (chains(end_figures), chains(fresh_figures));
    let chains_only = |a: &std::collections::BTreeMap<String, String>,
                       b: &std::collections::BTreeMap<String, String>| {
        a.iter()
            .filter(|(k, _)| !b.contains_key(*k))
            .take(15)
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n    ")
    };
    format!(
        "chains only at the end:\n    {}\n  chains only fresh:\n    {}\n  {}; rules of other pods only at the end:\n    {}\n  only fresh:\n    {}",
        chains_only(&end_chains, &fresh_chains),
        chains_only(&fresh_chains, &end_chains),
        if apart.is_empty() {
            "the same pods have chains".to_string()
        } else {
            format!("chains of pods apart: {}", apart.join("; "))
        },
        only(&end_rules, &fresh_rules),
        only(&fresh_rules, &end_rules)
    )
}

/// The memory of the enforcer on `node` (its pods in namespace `ns`): RSS from `/proc`, the
/// heap from its `/metrics`.
pub(super) fn enforcer_memory(
    cluster: &RealCluster,
    ns: &str,
    node: &str,
) -> Result<EnforcerMemory, Error> {
    let cp = &cluster.cp;
    let pod = enforcer_on(cp, node)?;
    let (container, _) = container_of(cp, ns, &pod)?;
    let n = cluster.node_or_err(node)?;
    let pid = n.task_pid(&container)?;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|source| Error::Io {
            what: format!("reading the status of the enforcer on {node}"),
            source,
        })?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let admin = std::net::SocketAddr::from((n.address, chart::ENFORCER_ADMIN_PORT));
    let mut heap = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Some(bytes) = http_get_at(admin, "/metrics")
            .and_then(|(_, body)| crate::util::sample(&body, "palisade_enforcer_heap_bytes"))
        {
            heap.push(bytes as u64 / 1024);
        }
    }
    let heap_kib = heap.into_iter().min().ok_or_else(|| Error::Command {
        what: format!("reading palisade_enforcer_heap_bytes from the enforcer at {admin}"),
        stderr: "no answer with the metric".into(),
    })?;
    Ok(EnforcerMemory {
        pid,
        heap_kib,
        anon_kib: kib("RssAnon:"),
        vm_rss_kib: kib("VmRSS:"),
    })
}

/// [`NodeFigures`] of every node now.
fn node_figures(cluster: &RealCluster) -> Result<Vec<NodeFigures>, Error> {
    let ns = chart::enforcer_namespace(&cluster.cp);
    let mut out = Vec::new();
    for node in NODES {
        out.push(NodeFigures {
            node: node.to_string(),
            memory: enforcer_memory(cluster, &ns, node)?,
            rules: cluster.node_or_err(node)?.palisade_rules()?,
        });
    }
    Ok(out)
}

/// How the memory of a node's enforcer at the end of the soak breaks the leak bounds against
/// a fresh install's, one line each. A leak makes the end larger, so only that is bounded: a
/// young enforcer holds a few hundred KiB more than one that has run for a minute (the
/// 60-minute soak: the first sample of a process 2.3 MiB, the next 2.0), and a fresh install's
/// enforcers are young.
///
/// The live heap is what a leak grows: within 10 % or 256 KiB, whichever is more. A fresh
/// enforcer has not yet got the bounded state a soak leaves (a counter per policy that denied,
/// denial Events gathered for a minute, maps and vectors whose capacity grew with the churn's
/// peaks and does not shrink): a 2-minute soak's enforcer ended 104 KiB (10.5 %) over a fresh one's 992 KiB,
/// while 200 policy writes, relabels and scales, done twice in a quiet cluster, left the heap at
/// 770 KiB after each. A leak of 600 bytes per churn step crosses 256 KiB in a 10-minute soak.
///
/// Resident memory is no leak signal on a heap of 1 MiB: the enforcers of one 10-minute soak
/// were measured between 2.8 and 4.7 MiB of anonymous RSS, and the two of one fresh install 1.0
/// MiB apart (the blocking pool's thread stacks, what the allocator keeps), so anonymous RSS only
/// has to be within 10 % or 3 MiB, which still catches a large leak outside the heap (threads,
/// mappings).
fn memory_apart(node: &str, end: &EnforcerMemory, fresh: &EnforcerMemory) -> Vec<String> {
    let mut out = Vec::new();
    let heap_over = end.heap_kib.saturating_sub(fresh.heap_kib);
    if heap_over * 10 > fresh.heap_kib && heap_over > 256 {
        out.push(format!(
            "{node}: enforcer heap {} KiB at the end of the soak, {} KiB fresh (more than 10 % and 256 KiB over)",
            end.heap_kib, fresh.heap_kib
        ));
    }
    let rss_over = end.anon_kib.saturating_sub(fresh.anon_kib);
    if rss_over * 10 > fresh.anon_kib && rss_over > 3 * 1024 {
        out.push(format!(
            "{node}: enforcer anonymous RSS {} KiB at the end of the soak, {} KiB fresh (more than 10 % and 3 MiB over)",
            end.anon_kib, fresh.anon_kib
        ));
    }
    out
}

/// What [`end_checks`] saw.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// From the end of the soak until the matrix, the baselines and every NodeEnforcement
    /// (fresh and enforcing) were right; `None`: not within 30 s, with `unsettled` saying why.
    pub settled_after: Option<Duration>,
    pub unsettled: String,
    /// Each NodeEnforcement's `lastSync` age then.
    pub last_sync_ages: Vec<(String, Duration)>,
    pub end_of_soak: Vec<NodeFigures>,
    /// How long `helm uninstall` and the nodes' cleanup took.
    pub uninstalled_after: Duration,
    /// What Palisade left 60 s after `helm uninstall` (empty: nothing).
    pub leaks: Vec<String>,
    /// What stays (NodeEnforcements, owned by their Node; the policies of baselines): listed
    /// for the record.
    pub kept: Vec<String>,
    /// The same figures after a fresh install with the same objects.
    pub fresh: Vec<NodeFigures>,
    /// Why the fresh install's figures are missing.
    pub fresh_failed: Option<String>,
}

impl Ending {
    /// What the end of a soak promises and this run broke, one line each.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.settled_after.is_none() {
            out.push(format!(
                "30 s after the soak the cluster was not right: {}",
                self.unsettled
            ));
        }
        for leak in &self.leaks {
            out.push(format!("left after helm uninstall: {leak}"));
        }
        if let Some(why) = &self.fresh_failed {
            out.push(format!("the fresh install: {why}"));
        }
        for (end, fresh) in self.end_of_soak.iter().zip(&self.fresh) {
            out.extend(memory_apart(&end.node, &end.memory, &fresh.memory));
        }
        // Summed over the nodes, Palisade's own pods left out (see `totals`).
        if !self.fresh.is_empty() {
            let (end, fresh) = (totals(&self.end_of_soak), totals(&self.fresh));
            for (what, a, b) in [
                ("chains", end.0, fresh.0),
                ("rules", end.1, fresh.1),
                ("ipsets", end.2, fresh.2),
            ] {
                if a.abs_diff(b) * 10 > b {
                    out.push(format!(
                        "{a} {what} on the nodes at the end of the soak, {b} fresh (more than 10 % apart); {}",
                        protected_apart(&self.end_of_soak, &self.fresh)
                    ));
                }
            }
        }
        out
    }

    pub fn summary(&self) -> String {
        let mut out = vec![format!(
            "end of the soak: matrix, baselines and NodeEnforcements right {}; lastSync ages {}",
            self.settled_after.map_or_else(
                || format!("NOT within 30 s: {}", self.unsettled),
                |d| format!("after {:.1} s", d.as_secs_f64())
            ),
            self.last_sync_ages
                .iter()
                .map(|(n, a)| format!("{n} {} s", a.as_secs()))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        for f in &self.end_of_soak {
            out.push(format!("  at the end of the soak: {}", f.line()));
        }
        out.push(format!(
            "  helm uninstall and the nodes' cleanup: {:.1} s; left: {}",
            self.uninstalled_after.as_secs_f64(),
            if self.leaks.is_empty() {
                "nothing".to_string()
            } else {
                self.leaks.join("; ")
            }
        ));
        if !self.kept.is_empty() {
            out.push(format!("  kept: {}", self.kept.join("; ")));
        }
        for f in &self.fresh {
            out.push(format!("  fresh install:          {}", f.line()));
        }
        if let Some(why) = &self.fresh_failed {
            out.push(format!("  fresh install failed: {why}"));
        } else {
            out.push(format!(
                "  end of the soak and fresh, summed over the nodes, Palisade's own pods left out: (chains, rules, ipsets) {:?} and {:?}",
                totals(&self.end_of_soak),
                totals(&self.fresh),
            ));
        }
        out.join("\n")
    }
}

/// What Palisade left on the nodes and in the cluster after `helm uninstall`: rules, ipsets,
/// NFLOG rules, processes, webhook configurations, Secrets, the chart's NetworkBaseline; and
/// (second) what stays on purpose.
fn left_behind(cluster: &RealCluster) -> (Vec<String>, Vec<String>) {
    let cp = &cluster.cp;
    let mut leaks = Vec::new();
    for node in cluster.nodes() {
        match node.palisade_rules() {
            Ok(r) if r.is_empty() => {}
            Ok(r) => leaks.push(format!(
                "{}: chains {:?}, {} rules, ipsets {:?}, NFLOG rules {:?}",
                node.name, r.chains, r.rules, r.sets, r.nflog
            )),
            Err(e) => leaks.push(format!("{}: {e}", node.name)),
        }
        let processes = node.processes_named("palisade-");
        if !processes.is_empty() {
            leaks.push(format!("{}: Palisade processes {processes:?}", node.name));
        }
    }
    let list = |args: &[&str]| {
        cp.kubectl_ok(args)
            .unwrap_or_else(|e| format!("(listing failed: {e})"))
    };
    let webhooks = list(&[
        "get",
        "validatingwebhookconfigurations,mutatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    let secrets = list(&[
        "get",
        "secrets,pods,deployments,daemonsets",
        "-A",
        "-o",
        "name",
    ]);
    let baselines = list(&["get", "networkbaselines", "-o", "name"]);
    for line in webhooks
        .lines()
        .chain(secrets.lines())
        .filter(|l| l.contains("palisade"))
        .chain(baselines.lines().filter(|l| l.ends_with("/default")))
    {
        leaks.push(line.to_string());
    }
    let mut kept = Vec::new();
    let node_enforcements = list(&["get", "nodeenforcements", "-o", "name"]);
    if !node_enforcements.trim().is_empty() {
        kept.push(format!(
            "NodeEnforcements (owned by their Node): {}",
            node_enforcements
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    // The policies of a baseline that still exists stay with it; those of the chart's
    // `default`, deleted by the uninstall, name it as their owner, so the garbage collector
    // removes them.
    let managed = managed_policies(cp).unwrap_or_else(|e| {
        leaks.push(format!("listing the baselines' NetworkPolicies: {e}"));
        String::new()
    });
    let (with_baseline, orphaned): (Vec<&str>, Vec<&str>) = managed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|b| baselines.lines().any(|n| n.ends_with(&format!("/{b}"))))
        });
    if !with_baseline.is_empty() {
        kept.push(format!(
            "{} NetworkPolicies of baselines that still exist",
            with_baseline.len()
        ));
    }
    if !orphaned.is_empty() {
        leaks.push(format!(
            "{} NetworkPolicies of a deleted baseline: {}",
            orphaned.len(),
            orphaned
                .iter()
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("/"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    (leaks, kept)
}

/// After [`run`]: waits (at most 30 s) until the matrix equals the prediction, every opted-in
/// namespace has its baseline's policies and every NodeEnforcement is enforcing with a fresh
/// `lastSync`; records each node's enforcer RSS and rule counts; `helm uninstall` and looks
/// for anything left (waiting at most 60 s for the enforcers' cleanup); installs the chart
/// afresh with the same objects in the cluster and records the same figures once it has
/// settled and repaired one hand flush of each node's rules. Deletes the churn namespace at the end.
pub fn end_checks(cluster: &RealCluster, world: &RealWorld) -> Result<Ending, Error> {
    let cp = &cluster.cp;
    let mut ending = Ending::default();
    let settled = |limit: Duration| {
        let start = Instant::now();
        within(limit, || {
            let ages = every_node_fresh(cp)?;
            baselines_in_place(cp)?;
            match matrix_difference_now(world) {
                None => Ok((start.elapsed(), ages)),
                Some(d) => Err(d),
            }
        })
    };
    match settled(Duration::from_secs(30)) {
        Ok((after, ages)) => {
            ending.settled_after = Some(after);
            ending.last_sync_ages = ages;
        }
        Err(why) => ending.unsettled = why,
    }
    ending.end_of_soak = node_figures(cluster)?;

    let start = Instant::now();
    chart::helm_ok(
        cp,
        &[
            "uninstall",
            chart::RELEASE,
            "-n",
            chart::NAMESPACE,
            "--wait",
            "--timeout",
            "2m",
        ],
    )?;
    let clean = within(Duration::from_secs(60), || {
        let (leaks, _) = left_behind(cluster);
        if leaks.is_empty() {
            Ok(())
        } else {
            Err(leaks.join("; "))
        }
    });
    ending.uninstalled_after = start.elapsed();
    let (leaks, kept) = left_behind(cluster);
    ending.leaks = if clean.is_ok() { Vec::new() } else { leaks };
    ending.kept = kept;

    let fresh = install_chart(cp).map_err(|e| e.to_string()).and_then(|_| {
        cp.kubectl_ok(&[
            "rollout",
            "status",
            "daemonset/palisade-enforcer",
            "-n",
            &chart::enforcer_namespace(cp),
            "--timeout=120s",
        ])
        .map_err(|e| e.to_string())?;
        settled(Duration::from_secs(60))?;
        // Warmed up as every soak's enforcers are, by one repair of a hand flush each: a
        // fresh enforcer that never rebuilt its rules holds ~10 % less memory (measured:
        // 16.3 MiB fresh, 18.2 MiB after a 30 s soak, 17.7 MiB after 6 minutes).
        for node in NODES {
            inject(cluster, world, Fault::IptablesFlushed, node).map_err(|e| e.to_string())?;
            settled(Duration::from_secs(60))?;
        }
        node_figures(cluster).map_err(|e| e.to_string())
    });
    match fresh {
        Ok(figures) => ending.fresh = figures,
        Err(why) => ending.fresh_failed = Some(why),
    }
    for ns in [CHURN_NAMESPACE, churn::FILLER_NAMESPACE] {
        let _ = cp.kubectl(&[
            "delete",
            "namespace",
            ns,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
    Ok(ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leak_bounds_hold_the_heap_and_rss_to_ten_percent_or_a_floor() {
        let memory = |heap_kib, anon_kib| EnforcerMemory {
            pid: 1,
            heap_kib,
            anon_kib,
            vm_rss_kib: anon_kib + 14_000,
        };
        // Measured: a 2-minute soak's node-1 (heap 10.5 % over), the failed CI run's node-2
        // (anonymous RSS 1.5 MiB over).
        assert!(memory_apart("node-1", &memory(1_096, 4_248), &memory(992, 3_024)).is_empty());
        assert!(memory_apart("node-2", &memory(1_000, 4_448), &memory(1_000, 2_888)).is_empty());
        let fresh = memory(2_000, 4_000);
        assert!(memory_apart("node-2", &memory(2_256, 4_000), &fresh).is_empty());
        assert_eq!(
            memory_apart("node-2", &memory(2_257, 4_000), &fresh),
            [
                "node-2: enforcer heap 2257 KiB at the end of the soak, 2000 KiB fresh (more than 10 % and 256 KiB over)"
            ]
        );
        // On a large heap the 10 % is the bound.
        assert_eq!(
            memory_apart("node-2", &memory(5_501, 4_000), &memory(5_000, 4_000)).len(),
            1
        );
        assert_eq!(
            memory_apart("node-2", &memory(2_000, 7_073), &fresh),
            [
                "node-2: enforcer anonymous RSS 7073 KiB at the end of the soak, 4000 KiB fresh (more than 10 % and 3 MiB over)"
            ]
        );
        // Below fresh is no leak: the 60-minute soak's node-1 ended with 2084 KiB against a
        // young fresh enforcer's 2441.
        assert!(memory_apart("node-1", &memory(2_084, 7_836), &memory(2_441, 8_648)).is_empty());
    }

    #[test]
    fn last_sync_times_are_read_as_the_apiserver_writes_them() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch_seconds("2026-12-07T09:21:12Z"), Some(1_796_635_272));
        assert_eq!(
            epoch_seconds("2024-02-29T23:59:59.250Z"),
            Some(1_709_251_199)
        );
        assert_eq!(epoch_seconds("yesterday"), None);
    }
}
