//! Which iptables the node uses: the nft backend (`iptables-nft`, the default of current
//! distributions) or the legacy one (`iptables-legacy`, x_tables), and for which IP family.
//! Both can hold rules at once and a packet passes both, but Palisade's jump must come before
//! kube-proxy's accept of the same packet, which only holds within one backend: Palisade's
//! rules belong in the backend the node's kube-proxy and CNI use.
//!
//! Detection (`--iptables-backend auto`) works as kube-proxy's iptables-wrapper and Calico do:
//! count the rules and chains others (KUBE-, CNI-, cali-, FLANNEL, …) have in what
//! `iptables-legacy-save` and `iptables-nft-save` print, both families, and take the backend
//! with more; with none anywhere (or as many in each), nft, the kernel's and the distributions'
//! default today.

use std::fmt;
use std::process::Command;

use crate::ruleset::is_palisade_name;

/// The iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// `iptables-nft`: iptables rules stored as nftables.
    Nft,
    /// `iptables-legacy`: the x_tables kernel interface.
    Legacy,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IP family of a [`Tables`]: the policy crate's, so a pod's address family and the
/// tables that filter it are one type.
pub use palisade_policy::IpFamily as Family;

/// One backend's tables of one family: which commands read and write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tables {
    pub backend: Backend,
    pub family: Family,
}

impl Tables {
    pub fn new(backend: Backend, family: Family) -> Self {
        Self { backend, family }
    }

    /// The commands for these tables: (iptables, save, restore).
    fn commands(self) -> [&'static str; 3] {
        match (self.family, self.backend) {
            (Family::V4, Backend::Nft) => {
                ["iptables-nft", "iptables-nft-save", "iptables-nft-restore"]
            }
            (Family::V4, Backend::Legacy) => [
                "iptables-legacy",
                "iptables-legacy-save",
                "iptables-legacy-restore",
            ],
            (Family::V6, Backend::Nft) => [
                "ip6tables-nft",
                "ip6tables-nft-save",
                "ip6tables-nft-restore",
            ],
            (Family::V6, Backend::Legacy) => [
                "ip6tables-legacy",
                "ip6tables-legacy-save",
                "ip6tables-legacy-restore",
            ],
        }
    }

    /// `iptables-nft`, `ip6tables-legacy`, …
    pub fn iptables(self) -> &'static str {
        self.commands()[0]
    }

    /// `iptables-nft-save`, `ip6tables-legacy-save`, …
    pub fn save(self) -> &'static str {
        self.commands()[1]
    }

    /// `iptables-nft-restore`, `ip6tables-legacy-restore`, …
    pub fn restore(self) -> &'static str {
        self.commands()[2]
    }
}

impl fmt::Display for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.backend, self.family)
    }
}

/// The `--iptables-backend` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Where the node's other rules are; nft when there are none.
    Auto,
    Nft,
    Legacy,
}

impl BackendChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Nft => "nft",
            BackendChoice::Legacy => "legacy",
        }
    }
}

/// How the backend was chosen, as the NodeEnforcement status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// From the rules others have on the node, or because only this backend works.
    Detected,
    /// By `--iptables-backend` (`enforcer.iptablesBackend`).
    Override,
    /// Nothing to go by: nft.
    Default,
}

impl Chosen {
    pub fn as_str(self) -> &'static str {
        match self {
            Chosen::Detected => "detected",
            Chosen::Override => "override",
            Chosen::Default => "default",
        }
    }
}

/// What one backend's save commands printed, or why they failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub backend: Backend,
    pub v4: Result<String, String>,
    pub v6: Result<String, String>,
}

impl Probe {
    /// Runs `iptables-<backend>-save` and `ip6tables-<backend>-save` (every table).
    pub fn run(backend: Backend) -> Self {
        Self {
            backend,
            v4: save(Tables::new(backend, Family::V4)),
            v6: save(Tables::new(backend, Family::V6)),
        }
    }

    /// Whether the backend's IPv4 tables can be read.
    pub fn works(&self) -> bool {
        self.v4.is_ok()
    }

    /// Rules and chains of others in both families.
    pub fn foreign(&self) -> usize {
        [&self.v4, &self.v6]
            .into_iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|text| count_foreign(text))
            .sum()
    }
}

