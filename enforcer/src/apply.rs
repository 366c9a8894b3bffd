//! Ruleset → kernel, with the iptables and ipset tools: read what the host has, write only the
//! difference, in as few atomic transactions as the tools allow.
//!
//! Order of one sync: (1) `ipset restore` creates new sets and swaps changed ones in (each swap
//! is atomic); (2) one `iptables-restore --noflush --wait` transaction rewrites the changed
//! Palisade chains, deletes the stale ones and puts the entry jumps at position 1; (3) sets no
//! rule uses any more are destroyed. If (2) fails the kernel keeps every previous rule. Because
//! the host is read on every sync, rules someone else flushed or edited are repaired too.
//!
//! Dual-stack ([`sync_families`]): step (1) and (3) once for the sets of both families (ipset is
//! one tool for both), step (2) once per family, with `iptables-restore` and
//! `ip6tables-restore` of the node's backend.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use palisade_policy::IpFamily;

use crate::backend::{Backend, Tables};
use crate::render::{
    ChainTexts, parse_ipset_names, parse_ipset_save, parse_iptables_save, render_iptables,
    render_sets, render_sets_cleanup,
};
use crate::ruleset::{ENTRY_CHAINS, IpSet, Ruleset, is_palisade_name};

/// The comment on the jumps into Palisade's chains, so people reading `iptables-save` know them.
const JUMP_COMMENT: &str = "palisade: NetworkPolicy enforcement";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot run {program}: {source} (is it installed?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("cannot read the host's ipsets: {0}")]
    Parse(#[from] crate::render::ParseError),
}

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sets created or swapped.
    pub sets_written: bool,
    /// Chains rewritten or deleted, or the entry jumps repaired.
    pub chains_written: bool,
    /// Stale sets destroyed.
    pub sets_removed: bool,
}

impl Applied {
    pub fn wrote(&self) -> bool {
        self.sets_written || self.chains_written || self.sets_removed
    }
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, ApplyError> {
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ApplyError::Spawn {
            program: program.into(),
            source,
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error shows up as the tool's failure below.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ApplyError::Spawn {
            program: program.into(),
            source,
        })?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the host has of Palisade's.
#[derive(Debug, Default)]
pub struct HostState {
    pub chains: ChainTexts,
    pub sets: BTreeMap<String, IpSet>,
    /// For each built-in chain: whether its first rule is the jump into Palisade's chain, and
    /// how many jumps it has in all.
    pub jumps: BTreeMap<&'static str, (bool, usize)>,
}

fn is_jump(line: &str, builtin: &str, target: &str) -> bool {
    line.starts_with(&format!("-A {builtin} ")) && line.ends_with(&format!("-j {target}"))
}

/// Reads Palisade's chains and jumps from `tables` (the sets are left empty).
fn read_host_chains(tables: Tables) -> Result<HostState, ApplyError> {
    let save = run(tables.save(), &["-t", "filter"], None)?;
    let mut jumps = BTreeMap::new();
    for (builtin, target) in ENTRY_CHAINS {
        let rules: Vec<&str> = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {builtin} ")))
            .collect();
        let first = rules.first().is_some_and(|l| is_jump(l, builtin, target));
        let count = rules.iter().filter(|l| is_jump(l, builtin, target)).count();
        jumps.insert(builtin, (first, count));
    }
    Ok(HostState {
        chains: parse_iptables_save(&save),
        sets: BTreeMap::new(),
        jumps,
    })
}

fn jump_rule(builtin: &str, target: &str) -> String {
    format!("{builtin} -m comment --comment \"{JUMP_COMMENT}\" -j {target}")
}

/// The iptables-restore transaction for `new` over `host`, with the entry jumps put (back) at
/// position 1; `None` when the host already is right.
pub fn iptables_transaction(new: &Ruleset, host: &HostState) -> Option<String> {
    let mut jump_lines = String::new();
    for (builtin, target) in ENTRY_CHAINS {
        let (first, count) = host.jumps.get(builtin).copied().unwrap_or((false, 0));
        if first && count == 1 {
            continue;
        }
        for _ in 0..count {
            jump_lines.push_str(&format!("-D {}\n", jump_rule(builtin, target)));
        }
        jump_lines.push_str(&format!(
            "-I {}\n",
            jump_rule(builtin, target).replacen(' ', " 1 ", 1)
        ));
    }
    let chains = render_iptables(new, &host.chains);
    match (chains, jump_lines.is_empty()) {
        (None, true) => None,
        (None, false) => Some(format!("*filter\n{jump_lines}COMMIT\n")),
        (Some(text), _) => {
            let body = text.strip_suffix("COMMIT\n").unwrap_or(&text);
            Some(format!("{body}{jump_lines}COMMIT\n"))
        }
    }
}

/// Makes the host's Palisade rules equal to `new`, one ruleset per IP family (as
/// [`crate::compile::compile_families`] gives them), in `backend`: one `ipset restore` for the
/// sets of every family (ipset is one tool for both, and their set names never clash), then one
/// `iptables-restore` and one `ip6tables-restore` transaction, each atomic for its family, then
/// the sets no family uses any more are destroyed. If a family's transaction fails, that
/// family's previous chains stay in force, the families before it are done, and the error
/// names the command.
pub fn sync_families(backend: Backend, new: &[Ruleset]) -> Result<Applied, ApplyError> {
    let mut hosts = Vec::with_capacity(new.len());
    for ruleset in new {
        hosts.push(read_host_chains(Tables::new(backend, ruleset.family))?);
    }
    let host_sets = parse_ipset_save(&run("ipset", &["save"], None)?)?;
    let mut sets = BTreeMap::new();
    for ruleset in new {
        sets.extend(ruleset.sets.iter().map(|(n, s)| (n.clone(), s.clone())));
    }
    let mut applied = Applied::default();
    let text = render_sets(&sets, Some(&host_sets));
    if !text.is_empty() {
        run("ipset", &["restore"], Some(&text))?;
        applied.sets_written = true;
    }
    for (ruleset, host) in new.iter().zip(&hosts) {
        if let Some(text) = iptables_transaction(ruleset, host) {
            let tables = Tables::new(backend, ruleset.family);
            run(tables.restore(), &["--noflush", "--wait"], Some(&text))?;
            applied.chains_written = true;
        }
    }
    let cleanup = render_sets_cleanup(&sets, host_sets.keys());
    if !cleanup.is_empty() {
        match run("ipset", &["restore"], Some(&cleanup)) {
            Ok(_) => applied.sets_removed = true,
            // Harmless: the next sync tries again (a family not enforced any more may still
            // have rules that use them).
            Err(e) => tracing::warn!(error = %e, "cannot remove unused ipsets yet"),
        }
    }
    Ok(applied)
}

/// Removes every trace of Palisade from the host: the jumps and chains of every family in
/// `families` of `backend`, then every Palisade set. Traffic is then filtered by whatever else
/// the node has, as before Palisade was installed.
pub fn cleanup_families(backend: Backend, families: &[IpFamily]) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    for family in families {
        applied.chains_written |= remove_chains(Tables::new(backend, *family))?;
    }
    let names = parse_ipset_names(&run("ipset", &["list", "-name"], None)?);
    let destroy: String = names.iter().map(|n| format!("destroy {n}\n")).collect();
    if !destroy.is_empty() {
        run("ipset", &["restore"], Some(&destroy))?;
        applied.sets_removed = true;
    }
    Ok(applied)
}

