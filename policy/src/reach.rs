//! The connectivity matrix: who can reach whom, on which ports, and why.
//!
//! Every cell goes through the same decision as [`Cluster::evaluate`]; the matrix only
//! precomputes, once per policy rule, which pods its peers name, so a large matrix costs a bit
//! test per rule instead of selector matching. Pods that behave alike (same namespace, labels,
//! ports, and ipBlocks holding their IP) are decided once per group, and a [`Plan`] computes a
//! row at a time, so the memory a matrix needs does not grow with its cells.

use std::fmt;
use std::str::FromStr;

use crate::cluster::{Cluster, Endpoint, Outcome, decide, rule_ports_match, same_pod, tiered};
use crate::cluster_policy::ClusterPeer;
use crate::model::{Phase, Pod, Protocol};
use crate::policy::{Direction, IpBlockPeer, Peer};
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
pub struct Cell {
    egress: Option<Outcome>,
    ingress: Option<Outcome>,
}

impl Cell {
    /// A pod to its own IP: always allowed, it never leaves the pod.
    pub const TO_ITSELF: Cell = Cell {
        egress: Some(Outcome::ToItself),
        ingress: Some(Outcome::ToItself),
    };

    /// Whether this is a pod reaching its own IP.
    pub fn to_itself(self) -> bool {
        self == Self::TO_ITSELF
    }

    pub fn allowed(self) -> bool {
        self.egress.is_none_or(Outcome::allows) && self.ingress.is_none_or(Outcome::allows)
    }

    /// Allowed only because the policies that would deny it are all in audit mode: what
    /// promoting them would deny.
    pub fn audit_would_deny(self) -> bool {
        self.allowed() && [self.egress, self.ingress].contains(&Some(Outcome::AuditWouldDeny))
    }

    /// For the egress and the ingress side: `None` where no policy isolates it, else whether
    /// it allows.
    pub fn sides(self) -> [Option<bool>; 2] {
        [self.egress, self.ingress].map(|o| match o {
            None | Some(Outcome::NotIsolated | Outcome::ToItself) => None,
            Some(o) => Some(o.allows()),
        })
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

/// The per-pod matrix, for small worlds and tests: every (source, destination, port) cell,
/// computed once per group of alike pods (see [`Plan`]).
pub struct Matrix<'c> {
    plan: Plan<'c>,
    /// Per source pod, its group in the plan; likewise for destinations.
    source_group: Vec<usize>,
    destination_group: Vec<usize>,
    sources: Vec<usize>,
    destinations: Vec<usize>,
    /// Group cells: `[source group][port][destination group]`.
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
        let plan = Plan::new(cluster, &sources, &destinations, ports);
        let member_of = |groups: &[Vec<usize>], pods: &[usize]| {
            let mut at = std::collections::HashMap::new();
            for (g, members) in groups.iter().enumerate() {
                for &p in members {
                    at.insert(p, g);
                }
            }
            pods.iter().map(|p| at[p]).collect::<Vec<usize>>()
        };
        let source_group = member_of(&plan.sources, &sources);
        let destination_group = member_of(&plan.destinations, &destinations);
        let mut cells = Vec::new();
        let mut row = Vec::new();
        for sg in 0..plan.sources.len() {
            for pi in 0..plan.ports.len() {
                plan.row(sg, pi, &mut row);
                cells.extend_from_slice(&row);
            }
        }
        Self {
            plan,
            source_group,
            destination_group,
            sources,
            destinations,
            cells,
        }
    }

    pub fn ports(&self) -> &[ProbePort] {
        &self.plan.ports
    }

    /// The cell of source `si`, destination `di` (indices into the `sources` and
    /// `destinations` it was computed with) and port `pi` (into [`Matrix::ports`]).
    pub fn cell(&self, si: usize, di: usize, pi: usize) -> Cell {
        let pods = self.plan.cluster.pods();
        let (src, dst) = (&pods[self.sources[si]], &pods[self.destinations[di]]);
        if src.is_target() && same_pod(src, dst) {
            return Cell::TO_ITSELF;
        }
        let (sg, dg) = (self.source_group[si], self.destination_group[di]);
        self.cells[(sg * self.plan.ports.len() + pi) * self.plan.destinations.len() + dg]
    }