fn save(tables: Tables) -> Result<String, String> {
    let program = tables.save();
    match Command::new(program).output() {
        Err(e) => Err(format!("cannot run {program}: {e}")),
        Ok(out) if !out.status.success() => Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
    }
}

/// Whether `tables` hold any of Palisade's chains. Read without `-t`, which creates no table
/// where there is none (`-t filter` would load and create the legacy filter table).
pub fn holds_palisade(tables: Tables) -> bool {
    save(tables).is_ok_and(|text| {
        text.lines().any(|l| {
            l.strip_prefix(':')
                .and_then(|d| d.split_whitespace().next())
                .is_some_and(is_palisade_name)
        })
    })
}

const BUILTIN_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// How many rules and user-defined chains in an `iptables-save` output are someone else's: every
/// rule and chain but Palisade's own and the jumps into them (empty built-in chains and the
/// table headers do not count).
pub fn count_foreign(save: &str) -> usize {
    save.lines()
        .filter(|line| {
            if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or_default();
                let target = rule.rsplit_once(" -j ").map(|(_, t)| t.trim());
                !is_palisade_name(chain) && !target.is_some_and(is_palisade_name)
            } else if let Some(decl) = line.strip_prefix(':') {
                let chain = decl.split_whitespace().next().unwrap_or_default();
                !BUILTIN_CHAINS.contains(&chain) && !is_palisade_name(chain)
            } else {
                false
            }
        })
        .count()
}

/// The backend this enforcer uses, how it was chosen, and the families it can enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub backend: Backend,
    pub chosen: Chosen,
    /// IPv4 always; IPv6 when the backend's `ip6tables` works.
    pub families: Vec<Family>,
    /// Why, in words (logged at start).
    pub reason: String,
    /// Why IPv6 cannot be enforced, when it cannot.
    pub v6_error: Option<String>,
    /// Whether the other backend was probed and works (then it may hold Palisade's rules of an
    /// earlier run, to be removed).
    pub other_works: bool,
}

impl Detection {
    pub fn tables(&self) -> impl Iterator<Item = Tables> + '_ {
        self.families.iter().map(|f| Tables::new(self.backend, *f))
    }

    /// The other backend.
    pub fn other(&self) -> Backend {
        match self.backend {
            Backend::Nft => Backend::Legacy,
            Backend::Legacy => Backend::Nft,
        }
    }
}

/// Takes Palisade's chains out of both families of `backend` (one not in use any more, or
/// left by an earlier run), where its tools work; whether there were any.
pub fn leave(backend: Backend) -> bool {
    let mut removed = false;
    for family in Family::ALL {
        let tables = Tables::new(backend, family);
        if !holds_palisade(tables) {
            continue;
        }
        match crate::apply::remove_chains(tables) {
            Ok(true) => {
                removed = true;
                tracing::info!(%backend, %family, "removed Palisade's chains from the iptables backend not in use")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove Palisade's chains from the iptables backend not in use")
            }
        }
    }
    removed
}

/// Neither backend (or not the one asked for) can be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no usable iptables backend: {0}")]
pub struct NoBackend(pub String);

fn error_of(probe: &Probe) -> &str {
    probe
        .v4
        .as_ref()
        .err()
        .map(String::as_str)
        .unwrap_or_default()
}

