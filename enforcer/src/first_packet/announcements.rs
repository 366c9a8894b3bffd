//! The addresses the CNI plugin announced for pods whose status does not name them yet (pure).
//!
//! The kubelet writes a pod's addresses to its status up to about a second after its containers
//! run; the CNI plugin knows them before the pod's network is up. Until the status has them, the
//! enforcer's snapshot takes them from here. IPs the CNI just handed out are the new pod's: a
//! leaving pod whose status still names one of them loses it in the snapshot (its sandbox, and
//! so the address, is gone).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use palisade_policy::Pod;

/// How long an announcement for a pod the cache never shows is kept.
pub const UNSEEN_FOR: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Announced {
    container_id: String,
    ips: Vec<IpAddr>,
    at: Instant,
}

/// Announced addresses by pod (namespace, name).
#[derive(Debug, Default)]
pub struct Announcements {
    by_pod: HashMap<(String, String), Announced>,
    generation: u64,
}

impl Announcements {
    /// Records the addresses of a pod's sandbox; the announcement's generation.
    pub fn announce(
        &mut self,
        namespace: &str,
        name: &str,
        container_id: &str,
        ips: Vec<IpAddr>,
        now: Instant,
    ) -> u64 {
        self.generation += 1;
        self.by_pod.insert(
            (namespace.to_string(), name.to_string()),
            Announced {
                container_id: container_id.to_string(),
                ips,
                at: now,
            },
        );
        self.generation
    }

    /// Forgets the pod's announcement if it is that sandbox's (a late DEL of a failed sandbox
    /// must not undo its successor's ADD); whether it did.
    pub fn forget(&mut self, namespace: &str, name: &str, container_id: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        if self
            .by_pod
            .get(&key)
            .is_some_and(|a| a.container_id == container_id)
        {
            self.by_pod.remove(&key);
            self.generation += 1;
            return true;
        }
        false
    }

    /// The newest generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.by_pod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pod.is_empty()
    }

    /// Gives the pods of `node` without addresses in their status the announced ones, takes
    /// those addresses from every other pod, and forgets announcements the status has caught up
    /// with and those of pods unseen for [`UNSEEN_FOR`].
    pub fn overlay(&mut self, pods: &mut [Pod], node: &str, now: Instant) {
        if self.by_pod.is_empty() {
            return;
        }
        let mut seen = HashSet::new();
        let mut applied = HashSet::new();
        let mut claimed: HashSet<IpAddr> = HashSet::new();
        for pod in pods.iter_mut() {
            let key = (pod.namespace.clone(), pod.name.clone());
            let Some(announced) = self.by_pod.get(&key) else {
                continue;
            };
            seen.insert(key.clone());
            if !pod.ips.is_empty() || pod.ip.is_some() {
                // The status names the addresses now: it is the truth from here on.
                self.by_pod.remove(&key);
                continue;
            }
            if pod.node.as_deref() != Some(node) {
                continue;
            }
            pod.ips = announced.ips.clone();
            pod.ip = announced.ips.first().copied();
            claimed.extend(announced.ips.iter().copied());
            applied.insert(key);
        }
        self.by_pod.retain(|key, a| {
            seen.contains(key) || now.saturating_duration_since(a.at) < UNSEEN_FOR
        });
        if claimed.is_empty() {
            return;
        }
        for pod in pods.iter_mut() {
            if !pod.ips.iter().chain(&pod.ip).any(|ip| claimed.contains(ip))
                || applied.contains(&(pod.namespace.clone(), pod.name.clone()))
            {
                continue;
            }
            pod.ips.retain(|ip| !claimed.contains(ip));
            pod.ip = pod.ips.first().copied();
        }
    }
}

#[cfg(test)]
mod tests {
    use palisade_policy::Phase;

    use super::*;

    fn pending(namespace: &str, name: &str, node: &str) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            labels: [("app".to_string(), name.to_string())].into(),
            ip: None,
            ips: Vec::new(),
            node: Some(node.into()),
            host_network: false,
            phase: Phase::Pending,
            ports: Vec::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pod_without_status_addresses_gets_the_announced_ones() {
        let now = Instant::now();
        let mut a = Announcements::default();
        let g = a.announce(
            "guarded",
            "web",
            "c1",
            vec![ip("10.0.1.12"), ip("fd00::12")],
            now,
        );
        assert_eq!((g, a.generation()), (1, 1));
        let mut pods = vec![
            pending("guarded", "web", "node-1"),
            pending("other", "x", "node-1"),
        ];
        a.overlay(&mut pods, "node-1", now);
        assert_eq!(pods[0].ip, Some(ip("10.0.1.12")));
        assert_eq!(pods[0].ips, vec![ip("10.0.1.12"), ip("fd00::12")]);
        assert_eq!(pods[1].ip, None);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn the_status_takes_over() {
        let now = Instant::now();
        let mut a = Announcements::default();
        a.announce("ns", "web", "c1", vec![ip("10.0.1.12")], now);
        let mut web = pending("ns", "web", "node-1");
        web.ip = Some(ip("10.0.1.12"));
        web.ips = vec![ip("10.0.1.12")];
        let mut pods = vec![web.clone()];
        a.overlay(&mut pods, "node-1", now);
        assert_eq!(pods, vec![web]);
        assert!(a.is_empty());
    }

    #[test]
    fn a_leaving_pod_loses_a_reused_address() {
        let now = Instant::now();
        let mut a = Announcements::default();
        a.announce("ns", "new", "c2", vec![ip("10.0.1.12")], now);
        let mut old = pending("ns", "old", "node-1");
        old.ip = Some(ip("10.0.1.12"));
        old.ips = vec![ip("10.0.1.12")];
        let mut pods = vec![old, pending("ns", "new", "node-1")];
        a.overlay(&mut pods, "node-1", now);
        assert_eq!((pods[0].ip, pods[0].ips.len()), (None, 0));
        assert_eq!(pods[1].ip, Some(ip("10.0.1.12")));
    }

    #[test]
    fn other_nodes_pods_are_left_alone_and_unseen_ones_expire() {
        let now = Instant::now();
        let mut a = Announcements::default();
        a.announce("ns", "elsewhere", "c1", vec![ip("10.0.2.5")], now);
        a.announce("ns", "unseen", "c2", vec![ip("10.0.1.7")], now);
        let mut pods = vec![pending("ns", "elsewhere", "node-2")];
        a.overlay(&mut pods, "node-1", now);
        assert_eq!(pods[0].ip, None);
        assert_eq!(a.len(), 2);
        a.overlay(&mut pods, "node-1", now + UNSEEN_FOR);
        assert_eq!(a.len(), 1, "the unseen pod's announcement expired");
    }

    #[test]
    fn a_late_del_of_an_earlier_sandbox_forgets_nothing() {
        let now = Instant::now();
        let mut a = Announcements::default();
        a.announce("ns", "web", "c1", vec![ip("10.0.1.12")], now);
        a.announce("ns", "web", "c2", vec![ip("10.0.1.13")], now);
        assert!(!a.forget("ns", "web", "c1"));
        assert_eq!(a.len(), 1);
        assert!(a.forget("ns", "web", "c2"));
        assert!(a.is_empty());
        assert_eq!(a.generation(), 3);
    }
}