    pub fn allowed_count(&self) -> usize {
        let mut n = 0;
        for si in 0..self.sources.len() {
            for di in 0..self.destinations.len() {
                for pi in 0..self.plan.ports.len() {
                    n += usize::from(self.cell(si, di, pi).allowed());
                }
            }
        }
        n
    }

    /// Every cell as a probe, with its reason when `explain` is set.
    pub fn probes(&self, explain: bool) -> Vec<Probe> {
        let pods = self.plan.cluster.pods();
        let mut out = Vec::new();
        for (si, &s) in self.sources.iter().enumerate() {
            for (di, &d) in self.destinations.iter().enumerate() {
                for (pi, port) in self.plan.ports.iter().enumerate() {
                    let cell = self.cell(si, di, pi);
                    out.push(self.plan.probe(&pods[s], &pods[d], *port, cell, explain));
                }
            }
        }
        out
    }
}

/// A key that pods behaving alike under every policy share: namespace, labels, declared ports,
/// whether they are targets and peers, and which ipBlocks and ClusterNetworkPolicy networks of
/// the policies hold their IP.
#[derive(PartialEq, Eq, Hash)]
struct AlikeKey<'a> {
    namespace: &'a str,
    labels: &'a crate::Labels,
    host_network: bool,
    peer: bool,
    ports: Vec<(Option<&'a str>, u16, Protocol)>,
    blocks: Vec<bool>,
    /// Only when grouping by node (where enforcement differs between nodes).
    node: Option<&'a str>,
}