/// Removes Palisade's jumps and chains from `tables`; whether there were any. The sets stay
/// (the other backend's rules may use them).
pub fn remove_chains(tables: Tables) -> Result<bool, ApplyError> {
    let host = read_host_chains(tables)?;
    let mut text = String::from("*filter\n");
    let mut wrote = false;
    for (builtin, target) in ENTRY_CHAINS {
        let (_, count) = host.jumps.get(builtin).copied().unwrap_or((false, 0));
        for _ in 0..count {
            text.push_str(&format!("-D {}\n", jump_rule(builtin, target)));
            wrote = true;
        }
    }
    let chains: Vec<&String> = host.chains.keys().filter(|c| is_palisade_name(c)).collect();
    for chain in &chains {
        text.push_str(&format!("-F {chain}\n"));
    }
    for chain in &chains {
        text.push_str(&format!("-X {chain}\n"));
        wrote = true;
    }
    text.push_str("COMMIT\n");
    if wrote {
        run(tables.restore(), &["--noflush", "--wait"], Some(&text))?;
    }
    Ok(wrote)
}

/// The packet counters of the audit rules (`iptables-save -c` of `tables`), summed per comment:
/// how many connections audit policies would have dropped.
pub fn audit_counters(tables: Tables) -> Result<BTreeMap<String, u64>, ApplyError> {
    let save = run(tables.save(), &["-c", "-t", "filter"], None)?;
    Ok(parse_audit_counters(&save))
}

/// Counting rules of audit chains are the ones without a target carrying an `audit` comment.
pub fn parse_audit_counters(save: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in save.lines() {
        // [packets:bytes] -A CHAIN ... -m comment --comment "audit ..."
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((counts, rule)) = rest.split_once("] ") else {
            continue;
        };
        if !rule.starts_with("-A PAL") || rule.contains(" -j ") {
            continue;
        }
        let Some(comment) = rule
            .split_once("--comment ")
            .map(|(_, c)| c.trim().trim_matches('"').to_string())
        else {
            continue;
        };
        let packets = counts
            .split(':')
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(comment).or_insert(0) += packets;
    }
    out
}
