//! The connectivity matrix: who can reach whom, on which ports, and why.
//!
//! Every cell goes through the same decision as [`Cluster::evaluate`]; the matrix only
//! precomputes, once per policy rule, which pods its peers name, so a large matrix costs a bit
//! test per rule instead of selector matching.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::cluster::{Cluster, Endpoint, Outcome, decide, rule_ports_match};
use crate::model::{Phase, Pod, Protocol};
use crate::policy::Direction;
use crate::verdict::{Decision, Verdict};

/// A port to probe, written `80`, `80/TCP` or `53/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbePort {
    pub port: u16,
    pub protocol: Protocol,
}

impl FromStr for ProbePort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (num, proto) = s.split_once('/').unwrap_or((s, "TCP"));
        let port = num
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{num:?} is not a port number (1-65535)"))?;
        Ok(Self {
            port,
            protocol: proto.to_ascii_uppercase().parse()?,
        })
    }
}

impl fmt::Display for ProbePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

#[derive(Debug, Clone, Default)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// A cell: the decision of each side, `None` where the side is not subject to policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    egress: Option<Outcome>,
    ingress: Option<Outcome>,
}

impl Cell {
    fn allowed(self) -> bool {
        self.egress.is_none_or(Outcome::allows) && self.ingress.is_none_or(Outcome::allows)
    }
}

/// One probe of the matrix, as `palisade reach -o json` and the e2e prober print it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

pub struct Matrix<'c> {
    cluster: &'c Cluster,
    sources: Vec<usize>,
    destinations: Vec<usize>,
    ports: Vec<ProbePort>,
    cells: Vec<Cell>,
}

/// Pods that take part in a matrix: they have an IP and are not finished.
pub fn reachable_pods(cluster: &Cluster) -> Vec<usize> {
    // Cluster keeps pods sorted by namespace and name, so the matrix is in that order too.
    cluster
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.ip.is_some() && !matches!(p.phase, Phase::Succeeded | Phase::Failed))
        .map(|(i, _)| i)
        .collect()
}

