//! The admission checks: pure functions of (the policy under review, the cluster state, what is
//! known about enforcement). Each has a stable id, a default severity, and a message that says
//! what is wrong, the evidence, and the fix.

mod admin_shadow;
mod and_or;
mod cluster_review;
mod dns;
mod enforcement;
mod implicit_ingress;
mod likeness;
mod named_port;
mod one_sided;
mod unmatched;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::cluster::Cluster;
use crate::policy::Policy;

pub use cluster_review::run_cluster_policy;
pub use enforcement::{
    ClusterPolicyEnforcement, Enforced, Enforcement, NodeEnforcement, NotEnforcedPolicy,
    cni_enforces_cluster_network_policy, cni_enforces_network_policy,
};
pub use likeness::distance;

/// The annotation that turns named checks off for one object.
pub const SKIP_ANNOTATION: &str = "palisade.dev/skip-checks";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    Enforcement,
    UnmatchedSelector,
    EgressDns,
    PeerAndOr,
    NamedPort,
    OneSided,
    ImplicitIngress,
    AdminShadowed,
    EqualPriority,
}

impl CheckId {
    pub const ALL: [CheckId; 9] = [
        CheckId::Enforcement,
        CheckId::UnmatchedSelector,
        CheckId::EgressDns,
        CheckId::PeerAndOr,
        CheckId::NamedPort,
        CheckId::OneSided,
        CheckId::ImplicitIngress,
        CheckId::AdminShadowed,
        CheckId::EqualPriority,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Enforcement => "enforcement",
            CheckId::UnmatchedSelector => "unmatched-selector",
            CheckId::EgressDns => "egress-dns",
            CheckId::PeerAndOr => "peer-and-or",
            CheckId::NamedPort => "named-port",
            CheckId::OneSided => "one-sided",
            CheckId::ImplicitIngress => "implicit-ingress",
            CheckId::AdminShadowed => "admin-shadowed",
            CheckId::EqualPriority => "equal-priority",
        }
    }

    pub fn default_mode(self) -> Mode {
        match self {
            CheckId::Enforcement
            | CheckId::UnmatchedSelector
            | CheckId::EgressDns
            | CheckId::AdminShadowed => Mode::Deny,
            CheckId::PeerAndOr
            | CheckId::NamedPort
            | CheckId::OneSided
            | CheckId::ImplicitIngress
            | CheckId::EqualPriority => Mode::Warn,
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckId::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| {
                let ids: Vec<&str> = CheckId::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown check {s:?} (known: {})", ids.join(", "))
            })
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Deny,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Deny => "deny",
            Severity::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Deny,
    Warn,
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Deny => "deny",
            Mode::Warn => "warn",
            Mode::Off => "off",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deny" => Ok(Mode::Deny),
            "warn" => Ok(Mode::Warn),
            "off" => Ok(Mode::Off),
            other => Err(format!("unknown mode {other:?} (use deny, warn or off)")),
        }
    }
}

/// Parses a `CHECK=MODE` setting, e.g. `one-sided=off` (CLI flags, webhook configuration).
pub fn parse_setting(s: &str) -> Result<(CheckId, Mode), String> {
    let (id, mode) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write CHECK=MODE, e.g. one-sided=off"))?;
    Ok((id.parse()?, mode.parse()?))
}

/// Per-check modes; checks not named keep their default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub modes: BTreeMap<CheckId, Mode>,
}

impl CheckConfig {
    pub fn mode(&self, check: CheckId) -> Mode {
        self.modes
            .get(&check)
            .copied()
            .unwrap_or_else(|| check.default_mode())
    }
}

/// Stands for the place in the policy (a rule or a peer, e.g. `ingress[0].from[1]`) in an
/// issue's summary and detail. [`run`] replaces it with the place, or, when several places have
/// the very same problem, with all of them: one finding per distinct problem.
const AT: &str = "\u{1}at\u{1}";