/// Chooses the backend from what each one's save commands printed.
pub fn choose(choice: BackendChoice, nft: &Probe, legacy: &Probe) -> Result<Detection, NoBackend> {
    let detection = |probe: &Probe, chosen, reason: String| {
        let other = if probe.backend == Backend::Nft {
            legacy
        } else {
            nft
        };
        let (families, v6_error) = match &probe.v6 {
            Ok(_) => (vec![Family::V4, Family::V6], None),
            Err(e) => (vec![Family::V4], Some(e.clone())),
        };
        Ok(Detection {
            backend: probe.backend,
            chosen,
            families,
            reason,
            v6_error,
            other_works: other.works(),
        })
    };
    let forced = match choice {
        BackendChoice::Nft => Some(nft),
        BackendChoice::Legacy => Some(legacy),
        BackendChoice::Auto => None,
    };
    if let Some(probe) = forced {
        return if probe.works() {
            detection(
                probe,
                Chosen::Override,
                format!("--iptables-backend={}", probe.backend),
            )
        } else {
            Err(NoBackend(format!(
                "--iptables-backend={} asks for it, but {}",
                probe.backend,
                error_of(probe)
            )))
        };
    }
    match (nft.works(), legacy.works()) {
        (false, false) => Err(NoBackend(format!(
            "{}; {}",
            error_of(nft),
            error_of(legacy)
        ))),
        (true, false) => detection(
            nft,
            Chosen::Detected,
            format!("only nft works ({})", error_of(legacy)),
        ),
        (false, true) => detection(
            legacy,
            Chosen::Detected,
            format!("only legacy works ({})", error_of(nft)),
        ),
        (true, true) => {
            let (n, l) = (nft.foreign(), legacy.foreign());
            let counts = format!(
                "{l} rules and chains of others in iptables-legacy-save, {n} in iptables-nft-save"
            );
            if l > n {
                detection(legacy, Chosen::Detected, counts)
            } else if n > l {
                detection(nft, Chosen::Detected, counts)
            } else {
                detection(
                    nft,
                    Chosen::Default,
                    format!("{counts}: nft, the default of current kernels and distributions"),
                )
            }
        }
    }
}

/// Probes both backends and chooses. With an override the other backend is probed too: it
/// may hold Palisade's chains of an earlier run, which [`Adopted::leave`] then removes.
pub fn detect(choice: BackendChoice) -> Result<Detection, NoBackend> {
    choose(
        choice,
        &Probe::run(Backend::Nft),
        &Probe::run(Backend::Legacy),
    )
}

/// A detection taking the place of the previous one (none at start).
#[derive(Debug, PartialEq, Eq)]
pub struct Adopted {
    pub current: Result<Detection, NoBackend>,
    /// A backend whose Palisade chains are to go once the current one holds the rules: the
    /// one the rules were in before a move, or at start the other one, left from an earlier run.
    pub leave: Option<Backend>,
    /// The backend changed: the next sync must write every rule.
    pub moved: bool,
}