/// Groups `pods` (indices into [`Cluster::pods`]) into pods that behave alike under every
/// policy, in the order their first member comes; a group's first pod stands for it.
pub fn group_alike(cluster: &Cluster, pods: &[usize], by_node: bool) -> Vec<Vec<usize>> {
    let mut blocks: Vec<&IpBlockPeer> = Vec::new();
    for policy in cluster.policies() {
        for (_, _, rule) in policy.all_rules() {
            for peer in &rule.peers {
                if let Peer::IpBlock(b) = peer
                    && !blocks.contains(&b)
                {
                    blocks.push(b);
                }
            }
        }
    }
    let mut networks: Vec<&ipnet::IpNet> = Vec::new();
    for policy in cluster.cluster_policies() {
        for rule in policy.ingress.iter().chain(&policy.egress) {
            for peer in &rule.peers {
                if let ClusterPeer::Networks(nets) = peer {
                    for n in nets {
                        if !networks.contains(&n) {
                            networks.push(n);
                        }
                    }
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut at: std::collections::HashMap<AlikeKey, usize> = std::collections::HashMap::new();
    for &i in pods {
        let pod = &cluster.pods()[i];
        let mut ports: Vec<_> = pod
            .ports
            .iter()
            .map(|p| (p.name.as_deref(), p.port, p.protocol))
            .collect();
        ports.sort();
        ports.dedup();
        let key = AlikeKey {
            namespace: &pod.namespace,
            labels: &pod.labels,
            host_network: pod.host_network,
            peer: pod.is_peer(),
            ports,
            blocks: blocks
                .iter()
                .map(|b| pod.ip.is_some_and(|ip| b.contains(ip)))
                .chain(
                    networks
                        .iter()
                        .map(|n| pod.ip.is_some_and(|ip| n.contains(&ip))),
                )
                .collect(),
            node: if by_node { pod.node.as_deref() } else { None },
        };
        match at.get(&key) {
            Some(&g) => groups[g].push(i),
            None => {
                at.insert(key, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// A matrix ready to be computed row by row, in memory that does not grow with its size: pods
/// that behave alike are grouped, and each rule's peers are resolved once per group.
pub struct Plan<'c> {
    cluster: &'c Cluster,
    /// Groups of alike source pods (indices into [`Cluster::pods`]); the first stands for all.
    pub sources: Vec<Vec<usize>>,
    pub destinations: Vec<Vec<usize>>,
    pub ports: Vec<ProbePort>,
    egress_isolating: Vec<Vec<usize>>,
    /// Per source group, whether only audit-mode policies isolate its egress; per
    /// destination group, its ingress.
    egress_audit_only: Vec<bool>,
    ingress_audit_only: Vec<bool>,
    index: PeerIndex,
}

impl<'c> Plan<'c> {
    pub fn new(
        cluster: &'c Cluster,
        sources: &[usize],
        destinations: &[usize],
        ports: Vec<ProbePort>,
    ) -> Self {
        Self::grouped(cluster, sources, destinations, ports, false)
    }

    /// As [`Plan::new`]; with `by_node`, pods on different nodes are never grouped.
    pub fn grouped(
        cluster: &'c Cluster,
        sources: &[usize],
        destinations: &[usize],
        ports: Vec<ProbePort>,
        by_node: bool,
    ) -> Self {
        let sources = group_alike(cluster, sources, by_node);
        let destinations = group_alike(cluster, destinations, by_node);
        let pods = cluster.pods();
        let egress_isolating: Vec<Vec<usize>> = sources
            .iter()
            .map(|g| {
                let src = &pods[g[0]];
                if src.is_target() {
                    cluster
                        .isolating(src, Direction::Egress)
                        .map(|(i, _)| i)
                        .collect()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let index = PeerIndex::build(cluster, &sources, &destinations, &egress_isolating);
        let audit_only = |groups: &[Vec<usize>], dir| -> Vec<bool> {
            groups
                .iter()
                .map(|g| cluster.audit_only(&pods[g[0]], dir))
                .collect()
        };
        Self {
            cluster,
            egress_audit_only: audit_only(&sources, Direction::Egress),
            ingress_audit_only: audit_only(&destinations, Direction::Ingress),
            sources,
            destinations,
            ports,
            egress_isolating,
            index,
        }
    }

    pub fn cluster(&self) -> &'c Cluster {
        self.cluster
    }

    /// How many cells the matrix has (groups × groups × ports).
    pub fn cells(&self) -> u64 {
        self.sources.len() as u64 * self.destinations.len() as u64 * self.ports.len() as u64
    }

    /// The cells of source group `sg` on port `pi`, one per destination group, into `out`.
    pub fn row(&self, sg: usize, pi: usize, out: &mut Vec<Cell>) {
        out.clear();
        let pods = self.cluster.pods();
        let policies = self.cluster.policies();
        let port = self.ports[pi];
        let cluster_policies = self.cluster.cluster_policies();
        for dg in 0..self.destinations.len() {
            let (s, d) = self.pair(sg, dg);
            let (src, dst) = (&pods[s], &pods[d]);
            if src.is_target() && same_pod(src, dst) {
                out.push(Cell::TO_ITSELF);
                continue;
            }
            let egress = src.is_target().then(|| {
                tiered(
                    cluster_policies,
                    Direction::Egress,
                    &self.index.egress_cluster[sg],
                    |k, r, rule| {
                        self.index.cluster_names(k, Direction::Egress, r, dg)
                            && rule.ports_match(port.port, port.protocol, Some(dst))
                    },
                    || {
                        decide(
                            Direction::Egress,
                            self.egress_isolating[sg].iter().map(|&k| (k, &policies[k])),
                            |(k, r), _, rule| {
                                rule_ports_match(rule, port.port, port.protocol, Some(dst))
                                    && self.index.names(k, Direction::Egress, r, dg)
                            },
                        )
                        .as_enforced(|| self.egress_audit_only[sg])
                    },
                )
            });
            let ingress = dst.is_target().then(|| {
                tiered(
                    cluster_policies,
                    Direction::Ingress,
                    &self.index.ingress_cluster[dg],
                    |k, r, rule| {
                        self.index.cluster_names(k, Direction::Ingress, r, sg)
                            && rule.ports_match(port.port, port.protocol, Some(dst))
                    },
                    || {
                        decide(
                            Direction::Ingress,
                            self.index.ingress_isolating[dg]
                                .iter()
                                .map(|&k| (k, &policies[k])),
                            |(k, r), _, rule| {
                                rule_ports_match(rule, port.port, port.protocol, Some(dst))
                                    && self.index.names(k, Direction::Ingress, r, sg)
                            },
                        )
                        .as_enforced(|| self.ingress_audit_only[dg])
                    },
                )
            });
            out.push(Cell { egress, ingress });
        }
    }

    /// The pods (indices into [`Cluster::pods`]) whose connection the cell of source group `sg`
    /// and destination group `dg` decides: the groups' first pods, unless that is one pod
    /// reaching itself while a group has other pods; then another pod of the group, so the cell
    /// says what alike pods get reaching each other (a pod reaching itself is always allowed).
    pub fn pair(&self, sg: usize, dg: usize) -> (usize, usize) {
        let (sources, destinations) = (&self.sources[sg], &self.destinations[dg]);
        let pods = self.cluster.pods();
        let (s, d) = (sources[0], destinations[0]);
        if !same_pod(&pods[s], &pods[d]) {
            return (s, d);
        }
        match (sources.get(1), destinations.get(1)) {
            (_, Some(&other)) => (s, other),
            (Some(&other), None) => (other, d),
            (None, None) => (s, d),
        }
    }

    /// Whether the cell of `sg` and `dg` stands, besides pods reaching other pods, for a pod
    /// of the groups reaching itself (the groups' first pod is the same pod and a group has
    /// others): that connection is always allowed whatever the cell says.
    pub fn hides_itself(&self, sg: usize, dg: usize) -> bool {
        let pods = self.cluster.pods();
        let (s, d) = self.pair(sg, dg);
        !same_pod(&pods[s], &pods[d])
            && same_pod(&pods[self.sources[sg][0]], &pods[self.destinations[dg][0]])
    }

    /// A cell as a probe between two pods of its groups, with its reason when `explain` is set.
    pub fn probe(&self, src: &Pod, dst: &Pod, port: ProbePort, cell: Cell, explain: bool) -> Probe {
        let (from, to) = (src.key(), dst.key());
        let reason = if explain {
            let side = |o: Option<Outcome>, pod: &Pod, dir| match o {
                None => Decision::NotApplicable,
                Some(o) => self.cluster.decision(o, pod, dir),
            };
            Verdict {
                egress: side(cell.egress, src, Direction::Egress),
                ingress: side(cell.ingress, dst, Direction::Ingress),
            }
            .reason(&from, &to, port.port, port.protocol)
        } else {
            String::new()
        };
        Probe {
            from,
            to,
            port: port.port,
            protocol: port.protocol.to_string(),
            allowed: cell.allowed(),
            reason,
        }
    }
}

/// For the rules of the policies that decide some cell, which groups their peers name.
struct PeerIndex {
    /// Per policy and direction (ingress, egress): the first rule's set, when indexed.
    base: Vec<[Option<usize>; 2]>,
    /// Ingress rules name source groups; egress rules name destination groups.
    sets: Vec<BitSet>,
    ingress_isolating: Vec<Vec<usize>>,
    /// Per destination group, the ClusterNetworkPolicies with ingress rules selecting it (in
    /// order); per source group, those with egress rules.
    ingress_cluster: Vec<Vec<usize>>,
    egress_cluster: Vec<Vec<usize>>,
    /// As `base`/`sets`, for ClusterNetworkPolicy rules.
    cluster_base: Vec<[Option<usize>; 2]>,
    cluster_sets: Vec<BitSet>,
}

impl PeerIndex {
    fn build(
        cluster: &Cluster,
        sources: &[Vec<usize>],
        destinations: &[Vec<usize>],
        egress_isolating: &[Vec<usize>],
    ) -> Self {
        let pods = cluster.pods();
        let ingress_isolating: Vec<Vec<usize>> = destinations
            .iter()
            .map(|g| {
                cluster
                    .isolating(&pods[g[0]], Direction::Ingress)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        // Only the policies that isolate some pod of the matrix are ever asked.
        let mut wanted = vec![[false; 2]; cluster.policies().len()];
        for &k in ingress_isolating.iter().flatten() {
            wanted[k][0] = true;
        }
        for &k in egress_isolating.iter().flatten() {
            wanted[k][1] = true;
        }
        let mut base = vec![[None; 2]; cluster.policies().len()];
        let mut sets = Vec::new();
        for (k, policy) in cluster.policies().iter().enumerate() {
            for (slot, dir, named) in [
                (0, Direction::Ingress, sources),
                (1, Direction::Egress, destinations),
            ] {
                if !wanted[k][slot] {
                    continue;
                }
                base[k][slot] = Some(sets.len());
                for rule in policy.rules(dir).unwrap_or_default() {
                    let mut set = BitSet::new(named.len());
                    for (i, g) in named.iter().enumerate() {
                        if cluster.rule_peers_match(
                            &policy.namespace,
                            rule,
                            &Endpoint::Pod(&pods[g[0]]),
                        ) {
                            set.insert(i);
                        }
                    }
                    sets.push(set);
                }
            }
        }
        let cluster_of = |groups: &[Vec<usize>], dir| -> Vec<Vec<usize>> {
            groups
                .iter()
                .map(|g| cluster.cluster_selecting(&pods[g[0]], dir).collect())
                .collect()
        };
        let ingress_cluster = cluster_of(destinations, Direction::Ingress);
        let egress_cluster = cluster_of(sources, Direction::Egress);
        let cnps = cluster.cluster_policies();
        let mut wanted = vec![[false; 2]; cnps.len()];
        for &k in ingress_cluster.iter().flatten() {
            wanted[k][0] = true;
        }
        for &k in egress_cluster.iter().flatten() {
            wanted[k][1] = true;
        }
        let mut cluster_base = vec![[None; 2]; cnps.len()];
        let mut cluster_sets = Vec::new();
        for (k, policy) in cnps.iter().enumerate() {
            for (slot, dir, named) in [
                (0, Direction::Ingress, sources),
                (1, Direction::Egress, destinations),
            ] {
                if !wanted[k][slot] {
                    continue;
                }
                cluster_base[k][slot] = Some(cluster_sets.len());
                for rule in policy.rules(dir) {
                    let mut set = BitSet::new(named.len());
                    for (i, g) in named.iter().enumerate() {
                        let endpoint = Endpoint::Pod(&pods[g[0]]);
                        if rule
                            .peers
                            .iter()
                            .any(|p| cluster.cluster_peer_matches(p, &endpoint))
                        {
                            set.insert(i);
                        }
                    }
                    cluster_sets.push(set);
                }
            }
        }
        Self {
            base,
            sets,
            ingress_isolating,
            ingress_cluster,
            egress_cluster,
            cluster_base,
            cluster_sets,
        }
    }

    /// Whether rule `rule` of ClusterNetworkPolicy `policy` in `dir` names group `group`.
    fn cluster_names(&self, policy: usize, dir: Direction, rule: usize, group: usize) -> bool {
        let slot = usize::from(dir == Direction::Egress);
        self.cluster_base[policy][slot].is_some_and(|b| self.cluster_sets[b + rule].contains(group))
    }

    /// Whether rule `rule` of policy `policy` in `dir` names group `group` as its peer.
    fn names(&self, policy: usize, dir: Direction, rule: usize, group: usize) -> bool {
        let slot = usize::from(dir == Direction::Egress);
        self.base[policy][slot].is_some_and(|b| self.sets[b + rule].contains(group))
    }
}
