//! One sync of the enforcer ([`SyncStep`]) against a fake kernel: what the node's
//! NodeEnforcement status says and which rules are left in force, sync after sync: backoff
//! after a failed apply with the previous rules kept, `lastSync` renewal, and the iptables
//! backend detected again. No tokio, no kernel: the fake stands where iptables and conntrack do.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::pod_on;
use palisade_enforcer::apply::{Applied, ApplyError};
use palisade_enforcer::backend::{Backend, BackendChoice, Chosen, Detection, NoBackend, Tables};
use palisade_enforcer::compile::compile_families;
use palisade_enforcer::conntrack::{ConntrackError, Cut};
use palisade_enforcer::metrics::Metrics;
use palisade_enforcer::mode::Mode;
use palisade_enforcer::sync::{Kernel, Observed, Outcome, Settings, SyncStep, Wake};
use palisade_enforcer::{CompileOptions, Ruleset};
use palisade_policy::{Cluster, IpFamily, Labels, Namespace, Policy};

/// The kernel as far as a sync can tell: which backend detection finds, whether an apply
/// works, and the rules each backend holds.
struct FakeKernel {
    found: Result<Detection, NoBackend>,
    detections: usize,
    /// Why `iptables-restore` fails, while it does.
    apply_fails: Option<String>,
    applies: usize,
    in_force: BTreeMap<Backend, Vec<Ruleset>>,
    left: Vec<Backend>,
    cuts: usize,
}

impl FakeKernel {
    fn new(found: Result<Detection, NoBackend>) -> Self {
        Self {
            found,
            detections: 0,
            apply_fails: None,
            applies: 0,
            in_force: BTreeMap::new(),
            left: Vec::new(),
            cuts: 0,
        }
    }
}

impl Kernel for FakeKernel {
    fn detect(&mut self, _: BackendChoice) -> Result<Detection, NoBackend> {
        self.detections += 1;
        self.found.clone()
    }

    fn apply(&mut self, backend: Backend, rulesets: &[Ruleset]) -> Result<Applied, ApplyError> {
        self.applies += 1;
        if let Some(stderr) = &self.apply_fails {
            return Err(ApplyError::Failed {
                what: "iptables-nft-restore --noflush".into(),
                stderr: stderr.clone(),
            });
        }
        let wrote = self.in_force.get(&backend).map(Vec::as_slice) != Some(rulesets);
        self.in_force.insert(backend, rulesets.to_vec());
        Ok(Applied {
            chains_written: wrote,
            ..Applied::default()
        })
    }

    fn clean_up(&mut self, backend: Backend, _: &[IpFamily]) -> Result<Applied, ApplyError> {
        Ok(Applied {
            chains_written: self.in_force.remove(&backend).is_some(),
            ..Applied::default()
        })
    }

    fn leave(&mut self, backend: Backend) {
        self.in_force.remove(&backend);
        self.left.push(backend);
    }

    fn audit_counters(&mut self, _: Tables) -> Result<BTreeMap<String, u64>, ApplyError> {
        Ok(BTreeMap::new())
    }

    fn cut(&mut self, _: &Cluster, _: &str, _: &[IpFamily]) -> Result<Cut, ConntrackError> {
        self.cuts += 1;
        Ok(Cut::default())
    }
}

fn found(backend: Backend, chosen: Chosen) -> Result<Detection, NoBackend> {
    Ok(Detection {
        backend,
        chosen,
        families: vec![IpFamily::V4],
        reason: "test".into(),
        v6_error: None,
        other_works: false,
    })
}

fn settings() -> Settings {
    Settings {
        node: "n1".into(),
        // No CNI configuration: `mode enforce` does not look at it.
        cni_dir: PathBuf::from("/nonexistent/palisade-test/net.d"),
        first_packet: None,
        mode: Mode::Enforce,
        iptables_backend: BackendChoice::Auto,
        resync: Duration::from_secs(60),
        debounce: Duration::ZERO,
        options: CompileOptions::default(),
        cut_denied_connections: true,
    }
}