/// Takes `found` in place of `previous`, and logs what that means. A detection that fails
/// after one succeeded keeps the previous backend.
pub fn adopt(
    previous: Option<&Result<Detection, NoBackend>>,
    found: Result<Detection, NoBackend>,
) -> Adopted {
    let stay = |current| Adopted {
        current,
        leave: None,
        moved: false,
    };
    match (previous, found) {
        (Some(Ok(old)), Err(e)) => {
            tracing::warn!(error = %e, backend = %old.backend, "cannot detect the iptables backend again; staying with the one in use");
            stay(Ok(old.clone()))
        }
        (_, Err(e)) => {
            tracing::error!(error = %e, "not enforcing: no iptables backend works on this node; trying again");
            stay(Err(e))
        }
        (Some(Ok(old)), Ok(new)) if old.backend == new.backend => {
            if old.chosen != new.chosen {
                tracing::info!(backend = %new.backend, chosen = new.chosen.as_str(), reason = %new.reason, "iptables backend confirmed");
            }
            stay(Ok(new))
        }
        (Some(Ok(old)), Ok(new)) => {
            tracing::info!(from = %old.backend, to = %new.backend, reason = %new.reason, "the node's rules are in the other iptables backend: moving Palisade's rules there");
            Adopted {
                leave: Some(old.backend),
                moved: true,
                current: Ok(new),
            }
        }
        (_, Ok(new)) => {
            let families: Vec<&str> = new.families.iter().map(|f| f.as_str()).collect();
            tracing::info!(backend = %new.backend, chosen = new.chosen.as_str(), reason = %new.reason, families = ?families, "iptables backend");
            if let Some(e) = &new.v6_error {
                tracing::warn!(error = %e, backend = %new.backend, "ip6tables does not work: IPv6 traffic is not enforced on this node");
            }
            Adopted {
                leave: new.other_works.then(|| new.other()),
                moved: false,
                current: Ok(new),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_backend_and_family() {
        let t = Tables::new(Backend::Legacy, Family::V6);
        assert_eq!(t.save(), "ip6tables-legacy-save");
        assert_eq!(t.restore(), "ip6tables-legacy-restore");
        assert_eq!(t.iptables(), "ip6tables-legacy");
        let t = Tables::new(Backend::Nft, Family::V4);
        assert_eq!(t.save(), "iptables-nft-save");
        assert_eq!(t.restore(), "iptables-nft-restore");
    }

    /// kube-proxy (iptables mode) and the CNI bridge plugin on a node, with Palisade's own
    /// chains, as `iptables-legacy-save` prints them.
    const KUBE_PROXY: &str = "# Generated by iptables-save v1.8.9 on Sat Nov 28 12:00:00 2026
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-8d3ab6a2c1ff2b2fb2b3e2b4 - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -s 10.244.1.2/32 -m comment --comment \"name: \\\"cbr0\\\"\" -j CNI-8d3ab6a2c1ff2b2fb2b3e2b4
-A CNI-8d3ab6a2c1ff2b2fb2b3e2b4 -d 10.244.1.0/24 -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:PALISADE-FORWARD - [0:0]
:PAL-POD-abc - [0:0]
-A FORWARD -m comment --comment \"palisade: NetworkPolicy enforcement\" -j PALISADE-FORWARD
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A PALISADE-FORWARD -m set ! --match-set PALISADE-LOCAL src -j RETURN
-A PAL-POD-abc -j DROP
COMMIT
";

    /// An nft backend with nothing but empty built-in chains (and the warning iptables-nft-save
    /// prints when legacy tables exist).
    const EMPTY: &str =
        "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
";

    fn probe(backend: Backend, v4: Result<&str, &str>, v6: Result<&str, &str>) -> Probe {
        Probe {
            backend,
            v4: v4.map(String::from).map_err(String::from),
            v6: v6.map(String::from).map_err(String::from),
        }
    }

    #[test]
    fn others_rules_and_chains_count_palisades_do_not() {
        // Chains KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY, CNI-…, KUBE-SERVICES, KUBE-FORWARD;
        // rules: 3 in nat, 2 in filter.
        assert_eq!(count_foreign(KUBE_PROXY), 10);
        assert_eq!(count_foreign(EMPTY), 0);
        assert_eq!(count_foreign(""), 0);
    }

    #[test]
    fn the_backend_with_the_nodes_rules_wins() {
        let legacy = probe(Backend::Legacy, Ok(KUBE_PROXY), Ok(EMPTY));
        let nft = probe(Backend::Nft, Ok(EMPTY), Ok(EMPTY));
        let d = choose(BackendChoice::Auto, &nft, &legacy).expect("a backend");
        assert_eq!((d.backend, d.chosen), (Backend::Legacy, Chosen::Detected));
        assert_eq!(d.families, vec![Family::V4, Family::V6]);
        assert!(
            d.reason.contains(
                "10 rules and chains of others in iptables-legacy-save, 0 in iptables-nft-save"
            ),
            "{}",
            d.reason
        );
        // The converse: kube-proxy's rules in nft.
        let legacy = probe(Backend::Legacy, Ok(EMPTY), Ok(""));
        let nft = probe(Backend::Nft, Ok(KUBE_PROXY), Ok(KUBE_PROXY));
        let d = choose(BackendChoice::Auto, &nft, &legacy).expect("a backend");
        assert_eq!((d.backend, d.chosen), (Backend::Nft, Chosen::Detected));
        assert_eq!(d.other(), Backend::Legacy);
    }

    #[test]
    fn nothing_to_go_by_is_nft_by_default() {
        // E.g. kube-proxy in nftables mode: its rules are in its own nftables table, which
        // neither save command prints.
        let d = choose(
            BackendChoice::Auto,
            &probe(Backend::Nft, Ok(EMPTY), Ok(EMPTY)),
            &probe(Backend::Legacy, Ok(""), Ok("")),
        )
        .expect("a backend");
        assert_eq!((d.backend, d.chosen), (Backend::Nft, Chosen::Default));
        assert!(d.reason.contains("default"), "{}", d.reason);
        // Palisade's own chains do not vote.
        let palisade_only = "*filter\n:FORWARD ACCEPT [0:0]\n:PALISADE-FORWARD - [0:0]\n-A FORWARD -m comment --comment \"palisade: NetworkPolicy enforcement\" -j PALISADE-FORWARD\nCOMMIT\n";
        let d = choose(
            BackendChoice::Auto,
            &probe(Backend::Nft, Ok(EMPTY), Ok(EMPTY)),
            &probe(Backend::Legacy, Ok(palisade_only), Ok("")),
        )
        .expect("a backend");
        assert_eq!((d.backend, d.chosen), (Backend::Nft, Chosen::Default));
    }

    #[test]
    fn the_only_backend_that_works_is_taken() {
        let d = choose(
            BackendChoice::Auto,
            &probe(Backend::Nft, Err("iptables-nft-save failed: Could not fetch rule set generation id: Invalid argument"), Err("no")),
            &probe(Backend::Legacy, Ok(EMPTY), Err("ip6tables-legacy-save failed: Table does not exist")),
        )
        .expect("a backend");
        assert_eq!((d.backend, d.chosen), (Backend::Legacy, Chosen::Detected));
        assert!(
            d.reason
                .contains("only legacy works (iptables-nft-save failed"),
            "{}",
            d.reason
        );
        // No ip6tables: IPv4 only, and why.
        assert_eq!(d.families, vec![Family::V4]);
        assert_eq!(
            d.v6_error.as_deref(),
            Some("ip6tables-legacy-save failed: Table does not exist")
        );
    }

    #[test]
    fn an_override_wins_but_must_work() {
        let nft = probe(Backend::Nft, Ok(KUBE_PROXY), Ok(KUBE_PROXY));
        let legacy = probe(Backend::Legacy, Ok(EMPTY), Ok(EMPTY));
        let d = choose(BackendChoice::Legacy, &nft, &legacy).expect("a backend");
        assert_eq!((d.backend, d.chosen), (Backend::Legacy, Chosen::Override));
        let broken = probe(
            Backend::Legacy,
            Err("cannot run iptables-legacy-save: No such file or directory (os error 2)"),
            Err("x"),
        );
        let e = choose(BackendChoice::Legacy, &nft, &broken).expect_err("legacy does not work");
        assert_eq!(
            e.to_string(),
            "no usable iptables backend: --iptables-backend=legacy asks for it, but cannot run iptables-legacy-save: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn neither_backend_is_an_error_naming_both() {
        let e = choose(
            BackendChoice::Auto,
            &probe(
                Backend::Nft,
                Err("iptables-nft-save failed: nf_tables missing"),
                Err("x"),
            ),
            &probe(
                Backend::Legacy,
                Err("iptables-legacy-save failed: ip_tables missing"),
                Err("x"),
            ),
        )
        .expect_err("nothing works");
        assert_eq!(
            e.to_string(),
            "no usable iptables backend: iptables-nft-save failed: nf_tables missing; iptables-legacy-save failed: ip_tables missing"
        );
    }

    #[test]
    fn a_move_leaves_the_old_backend_and_a_failed_look_keeps_the_current_one() {
        let empty = || probe(Backend::Nft, Ok(EMPTY), Ok(EMPTY));
        let default = choose(
            BackendChoice::Auto,
            &empty(),
            &probe(Backend::Legacy, Ok(""), Ok("")),
        )
        .expect("nft");
        // At start: the other backend works, so leftovers of an earlier run there go.
        let start = adopt(None, Ok(default.clone()));
        assert_eq!((start.leave, start.moved), (Some(Backend::Legacy), false));
        // kube-proxy wrote its rules in legacy after the enforcer started.
        let later = choose(
            BackendChoice::Auto,
            &empty(),
            &probe(Backend::Legacy, Ok(KUBE_PROXY), Ok("")),
        )
        .expect("legacy");
        let moved = adopt(Some(&Ok(default.clone())), Ok(later.clone()));
        assert_eq!((moved.leave, moved.moved), (Some(Backend::Nft), true));
        assert_eq!(moved.current, Ok(later));
        // Re-detection failing keeps what works.
        let kept = adopt(Some(&Ok(default.clone())), Err(NoBackend("x".into())));
        assert_eq!(kept.current, Ok(default));
        // Nothing at all: an error, retried by the caller.
        let none = adopt(None, Err(NoBackend("x".into())));
        assert_eq!(none.current, Err(NoBackend("x".into())));
    }
}
