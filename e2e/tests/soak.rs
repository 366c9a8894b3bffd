//! The chaos soak on real nodes (issue 23): the chart installed, the tutorial world under its
//! three-tier policies, churn in another namespace, and Palisade's components and the control
//! plane hit on a seeded schedule while two pairs of pods are watched every 100 ms.
//!
//! Short here (`PALISADE_SOAK_SECONDS`, default 75 s: five faults, one every 15 s) so it fits CI; `palisade-e2e soak
//! --minutes N` runs it longer. The seed is printed; `PALISADE_SOAK_SEED` replays it.
//!
//! Skipped, with one line naming what is missing, where this machine cannot run real nodes.

use std::time::Duration;

use palisade_e2e::real_nodes;
use palisade_e2e::soak::{self, Options};

#[test]
fn faults_and_churn_lose_no_policy() {
    let Some(cluster) = real_nodes::cluster_for_tests() else {
        return;
    };
    let world = soak::prepare(&cluster).expect("the chart, the tutorial world and its policies");
    let seconds = std::env::var("PALISADE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(75);
    let options = Options {
        fault_every: Duration::from_secs(15),
        ..Options::new(Duration::from_secs(seconds))
    };
    eprintln!(
        "soak seed {} (PALISADE_SOAK_SEED={} replays it)",
        options.seed, options.seed
    );
    let report = soak::run(&cluster, &world, &options).expect("the soak");
    eprintln!("{}", report.summary());

    let broken = report.violations(&options);
    assert!(
        broken.is_empty(),
        "{}\n{}",
        broken.join("\n"),
        report.summary()
    );
}