fn step(found: Result<Detection, NoBackend>) -> SyncStep<FakeKernel> {
    SyncStep::new(
        settings(),
        FakeKernel::new(found),
        Arc::new(Metrics::default()),
    )
}

fn deny_ingress(name: &str) -> Policy {
    Policy::deny_all_ingress("shop", name)
}

/// Namespace `shop` with `pods` pods on node n1 (10.1.0.1, …), isolated for ingress.
fn cluster(pods: u8) -> Cluster {
    let pods = (1..=pods)
        .map(|i| {
            pod_on(
                "shop",
                &format!("web-{i}"),
                Labels::new(),
                format!("10.1.0.{i}").parse().unwrap(),
                "n1",
            )
        })
        .collect();
    Cluster::new(
        [Namespace::new("shop", Labels::new())],
        pods,
        vec![],
        vec![deny_ingress("deny")],
    )
}

fn observed(cluster: Cluster) -> Observed {
    Observed {
        cluster,
        ..Observed::default()
    }
}

/// The rules a good sync of `cluster` leaves in force.
fn rules_of(cluster: &Cluster) -> Vec<Ruleset> {
    compile_families(cluster, "n1", &CompileOptions::default(), &[IpFamily::V4])
}

fn rules_in_status(outcome: &Outcome) -> (u32, u32, u32) {
    let s = &outcome.status;
    (s.chains, s.rules, s.sets)
}

#[test]
fn a_failed_apply_keeps_the_previous_rules_in_force_and_in_the_status_and_backs_off() {
    let mut sync = step(found(Backend::Nft, Chosen::Detected));
    let first = sync.run(Wake::Start, observed(cluster(1)), true);
    assert_eq!(first.retry, None);
    assert!(first.status.enforcing, "{}", first.status.reason);
    assert_eq!(first.status.last_error, None);
    assert!(first.status.last_sync.is_some());
    assert!(first.status.chains > 0 && first.status.rules > 0);
    let previous = rules_of(&cluster(1));
    assert_eq!(sync.kernel().in_force[&Backend::Nft], previous);

    // A second pod arrives; iptables-restore refuses the transaction.
    sync.kernel_mut().apply_fails = Some("line 7 failed".into());
    let mut waits = Vec::new();
    for wake in [
        Wake::Change,
        Wake::Start,
        Wake::Start,
        Wake::Start,
        Wake::Start,
        Wake::Start,
        Wake::Start,
    ] {
        let failed = sync.run(wake, observed(cluster(2)), false);
        assert!(
            failed
                .status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("line 7 failed")),
            "{:?}",
            failed.status.last_error
        );
        // What the status counts is what is still in force: the first sync's rules.
        assert_eq!(rules_in_status(&failed), rules_in_status(&first));
        assert_eq!(
            failed.status.last_sync, None,
            "a failed sync renews no lastSync"
        );
        waits.push(failed.retry.expect("a failed sync is retried"));
    }
    assert_eq!(
        waits,
        [1, 2, 4, 8, 16, 30, 30].map(Duration::from_secs),
        "the wait doubles up to 30 s"
    );
    assert_eq!(sync.kernel().in_force[&Backend::Nft], previous);
    assert_eq!(sync.kernel().cuts, 1, "no cut after a failed apply");

    // iptables works again: the second pod's rules go in, the status says so, and the next
    // failure waits 1 s again.
    sync.kernel_mut().apply_fails = None;
    let good = sync.run(Wake::Start, observed(cluster(2)), false);
    assert_eq!(good.retry, None);
    assert_eq!(good.status.last_error, None);
    assert!(
        good.status.last_sync.is_some(),
        "rules changed: a new lastSync"
    );
    assert_eq!(good.status.local_pods, 2);
    assert_ne!(rules_in_status(&good), rules_in_status(&first));
    assert_eq!(sync.kernel().in_force[&Backend::Nft], rules_of(&cluster(2)));
    assert_eq!(
        sync.kernel().cuts,
        2,
        "connections judged after the rules changed"
    );
    sync.kernel_mut().apply_fails = Some("again".into());
    let failed = sync.run(Wake::Change, observed(cluster(3)), false);
    assert_eq!(failed.retry, Some(Duration::from_secs(1)));
}

