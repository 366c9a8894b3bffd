//! The tutorial world as real pods on real nodes: busybox containers serving their TCP ports
//! with `nc`, pinned to their node, probed from inside each pod with `kubectl exec`, and what
//! `palisade reach` predicts from the cluster's own objects.

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_policy::Protocol;
use palisade_policy::reach::Probe;

use crate::real_pods::{busybox_pod, wait_for_service_account};
use crate::world::{Cell, PodDef, cells, predict};
use crate::{ControlPlane, Error};

/// Real pods of `defs`, in namespaces made (and labelled) for them; dropping it deletes the
/// namespaces it created and the pods it made elsewhere.
pub struct RealWorld<'a> {
    pub cp: &'a ControlPlane,
    pub pods: Vec<PodDef>,
    created: Vec<String>,
}

fn pod_manifest(pod: &PodDef) -> String {
    // One persistent `nc` server per TCP port: it accepts, runs `true`, closes.
    let servers: Vec<String> = pod
        .ports
        .iter()
        .filter(|(_, _, proto)| *proto == Protocol::Tcp)
        .map(|(_, port, _)| format!("nc -ll -p {port} -e /bin/true &"))
        .collect();
    busybox_pod(
        &pod.namespace,
        &pod.name,
        &pod.node,
        &pod.labels_yaml(),
        &pod.ports_yaml(),
        &format!("{} wait", servers.join(" ")),
    )
}

impl<'a> RealWorld<'a> {
    /// Creates `namespaces` (labelled; existing ones are only labelled) and `pods`, and waits
    /// until every pod runs with an IP.
    pub fn create(
        cp: &'a ControlPlane,
        namespaces: &[(&str, &[(&str, &str)])],
        pods: Vec<PodDef>,
    ) -> Result<Self, Error> {
        let mut world = Self {
            cp,
            pods,
            created: Vec::new(),
        };
        for (name, labels) in namespaces {
            let exists = cp
                .kubectl(&["get", "namespace", name])
                .is_ok_and(|o| o.status.success());
            if !exists {
                cp.kubectl_ok(&["create", "namespace", name])?;
                world.created.push(name.to_string());
            }
            if !labels.is_empty() {
                let mut args = vec!["label", "--overwrite", "namespace", name];
                let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                args.extend(pairs.iter().map(String::as_str));
                cp.kubectl_ok(&args)?;
            }
        }
        // Pods need their namespace's `default` ServiceAccount, which the controller-manager
        // makes a moment after the namespace.
        for (name, _) in namespaces {
            wait_for_service_account(cp, name)?;
        }
        let manifests: Vec<String> = world.pods.iter().map(pod_manifest).collect();
        cp.apply(&manifests.concat())?;
        for pod in &world.pods {
            cp.kubectl_ok(&[
                "wait",
                "--for=condition=Ready",
                "--timeout=90s",
                "pod",
                &pod.name,
                "-n",
                &pod.namespace,
            ])?;
        }
        Ok(world)
    }

    /// The TCP cells of the world for `ports` (the busybox servers speak TCP only).
    pub fn cells(&self, ports: &[(u16, Protocol)]) -> Vec<Cell> {
        let tcp: Vec<(u16, Protocol)> = ports
            .iter()
            .copied()
            .filter(|(_, p)| *p == Protocol::Tcp)
            .collect();
        cells(&self.pods, &tcp)
    }

    /// The pods' IPs as the apiserver reports them.
    pub fn ips(&self) -> Result<BTreeMap<String, String>, Error> {
        let out = self.cp.kubectl_ok(&[
            "get",
            "pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, ip)| (k.to_string(), ip.trim().to_string()))
            .collect())
    }

    /// What `palisade reach` says for the cells, from the cluster's own objects (as a user
    /// would dump them with kubectl), ClusterNetworkPolicies included where their CRD is.
    pub fn predict(&self, ports: &[(u16, Protocol)]) -> Result<Vec<Probe>, Error> {
        let get = |kinds: &str| self.cp.kubectl_ok(&["get", kinds, "-A", "-o", "yaml"]);
        let dump = match get("namespaces,pods,networkpolicies,clusternetworkpolicies") {
            Ok(dump) => dump,
            // No ClusterNetworkPolicy CRD in the cluster.
            Err(_) => get("namespaces,pods,networkpolicies")?,
        };
        predict(&[("cluster.yaml", &dump)], &self.cells(ports))
    }

    /// Probes every cell with a real TCP connection from inside the source pod (one
    /// `kubectl exec` per source, all sources at once; `nc -w 1` bounds each attempt).
    pub fn measure(&self, ports: &[(u16, Protocol)]) -> Result<Vec<Probe>, Error> {
        let ips = self.ips()?;
        let cells = self.cells(ports);
        let mut by_source: BTreeMap<String, Vec<&Cell>> = BTreeMap::new();
        for cell in &cells {
            by_source.entry(cell.0.clone()).or_default().push(cell);
        }
        let results: Vec<Result<Vec<Probe>, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = by_source
                .iter()
                .map(|(from, cells)| {
                    let ips = &ips;
                    s.spawn(move || self.probe_from(from, cells, ips))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Command {
                            what: "probing".into(),
                            stderr: "a probe thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut probes = Vec::new();
        for r in results {
            probes.extend(r?);
        }
        Ok(probes)
    }

    fn probe_from(
        &self,
        from: &str,
        cells: &[&Cell],
        ips: &BTreeMap<String, String>,
    ) -> Result<Vec<Probe>, Error> {
        let (ns, name) = from.split_once('/').unwrap_or(("default", from));
        let mut script = String::new();
        for (i, (_, to, port, _)) in cells.iter().enumerate() {
            let ip = ips.get(to).cloned().unwrap_or_default();
            script.push_str(&format!(
                "if nc -w 1 {ip} {port} </dev/null >/dev/null 2>&1; then echo {i} open; else echo {i} closed; fi; "
            ));
        }
        // `nc -w 1` bounds each attempt; the exec itself is bounded too.
        let limit = Duration::from_secs(30 + cells.len() as u64);
        let out = self
            .cp
            .kubectl_ok_within(&["exec", "-n", ns, name, "--", "sh", "-c", &script], limit)?;
        let mut probes = Vec::new();
        for line in out.lines() {
            let Some((i, verdict)) = line.split_once(' ') else {
                continue;
            };
            let Some((_, to, port, proto)) = i.parse::<usize>().ok().and_then(|i| cells.get(i))
            else {
                continue;
            };
            probes.push(Probe {
                from: from.to_string(),
                to: to.clone(),
                port: *port,
                protocol: proto.to_string(),
                allowed: verdict == "open",
                reason: String::new(),
            });
        }
        Ok(probes)
    }
}

impl Drop for RealWorld<'_> {
    fn drop(&mut self) {
        for pod in &self.pods {
            if !self.created.contains(&pod.namespace) {
                let _ = self.cp.kubectl(&[
                    "delete",
                    "pod",
                    &pod.name,
                    "-n",
                    &pod.namespace,
                    "--grace-period=1",
                    "--wait=false",
                ]);
            }
        }
        for ns in &self.created {
            let _ = self
                .cp
                .kubectl(&["delete", "namespace", ns, "--wait=false"]);
        }
    }
}