/// What a check found before modes apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    /// Where the problem is (replaces [`AT`]); `None` for the policy as a whole.
    site: Option<String>,
    /// One short line: kubectl prints it as `Warning: [check] ns/name: <summary>`, at most
    /// 120 characters in all, so the evidence must fit in about 70.
    summary: String,
    /// What is wrong, the evidence, and the fix.
    detail: String,
    /// The highest severity this issue deserves, whatever the mode (a half-problem is a warning).
    cap: Severity,
}

impl Issue {
    fn new(summary: String, detail: String) -> Self {
        Self {
            site: None,
            summary,
            detail,
            cap: Severity::Deny,
        }
    }
    fn warning(summary: String, detail: String) -> Self {
        Self {
            cap: Severity::Warn,
            ..Self::new(summary, detail)
        }
    }
    /// The place this issue is about; its texts name it with [`AT`].
    fn at(self, site: String) -> Self {
        Self {
            site: Some(site),
            ..self
        }
    }
}

/// Identical issues at several places become one, naming every place (bounded).
fn group(issues: Vec<Issue>) -> Vec<(Issue, Vec<String>)> {
    let mut out: Vec<(Issue, Vec<String>)> = Vec::new();
    let mut index: std::collections::HashMap<(String, String, Severity), usize> =
        std::collections::HashMap::new();
    for issue in issues {
        let key = (issue.summary.clone(), issue.detail.clone(), issue.cap);
        match index.get(&key) {
            Some(&i) => out[i].1.extend(issue.site),
            None => {
                index.insert(key, out.len());
                let sites = issue.site.iter().cloned().collect();
                out.push((issue, sites));
            }
        }
    }
    out
}

/// The places for a summary line: the first, and how many more.
fn sites_short(sites: &[String]) -> String {
    match sites {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{} alike)", rest.len()),
    }
}

/// The places for a detail text: a bounded list, and how many in all.
fn sites_long(sites: &[String]) -> String {
    match sites.len() {
        0 => String::new(),
        1 => sites[0].clone(),
        n => format!("{} ({n} places)", list_some(sites, 6)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub check: CheckId,
    pub severity: Severity,
    pub summary: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Checks turned off for this object by its skip annotation.
    pub skipped: Vec<CheckId>,
    /// Names in the skip annotation that are no check id (nothing is skipped for them).
    pub unknown_skips: Vec<String>,
    /// Checks that could not run, and why (e.g. no pods known to the CLI).
    pub not_evaluated: Vec<(CheckId, String)>,
}

impl Report {
    pub fn denied(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Deny)
    }
    pub fn denials(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Deny)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warn)
    }
}

/// What the checks may look at.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub cluster: &'a Cluster,
    /// What is known about who enforces policy on each node; `None`: unknown, the
    /// `enforcement` check does not run.
    pub enforcement: Option<&'a Enforcement>,
    /// Whether the cluster state lists every pod and workload (false for a CLI run on files
    /// that contain none): selector checks only run on a known world.
    pub knows_pods: bool,
    pub knows_namespaces: bool,
}

/// The checks named in a `palisade.dev/skip-checks` annotation. Unknown ids are returned apart
/// so they can be reported rather than silently ignored.
pub fn skip_list(policy: &Policy) -> (Vec<CheckId>, Vec<String>) {
    skip_list_of(&policy.annotations)
}

/// [`skip_list`] of any object's annotations (a ClusterNetworkPolicy's too).
pub fn skip_list_of(annotations: &BTreeMap<String, String>) -> (Vec<CheckId>, Vec<String>) {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    if let Some(v) = annotations.get(SKIP_ANNOTATION) {
        for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match id.parse() {
                Ok(c) => known.push(c),
                Err(_) => unknown.push(id.to_string()),
            }
        }
    }
    (known, unknown)
}