#[test]
fn last_sync_is_renewed_when_rules_change_and_when_the_period_is_up_only() {
    let mut sync = step(found(Backend::Nft, Chosen::Detected));
    let first = sync.run(Wake::Start, observed(cluster(1)), true);
    assert!(
        first.status.last_sync.is_some(),
        "the first sync sets lastSync"
    );

    // A change that compiles to the rules in place: the host is not even read.
    let applies = sync.kernel().applies;
    let same = sync.run(Wake::Change, observed(cluster(1)), false);
    assert_eq!(same.retry, None);
    assert_eq!(
        same.status.last_sync, None,
        "nothing new: the published lastSync stays"
    );
    assert_eq!(sync.kernel().applies, applies);

    // The periodic check reads the host and finds the rules there.
    let checked = sync.run(Wake::Timer, observed(cluster(1)), false);
    assert_eq!(sync.kernel().applies, applies + 1);
    assert_eq!(checked.status.last_sync, None);
    assert_eq!(rules_in_status(&checked), rules_in_status(&first));

    // The refresh period is up: a new lastSync although nothing changed.
    let refreshed = sync.run(Wake::Timer, observed(cluster(1)), true);
    assert!(refreshed.status.last_sync.is_some());

    // Someone flushed Palisade's rules: the periodic check puts them back, with a new lastSync.
    sync.kernel_mut().in_force.clear();
    let repaired = sync.run(Wake::Timer, observed(cluster(1)), false);
    assert!(repaired.status.last_sync.is_some());
    assert_eq!(sync.kernel().in_force[&Backend::Nft], rules_of(&cluster(1)));
}

#[test]
fn steady_churn_does_not_put_off_the_periodic_check_of_the_host() {
    // The 60-minute soak: under a change every few seconds, each compiling to the rules in
    // place, a hand-flushed table stayed flushed for over 30 s (resync 10 s).
    let mut sync = SyncStep::new(
        Settings {
            resync: Duration::from_millis(300),
            ..settings()
        },
        FakeKernel::new(found(Backend::Nft, Chosen::Detected)),
        Arc::new(Metrics::default()),
    );
    sync.run(Wake::Start, observed(cluster(1)), true);
    assert!(sync.host_check_due_in() > Duration::from_millis(200));
    sync.kernel_mut().in_force.clear();
    let applies = sync.kernel().applies;
    sync.run(Wake::Change, observed(cluster(1)), false);
    assert_eq!(
        sync.kernel().applies,
        applies,
        "within resync: the host is not read"
    );
    assert!(sync.kernel().in_force.is_empty());
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(sync.host_check_due_in(), Duration::ZERO);
    sync.run(Wake::Change, observed(cluster(1)), false);
    assert_eq!(
        sync.kernel().applies,
        applies + 1,
        "resync is up: the change reads the host"
    );
    assert_eq!(sync.kernel().in_force[&Backend::Nft], rules_of(&cluster(1)));
    assert!(sync.host_check_due_in() > Duration::from_millis(200));
}