/// The ports the pods declare, for a matrix where none were asked for.
pub fn declared_ports(cluster: &Cluster, pods: &[usize]) -> Vec<ProbePort> {
    let mut ports: Vec<ProbePort> = pods
        .iter()
        .flat_map(|&i| cluster.pods()[i].ports.iter())
        .map(|p| ProbePort {
            port: p.port,
            protocol: p.protocol,
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

impl<'c> Matrix<'c> {
    /// Computes every (source, destination, port) cell. `sources` and `destinations` are
    /// indices into [`Cluster::pods`].
    pub fn compute(
        cluster: &'c Cluster,
        sources: Vec<usize>,
        destinations: Vec<usize>,
        ports: Vec<ProbePort>,
    ) -> Self {
        let pods = cluster.pods();
        let index = PeerIndex::build(cluster, &sources, &destinations);
        let mut cells = Vec::with_capacity(sources.len() * destinations.len() * ports.len());
        for (si, &s) in sources.iter().enumerate() {
            let src = &pods[s];
            let egress_iso: Vec<usize> = if src.is_target() {
                cluster
                    .isolating(src, Direction::Egress)
                    .map(|(i, _)| i)
                    .collect()
            } else {
                Vec::new()
            };
            for (di, &d) in destinations.iter().enumerate() {
                let dst = &pods[d];
                for port in &ports {
                    let egress = src.is_target().then(|| {
                        decide(
                            Direction::Egress,
                            egress_iso.iter().map(|&k| (k, &cluster.policies()[k])),
                            |(k, r), _, rule| {
                                rule_ports_match(rule, port.port, port.protocol, Some(dst))
                                    && index.peer_named(
                                        k,
                                        Direction::Egress,
                                        r,
                                        Target::Destination(di),
                                    )
                            },
                        )
                    });
                    let ingress = dst.is_target().then(|| {
                        decide(
                            Direction::Ingress,
                            index.ingress_isolating[di]
                                .iter()
                                .map(|&k| (k, &cluster.policies()[k])),
                            |(k, r), _, rule| {
                                rule_ports_match(rule, port.port, port.protocol, Some(dst))
                                    && index.peer_named(
                                        k,
                                        Direction::Ingress,
                                        r,
                                        Target::Source(si),
                                    )
                            },
                        )
                    });
                    cells.push(Cell { egress, ingress });
                }
            }
        }
        Self {
            cluster,
            sources,
            destinations,
            ports,
            cells,
        }
    }

    pub fn ports(&self) -> &[ProbePort] {
        &self.ports
    }

    fn cell(&self, si: usize, di: usize, pi: usize) -> Cell {
        self.cells[(si * self.destinations.len() + di) * self.ports.len() + pi]
    }

    pub fn allowed_count(&self) -> usize {
        self.cells.iter().filter(|c| c.allowed()).count()
    }

    fn verdict(&self, si: usize, di: usize, pi: usize) -> Verdict {
        let cell = self.cell(si, di, pi);
        let (src, dst) = (self.src(si), self.dst(di));
        let side = |o: Option<Outcome>, pod: &Pod, dir| match o {
            None => Decision::NotApplicable,
            Some(o) => self.cluster.decision(o, pod, dir),
        };
        Verdict {
            egress: side(cell.egress, src, Direction::Egress),
            ingress: side(cell.ingress, dst, Direction::Ingress),
        }
    }

    fn src(&self, si: usize) -> &'c Pod {
        &self.cluster.pods()[self.sources[si]]
    }
    fn dst(&self, di: usize) -> &'c Pod {
        &self.cluster.pods()[self.destinations[di]]
    }

    /// Every cell as a probe, with its reason when `explain` is set.
    pub fn probes(&self, explain: bool) -> Vec<Probe> {
        let mut out = Vec::with_capacity(self.cells.len());
        for si in 0..self.sources.len() {
            for di in 0..self.destinations.len() {
                for (pi, port) in self.ports.iter().enumerate() {
                    let (from, to) = (self.src(si).key(), self.dst(di).key());
                    let allowed = self.cell(si, di, pi).allowed();
                    let reason = if explain {
                        self.verdict(si, di, pi)
                            .reason(&from, &to, port.port, port.protocol)
                    } else {
                        String::new()
                    };
                    out.push(Probe {
                        from,
                        to,
                        port: port.port,
                        protocol: port.protocol.to_string(),
                        allowed,
                        reason,
                    });
                }
            }
        }
        out
    }

    /// One table per port: sources down the side, destinations across (numbered, with a key).
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let names: Vec<String> = self
            .destinations
            .iter()
            .map(|&d| self.cluster.pods()[d].key())
            .collect();
        let width = self
            .sources
            .iter()
            .map(|&s| self.cluster.pods()[s].key().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let colw = self.destinations.len().to_string().len().max(2) + 1;
        for (pi, port) in self.ports.iter().enumerate() {
            let _ = writeln!(
                out,
                "{port}  (✓ allowed, ✗ blocked; rows: from, columns: to)"
            );
            let _ = write!(out, "{:width$}", "");
            for d in 1..=self.destinations.len() {
                let _ = write!(out, "{d:>colw$}");
            }
            out.push('\n');
            for si in 0..self.sources.len() {
                let _ = write!(out, "{:width$}", self.src(si).key());
                for di in 0..self.destinations.len() {
                    let mark = if self.cell(si, di, pi).allowed() {
                        "✓"
                    } else {
                        "✗"
                    };
                    let _ = write!(out, "{mark:>colw$}");
                }
                out.push('\n');
            }
            out.push('\n');
        }
        let _ = writeln!(out, "columns:");
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(out, "{:>4}  {n}", i + 1);
        }
        out
    }
}

enum Target {
    Source(usize),
    Destination(usize),
}

/// For every rule of every policy, which matrix pods its peers name.
struct PeerIndex {
    /// Per policy: the first rule set of its ingress rules and of its egress rules.
    base: Vec<[usize; 2]>,
    /// Ingress rules name sources; egress rules name destinations.
    sets: Vec<BitSet>,
    ingress_isolating: Vec<Vec<usize>>,
}

impl PeerIndex {
    fn build(cluster: &Cluster, sources: &[usize], destinations: &[usize]) -> Self {
        let pods = cluster.pods();
        let mut base = Vec::with_capacity(cluster.policies().len());
        let mut sets = Vec::new();
        for policy in cluster.policies() {
            let mut b = [0; 2];
            for (slot, dir, named) in [
                (0, Direction::Ingress, sources),
                (1, Direction::Egress, destinations),
            ] {
                b[slot] = sets.len();
                for rule in policy.rules(dir).unwrap_or_default() {
                    let mut set = BitSet::new(named.len());
                    for (i, &p) in named.iter().enumerate() {
                        if cluster.rule_peers_match(
                            &policy.namespace,
                            rule,
                            &Endpoint::Pod(&pods[p]),
                        ) {
                            set.insert(i);
                        }
                    }
                    sets.push(set);
                }
            }
            base.push(b);
        }
        let ingress_isolating = destinations
            .iter()
            .map(|&d| {
                cluster
                    .isolating(&pods[d], Direction::Ingress)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        Self {
            base,
            sets,
            ingress_isolating,
        }
    }

    fn peer_named(&self, policy: usize, dir: Direction, rule: usize, target: Target) -> bool {
        let slot = usize::from(dir == Direction::Egress);
        let set = &self.sets[self.base[policy][slot] + rule];
        match target {
            Target::Source(i) | Target::Destination(i) => set.contains(i),
        }
    }
}
