//! How long pods take to start, as a user sees it: `kubectl get pods -w` of a namespace, each
//! pod's time from its first line (created) to its first `Running` line. For the start-latency
//! figures in BENCHMARKS.md, never for assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ControlPlane, Error};

/// Streams the pod watch of one namespace until stopped.
pub struct StartWatch {
    child: Child,
    seen: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

impl StartWatch {
    pub fn start(cp: &ControlPlane, namespace: &str) -> Result<Self, Error> {
        let mut child = Command::new(cp.kubectl_path())
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args([
                "get",
                "pods",
                "-n",
                namespace,
                "-w",
                "-o",
                "jsonpath={.metadata.name} {.status.phase}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Io {
                what: "kubectl get pods -w".into(),
                source,
            })?;
        let stdout = child.stdout.take().ok_or_else(|| Error::Command {
            what: "kubectl get pods -w".into(),
            stderr: "no stdout".into(),
        })?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let lines = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut f = line.split_whitespace();
                if let (Some(name), Some(phase)) = (f.next(), f.next()) {
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push((
                        Instant::now(),
                        name.to_string(),
                        phase.to_string(),
                    ));
                }
            }
        });
        Ok(Self { child, seen })
    }

    /// Whether pod `name` was seen Running.
    pub fn running(&self, name: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(_, n, phase)| n == name && phase == "Running")
    }

    /// Waits (at most `limit`) until pod `name` was seen Running.
    pub fn wait_running(&self, name: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.running(name) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Creation to Running of every pod seen doing both, in milliseconds, sorted.
    pub fn stop(mut self) -> Vec<u128> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
        let mut took = Vec::new();
        let mut done = BTreeSet::new();
        for (at, name, phase) in &seen {
            let created = *first.entry(name.as_str()).or_insert(*at);
            if phase == "Running" && done.insert(name.as_str()) {
                took.push(at.duration_since(created).as_millis());
            }
        }
        took.sort_unstable();
        took
    }
}

/// The `p` quantile (0..=1) of sorted figures, nearest rank; 0 when there are none.
pub fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