#[test]
fn without_a_working_backend_nothing_is_enforced_and_detection_is_retried_but_not_on_every_change()
{
    let no_backend = NoBackend("neither iptables-nft nor iptables-legacy works".into());
    let mut sync = step(Err(no_backend.clone()));
    let first = sync.run(Wake::Start, observed(cluster(1)), true);
    assert!(!first.status.enforcing);
    assert_eq!(
        first.status.reason,
        format!("mode enforce, but {no_backend}")
    );
    assert_eq!(first.status.last_error, Some(no_backend.to_string()));
    assert_eq!(first.status.iptables_backend, None);
    assert_eq!(first.retry, Some(Duration::from_secs(1)));
    assert_eq!(sync.kernel().detections, 1);
    assert!(sync.kernel().in_force.is_empty());
    assert!(sync.detection().is_none());

    // A pod changes meanwhile: no new detection for that, the retry waits longer.
    let changed = sync.run(Wake::Change, observed(cluster(2)), false);
    assert_eq!(sync.kernel().detections, 1);
    assert_eq!(changed.retry, Some(Duration::from_secs(2)));

    // The retry finds iptables-legacy working: rules go there.
    sync.kernel_mut().found = found(Backend::Legacy, Chosen::Detected);
    let working = sync.run(Wake::Start, observed(cluster(2)), false);
    assert_eq!(sync.kernel().detections, 2);
    assert_eq!(working.retry, None);
    assert!(working.status.enforcing);
    assert_eq!(working.status.reason, "mode enforce");
    assert_eq!(working.status.last_error, None);
    assert_eq!(working.status.iptables_backend.as_deref(), Some("legacy"));
    assert_eq!(working.status.families, ["IPv4"]);
    assert_eq!(
        sync.kernel().in_force[&Backend::Legacy],
        rules_of(&cluster(2))
    );
    assert_eq!(sync.detection().map(|d| d.backend), Some(Backend::Legacy));

    // Once a backend was found by the node's rules, timers do not detect again.
    sync.run(Wake::Timer, observed(cluster(2)), false);
    assert_eq!(sync.kernel().detections, 2);
}

#[test]
fn a_backend_taken_for_want_of_rules_is_checked_again_and_the_rules_move_where_the_node_has_its_own()
 {
    let mut sync = step(found(Backend::Nft, Chosen::Default));
    let first = sync.run(Wake::Start, observed(cluster(1)), true);
    assert_eq!(first.status.iptables_backend.as_deref(), Some("nft"));
    assert_eq!(
        first.status.iptables_backend_source.as_deref(),
        Some("default")
    );
    assert!(sync.kernel().in_force.contains_key(&Backend::Nft));

    // Changes do not detect again; the periodic check does.
    sync.run(Wake::Change, observed(cluster(1)), false);
    assert_eq!(sync.kernel().detections, 1);
    sync.run(Wake::Timer, observed(cluster(1)), false);
    assert_eq!(sync.kernel().detections, 2);

    // kube-proxy has written its rules with iptables-legacy since: Palisade's move there, the
    // nft ones go, in one sync, with every rule written.
    sync.kernel_mut().found = found(Backend::Legacy, Chosen::Detected);
    let moved = sync.run(Wake::Timer, observed(cluster(1)), false);
    assert_eq!(sync.kernel().detections, 3);
    assert_eq!(moved.retry, None);
    assert_eq!(moved.status.iptables_backend.as_deref(), Some("legacy"));
    assert_eq!(
        moved.status.iptables_backend_source.as_deref(),
        Some("detected")
    );
    assert!(moved.status.last_sync.is_some());
    assert_eq!(
        sync.kernel().in_force.keys().collect::<Vec<_>>(),
        [&Backend::Legacy]
    );
    assert_eq!(
        sync.kernel().in_force[&Backend::Legacy],
        rules_of(&cluster(1))
    );
    assert_eq!(sync.kernel().left, [Backend::Nft]);

    sync.run(Wake::Timer, observed(cluster(1)), false);
    assert_eq!(sync.kernel().detections, 3, "a detected backend stays");
    assert_eq!(sync.kernel().left, [Backend::Nft], "left once");
}

#[test]
fn mode_off_takes_palisades_rules_out_and_says_so() {
    let mut settings = settings();
    settings.mode = Mode::Off;
    let mut kernel = FakeKernel::new(found(Backend::Nft, Chosen::Detected));
    kernel.in_force.insert(Backend::Nft, rules_of(&cluster(1)));
    let mut sync = SyncStep::new(settings, kernel, Arc::new(Metrics::default()));
    let off = sync.run(Wake::Start, observed(cluster(1)), true);
    assert_eq!(off.retry, None);
    assert!(!off.status.enforcing);
    assert_eq!(off.status.reason, "mode off: reporting only");
    assert_eq!(rules_in_status(&off), (0, 0, 0));
    assert!(
        sync.kernel().in_force.is_empty(),
        "the rules of an earlier run are removed"
    );
    assert_eq!(
        sync.kernel().cuts,
        0,
        "nothing is cut when nothing is enforced"
    );
}