/// Runs every check on `policy` with the configured modes.
pub fn run(policy: &Policy, ctx: &Context, config: &CheckConfig) -> Report {
    let (skip, unknown_skips) = skip_list(policy);
    let mut report = Report {
        unknown_skips,
        ..Report::default()
    };
    for check in CheckId::ALL {
        let mode = config.mode(check);
        if mode == Mode::Off {
            continue;
        }
        if skip.contains(&check) {
            report.skipped.push(check);
            continue;
        }
        let issues = match check {
            CheckId::Enforcement => enforcement::check(policy, ctx),
            CheckId::UnmatchedSelector => unmatched::check(policy, ctx),
            CheckId::EgressDns => dns::check(policy, ctx),
            CheckId::PeerAndOr => Ok(and_or::check(policy)),
            CheckId::NamedPort => named_port::check(policy, ctx),
            CheckId::OneSided => one_sided::check(policy, ctx),
            CheckId::ImplicitIngress => implicit_ingress::check(policy, ctx),
            CheckId::AdminShadowed => admin_shadow::check(policy, ctx),
            // About ClusterNetworkPolicies only.
            CheckId::EqualPriority => Ok(Vec::new()),
        };
        finish(&mut report, check, mode, issues);
    }
    report
}

/// Adds one check's issues to the report as findings, with the mode's severity.
fn finish(report: &mut Report, check: CheckId, mode: Mode, issues: Result<Vec<Issue>, String>) {
    match issues {
        Ok(issues) => {
            for (issue, sites) in group(issues) {
                let severity = match mode {
                    Mode::Deny => issue.cap,
                    _ => Severity::Warn,
                };
                let mut message = issue
                    .detail
                    .replace(AT, &sites_long(&sites))
                    .trim_end()
                    .to_string();
                if severity == Severity::Deny {
                    message.push_str(&format!(
                        "\nTo accept this policy anyway, annotate it {SKIP_ANNOTATION}: \"{check}\"."
                    ));
                }
                report.findings.push(Finding {
                    check,
                    severity,
                    summary: one_line(issue.summary.replace(AT, &sites_short(&sites))),
                    message,
                });
            }
        }
        Err(why) => report.not_evaluated.push((check, why)),
    }
}

/// `ns/name` of the policy, as messages name it.
fn name(policy: &Policy) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

/// At most `n` items, then "and N more" (the checks' messages and `palisade status` list so).
pub fn list_some<T: fmt::Display>(items: &[T], n: usize) -> String {
    let shown: Vec<String> = items.iter().take(n).map(ToString::to_string).collect();
    let mut s = shown.join(", ");
    if items.len() > n {
        s.push_str(&format!(" and {} more", items.len() - n));
    }
    s
}

/// Keeps a summary line under 120 characters (a safety net: summaries are written to fit).
fn one_line(s: String) -> String {
    if s.chars().count() < 120 {
        return s;
    }
    let cut: String = s.chars().take(116).collect();
    format!("{cut}...")
}

/// The policies that decide `direction` for `pod` once the reviewed `policy` is stored: the
/// cluster's, without an older version of `policy`, plus `policy` itself where it applies.
fn deciding<'a>(
    cluster: &'a Cluster,
    policy: &'a Policy,
    pod: &'a crate::Pod,
    direction: crate::Direction,
) -> Vec<(usize, &'a Policy)> {
    let mut out: Vec<(usize, &Policy)> = cluster
        .isolating(pod, direction)
        .filter(|(_, p)| p.id() != policy.id())
        .collect();
    if policy.isolates(direction) && Cluster::selects(policy, pod) {
        out.push((usize::MAX, policy));
    }
    out
}

/// Pods with the same namespace and labels behave the same under policy: keep one of each.
fn distinct_pods<'a>(
    pods: impl Iterator<Item = &'a crate::Pod>,
    limit: usize,
) -> Vec<&'a crate::Pod> {
    let mut seen = std::collections::HashSet::new();
    pods.filter(|p| seen.insert((&p.namespace, &p.labels)))
        .take(limit)
        .collect()
}
